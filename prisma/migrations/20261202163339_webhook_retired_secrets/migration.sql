-- One retired secret became a list (a second rotation within the overlap dropped the
-- first one's secret at once). A secret still in its overlap moves over.
ALTER TABLE "WebhookEndpoint" ADD COLUMN     "retiredSecrets" JSONB NOT NULL DEFAULT '[]';

UPDATE "WebhookEndpoint"
SET "retiredSecrets" = jsonb_build_array(jsonb_build_object(
  'secret', "previousSecret",
  'until', to_char("previousSecretUntil", 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')))
WHERE "previousSecret" IS NOT NULL AND "previousSecretUntil" IS NOT NULL;

-- AlterTable
ALTER TABLE "WebhookEndpoint" DROP COLUMN "previousSecret",
DROP COLUMN "previousSecretUntil";
