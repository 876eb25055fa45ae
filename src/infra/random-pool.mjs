// Random bytes drawn from the system CSPRNG 8 KiB at a time: each call to the CSPRNG
// costs several microseconds (25–30 µs on a loaded server), and every push takes ids and
// a content key. Every byte is handed out once and wiped from the pool as it goes. Each
// thread has its own pool.
//
// Plain JavaScript because the encryption thread (modules/push/jwe.worker.mjs) loads it
// too, with no TypeScript step. Types: random-pool.d.mts.
import { randomBytes, randomFillSync } from "node:crypto";

const POOL_BYTES = 8192;
const pool = Buffer.alloc(POOL_BYTES);
let poolOffset = POOL_BYTES;

/** `n` fresh random bytes (a copy the caller owns); like randomBytes(n), cheaper for small n. */
export function randomBytesPooled(n) {
  if (n > 256) return randomBytes(n);
  if (poolOffset + n > POOL_BYTES) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const out = Buffer.alloc(n);
  pool.copy(out, 0, poolOffset, poolOffset + n);
  pool.fill(0, poolOffset, poolOffset + n);
  poolOffset += n;
  return out;
}
