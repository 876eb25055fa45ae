// Push cryptography: checking JWEs that applications encrypted themselves, and
// encrypting `data` (and every descriptor) to the user's public key on arrival.
//
// The server writes compact JWEs (RFC 7516) itself with node:crypto (jwe-writer.mjs)
// rather than jose's CompactEncrypt: a 10 MiB file is decoded, encrypted and
// base64url-encoded in 48 KiB slices, so neither the whole plaintext nor a second
// copy of the ciphertext is ever held in memory (jose on Node 20 goes through btoa
// and several full-size string copies). Interoperability with jose's compactDecrypt
// is what the unit tests check. The encryption thread (jwe.thread.ts) makes ephemeral
// X25519 key pairs, and key agreements for EC keys that pushes stream to, ahead of
// use; it also seals to P-256 keys that have no agreement made ahead.
import { createHash, createHmac, type Hmac } from "node:crypto";
import { AppError, ErrorCode } from "../../infra/errors.js";
import { CONTENT_ENC, JweEncryptor, keyKind, newContentKey, poolAgreements, poolEphemeralX25519, pooledAgreementKeys, pooledAgreements, pooledEphemeralX25519, sealJwes, wrapKey, type Encrypted, type RecipientKey } from "./jwe-writer.mjs";
import { jweThread } from "./jwe.thread.js";

export type { RecipientKey };

/** What the encrypted descriptor JWE holds: the file's name plus digi.me's descriptor fields. */
export interface FileDescriptor {
  fileName: string;
  mimeType: string;
  accounts: { accountId: string }[];
  reference: string[];
  tags: string[];
}
export type KeyManagementAlg = "RSA-OAEP-256" | "ECDH-ES" | "ECDH-ES+A256KW";

/** A refusal with the short machine-readable reason that goes into the audit log. */
export class PushRefusal extends Error {
  constructor(readonly error: AppError, readonly reason: string) {
    super(error.message);
    this.name = "PushRefusal";
  }
}

const refuse = (code: ErrorCode, reason: string, message: string, field?: string) =>
  new PushRefusal(new AppError(code, message, field ? { field } : {}), reason);

/** The key management algorithms a JWE to this key may use. */
export function allowedAlgs(jwk: Record<string, unknown>): KeyManagementAlg[] {
  return keyKind(jwk) === "RSA" ? ["RSA-OAEP-256"] : ["ECDH-ES", "ECDH-ES+A256KW"];
}

// ---------------------------------------------------------------------------
// base64 / base64url

const B64_VALUE = new Int16Array(128).fill(-1);
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".split("").forEach((c, i) => (B64_VALUE[c.charCodeAt(0)] = i));
const STD_B64 = /^[A-Za-z0-9+/]*={0,2}$/;
const URL_B64 = /^[A-Za-z0-9_-]*$/;

/**
 * Strict standard base64 (RFC 4648 §4: padded, no whitespace, canonical final
 * bits). Returns the decoded length without decoding. Being strict makes one
 * byte sequence have exactly one accepted encoding, which the idempotency
 * fingerprint relies on.
 */
const malformed = () =>
  refuse(ErrorCode.BAD_USER_INPUT, "malformed_base64", "data must be standard base64 (RFC 4648: A–Z a–z 0–9 + /, padded with =, no line breaks or spaces).", "data");

/** The `=` characters that end padded base64 text (a multiple of 4 characters long). */
const base64Padding = (s: string) => (s.endsWith("==") ? 2 : s.endsWith("=") ? 1 : 0);

export function strictBase64Length(s: string): number {
  if (s.length % 4 !== 0 || !STD_B64.test(s)) throw malformed();
  const pad = base64Padding(s);
  if (pad) {
    // The bits after the last full byte must be zero, or two encodings would decode alike.
    const last = B64_VALUE[s.charCodeAt(s.length - pad - 1)];
    if (last < 0 || (last & (pad === 2 ? 0x0f : 0x03)) !== 0) throw malformed();
  }
  return (s.length / 4) * 3 - pad;
}

const STD_B64_UNPADDED = /^[A-Za-z0-9+/]*$/;

// Slices of in-memory input: a multiple of 3 bytes, so each is a whole number of
// 4-character groups on the base64 side.
const SLICE_BYTES = 48 * 1024;
export const BASE64_SLICE_CHARS = (SLICE_BYTES / 3) * 4;

