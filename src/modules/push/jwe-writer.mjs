// Writing compact JWEs (RFC 7516) to a user's public key. Key management:
// RSA-OAEP-256 for RSA keys, ECDH-ES+A256KW for P-256 and X25519 keys (RFC 7518
// §4.3, §4.6); content: A256GCM.
//
// Plain JavaScript because it runs in two places: in the encryption thread
// (jwe.worker.mjs; worker threads load files as they are, with no TypeScript
// step), which wraps keys and seals small files, and on the server's thread,
// which encrypts large files slice by slice as they arrive (JweEncryptor).
// Types: jwe-writer.d.mts.
import { constants, createCipheriv, createECDH, createHash, createPublicKey, diffieHellman, generateKeyPairSync, publicEncrypt } from "node:crypto";
import { randomBytesPooled } from "../../infra/random-pool.mjs";

export const CONTENT_ENC = "A256GCM";

/** "RSA", "P-256" or "X25519"; acceptance stores no other kind of key. */
export function keyKind(jwk) {
  if (jwk.kty === "RSA") return "RSA";
  if (jwk.kty === "EC" && jwk.crv === "P-256") return "P-256";
  if (jwk.kty === "OKP" && jwk.crv === "X25519") return "X25519";
  // Anything else is a corrupted row.
  throw new Error(`Unsupported postbox key ${String(jwk.kty)}/${String(jwk.crv)}`);
}

// Recipient keys parsed once (as a KeyObject, and for P-256 also as the uncompressed
// point computeSecret takes); bounded by the number of postboxes in use.
const parsed = new Map();

function recipient(key) {
  let k = parsed.get(key.kid);
  if (!k) {
    const object = createPublicKey({ key: key.jwk, format: "jwk" });
    const point = keyKind(key.jwk) === "P-256" ? Buffer.concat([Buffer.from([4]), Buffer.from(String(key.jwk.x), "base64url"), Buffer.from(String(key.jwk.y), "base64url")]) : undefined;
    k = { object, point };
    if (parsed.size >= 10_000) parsed.clear();
    parsed.set(key.kid, k);
  }
  return k;
}

// The ephemeral P-256 keys of ECDH-ES: one context, and generateKeys() makes a fresh
// key pair for every wrap (it must be called before each computeSecret). This costs
// about half of generateKeyPairSync + diffieHellman, which hand both keys to
// OpenSSL's providers again on every call.
const ephemeralP256 = createECDH("prime256v1");

// An ephemeral X25519 key pair, its public half already a JWK. Never call export()
// on a key made by generateKeyPairSync: on Node 20 the generation job is destroyed
// only when a later garbage collection finds it, and its destructor takes the key's
// lock. A collection that starts while export() holds that lock on the same thread
// (it allocates the JWK's strings) deadlocks the thread for good; under load that
// took seconds. Encoding as part of the generation happens while the job is still
// alive, and diffieHellman takes no lock. (The asynchronous generateKeyPair has
// neither problem, but stopping a thread while one runs brings the process down.)
export function newEphemeralX25519() {
  const { publicKey, privateKey } = generateKeyPairSync("x25519", { publicKeyEncoding: { format: "jwk" } });
  return { privateKey, x: publicKey.x };
}

// Ephemeral X25519 key pairs made ahead of use, in the encryption thread (see
// push.crypto.ts): a push on the server's thread then pays for the key agreement
// alone, not for the key pair too. Each key is taken out once and used for one
// agreement, as RFC 7518 §4.6 asks; when the pool is empty, a key is made on the spot.
const x25519Pool = [];

/** Adds key pairs made by newEphemeralX25519 (in another thread) to the pool. */
export function poolEphemeralX25519(keys) {
  x25519Pool.push(...keys);
}

/** Key pairs in the pool. */
export function pooledEphemeralX25519() {
  return x25519Pool.length;
}

function ephemeralX25519() {
  const { privateKey, x } = x25519Pool.pop() ?? newEphemeralX25519();
  return { privateKey, epk: { kty: "OKP", crv: "X25519", x } };
}

function lengthPrefixed(data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  return Buffer.concat([len, data]);
}

