-- Storage of pushed content. A small push's PushContent row (a 1 KiB file is about
-- 2.4 kB of JWE text with its descriptor) is just over PostgreSQL's TOAST threshold
-- (about 2 kB), so every such push paid for an attempt to compress its ciphertext
-- (base64url of ciphertext does not compress) and then for a second row in the TOAST
-- table and its index. Rows up to about 8 kB now stay in the table as they are, and
-- larger values go to the TOAST table without a compression attempt; the same for an
-- upload's 1 MB slices. Measured on the embedded database, batches of 32 pushes: the
-- PushContent insert went from 41-45 to 26-29 µs per push.
ALTER TABLE "PushContent" SET (toast_tuple_target = 8160);
ALTER TABLE "PushContent" ALTER COLUMN "ciphertext" SET STORAGE EXTERNAL, ALTER COLUMN "descriptor" SET STORAGE EXTERNAL;
ALTER TABLE "PushChunk" ALTER COLUMN "data" SET STORAGE EXTERNAL;
