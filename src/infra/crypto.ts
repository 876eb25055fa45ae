// Small crypto helpers shared by the modules: opaque bearer secrets (shown once,
// stored as sha256), constant-time comparison, keyed hashes.
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";

// Pooled CSPRNG bytes (ids, content keys): in plain JavaScript so the encryption thread can load it too.
export { randomBytesPooled } from "./random-pool.mjs";

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