/** strictBase64Length for base64 text held as bytes (a large inline value), checked a slice at a time. */
export function strictBase64BytesLength(b: Buffer): number {
  if (b.length % 4 !== 0) throw malformed();
  for (let i = 0; i < b.length; i += BASE64_SLICE_CHARS) {
    const end = Math.min(b.length, i + BASE64_SLICE_CHARS);
    // Padding only at the very end.
    if (end === b.length) return (i / 4) * 3 + strictBase64Length(b.toString("latin1", i, end));
    if (!STD_B64_UNPADDED.test(b.toString("latin1", i, end))) throw malformed();
  }
  return 0;
}

/** Decoded slices of checked base64 text (a string, or its bytes). */
export function* base64Slices(text: string | Buffer): Generator<Buffer> {
  for (let i = 0; i < text.length; i += BASE64_SLICE_CHARS) {
    const slice = typeof text === "string" ? text.slice(i, i + BASE64_SLICE_CHARS) : text.toString("latin1", i, i + BASE64_SLICE_CHARS);
    yield Buffer.from(slice, "base64");
  }
}

/** Decoded length of unpadded base64url text, or -1 if the length is impossible. */
function base64urlLength(part: string): number {
  if (part.length % 4 === 1) return -1;
  return base64urlBytes(part.length);
}

function base64urlBytes(chars: number): number {
  return Math.floor((chars * 3) / 4);
}

