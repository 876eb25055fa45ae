// The READ contract key as an encryption key, and the checks on the JWEs a
// user's device sends back. The server cannot decrypt them (it never has the
// application's private key); it checks that they are well-formed compact JWEs
// addressed to the READ key with the expected algorithms, and their size, so
// that the application is not handed something it cannot open.
import { AppError, ErrorCode } from "../../infra/errors.js";
import { CONTENT_ENC } from "../push/jwe-writer.mjs";

export const MAX_DESCRIPTOR_BYTES = 16 * 1024;

export interface RecipientKey {
  kid: string;
  alg: "RSA-OAEP-256" | "ECDH-ES+A256KW";
  /** Public members + alg + use "enc" + kid. */
  jwk: Record<string, unknown>;
}

/**
 * The READ contract's registered key (a signing key: PS512/PS256 or ES256) as the
 * key a user encrypts to: same public key, key-management algorithm RSA-OAEP-256
 * (RSA) or ECDH-ES+A256KW (P-256). The kid (thumbprint) does not change.
 * Returns undefined for a key that cannot receive encrypted data.
 */
export function recipientKeyOf(key: { kid: string; publicJwk: unknown }): RecipientKey | undefined {
  const jwk = key.publicJwk as Record<string, unknown> | null;
  if (!jwk || typeof jwk !== "object") return undefined;
  if (jwk.kty === "RSA" && typeof jwk.n === "string" && typeof jwk.e === "string") {
    return { kid: key.kid, alg: "RSA-OAEP-256", jwk: { kty: "RSA", n: jwk.n, e: jwk.e, alg: "RSA-OAEP-256", use: "enc", kid: key.kid } };
  }
  if (jwk.kty === "EC" && jwk.crv === "P-256" && typeof jwk.x === "string" && typeof jwk.y === "string") {
    return { kid: key.kid, alg: "ECDH-ES+A256KW", jwk: { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y, alg: "ECDH-ES+A256KW", use: "enc", kid: key.kid } };
  }
  return undefined;
}

/** A refusal with the short reason that goes into the audit log. */
export class ResponseRefusal extends Error {
  constructor(readonly error: AppError, readonly reason: string) {
    super(error.message);
    this.name = "ResponseRefusal";
  }
}

const URL_B64 = /^[A-Za-z0-9_-]*$/;

function b64urlLength(part: string): number {
  return part.length % 4 === 1 ? -1 : Math.floor((part.length * 3) / 4);
}

/**
 * Checks one compact JWE of the answer (`field` is "ciphertext" or "descriptor")
 * and returns the decoded size of its content.
 */
export function checkResponseJwe(jwe: string, key: RecipientKey, field: "ciphertext" | "descriptor", maxBytes: number): number {
  const bad = (reason: string, message: string) => new ResponseRefusal(new AppError(ErrorCode.BAD_USER_INPUT, message, { field }), reason);
  const parts = jwe.split(".");
  if (parts.length !== 5) throw bad("malformed_jwe", `${field} must be a JWE in compact serialization (five base64url parts separated by dots); found ${parts.length} part(s).`);
  const [headerPart, encryptedKey, iv, content, tag] = parts;
  for (const p of parts) if (!URL_B64.test(p) || b64urlLength(p) < 0) throw bad("malformed_jwe", `${field} is not made of unpadded base64url parts.`);
  if (headerPart.length === 0 || headerPart.length > 8192) throw bad("malformed_jwe", `${field}'s protected header is missing or too long.`);
  const size = b64urlLength(content);
  if (size === 0) throw bad("empty", `${field} is empty; send at least one byte.`);
  if (size > maxBytes) {
    throw new ResponseRefusal(
      new AppError(ErrorCode.PAYLOAD_TOO_LARGE, `${field} holds ${size} bytes; this server accepts at most ${maxBytes} bytes${field === "ciphertext" ? " (MAX_PUSH_BYTES)" : ""}.`, { field }),
      "too_large",
    );
  }
  if (b64urlLength(iv) !== 12) throw bad("malformed_jwe", `${field}: the A256GCM iv must be 12 bytes.`);
  if (b64urlLength(tag) !== 16) throw bad("malformed_jwe", `${field}: the A256GCM authentication tag must be 16 bytes.`);

  let header: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(headerPart, "base64url").toString("utf8"));
    if (!header || typeof header !== "object" || Array.isArray(header)) throw new Error("not an object");
  } catch {
    throw bad("malformed_jwe_header", `${field}'s protected header must be a base64url-encoded JSON object.`);
  }
  if (header.enc !== CONTENT_ENC) throw bad("bad_jwe_enc", `${field}'s JWE header must have "enc": "${CONTENT_ENC}" (got ${JSON.stringify(header.enc ?? null)}).`);
  const algs = key.alg === "RSA-OAEP-256" ? ["RSA-OAEP-256"] : ["ECDH-ES+A256KW", "ECDH-ES"];
  if (typeof header.alg !== "string" || !algs.includes(header.alg)) {
    throw bad("bad_jwe_alg", `${field}'s JWE header must have "alg": ${algs.map((a) => `"${a}"`).join(" or ")} for this READ key (got ${JSON.stringify(header.alg ?? null)}).`);
  }
  if (header.kid !== key.kid) {
    throw bad("wrong_kid", `${field}'s JWE header must have "kid": "${key.kid}" (recipientKey.kid of the request); got ${JSON.stringify(header.kid ?? null)}.`);
  }
  if ("zip" in header) throw bad("bad_jwe_header", 'Compressed JWEs ("zip") are not accepted.');
  if ("crit" in header) throw bad("bad_jwe_header", 'JWE headers with "crit" are not accepted.');
  if ("jku" in header || "jwk" in header || "x5u" in header || "x5c" in header) throw bad("bad_jwe_header", "The JWE header must not embed or point to keys; kid names the recipient.");

  const ekBytes = b64urlLength(encryptedKey);
  if (header.alg === "RSA-OAEP-256") {
    const modulusBytes = Buffer.from(String(key.jwk.n), "base64url").length;
    if (ekBytes !== modulusBytes) throw bad("malformed_jwe", `${field}: the RSA-OAEP-256 encrypted key must be ${modulusBytes} bytes (got ${ekBytes}).`);
  } else {
    const epk = header.epk as Record<string, unknown> | undefined;
    if (!epk || typeof epk !== "object" || epk.kty !== "EC" || epk.crv !== "P-256" || typeof epk.x !== "string" || typeof epk.y !== "string" || "d" in epk) {
      throw bad("bad_jwe_epk", `${field}: an ${header.alg} JWE needs "epk", the sender's ephemeral P-256 public key.`);
    }
    const expected = header.alg === "ECDH-ES" ? 0 : 40;
    if (ekBytes !== expected) throw bad("malformed_jwe", `${field}: the ${header.alg} encrypted key part must be ${expected} bytes (got ${ekBytes}).`);
  }
  return size;
}

const MIME_RE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}\/(\*|[a-z0-9][a-z0-9!#$&^_.+-]{0,126})$/;

/** Normalises the accepted MIME types (lower case, deduplicated); throws a message for a bad one. */
export function normaliseMimeTypes(list: string[] | null | undefined): string[] {
  const out = new Set<string>();
  for (const raw of list ?? []) {
    const t = String(raw).trim().toLowerCase();
    if (!MIME_RE.test(t)) throw new Error(`"${String(raw).slice(0, 100)}" is not a MIME type; use type/subtype or type/* (e.g. application/pdf, image/*).`);
    out.add(t);
  }
  return [...out];
}
