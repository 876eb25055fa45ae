// Types of random-pool.mjs (plain JavaScript: the encryption thread loads it too).

/** `n` fresh random bytes (a copy the caller owns); like randomBytes(n), cheaper for small n. */
export function randomBytesPooled(n: number): Buffer;
