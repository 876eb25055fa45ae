// Small crypto helpers shared by the modules: opaque bearer secrets (shown once,
// stored as sha256), constant-time comparison, keyed hashes.
import { createHash, createHmac, randomBytes, randomFillSync, timingSafeEqual } from "node:crypto";

// Random bytes drawn from the system CSPRNG 8 KiB at a time: each call to the CSPRNG
// costs several microseconds, and every push and audit event takes an id. Every byte
// is handed out once and wiped from the pool as it goes.
const POOL_BYTES = 8192;
const pool = Buffer.alloc(POOL_BYTES);
let poolOffset = POOL_BYTES;

/** `n` fresh random bytes (a copy the caller owns); like randomBytes(n), cheaper for small n. */
export function randomBytesPooled(n: number): Buffer {
  if (n > 256) return randomBytes(n);
  if (poolOffset + n > POOL_BYTES) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const out = Buffer.from(pool.subarray(poolOffset, poolOffset + n));
  pool.fill(0, poolOffset, poolOffset + n);
  poolOffset += n;
  return out;
}

/** A bearer secret with a recognisable prefix, e.g. "pbs_…" for session keys. */
export function newSecret(prefix: string, bytes = 32): string {
  return `${prefix}_${randomBytes(bytes).toString("base64url")}`;
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export function hmacHex(key: string, data: string | Uint8Array): string {
  return createHmac("sha256", key).update(data).digest("hex");
}

export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
