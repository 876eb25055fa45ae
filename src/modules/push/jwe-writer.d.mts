// Types of jwe-writer.mjs (plain JavaScript: it also runs in the encryption thread).

/** The postbox's public key as stored at acceptance (never a private key). */
export interface RecipientKey {
  jwk: Record<string, unknown>;
  /** RFC 7638 thumbprint; every JWE to this key carries it as `kid`. */
  kid: string;
}

export interface WrappedKey {
  /** The JWE protected header (alg, enc, kid and, for ECDH-ES, epk). */
  header: Record<string, unknown>;
  encryptedKey: Uint8Array;
}

export interface Encrypted {
  /** Compact JWE. */
  jwe: string;
  /** Bytes of the JWE text (what is stored). */
  size: number;
  /** sha256 (hex) of the JWE text. */
  sha256: string;
}

/** An ephemeral X25519 key pair: the private key and the public key's `x` (base64url). */
export interface EphemeralX25519 {
  privateKey: import("node:crypto").KeyObject;
  x: string;
}

/** ECDH-ES key agreements made ahead (newAgreements): the ephemeral public keys, and the key-encryption keys, 32 bytes each, in one buffer. */
export interface Agreements {
  epks: Record<string, unknown>[];
  keks: Uint8Array;
}

export const CONTENT_ENC: "A256GCM";
export function newAgreements(key: RecipientKey, count: number): Agreements;
export function poolAgreements(kid: string, agreements: Agreements): void;
export function pooledAgreements(kid: string): number;
export function pooledAgreementKeys(): number;
export function dropAgreements(now: number): void;
export function newEphemeralX25519(): EphemeralX25519;
export function poolEphemeralX25519(keys: EphemeralX25519[]): void;
export function pooledEphemeralX25519(): number;
export function keyKind(jwk: Record<string, unknown>): "RSA" | "P-256" | "X25519";
export function wrapKey(key: RecipientKey, cek: Uint8Array): WrappedKey;
export function newContentKey(): { cek: Buffer; iv: Buffer };
export class JweEncryptor {
  readonly head: string;
  constructor(cek: Buffer, iv: Uint8Array, wrapped: WrappedKey);
  update(plaintext: Uint8Array): string;
  final(): string;
}
export function sealJwes(key: RecipientKey, plaintexts: Uint8Array[]): Encrypted[];
