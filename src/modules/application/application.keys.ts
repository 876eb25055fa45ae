// Validation of the public keys applications register for signing session
// assertions. Only public keys are accepted; each key is pinned to exactly one
// JWS algorithm (RFC 8725 §3.1).
import { createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";
import { calculateJwkThumbprint, type JWK } from "jose";
import { badInput } from "../../infra/errors.js";

export const SIGNING_ALGS = ["PS512", "PS256", "ES256", "EdDSA"] as const;
export type SigningAlg = (typeof SIGNING_ALGS)[number];

export interface RegisteredKey {
  alg: SigningAlg;
  kid: string;
  publicJwk: JWK;
}

/** Accepts a PEM (SPKI or PKCS#1 public key) string or a public JWK object/string. */
export async function parsePublicKey(input: unknown, requestedAlg?: string): Promise<RegisteredKey> {
  let key: KeyObject;
  try {
    if (typeof input === "string" && input.includes("-----BEGIN")) {
      if (/PRIVATE KEY/.test(input)) throw badInput("That is a private key. Register the public half only; the private key stays with the application.", "publicKey");
      key = createPublicKey({ key: input, format: "pem" });
    } else {
      const jwk = (typeof input === "string" ? JSON.parse(input) : input) as JsonWebKey | null;
      if (!jwk || typeof jwk !== "object") throw new Error("not a JWK");
      if ("d" in jwk || "p" in jwk || "k" in jwk) throw badInput("That JWK contains private or secret key material. Register the public key only.", "publicKey");
      key = createPublicKey({ key: jwk, format: "jwk" });
    }
  } catch (e) {
    if (e instanceof Error && e.name === "AppError") throw e;
    throw badInput("publicKey must be a PEM public key or a public JWK.", "publicKey");
  }
  const jwk = key.export({ format: "jwk" }) as JWK;
  const alg = pickAlg(key, requestedAlg);
  const kid = await calculateJwkThumbprint(jwk, "sha256");
  return { alg, kid, publicJwk: { ...jwk, alg, use: "sig", kid } };
}

function pickAlg(key: KeyObject, requested?: string): SigningAlg {
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case "rsa": {
      if ((details.modulusLength ?? 0) < 2048) throw badInput("RSA keys must be at least 2048 bits.", "publicKey");
      const alg = requested ?? "PS512";
      if (alg !== "PS512" && alg !== "PS256") throw badInput(`An RSA key signs with PS512 or PS256, not ${alg}.`, "alg");
      return alg;
    }
    case "ec":
      if (details.namedCurve !== "prime256v1") throw badInput("EC keys must be on curve P-256 (ES256).", "publicKey");
      if (requested && requested !== "ES256") throw badInput(`A P-256 key signs with ES256, not ${requested}.`, "alg");
      return "ES256";
    case "ed25519":
      if (requested && requested !== "EdDSA") throw badInput(`An Ed25519 key signs with EdDSA, not ${requested}.`, "alg");
      return "EdDSA";
    default:
      throw badInput(`Unsupported key type ${key.asymmetricKeyType}. Use RSA (PS512/PS256), P-256 (ES256) or Ed25519 (EdDSA).`, "publicKey");
  }
}