/** Concat KDF of ECDH-ES (RFC 7518 §4.6.2): one SHA-256 round for a 256-bit key. */
function concatKdf(z, alg) {
  const suppPubInfo = Buffer.alloc(4);
  suppPubInfo.writeUInt32BE(256);
  return createHash("sha256")
    .update(Buffer.from([0, 0, 0, 1]))
    .update(z)
    .update(lengthPrefixed(Buffer.from(alg, "ascii")))
    .update(lengthPrefixed(Buffer.alloc(0))) // PartyUInfo (no apu)
    .update(lengthPrefixed(Buffer.alloc(0))) // PartyVInfo (no apv)
    .update(suppPubInfo)
    .digest();
}

const AES_KW_IV = Buffer.from("A6A6A6A6A6A6A6A6", "hex");

const ECDH_ALG = "ECDH-ES+A256KW";

/**
 * One ECDH-ES key agreement with the user's EC key, under a fresh ephemeral key pair
 * (RFC 7518 §4.6): the ephemeral public key for the JWE header and the
 * key-encryption key derived from the shared secret (which is wiped).
 */
export function newAgreement(key) {
  const r = recipient(key);
  let z;
  let epk;
  if (keyKind(key.jwk) === "P-256") {
    ephemeralP256.generateKeys();
    z = ephemeralP256.computeSecret(r.point);
    const pub = ephemeralP256.getPublicKey(); // 0x04 || X || Y
    epk = { kty: "EC", crv: "P-256", x: pub.subarray(1, 33).toString("base64url"), y: pub.subarray(33).toString("base64url") };
  } else {
    const eph = ephemeralX25519();
    z = diffieHellman({ privateKey: eph.privateKey, publicKey: r.object });
    epk = eph.epk;
  }
  const kek = concatKdf(z, ECDH_ALG);
  z.fill(0);
  return { epk, kek };
}

/**
 * `count` agreements with `key` (newAgreement), made in the encryption thread for the
 * pool below: the public keys, and the key-encryption keys in one buffer of their own
 * (32 bytes each), so that they move to the other thread without a copy.
 */
export function newAgreements(key, count) {
  const keks = new Uint8Array(32 * count);
  const epks = [];
  for (let i = 0; i < count; i++) {
    const a = newAgreement(key);
    keks.set(a.kek, 32 * i);
    a.kek.fill(0);
    epks.push(a.epk);
  }
  return { epks, keks };
}

// Key agreements made ahead for the EC keys that pushes stream to (push.crypto.ts asks
// the encryption thread for them): a seal that finds one here costs the server's thread
// no elliptic-curve work. Each is taken out once, oldest first, and used for one
// push's JWEs, so each still has an ephemeral key of its own (RFC 7518 §4.6). Unused
// ones are wiped AGREEMENT_TTL_MS after they were made; a key-encryption key is no
// more secret than the ephemeral private key it replaces, and lives as briefly.
const AGREEMENT_TTL_MS = 10_000;
const agreements = new Map(); // kid -> [{ epk, kek, until }]
let sweeper;

/** Adds agreements made by newAgreements to the pool of the key `kid`. */
export function poolAgreements(kid, { epks, keks }) {
  const until = Date.now() + AGREEMENT_TTL_MS;
  let pool = agreements.get(kid);
  if (!pool) agreements.set(kid, (pool = []));
  epks.forEach((epk, i) => pool.push({ epk, kek: keks.subarray(32 * i, 32 * (i + 1)), until }));
  if (!sweeper) {
    sweeper = setInterval(() => dropAgreements(Date.now()), AGREEMENT_TTL_MS / 2);
    sweeper.unref();
  }
}

/** Agreements pooled for the key `kid`. */
export function pooledAgreements(kid) {
  return agreements.get(kid)?.length ?? 0;
}

/** Keys with agreements pooled. */
export function pooledAgreementKeys() {
  return agreements.size;
}

/** Wipes and drops the agreements that expire before `now` (every key's, with Infinity). */
export function dropAgreements(now) {
  for (const [kid, pool] of agreements) {
    let n = 0;
    while (n < pool.length && pool[n].until <= now) pool[n++].kek.fill(0);
    pool.splice(0, n);
    if (!pool.length) agreements.delete(kid);
  }
  if (!agreements.size && sweeper) {
    clearInterval(sweeper);
    sweeper = undefined;
  }
}

function takeAgreement(kid) {
  const pool = agreements.get(kid);
  if (!pool) return undefined;
  const a = pool.shift();
  if (!pool.length) agreements.delete(kid);
  if (a.until > Date.now()) return a;
  a.kek.fill(0);
  return undefined;
}

