-- DropIndex
DROP INDEX "UserKeyChallenge_postboxId_idx";

-- AlterTable
ALTER TABLE "UserKeyChallenge" ADD COLUMN     "requesterHash" TEXT NOT NULL DEFAULT '';

-- CreateIndex
CREATE INDEX "UserKeyChallenge_postboxId_requesterHash_idx" ON "UserKeyChallenge"("postboxId", "requesterHash");

