// The user's key pair and the JWE work done on this device.
//
// Key choice: ECDH used as ECDH-ES+A256KW with A256GCM, one of the algorithms the
// server accepts for postbox keys, on X25519 where the browser's Web Crypto has it
// and on P-256 otherwise. Generation is instant on any device (RSA-2048 can take a
// second on a phone) and the keys are small. X25519 first because the server makes
// a key agreement with this key for every file it encrypts (each `data` push and
// every descriptor): Node does one for X25519 in two thirds of the CPU of P-256, whose
// path re-validates the key pair each time.
//
// Extractability: the private key should never be readable by script, but the
// user also needs a backup to move to another browser. So the pair is generated
// extractable, the private JWK is exported once into the backup the user
// downloads, and what IndexedDB keeps is a non-extractable re-import of it. The
// exported copy lives only in this page's memory until the backup is saved.
import { CompactEncrypt, calculateJwkThumbprint, compactDecrypt, importJWK, type JWK } from "jose";

export type PublicJwk = JsonWebKey & { kty: string; kid: string; alg: string };
export type PrivateJwk = JsonWebKey & { kty: string; kid: string; alg: string; d: string };

export const USER_KEY_ALG = "ECDH-ES+A256KW";
const ENC = "A256GCM";

export interface GeneratedKey {
  /** Non-extractable: what the device keeps. */
  privateKey: CryptoKey;
  publicJwk: PublicJwk;
  /** The exported private key, for the backup file only. */
  backupJwk: PrivateJwk;
}

function publicPart(jwk: JsonWebKey): JsonWebKey {
  if (jwk.kty === "OKP") return { kty: "OKP", crv: jwk.crv, x: jwk.x };
  if (jwk.kty === "EC") return { kty: "EC", crv: jwk.crv, x: jwk.x, y: jwk.y };
  if (jwk.kty === "RSA") return { kty: "RSA", n: jwk.n, e: jwk.e };
  throw new Error(`Unsupported key type ${jwk.kty}.`);
}

export function thumbprint(jwk: JsonWebKey): Promise<string> {
  return calculateJwkThumbprint(publicPart(jwk) as JWK, "sha256");
}

export async function generateUserKey(): Promise<GeneratedKey> {
  if (!globalThis.crypto?.subtle) throw new Error("This page needs the Web Crypto API, which browsers offer only over HTTPS (or on localhost).");
  const pair = await generatePair();
  const exported = await crypto.subtle.exportKey("jwk", pair.privateKey);
  const kid = await thumbprint(exported);
  const publicJwk: PublicJwk = { ...(publicPart(exported) as JsonWebKey & { kty: string }), alg: USER_KEY_ALG, use: "enc", kid };
  const backupJwk = { ...publicPart(exported), d: exported.d!, alg: USER_KEY_ALG, kid } as PrivateJwk;
  const privateKey = await importPrivateKey(backupJwk);
  return { privateKey, publicJwk, backupJwk };
}

