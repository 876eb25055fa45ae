-- Key challenges are sealed into their ids now (user.challenge.ts); only answered ones are
-- recorded. Challenges open at the upgrade stop working: a device simply asks again.

-- DropForeignKey
ALTER TABLE "UserKeyChallenge" DROP CONSTRAINT "UserKeyChallenge_postboxId_fkey";

-- DropTable
DROP TABLE "UserKeyChallenge";

-- CreateTable
CREATE TABLE "UsedKeyChallenge" (
    "id" TEXT NOT NULL,
    "expiresAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "UsedKeyChallenge_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "UsedKeyChallenge_expiresAt_idx" ON "UsedKeyChallenge"("expiresAt");

