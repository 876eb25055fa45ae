-- AlterTable
ALTER TABLE "PushContent" ALTER COLUMN "ciphertext" DROP NOT NULL;

-- CreateTable
CREATE TABLE "PushChunk" (
    "pushId" TEXT NOT NULL,
    "seq" INTEGER NOT NULL,
    "data" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "PushChunk_pkey" PRIMARY KEY ("pushId","seq")
);

-- CreateIndex
CREATE INDEX "PushChunk_createdAt_idx" ON "PushChunk"("createdAt");


-- Ciphertext is random: compressing it only wastes CPU. Keep it uncompressed (out of line when large).
ALTER TABLE "PushContent" ALTER COLUMN "ciphertext" SET STORAGE EXTERNAL;
ALTER TABLE "PushChunk" ALTER COLUMN "data" SET STORAGE EXTERNAL;