/** An X25519 pair, or P-256 where Web Crypto lacks X25519 (browsers before 2024–2025). */
async function generatePair(): Promise<CryptoKeyPair> {
  try {
    return (await crypto.subtle.generateKey({ name: "X25519" }, true, ["deriveBits"])) as CryptoKeyPair;
  } catch {
    return (await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"])) as CryptoKeyPair;
  }
}

/** Imports a private JWK (X25519 or P-256 for ECDH-ES+A256KW, or RSA for RSA-OAEP-256) as a non-extractable key. */
export async function importPrivateKey(jwk: PrivateJwk): Promise<CryptoKey> {
  if (jwk.kty === "OKP") {
    if (jwk.crv !== "X25519") throw new Error("Only X25519 OKP keys are supported.");
    try {
      return await crypto.subtle.importKey("jwk", { kty: "OKP", crv: jwk.crv, x: jwk.x, d: jwk.d }, { name: "X25519" }, false, ["deriveBits"]);
    } catch {
      // A key made in a current browser, opened in an older one.
      throw new Error("this browser cannot use X25519 keys. Open this page in a current browser (Chrome 133, Firefox 130, Safari 17 or later).");
    }
  }
  if (jwk.kty === "EC") {
    if (jwk.crv !== "P-256") throw new Error("Only P-256 EC keys are supported.");
    return crypto.subtle.importKey("jwk", { kty: "EC", crv: jwk.crv, x: jwk.x, y: jwk.y, d: jwk.d }, { name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
  }
  if (jwk.kty === "RSA") {
    const { kty, n, e, d, p, q, dp, dq, qi } = jwk;
    return crypto.subtle.importKey("jwk", { kty, n, e, d, p, q, dp, dq, qi, alg: "RSA-OAEP-256" }, { name: "RSA-OAEP", hash: "SHA-256" }, false, ["decrypt", "unwrapKey"]);
  }
  throw new Error(`Unsupported key type ${jwk.kty}.`);
}

/** Decrypts a compact JWE addressed to this device's key, allowing only the algorithms that fit the key. */
export async function decryptJwe(jwe: string, privateKey: CryptoKey, publicJwk: PublicJwk): Promise<Uint8Array> {
  const algs = publicJwk.kty === "RSA" ? ["RSA-OAEP-256"] : ["ECDH-ES+A256KW", "ECDH-ES"];
  const { plaintext } = await compactDecrypt(jwe, privateKey, { keyManagementAlgorithms: algs, contentEncryptionAlgorithms: [ENC] });
  return plaintext;
}

/** Encrypts bytes to an application's public key (the READ contract's), as a compact JWE. */
export async function encryptTo(recipient: PublicJwk, plaintext: Uint8Array, cty?: string): Promise<string> {
  const key = await importJWK(recipient as JWK, recipient.alg);
  return new CompactEncrypt(plaintext).setProtectedHeader({ alg: recipient.alg, enc: ENC, kid: recipient.kid, ...(cty ? { cty } : {}) }).encrypt(key);
}

// ---- key backup file ----

export const BACKUP_FORMAT = "postbox-key-backup";

export interface KeyBackup {
  format: typeof BACKUP_FORMAT;
  version: 1;
  warning: string;
  server: string;
  postboxId: string;
  applicationName: string | null;
  createdAt: string;
  privateKey: PrivateJwk;
  publicKey: PublicJwk;
  credential: { accessToken: string; accessExpiresAt: string; refreshToken: string; refreshExpiresAt: string | null };
}

export const BACKUP_WARNING =
  "SECRET. This file holds the private key that decrypts your postbox and the credential that opens it. Anyone with this file can read what is sent to you. Keep it offline or in a password manager; never email or share it.";

export function backupFileName(postboxId: string): string {
  return `postbox-key-backup-${postboxId}-SECRET.json`;
}

export class BackupError extends Error {}

/** Parses and checks a backup file: shape, server, and that the private key matches the public key it names. */
export async function parseBackup(text: string, server: string): Promise<{ backup: KeyBackup; privateKey: CryptoKey }> {
  let b: KeyBackup;
  try {
    b = JSON.parse(text);
  } catch {
    throw new BackupError("That file is not a Postbox key backup (it is not JSON).");
  }
  if (!b || b.format !== BACKUP_FORMAT) throw new BackupError("That file is not a Postbox key backup.");
  if (b.version !== 1) throw new BackupError(`This backup has version ${String(b.version)}, which this page does not know. Update Postbox.`);
  if (typeof b.postboxId !== "string" || !b.privateKey?.d || !b.publicKey?.kid || typeof b.credential?.refreshToken !== "string") {
    throw new BackupError("The backup is incomplete: it lacks the postbox id, the key or the credential.");
  }
  if (b.server !== server) throw new BackupError(`This backup belongs to the Postbox server at ${b.server}. Open ${b.server}/app to restore it there.`);
  if ((await thumbprint(b.privateKey)) !== b.publicKey.kid) throw new BackupError("The private key in this backup does not match its public key; the file was altered or damaged.");
  let privateKey: CryptoKey;
  try {
    privateKey = await importPrivateKey(b.privateKey);
  } catch (e) {
    throw new BackupError(`The private key in this backup cannot be used: ${(e as Error).message}`);
  }
  return { backup: b, privateKey };
}