function decodeJsonPart(part: string): unknown {
  try {
    return JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------
// Checking a JWE encrypted by the application

export interface JweCheck {
  /** Decoded size of the JWE ciphertext, i.e. of the file (A256GCM does not pad). */
  contentBytes: number;
}

/** The five parts of a compact JWE; the ciphertext only by its length (it may be streaming past). */
export interface JweSegments {
  header: string;
  encryptedKey: string;
  iv: string;
  ciphertextChars: number;
  tag: string;
}

type JweField = "encryptedData" | "encryptedFile";

const malformedJwe = (field: JweField, why: string) =>
  refuse(ErrorCode.BAD_USER_INPUT, "malformed_jwe", `${field} must be a JWE in compact serialization (five base64url parts separated by dots): ${why}.`, field);

/**
 * Checks structure and size only (no key needed), so oversized or malformed
 * input is refused before the database is touched.
 */
export function checkJweStructure(jwe: string, maxBytes: number, field: JweField = "encryptedData"): JweCheck & { parts: string[] } {
  const parts = jwe.split(".");
  if (parts.length !== 5) throw malformedJwe(field, `found ${parts.length} part${parts.length === 1 ? "" : "s"}`);
  const [header, encryptedKey, iv, ciphertext, tag] = parts;
  for (const [name, p] of [["protected header", header], ["encrypted key", encryptedKey], ["iv", iv], ["ciphertext", ciphertext], ["tag", tag]] as const) {
    if (!URL_B64.test(p)) throw malformedJwe(field, `the ${name} is not unpadded base64url`);
  }
  return Object.assign(checkJweSegments({ header, encryptedKey, iv, ciphertextChars: ciphertext.length, tag }, maxBytes, field), { parts });
}

/** The checks of checkJweStructure on parts already known to be base64url text. */
export function checkJweSegments(s: JweSegments, maxBytes: number, field: JweField): JweCheck {
  const parts: [string, number][] = [
    ["protected header", s.header.length],
    ["encrypted key", s.encryptedKey.length],
    ["iv", s.iv.length],
    ["ciphertext", s.ciphertextChars],
    ["tag", s.tag.length],
  ];
  for (const [name, chars] of parts) if (chars % 4 === 1) throw malformedJwe(field, `the ${name} is not unpadded base64url`);
  if (s.header.length === 0 || s.header.length > MAX_JWE_HEADER) throw malformedJwe(field, "the protected header is missing or too long");
  const contentBytes = base64urlBytes(s.ciphertextChars);
  if (contentBytes === 0) throw emptyFile(field);
  if (contentBytes > maxBytes) throw tooLarge(contentBytes, maxBytes);
  if (base64urlLength(s.iv) !== 12) throw malformedJwe(field, "the iv of A256GCM must be 96 bits (12 bytes)");
  if (base64urlLength(s.tag) !== 16) throw malformedJwe(field, "the A256GCM authentication tag must be 128 bits (16 bytes)");
  return { contentBytes };
}

const MAX_JWE_HEADER = 8192;
// Header and encrypted key are small (an RSA-4096 key wraps to 683 characters); the cap bounds what a stream check keeps.
const MAX_JWE_SMALL_PART = 8192;

/**
 * checkJweStructure for a JWE that arrives as a stream of bytes (a multipart file
 * part): only the small parts are kept; the ciphertext is counted, and refused as
 * soon as it is too long, before the rest has arrived.
 */
export class JweTextChecker {
  private part = 0;
  private ciphertextChars = 0;
  private readonly small = ["", "", "", "", ""];

  constructor(private readonly maxBytes: number, private readonly field: JweField = "encryptedFile") {}

  feed(chunk: Buffer): void {
    const pieces = chunk.toString("latin1").split(".");
    for (let i = 0; i < pieces.length; i++) {
      if (i > 0 && ++this.part > 4) throw malformedJwe(this.field, "found more than 5 parts");
      const piece = pieces[i];
      if (!URL_B64.test(piece)) throw malformedJwe(this.field, `the ${PART_NAMES[this.part]} is not unpadded base64url`);
      if (this.part === 3) {
        this.ciphertextChars += piece.length;
        const bytes = base64urlBytes(this.ciphertextChars);
        if (bytes > this.maxBytes) throw tooLarge(bytes, this.maxBytes);
      } else {
        if (this.small[this.part].length + piece.length > MAX_JWE_SMALL_PART) throw malformedJwe(this.field, `the ${PART_NAMES[this.part]} is too long`);
        this.small[this.part] += piece;
      }
    }
  }

  /** The whole JWE has arrived: the parts checkJweHeader takes (the ciphertext part left empty). */
  end(): string[] {
    if (this.part !== 4) throw malformedJwe(this.field, `found ${this.part + 1} part${this.part === 0 ? "" : "s"}`);
    const [header, encryptedKey, iv, , tag] = this.small;
    checkJweSegments({ header, encryptedKey, iv, ciphertextChars: this.ciphertextChars, tag }, this.maxBytes, this.field);
    return [header, encryptedKey, iv, "", tag];
  }
}

const PART_NAMES = ["protected header", "encrypted key", "iv", "ciphertext", "tag"];

export function emptyFile(field: string) {
  return refuse(ErrorCode.BAD_USER_INPUT, "empty_file", "The file is empty; push at least one byte.", field);
}

export function tooLarge(bytes: number, maxBytes: number) {
  return refuse(ErrorCode.PAYLOAD_TOO_LARGE, "too_large", `The file is ${bytes} bytes; this server accepts at most ${maxBytes} bytes per push (MAX_PUSH_BYTES).`);
}

/** Checks that a structurally valid JWE is addressed to `key` with the algorithms it must use. */
export function checkJweHeader(parts: string[], key: RecipientKey, field: JweField = "encryptedData"): void {
  const bad = (reason: string, message: string) => refuse(ErrorCode.BAD_USER_INPUT, reason, message, field);
  const header = decodeJsonPart(parts[0]);
  if (!header || typeof header !== "object" || Array.isArray(header)) throw bad("malformed_jwe_header", "The JWE protected header must be a base64url-encoded JSON object.");
  const h = header as Record<string, unknown>;
  const algs = allowedAlgs(key.jwk);
  if (h.enc !== CONTENT_ENC) throw bad("bad_jwe_enc", `The JWE header must have "enc": "${CONTENT_ENC}" (got ${JSON.stringify(h.enc ?? null)}).`);
  if (typeof h.alg !== "string" || !(algs as string[]).includes(h.alg)) {
    throw bad("bad_jwe_alg", `This postbox's key (${String(key.jwk.kty)}) takes "alg": ${algs.map((a) => `"${a}"`).join(" or ")} (got ${JSON.stringify(h.alg ?? null)}).`);
  }
  if (h.kid !== key.kid) {
    throw bad("wrong_kid", `The JWE header's "kid" must be the postbox key's thumbprint ${key.kid} (Postbox.publicKey.kid); got ${JSON.stringify(h.kid ?? null)}. Was it encrypted to another postbox?`);
  }
  if ("zip" in h) throw bad("bad_jwe_header", 'Compressed JWEs ("zip") are not accepted: compression before encryption can leak content.');
  if ("crit" in h) throw bad("bad_jwe_header", 'The JWE header must not carry "crit" extensions; the user\'s app would not understand them.');
  if ("jku" in h || "jwk" in h || "x5u" in h || "x5c" in h) throw bad("bad_jwe_header", "The JWE header must not embed or point to keys; the recipient is named by kid alone.");

  const ekBytes = base64urlLength(parts[1]);
  if (h.alg === "RSA-OAEP-256") {
    const modulusBytes = base64urlBytes(String(key.jwk.n).length); // n is unpadded base64url
    if (ekBytes !== modulusBytes) throw bad("malformed_jwe", `The RSA-OAEP-256 encrypted key must be ${modulusBytes} bytes, the size of the postbox key's modulus (got ${ekBytes}).`);
    if ("epk" in h) throw bad("bad_jwe_header", 'An RSA-OAEP-256 JWE has no "epk".');
    return;
  }
  const epk = h.epk as Record<string, unknown> | undefined;
  const kind = keyKind(key.jwk);
  if (!epk || typeof epk !== "object" || epk.kty !== key.jwk.kty || epk.crv !== key.jwk.crv || typeof epk.x !== "string" || (kind === "P-256" && typeof epk.y !== "string")) {
    throw bad("bad_jwe_epk", `An ${h.alg} JWE needs "epk": the sender's ephemeral public key on the postbox key's curve (${String(key.jwk.crv)}).`);
  }
  if ("d" in epk) throw bad("bad_jwe_epk", 'The JWE "epk" must be a public key (it has a "d" member).');
  const expected = h.alg === "ECDH-ES" ? 0 : 40;
  if (ekBytes !== expected) throw bad("malformed_jwe", `An ${h.alg} JWE's encrypted key part must be ${expected} bytes (got ${ekBytes}).`);
}

// ---------------------------------------------------------------------------
// Encrypting to the user's key (jwe-writer.mjs)

// Up to this size a plaintext is sealed whole at once; a larger one is encrypted
// here a slice at a time, with only its content key wrapped at once.
const SEAL_WHOLE_BYTES = 64 * 1024;

// Where a key is wrapped (and a small file sealed). A P-256 agreement costs about
// 110 µs through Node: unless one was made ahead (see refillAgreements), that goes
// to the encryption thread (jwe.thread.ts). An RSA-OAEP
// wrap costs about 25 µs, less than the round trip, and stays on this thread
// (measured: through the thread, RSA pushes on the embedded database fell from
// 0.44 / 0.54 of the baseline to 0.41 / 0.43). An X25519 push stays here too, with an
// ephemeral key pair the encryption thread made ahead (see refillX25519): it then
// costs this thread the agreement, about 27 µs, and the encryption thread a key pair
// per 64 pushes' message. Sealed in the thread instead, X25519 pushes measured 0.39 /
// 0.39 of the baseline against 0.45 / 0.44 this way (embedded, same day): each push
// was two more hand-offs between threads on two cores. (See onThisThread.)

// The pool of ephemeral X25519 key pairs (jwe-writer.mjs) is topped up by the
// encryption thread, X25519_BATCH at a time, when it falls under X25519_LOW. A burst
// that empties it is not refused: a key pair is then made on this thread.
const X25519_BATCH = 64;
const X25519_LOW = 32;
let refilling = false;

function refillX25519(): void {
  if (refilling || pooledEphemeralX25519() >= X25519_LOW) return;
  refilling = true;
  jweThread
    .x25519Keys(X25519_BATCH)
    .then(poolEphemeralX25519, () => {}) // the thread failed: keys are made here until a later refill works
    .finally(() => (refilling = false));
}

// Key agreements made ahead, per EC key (jwe-writer.mjs): when pushes stream to one
// postbox, the encryption thread makes their agreements, many per message, and each
// push is then sealed here with no elliptic-curve work at all (for P-256, with no
// round trip to the thread either). A key earns a pool by its demand: the second push
// to it within a second asks for a few agreements, and each later request asks for
// twice what was used since the one before (AGREEMENTS_MIN to AGREEMENTS_MAX), once
// its pool is down to half the last request. So the agreements made and never used
// (they are wiped after 10 s) stay within what the key's last burst used. A push
// that finds no pooled agreement makes its own, as before.
const AGREEMENTS_MIN = 4;
const AGREEMENTS_MAX = 64;
const DEMAND_WINDOW_MS = 1000;
// Keys tracked at once; beyond that, new keys get no pool until the tracked ones go quiet.
const DEMAND_KEYS = 1024;
// Keys with a pool at once: each pool holds up to about 1.5 × AGREEMENTS_MAX agreements
// of about 300 bytes, so this bounds them under 10 MB.
const POOLED_KEYS = 256;

interface Demand {
  /** Pushes since the last request for agreements (or since `since`, before the first). */
  used: number;
  /** When `used` started counting. */
  since: number;
  /** Size of the last request (0: none yet). */
  asked: number;
  refilling: boolean;
}
const demand = new Map<string, Demand>();

/** Notes a push to the EC key `key` and asks the encryption thread for agreements when its demand calls for them. */
function refillAgreements(key: RecipientKey): void {
  const now = Date.now();
  const d = demandOf(key.kid, now);
  if (!d) return;
  d.used++;
  if (d.refilling || d.used < 2 || pooledAgreements(key.kid) > d.asked / 2 || pooledAgreementKeys() >= POOLED_KEYS) return;
  d.asked = Math.min(AGREEMENTS_MAX, Math.max(AGREEMENTS_MIN, 2 * d.used));
  d.used = 0;
  d.since = now;
  d.refilling = true;
  jweThread
    .agreements(key, d.asked)
    .then((made) => poolAgreements(key.kid, made), () => {}) // the thread failed: pushes make their own until a later request works
    .finally(() => (d.refilling = false));
}

/** A key with nothing asked, nothing pooled and no push for a while starts over. */
const quiet = (kid: string, d: Demand, now: number) => !d.refilling && now - d.since > DEMAND_WINDOW_MS && pooledAgreements(kid) === 0;

/** The demand record of the key `kid` (a fresh one if it went quiet), or none when too many keys are tracked. */
function demandOf(kid: string, now: number): Demand | undefined {
  const d = demand.get(kid);
  if (d && !quiet(kid, d, now)) return d;
  if (!d && demand.size >= DEMAND_KEYS) {
    for (const [k, other] of demand) if (quiet(k, other, now)) demand.delete(k);
    if (demand.size >= DEMAND_KEYS) return undefined;
  }
  const fresh = { used: 0, since: now, asked: 0, refilling: false };
  demand.set(kid, fresh);
  return fresh;
}

/**
 * Whether JWEs to `key` are written on this thread: RSA and X25519 always, P-256 when
 * an agreement is pooled for it. It also notes the push for the pools (X25519 key
 * pairs, agreements per EC key).
 */
function onThisThread(key: RecipientKey): boolean {
  const kind = keyKind(key.jwk);
  if (kind === "RSA") return true;
  const pooled = pooledAgreements(key.kid) > 0;
  refillAgreements(key);
  if (kind === "X25519") refillX25519();
  return kind === "X25519" || pooled;
}

/** The whole JWEs of small plaintexts, which the call takes over (and wipes), under one key agreement. */
async function seal(key: RecipientKey, plaintexts: Uint8Array[]): Promise<Encrypted[]> {
  return onThisThread(key) ? sealJwes(key, plaintexts) : jweThread.seal(key, plaintexts);
}

/** A JweEncryptor whose content key is wrapped to `key`. */
export async function openEncryptor(key: RecipientKey): Promise<JweEncryptor> {
  const { cek, iv } = newContentKey();
  try {
    return new JweEncryptor(cek, iv, onThisThread(key) ? wrapKey(key, cek) : await jweThread.wrap(key, cek));
  } finally {
    cek.fill(0);
  }
}

/** The compact JWE text of plaintext slices, piece by piece; each slice is zeroed once encrypted. */
export function* jwePieces(enc: JweEncryptor, slices: Iterable<Buffer>): Generator<string> {
  yield enc.head;
  for (const slice of slices) {
    const piece = enc.update(slice);
    slice.fill(0); // plaintext does not outlive its slice
    yield piece;
  }
  yield enc.final();
}

async function encryptSlices(key: RecipientKey, slices: Iterable<Buffer>): Promise<Encrypted> {
  const hash = createHash("sha256");
  const pieces: string[] = [];
  for (const piece of jwePieces(await openEncryptor(key), slices)) {
    pieces.push(piece);
    hash.update(piece, "latin1");
  }
  const jwe = pieces.join("");
  return { jwe, size: jwe.length, sha256: hash.digest("hex") };
}

const sealsWhole = (base64: string) => (base64.length / 4) * 3 <= SEAL_WHOLE_BYTES;

/**
 * Small base64, already checked with strictBase64Length, decoded into a buffer of its
 * own, which can move to the encryption thread. (Not checked again: that regular
 * expression was 1–2% of the HTTP thread's time per push. A buffer not filled to its
 * end is still refused, as it would carry uninitialised memory into the ciphertext.)
 */
function decodeToSeal(base64: string): Buffer {
  const unchecked = () => new Error("decodeToSeal: base64 that strictBase64Length would refuse");
  if (base64.length % 4 !== 0) throw unchecked();
  const bytes = Buffer.allocUnsafeSlow((base64.length / 4) * 3 - base64Padding(base64));
  if (bytes.write(base64, "base64") !== bytes.length) {
    bytes.fill(0);
    throw unchecked();
  }
  return bytes;
}

/** Encrypts strict base64 `data` (already checked with strictBase64Length). */
export async function encryptBase64(key: RecipientKey, base64: string): Promise<Encrypted> {
  if (!sealsWhole(base64)) return encryptSlices(key, base64Slices(base64));
  return (await seal(key, [decodeToSeal(base64)]))[0];
}

/**
 * A push's JWEs: its descriptor's and, given strict base64 `data`, its file's (other
 * content is encrypted as it arrives). Small `data` is sealed together with the
 * descriptor, under one key agreement (see jwe-writer.mjs); larger `data` in slices.
 */
export function encryptPush(key: RecipientKey, descriptor: Uint8Array, data: string | undefined): { descriptor: Promise<Encrypted>; file?: Promise<Encrypted> } {
  if (data === undefined) return { descriptor: encryptBytes(key, descriptor) };
  if (!sealsWhole(data)) return { descriptor: encryptBytes(key, descriptor), file: encryptBase64(key, data) };
  const both = seal(key, [decodeToSeal(data), new Uint8Array(descriptor)]);
  return { file: both.then(([file]) => file), descriptor: both.then(([, d]) => d) };
}

/** Encrypts `bytes` to the user's key; the caller's bytes are left as they are. */
export async function encryptBytes(key: RecipientKey, bytes: Uint8Array): Promise<Encrypted> {
  if (bytes.length <= SEAL_WHOLE_BYTES) return (await seal(key, [new Uint8Array(bytes)]))[0];
  function* slices() {
    for (let i = 0; i < bytes.length; i += SLICE_BYTES) yield Buffer.from(bytes.subarray(i, i + SLICE_BYTES));
  }
  return encryptSlices(key, slices());
}

/** sha256 (hex) and size of a JWE the application sent (ASCII by construction). */
export function digestJwe(jwe: string): { size: number; sha256: string } {
  // In 1 MiB steps, so that hashing a 13 MiB JWE never makes a second full-size copy of it.
  const hash = createHash("sha256");
  for (let i = 0; i < jwe.length; i += 1 << 20) hash.update(jwe.slice(i, i + (1 << 20)), "latin1");
  return { size: jwe.length, sha256: hash.digest("hex") };
}

// ---------------------------------------------------------------------------
// Idempotency fingerprint

export interface FingerprintMeta {
  postboxId: string;
  fileName: string;
  mimeType: string;
  accounts: string[];
  reference: string[];
  tags: string[];
  kind: "data" | "encryptedData" | "file" | "encryptedFile";
}

export interface FingerprintInput extends FingerprintMeta {
  /** The content as sent: text, or its bytes (a large inline value; base64 and JWE text are ASCII, so the two agree). */
  content: string | Buffer;
}

/**
 * Keyed hash (HMAC-SHA256 with the server secret) of the canonical request. Keyed,
 * so that a copy of the database cannot be used to confirm a guess of a file's
 * content; canonical, so that a retry of the same request always matches.
 */
export function requestFingerprint(secret: string, r: FingerprintInput): string {
  const mac = fingerprinter(secret, r);
  const c = r.content;
  for (let i = 0; i < c.length; i += 1 << 20) {
    if (typeof c === "string") mac.update(c.slice(i, i + (1 << 20)), "latin1");
    else mac.update(c.subarray(i, i + (1 << 20)));
  }
  return mac.digest("hex");
}

/** requestFingerprint for content that streams in: update the HMAC with it, then digest("hex"). */
export function fingerprinter(secret: string, r: FingerprintMeta): Hmac {
  const mac = createHmac("sha256", secret);
  mac.update(JSON.stringify(["postbox.push.v1", r.postboxId, r.fileName, r.mimeType, r.accounts, r.reference, r.tags, r.kind]));
  mac.update("\n");
  return mac;
}
