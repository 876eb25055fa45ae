-- CreateTable
CREATE TABLE "UsedRefreshToken" (
    "hash" TEXT NOT NULL,
    "grantId" TEXT NOT NULL,
    "usedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "UsedRefreshToken_pkey" PRIMARY KEY ("hash")
);

-- CreateTable
CREATE TABLE "UserKeyChallenge" (
    "id" TEXT NOT NULL,
    "postboxId" TEXT NOT NULL,
    "answerHash" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expiresAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "UserKeyChallenge_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "UsedRefreshToken_grantId_idx" ON "UsedRefreshToken"("grantId");

-- CreateIndex
CREATE INDEX "UserKeyChallenge_postboxId_idx" ON "UserKeyChallenge"("postboxId");

-- CreateIndex
CREATE INDEX "UserKeyChallenge_expiresAt_idx" ON "UserKeyChallenge"("expiresAt");

-- AddForeignKey
ALTER TABLE "UsedRefreshToken" ADD CONSTRAINT "UsedRefreshToken_grantId_fkey" FOREIGN KEY ("grantId") REFERENCES "UserGrant"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "UserKeyChallenge" ADD CONSTRAINT "UserKeyChallenge_postboxId_fkey" FOREIGN KEY ("postboxId") REFERENCES "Postbox"("id") ON DELETE CASCADE ON UPDATE CASCADE;