/**
 * Wraps content keys to the user's key: `wrap(cek)` gives a JWE's protected header
 * and encrypted key, `wipe()` clears the key-encryption key once the caller is done.
 *
 * For an EC key this takes one key agreement (pooled, or made now), and the
 * key-encryption key derived from it wraps every content key given to `wrap`. RFC 7518
 * §4.6 asks for a new ephemeral key per key agreement, and that is what this is: a
 * push's file and descriptor JWEs share one agreement (the same `epk`), each under its
 * own random content key, wrapped with AES Key Wrap (RFC 3394), which is made for many
 * keys under one key-encryption key. Each JWE is still a standard ECDH-ES+A256KW JWE
 * that decrypts on its own. The agreement is most of a seal's cost (two of three
 * scalar multiplications with X25519), so a `data` push costs one instead of two.
 */
function keyWrapper(key) {
  if (keyKind(key.jwk) === "RSA") {
    const r = recipient(key);
    const header = { alg: "RSA-OAEP-256", enc: CONTENT_ENC, kid: key.kid };
    return {
      wrap: (cek) => ({ header, encryptedKey: publicEncrypt({ key: r.object, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" }, cek) }),
      wipe() {},
    };
  }
  const { epk, kek } = takeAgreement(key.kid) ?? newAgreement(key);
  const header = { alg: ECDH_ALG, enc: CONTENT_ENC, kid: key.kid, epk };
  return {
    wrap(cek) {
      const wrap = createCipheriv("id-aes256-wrap", kek, AES_KW_IV);
      return { header, encryptedKey: Buffer.concat([wrap.update(cek), wrap.final()]) };
    },
    wipe: () => kek.fill(0),
  };
}

/** Encrypts the content key `cek` to the user's key: the JWE's protected header and encrypted key. */
export function wrapKey(key, cek) {
  const wrapper = keyWrapper(key);
  try {
    return wrapper.wrap(cek);
  } finally {
    wrapper.wipe();
  }
}

/** A fresh 256-bit content key and 96-bit IV (one buffer the caller owns and wipes), from the pooled CSPRNG bytes. */
export function newContentKey() {
  const b = randomBytesPooled(44);
  return { cek: b.subarray(0, 32), iv: b.subarray(32) };
}

/**
 * Encrypts plaintext that arrives in pieces as compact JWE text: `head` first,
 * then what each `update` returns, then `final()`. Ciphertext bytes are carried
 * over until they make whole 3-byte groups, so the base64url pieces concatenate
 * into the base64url of the whole. `cek` is wiped once the cipher holds it.
 */
export class JweEncryptor {
  constructor(cek, iv, wrapped) {
    const protectedHeader = Buffer.from(JSON.stringify(wrapped.header)).toString("base64url");
    this.cipher = createCipheriv("aes-256-gcm", cek, iv);
    cek.fill(0);
    this.cipher.setAAD(Buffer.from(protectedHeader, "ascii"));
    this.carry = Buffer.alloc(0);
    this.head = `${protectedHeader}.${Buffer.from(wrapped.encryptedKey).toString("base64url")}.${Buffer.from(iv).toString("base64url")}.`;
  }

  update(plaintext) {
    let ct = this.cipher.update(plaintext);
    if (this.carry.length) ct = Buffer.concat([this.carry, ct]);
    const whole = ct.length - (ct.length % 3);
    this.carry = Buffer.from(ct.subarray(whole));
    return ct.subarray(0, whole).toString("base64url");
  }

  final() {
    this.cipher.final();
    const rest = this.carry.toString("base64url");
    this.carry = Buffer.alloc(0);
    return `${rest}.${this.cipher.getAuthTag().toString("base64url")}`;
  }
}

/**
 * The whole JWEs of small plaintexts to one key (a push's file and descriptor), each
 * with its size and sha256 (hex); the plaintexts are wiped. One key agreement serves
 * them all (see keyWrapper).
 */
export function sealJwes(key, plaintexts) {
  const wrapper = keyWrapper(key);
  try {
    return plaintexts.map((plaintext) => {
      const { cek, iv } = newContentKey();
      const enc = new JweEncryptor(cek, iv, wrapper.wrap(cek));
      const jwe = enc.head + enc.update(plaintext) + enc.final();
      plaintext.fill(0);
      return { jwe, size: jwe.length, sha256: createHash("sha256").update(jwe, "latin1").digest("hex") };
    });
  } finally {
    wrapper.wipe();
  }
}
