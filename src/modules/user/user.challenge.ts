// Key challenges are sealed, not stored. The challenge id carries its postbox, its expiry,
// a random nonce and the sha256 of the answer, under an HMAC-SHA256 keyed with
// SERVER_SECRET. Asking for a challenge therefore writes nothing: no number of askers can
// fill a postbox's challenges and crowd out its user's own, which a stored, bounded set
// allowed. Only an answered challenge's nonce is recorded (UsedKeyChallenge), so that
// each takes one answer. Revealing sha256(answer) gives nothing away: the answer is 32
// random bytes.
import { createHmac, timingSafeEqual } from "node:crypto";

const PREFIX = "uch_";
const VERSION = 1;
const NONCE_BYTES = 16;
const HASH_BYTES = 32;
const MAC_BYTES = 32;
/** version, expiry (ms), nonce, answer hash; the postbox id follows. */
const FIXED = 1 + 8 + NONCE_BYTES + HASH_BYTES;
/** Longest challenge id accepted: ids of 64 characters at most, base64url, with the prefix. */
export const MAX_CHALLENGE_ID_LENGTH = PREFIX.length + Math.ceil(((FIXED + 64 + MAC_BYTES) * 4) / 3);

export interface ChallengeClaims {
  /** Random, names the challenge in the used-challenge record (base64url). */
  nonce: string;
  postboxId: string;
  /** sha256 of the answer (the code, base64url). */
  answerHash: Buffer;
  expiresAt: Date;
}

function mac(secret: string, payload: Buffer): Buffer {
  return createHmac("sha256", secret).update("postbox user key challenge\0").update(payload).digest();
}

export function sealChallenge(secret: string, c: ChallengeClaims): string {
  const nonce = Buffer.from(c.nonce, "base64url");
  const postboxId = Buffer.from(c.postboxId, "utf8");
  if (nonce.length !== NONCE_BYTES || c.answerHash.length !== HASH_BYTES || postboxId.length === 0 || postboxId.length > 64) {
    throw new Error("sealChallenge: malformed claims");
  }
  const payload = Buffer.alloc(FIXED + postboxId.length);
  payload.writeUInt8(VERSION, 0);
  payload.writeBigUInt64BE(BigInt(c.expiresAt.getTime()), 1);
  nonce.copy(payload, 9);
  c.answerHash.copy(payload, 9 + NONCE_BYTES);
  postboxId.copy(payload, FIXED);
  return PREFIX + Buffer.concat([payload, mac(secret, payload)]).toString("base64url");
}

/** The claims of a challenge id this server sealed, or null for anything else (altered, forged, malformed). */
export function openChallenge(secret: string, id: unknown): ChallengeClaims | null {
  if (typeof id !== "string" || !id.startsWith(PREFIX) || id.length > MAX_CHALLENGE_ID_LENGTH) return null;
  const text = id.slice(PREFIX.length);
  const raw = Buffer.from(text, "base64url");
  // Node's decoder skips characters outside the alphabet: only the one canonical spelling counts.
  if (raw.toString("base64url") !== text || raw.length <= FIXED + MAC_BYTES) return null;
  const payload = raw.subarray(0, raw.length - MAC_BYTES);
  if (!timingSafeEqual(mac(secret, payload), raw.subarray(raw.length - MAC_BYTES))) return null;
  if (payload.readUInt8(0) !== VERSION) return null;
  return {
    expiresAt: new Date(Number(payload.readBigUInt64BE(1))),
    nonce: payload.subarray(9, 9 + NONCE_BYTES).toString("base64url"),
    answerHash: Buffer.from(payload.subarray(9 + NONCE_BYTES, FIXED)),
    postboxId: payload.subarray(FIXED).toString("utf8"),
  };
}
