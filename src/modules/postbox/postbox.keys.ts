// Validation of the public key a user's device sends when it accepts a postbox.
// Applications encrypt every push to this key (compact JWE, enc A256GCM), so
// only keys that are public, strong and usable for exactly one key-management
// algorithm are accepted:
//   RSA ≥ 2048 bits, e = 65537 or larger odd  → RSA-OAEP-256
//   EC P-256                                   → ECDH-ES+A256KW
//   OKP X25519                                 → ECDH-ES+A256KW
// The stored JWK keeps only the public members plus alg, use "enc" and kid (the
// RFC 7638 SHA-256 thumbprint).
import { createPublicKey, diffieHellman, generateKeyPairSync, type JsonWebKey, type KeyObject } from "node:crypto";
import { calculateJwkThumbprint, type JWK } from "jose";

export const ENCRYPTION_ALGS = ["RSA-OAEP-256", "ECDH-ES+A256KW"] as const;
export type EncryptionAlg = (typeof ENCRYPTION_ALGS)[number];
// One content encryption everywhere: the one the server's JWE writer uses.
export { CONTENT_ENC as CONTENT_ENCRYPTION } from "../push/jwe-writer.mjs";

const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
const MAX_JWK_CHARS = 8192;
const MAX_RSA_BITS = 8192;

export interface UserKey {
  alg: EncryptionAlg;
  kid: string;
  /** Public members + alg + use + kid, ready to hand to applications. */
  publicJwk: JWK;
}

/** Why a key was refused: the message for the user and a short reason for the audit log. */
export class KeyRefusal extends Error {
  constructor(message: string, readonly reason: string) {
    super(message);
    this.name = "KeyRefusal";
  }
}

const ALLOWED = "Send a public JWK: RSA (2048 bits or more, alg RSA-OAEP-256), EC P-256 or X25519 (alg ECDH-ES+A256KW).";

export async function parseUserPublicKey(input: unknown): Promise<UserKey> {
  if (!input || typeof input !== "object" || Array.isArray(input)) throw new KeyRefusal(`publicKey must be a JWK object. ${ALLOWED}`, "not_a_jwk");
  if (JSON.stringify(input).length > MAX_JWK_CHARS) throw new KeyRefusal(`publicKey is too large (${MAX_JWK_CHARS} characters at most).`, "too_large");
  const jwk = input as Record<string, unknown>;
  if (PRIVATE_MEMBERS.some((m) => m in jwk)) {
    throw new KeyRefusal("publicKey contains private or secret key material. Keep the private key on the device and send only the public key.", "private_key");
  }
  if (jwk.use !== undefined && jwk.use !== "enc") throw new KeyRefusal(`publicKey has use "${String(jwk.use)}"; a postbox key must be an encryption key (use "enc" or no use).`, "wrong_use");

  let key: KeyObject;
  let alg: EncryptionAlg;
  switch (jwk.kty) {
    case "RSA": {
      key = importPublic({ kty: "RSA", n: jwk.n, e: jwk.e });
      const { modulusLength = 0, publicExponent = 0n } = key.asymmetricKeyDetails ?? {};
      if (modulusLength < 2048) throw new KeyRefusal(`RSA keys must be at least 2048 bits (this one has ${modulusLength}).`, "weak_rsa");
      if (modulusLength > MAX_RSA_BITS) throw new KeyRefusal(`RSA keys may have at most ${MAX_RSA_BITS} bits.`, "rsa_too_large");
      if (publicExponent < 65537n || publicExponent % 2n === 0n) throw new KeyRefusal("The RSA public exponent must be odd and at least 65537.", "weak_rsa_exponent");
      alg = "RSA-OAEP-256";
      break;
    }
    case "EC": {
      if (jwk.crv !== "P-256") throw new KeyRefusal(`EC keys must be on curve P-256, not ${String(jwk.crv)}. ${ALLOWED}`, "unsupported_curve");
      key = importPublic({ kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y });
      alg = "ECDH-ES+A256KW";
      break;
    }
    case "OKP": {
      if (jwk.crv !== "X25519") {
        throw new KeyRefusal(`OKP keys must be X25519${jwk.crv === "Ed25519" ? " (Ed25519 is a signing key)" : ""}. ${ALLOWED}`, "unsupported_curve");
      }
      key = importPublic({ kty: "OKP", crv: "X25519", x: jwk.x });
      alg = "ECDH-ES+A256KW";
      break;
    }
    default:
      throw new KeyRefusal(`Unsupported key type ${JSON.stringify(jwk.kty ?? null)}. ${ALLOWED}`, "unsupported_kty");
  }
  if (jwk.alg !== undefined && jwk.alg !== alg) {
    throw new KeyRefusal(`A ${jwk.kty} key is used with ${alg} here, not ${String(jwk.alg)}; set alg to ${alg} or leave it out.`, "wrong_alg");
  }
  if (alg === "ECDH-ES+A256KW") checkAgreement(key);

  const pub = key.export({ format: "jwk" }) as JWK;
  const kid = await calculateJwkThumbprint(pub, "sha256");
  return { alg, kid, publicJwk: { ...pub, alg, use: "enc", kid } };
}

function importPublic(members: Record<string, unknown>): KeyObject {
  try {
    for (const [k, v] of Object.entries(members)) if (typeof v !== "string" || v.length === 0) throw new Error(`missing ${k}`);
    return createPublicKey({ key: members as JsonWebKey, format: "jwk" });
  } catch {
    throw new KeyRefusal(`publicKey is not a valid ${String(members.kty)} public key (check its members and their base64url encoding). ${ALLOWED}`, "invalid_key");
  }
}

// A small-order X25519 point (or any point key agreement rejects) would make every
// shared secret predictable; trying one agreement with a throwaway key finds it.
function checkAgreement(pub: KeyObject) {
  const ephemeral =
    pub.asymmetricKeyType === "x25519" ? generateKeyPairSync("x25519") : generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  let secret: Buffer;
  try {
    secret = diffieHellman({ privateKey: ephemeral.privateKey, publicKey: pub });
  } catch {
    throw new KeyRefusal("publicKey is a weak key: key agreement with it fails (small-order or invalid point).", "weak_point");
  }
  if (secret.every((b) => b === 0)) throw new KeyRefusal("publicKey is a weak key: it yields an all-zero shared secret.", "weak_point");
}
