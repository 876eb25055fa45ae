// The push cryptography on its own: the server's own JWE writer must interoperate
// with jose (what user apps decrypt with), and the checks on app-encrypted JWEs
// must accept what jose produces for the postbox key and refuse everything else.
import { afterAll, describe, expect, it, jest } from "@jest/globals";
import { KeyObject, createHash, createPublicKey, diffieHellman, randomBytes } from "node:crypto";
import { CompactEncrypt, calculateJwkThumbprint, compactDecrypt, decodeProtectedHeader, exportJWK, generateKeyPair, type CryptoKey, type JWK } from "jose";
import { randomBytesPooled } from "../../src/infra/crypto.js";
import {
  JweTextChecker,
  PushRefusal,
  checkJweHeader,
  checkJweStructure,
  digestJwe,
  encryptBase64,
  encryptBytes,
  encryptPush,
  openEncryptor,
  requestFingerprint,
  strictBase64Length,
  type FingerprintInput,
  type RecipientKey,
} from "../../src/modules/push/push.crypto.js";
import { JweThread, jweThread } from "../../src/modules/push/jwe.thread.js";
import { dropAgreements, newAgreements, newContentKey, newEphemeralX25519, poolAgreements, pooledAgreements, pooledEphemeralX25519, poolEphemeralX25519, sealJwes } from "../../src/modules/push/jwe-writer.mjs";

// The process's encryption thread (P-256 JWEs and X25519 key pairs come from it) is this file's alone: stop it
// at the end, as an app's stop() does, or it outlives the file in jest's worker.
afterAll(() => jweThread.close());

type Kind = "RSA" | "P-256" | "X25519";

async function userKey(kind: Kind): Promise<{ key: RecipientKey; privateKey: CryptoKey; publicKey: CryptoKey }> {
  const { publicKey, privateKey } =
    kind === "RSA"
      ? await generateKeyPair("RSA-OAEP-256", { extractable: true, modulusLength: 2048 })
      : kind === "P-256"
        ? await generateKeyPair("ECDH-ES+A256KW", { extractable: true, crv: "P-256" })
        : await generateKeyPair("ECDH-ES+A256KW", { extractable: true, crv: "X25519" });
  const jwk = (await exportJWK(publicKey)) as JWK;
  const kid = await calculateJwkThumbprint(jwk, "sha256");
  return { key: { jwk: jwk as Record<string, unknown>, kid }, privateKey, publicKey };
}

function refusal(fn: () => unknown): PushRefusal {
  try {
    fn();
  } catch (e) {
    if (e instanceof PushRefusal) return e;
    throw e;
  }
  throw new Error("expected a refusal");
}

const KINDS: Kind[] = ["RSA", "P-256", "X25519"];

describe("server-side encryption to the user's key", () => {
  it.each(KINDS)("writes a JWE that jose decrypts with a %s private key", async (kind) => {
    const { key, privateKey } = await userKey(kind);
    const plaintext = randomBytes(1000);
    const out = await encryptBytes(key, plaintext);
    const header = decodeProtectedHeader(out.jwe);
    expect(header).toMatchObject({ alg: kind === "RSA" ? "RSA-OAEP-256" : "ECDH-ES+A256KW", enc: "A256GCM", kid: key.kid });
    const { plaintext: back } = await compactDecrypt(out.jwe, privateKey);
    expect(Buffer.from(back).equals(plaintext)).toBe(true);
    expect(out.size).toBe(out.jwe.length);
    expect(out.sha256).toBe(createHash("sha256").update(out.jwe).digest("hex"));
  });

  // Up to 64 KiB the encryption thread seals the file whole; above, it is encrypted here slice by slice.
  it.each([1, 2, 3, 49_151, 49_152, 49_153, 65_536, 65_537, 200_003])("encrypts base64 data of %i bytes", async (n) => {
    const { key, privateKey } = await userKey("P-256");
    const plaintext = randomBytes(n);
    const out = await encryptBase64(key, plaintext.toString("base64"));
    const { plaintext: back } = await compactDecrypt(out.jwe, privateKey);
    expect(Buffer.from(back).equals(plaintext)).toBe(true);
    expect(out.sha256).toBe(createHash("sha256").update(out.jwe).digest("hex"));
  });

  // The caller checks data first (strictBase64Length); text that skipped the check must not
  // leave part of a buffer uninitialised and be sealed with it.
  it.each(["QU*D", "QUJD\nQUJD", "QUJDRA==".replace("R", "!")])("refuses to seal base64 that was not checked (%j)", async (bad) => {
    const { key } = await userKey("X25519");
    await expect(encryptBase64(key, bad)).rejects.toThrow(/strictBase64Length would refuse/);
    expect(() => encryptPush(key, Buffer.from("{}"), bad)).toThrow(/strictBase64Length would refuse/);
  });

  it("uses a fresh key and iv for every encryption", async () => {
    const { key } = await userKey("RSA");
    const [a, b] = await Promise.all([encryptBytes(key, Buffer.from("same")), encryptBytes(key, Buffer.from("same"))]);
    expect(a.jwe).not.toBe(b.jwe);
    expect(a.jwe.split(".")[2]).not.toBe(b.jwe.split(".")[2]);
  });

  it.each(["P-256", "X25519"] as const)("uses a fresh ephemeral %s key for every encryption, each on the curve and decryptable", async (kind) => {
    const { key, privateKey } = await userKey(kind);
    const outs = await Promise.all(Array.from({ length: 5 }, (_, i) => encryptBytes(key, Buffer.from(`file ${i}`))));
    const epks = outs.map((o) => decodeProtectedHeader(o.jwe).epk as JWK);
    expect(new Set(epks.map((e) => `${e.x}.${e.y ?? ""}`)).size).toBe(5);
    for (const e of epks) expect(e).toEqual(kind === "P-256" ? { kty: "EC", crv: "P-256", x: expect.any(String), y: expect.any(String) } : { kty: "OKP", crv: "X25519", x: expect.any(String) });
    for (const [i, o] of outs.entries()) expect(Buffer.from((await compactDecrypt(o.jwe, privateKey)).plaintext).toString()).toBe(`file ${i}`);
  });

  // A push's file and descriptor: one key agreement (one ephemeral key) for both, a new one per push.
  it.each(KINDS)("seals a push's small file and its descriptor together, each decryptable on its own (%s key)", async (kind) => {
    const { key, privateKey } = await userKey(kind);
    const pushes = [];
    for (let i = 0; i < 3; i++) {
      const file = randomBytes(1000 + i);
      const descriptor = Buffer.from(JSON.stringify({ fileName: `f${i}.bin` }));
      const sealed = encryptPush(key, descriptor, file.toString("base64"));
      if (!sealed.file) throw new Error("a 1 KB file is sealed with its descriptor");
      const [f, d] = await Promise.all([sealed.file, sealed.descriptor]);
      expect(Buffer.from((await compactDecrypt(f.jwe, privateKey)).plaintext).equals(file)).toBe(true);
      expect(Buffer.from((await compactDecrypt(d.jwe, privateKey)).plaintext).equals(descriptor)).toBe(true);
      expect(descriptor.toString()).toBe(JSON.stringify({ fileName: `f${i}.bin` })); // the caller's bytes are left alone
      expect(f.sha256).toBe(createHash("sha256").update(f.jwe).digest("hex"));
      const [fh, dh] = [decodeProtectedHeader(f.jwe), decodeProtectedHeader(d.jwe)];
      expect(fh).toEqual(dh);
      // Each with its own content key and IV.
      expect(f.jwe.split(".")[1]).not.toBe(d.jwe.split(".")[1]);
      expect(f.jwe.split(".")[2]).not.toBe(d.jwe.split(".")[2]);
      pushes.push(fh);
    }
    if (kind !== "RSA") expect(new Set(pushes.map((h) => JSON.stringify(h.epk))).size).toBe(3);
  });

  it("encrypts a large file apart from its descriptor (in slices, with its own key agreement)", async () => {
    const { key, privateKey } = await userKey("X25519");
    const file = randomBytes(65_537);
    const sealed = encryptPush(key, Buffer.from("{}"), file.toString("base64"));
    const [f, d] = await Promise.all([sealed.file!, sealed.descriptor]);
    expect(Buffer.from((await compactDecrypt(f.jwe, privateKey)).plaintext).equals(file)).toBe(true);
    expect(Buffer.from((await compactDecrypt(d.jwe, privateKey)).plaintext).toString()).toBe("{}");
    expect(decodeProtectedHeader(f.jwe).epk).not.toEqual(decodeProtectedHeader(d.jwe).epk);
    expect(encryptPush(key, Buffer.from("{}"), undefined).file).toBeUndefined();
  });

  it("fails to decrypt once one byte of the ciphertext is flipped", async () => {
    const { key, privateKey } = await userKey("X25519");
    const { jwe } = await encryptBytes(key, Buffer.from("integrity matters"));
    const parts = jwe.split(".");
    const ct = Buffer.from(parts[3], "base64url");
    ct[0] ^= 1;
    parts[3] = ct.toString("base64url");
    await expect(compactDecrypt(parts.join("."), privateKey)).rejects.toThrow();
  });
});

/** One plaintext's JWE through an encryption thread. */
const sealOne = async (thread: JweThread, key: RecipientKey, plaintext: Uint8Array) => (await thread.seal(key, [plaintext]))[0];

describe("the encryption thread", () => {
  it("refuses a job it cannot do without failing the others sent with it", async () => {
    const { key, privateKey } = await userKey("X25519");
    const bad: RecipientKey = { jwk: { kty: "oct", k: "AAAA" }, kid: "bad" };
    // Requested in one turn of the event loop, so they go over in one message.
    const [a, b, c] = await Promise.allSettled([sealOne(jweThread, key, Buffer.from("a")), sealOne(jweThread, bad, Buffer.from("b")), sealOne(jweThread, key, Buffer.from("c"))]);
    expect(b).toMatchObject({ status: "rejected", reason: expect.objectContaining({ message: expect.stringContaining("Unsupported postbox key oct") }) });
    for (const [r, text] of [[a, "a"], [c, "c"]] as const) {
      if (r.status !== "fulfilled") throw r.reason;
      expect(Buffer.from((await compactDecrypt(r.value.jwe, privateKey)).plaintext).toString()).toBe(text);
    }
  });

  it("refuses the jobs in a thread that stops, and starts a new one for the next", async () => {
    const { key, privateKey } = await userKey("RSA");
    const thread = new JweThread();
    const lost = sealOne(thread, key, Buffer.from("in flight"));
    await new Promise((r) => setImmediate(r)); // sent (the thread is still starting)
    await thread.close();
    await expect(lost).rejects.toThrow(/encryption thread stopped/);
    const next = await sealOne(thread, key, new Uint8Array(Buffer.from("next")));
    expect(Buffer.from((await compactDecrypt(next.jwe, privateKey)).plaintext).toString()).toBe("next");
    await thread.close();
  });

  it("stops when the last app that uses it lets go, and starts again for a later job", async () => {
    const { key, privateKey } = await userKey("X25519");
    const thread = new JweThread();
    const releaseA = thread.retain();
    const releaseB = thread.retain();
    await sealOne(thread, key, new Uint8Array(1));
    expect(thread.running).toBe(true);
    await releaseA();
    await releaseA(); // releasing twice counts once
    expect(thread.running).toBe(true); // B still uses it
    await releaseB();
    expect(thread.running).toBe(false);
    const later = await sealOne(thread, key, new Uint8Array(Buffer.from("later")));
    expect(Buffer.from((await compactDecrypt(later.jwe, privateKey)).plaintext).toString()).toBe("later");
    await thread.close();
  });

  it("fails only a stopped thread's own jobs, not those already sent to the one after it", async () => {
    const { key, privateKey } = await userKey("RSA");
    const thread = new JweThread();
    await sealOne(thread, key, new Uint8Array(1)); // running
    const old = sealOne(thread, key, new Uint8Array(Buffer.from("old")));
    await new Promise((r) => setImmediate(r)); // sent
    const closing = thread.close();
    const next = sealOne(thread, key, new Uint8Array(Buffer.from("next")));
    await new Promise((r) => setImmediate(r)); // sent to a new thread while the old one stops
    await closing;
    await old.catch(() => {}); // done before the stop, or refused: either is right
    const out = await next;
    expect(Buffer.from((await compactDecrypt(out.jwe, privateKey)).plaintext).toString()).toBe("next");
    await thread.close();
  });

  // Node 20 deadlocked a thread that exported an ephemeral key from generateKeyPairSync when
  // a garbage collection ran the finished generation job's destructor meanwhile; with
  // export() this hung within a few thousand seals. See ephemeralX25519 in jwe-writer.mjs.
  it("seals tens of thousands of files to an X25519 key without stalling", async () => {
    const { key } = await userKey("X25519");
    const thread = new JweThread();
    let sealed = 0;
    const worker = async () => {
      while (sealed < 40_000) {
        await sealOne(thread, key, new Uint8Array(256));
        sealed++;
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    expect(sealed).toBeGreaterThanOrEqual(40_000);
    await thread.close();
  }, 60_000);

  it("takes the plaintext it seals out of the caller's hands; encryptBytes leaves the caller's bytes alone", async () => {
    const { key } = await userKey("X25519");
    const own = new Uint8Array(Buffer.from("moved to the thread"));
    const pooled = Buffer.from("copied, then wiped"); // a slice of Node's shared pool: copied, not moved
    await jweThread.seal(key, [own, pooled]);
    expect(own.byteLength).toBe(0); // transferred
    expect(pooled.equals(Buffer.alloc(pooled.length))).toBe(true);
    const mine = Buffer.from("still mine");
    await encryptBytes(key, mine);
    expect(mine.toString()).toBe("still mine");
  });
});

describe("ephemeral X25519 keys made ahead (the encryption thread fills a pool)", () => {
  it("gives each seal its own pooled key, once, and makes one on the spot when the pool is empty", async () => {
    const { key, privateKey } = await userKey("X25519");
    const [k1, k2] = [newEphemeralX25519(), newEphemeralX25519()];
    const before = pooledEphemeralX25519();
    poolEphemeralX25519([k1, k2]);
    const epkOf = (jwe: string) => (decodeProtectedHeader(jwe).epk as JWK).x;
    const a = sealJwes(key, [Buffer.from("a")])[0];
    const b = sealJwes(key, [Buffer.from("b")])[0];
    expect([epkOf(a.jwe), epkOf(b.jwe)]).toEqual([k2.x, k1.x]);
    expect(pooledEphemeralX25519()).toBe(before);
    // Drained (nothing here refills it), a seal still gets a fresh key of its own.
    while (pooledEphemeralX25519() > 0) sealJwes(key, [Buffer.from("drain")]);
    const c = sealJwes(key, [Buffer.from("c")])[0];
    const d = sealJwes(key, [Buffer.from("d")])[0];
    expect(new Set([k1.x, k2.x, epkOf(c.jwe), epkOf(d.jwe)]).size).toBe(4);
    for (const [jwe, text] of [[a.jwe, "a"], [b.jwe, "b"], [c.jwe, "c"], [d.jwe, "d"]]) {
      expect(Buffer.from((await compactDecrypt(jwe, privateKey)).plaintext).toString()).toBe(text);
    }
  });

  it("tops the pool up from the encryption thread as pushes to X25519 keys use it", async () => {
    const { key, privateKey } = await userKey("X25519");
    while (pooledEphemeralX25519() > 0) sealJwes(key, [Buffer.from("drain")]);
    const sealed = encryptPush(key, Buffer.from("{}"), Buffer.from("file").toString("base64"));
    expect(Buffer.from((await compactDecrypt((await sealed.file!).jwe, privateKey)).plaintext).toString()).toBe("file");
    const until = Date.now() + 10_000;
    while (pooledEphemeralX25519() === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(pooledEphemeralX25519()).toBeGreaterThanOrEqual(32);
  });

  it("has the thread make distinct key pairs whose private halves agree on this thread", async () => {
    const { key } = await userKey("X25519");
    const keys = await jweThread.x25519Keys(8);
    expect(new Set(keys.map((k) => k.x)).size).toBe(8);
    const peer = createPublicKey({ key: key.jwk, format: "jwk" });
    for (const k of keys) {
      expect(Buffer.from(k.x, "base64url")).toHaveLength(32);
      expect(diffieHellman({ privateKey: k.privateKey, publicKey: peer })).toHaveLength(32);
    }
  });

  it("seals tens of thousands of pushes to an X25519 key on this thread, with pooled keys, without stalling", async () => {
    const { key } = await userKey("X25519");
    let sealed = 0;
    const worker = async () => {
      while (sealed < 20_000) {
        const out = encryptPush(key, Buffer.from("{}"), "AAAA");
        await Promise.all([out.file, out.descriptor]);
        sealed++;
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    expect(sealed).toBeGreaterThanOrEqual(20_000);
  }, 60_000);
});

describe("key agreements made ahead for the EC keys pushes stream to", () => {
  /** The key-encryption key the user's side derives from a JWE's epk (RFC 7518 §4.6.2), to check the pooled ones against. */
  function userKek(privateKey: CryptoKey, epk: Record<string, unknown>): Buffer {
    const z = diffieHellman({ privateKey: KeyObject.from(privateKey), publicKey: createPublicKey({ key: epk as JWK, format: "jwk" }) });
    const alg = Buffer.from("ECDH-ES+A256KW");
    const u32 = (n: number) => Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
    return createHash("sha256").update(Buffer.concat([u32(1), z, u32(alg.length), alg, u32(0), u32(0), u32(256)])).digest();
  }
  const epkOf = (jwe: string) => decodeProtectedHeader(jwe).epk as Record<string, unknown>;

  it.each(["P-256", "X25519"] as const)("has the thread make distinct %s agreements whose keys the user's private key derives too", async (kind) => {
    const { key, privateKey } = await userKey(kind);
    const made = await jweThread.agreements(key, 4);
    expect(made.epks).toHaveLength(4);
    expect(made.keks).toHaveLength(4 * 32);
    expect(new Set(made.epks.map((e) => e.x)).size).toBe(4);
    made.epks.forEach((epk, i) => expect(Buffer.from(made.keks.subarray(32 * i, 32 * (i + 1)))).toEqual(userKek(privateKey, epk)));
  });

  it.each(["P-256", "X25519"] as const)("seals with pooled %s agreements oldest first, each once, then makes its own", async (kind) => {
    const { key, privateKey } = await userKey(kind);
    const made = newAgreements(key, 2);
    const keks = made.keks;
    poolAgreements(key.kid, made);
    expect(pooledAgreements(key.kid)).toBe(2);
    const sealed = ["a", "b", "c"].map((text) => sealJwes(key, [Buffer.from(text)])[0].jwe);
    expect(pooledAgreements(key.kid)).toBe(0);
    expect(sealed.slice(0, 2).map((jwe) => epkOf(jwe).x)).toEqual(made.epks.map((e) => e.x));
    expect(epkOf(sealed[2]).x).not.toBe(made.epks[0].x);
    expect(epkOf(sealed[2]).x).not.toBe(made.epks[1].x);
    expect(keks.every((b) => b === 0)).toBe(true); // each key-encryption key is wiped once used
    for (const [i, jwe] of sealed.entries()) expect(Buffer.from((await compactDecrypt(jwe, privateKey)).plaintext).toString()).toBe("abc"[i]);
  });

  it("wipes and drops agreements that were not used in time", async () => {
    const { key } = await userKey("X25519");
    const made = newAgreements(key, 3);
    poolAgreements(key.kid, made);
    dropAgreements(Date.now());
    expect(pooledAgreements(key.kid)).toBe(3); // not yet expired
    dropAgreements(Date.now() + 60_000);
    expect(pooledAgreements(key.kid)).toBe(0);
    expect(made.keks.every((b) => b === 0)).toBe(true);
  });

  it("wipes the pooled agreements when the encryption thread stops (the last app of the process stopped)", async () => {
    const { key } = await userKey("P-256");
    const made = await jweThread.agreements(key, 2);
    poolAgreements(key.kid, made);
    await jweThread.close();
    expect(pooledAgreements(key.kid)).toBe(0);
    expect(made.keks.every((b) => b === 0)).toBe(true);
  });

  async function waitForPool(kid: string, timeoutMs = 5000): Promise<number> {
    const until = Date.now() + timeoutMs;
    while (pooledAgreements(kid) === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    return pooledAgreements(kid);
  }

  it("gives a key no pool for one push, and one once pushes stream to it", async () => {
    const { key, privateKey } = await userKey("P-256");
    const one = encryptPush(key, Buffer.from("{}"), Buffer.from("first").toString("base64"));
    await one.file;
    expect(await waitForPool(key.kid, 300)).toBe(0);
    const second = encryptPush(key, Buffer.from("{}"), Buffer.from("second").toString("base64"));
    expect(Buffer.from((await compactDecrypt((await second.file!).jwe, privateKey)).plaintext).toString()).toBe("second");
    const pooled = await waitForPool(key.kid);
    expect(pooled).toBeGreaterThanOrEqual(4);
    // The next push uses one of them, here, and still decrypts.
    const third = encryptPush(key, Buffer.from("{}"), Buffer.from("third").toString("base64"));
    expect(pooledAgreements(key.kid)).toBe(pooled - 1);
    expect(Buffer.from((await compactDecrypt((await third.file!).jwe, privateKey)).plaintext).toString()).toBe("third");
    expect(epkOf((await third.file!).jwe)).toEqual(epkOf((await third.descriptor).jwe)); // one agreement per push
  });

  it("keeps up with a stream of pushes to one key, every JWE decrypting", async () => {
    const { key, privateKey } = await userKey("P-256");
    const throughThread = jest.spyOn(jweThread, "seal");
    const jwes: string[] = [];
    for (let i = 0; i < 300; i++) {
      const out = encryptPush(key, Buffer.from("{}"), Buffer.from(`file ${i}`).toString("base64"));
      jwes.push((await out.file!).jwe);
      if (i % 50 === 0) await new Promise((r) => setTimeout(r, 5)); // the thread's answers arrive
    }
    // Most were sealed here with pooled agreements; only the first few, before a pool, went to the thread.
    expect(throughThread.mock.calls.length).toBeLessThan(30);
    throughThread.mockRestore();
    expect(new Set(jwes.map((j) => epkOf(j).x)).size).toBe(300);
    for (const [i, jwe] of jwes.entries()) expect(Buffer.from((await compactDecrypt(jwe, privateKey)).plaintext).toString()).toBe(`file ${i}`);
  });
});

describe("strict base64", () => {
  it.each([
    ["", 0],
    ["QQ==", 1],
    ["QUI=", 2],
    ["QUJD", 3],
    [Buffer.from("hello world").toString("base64"), 11],
  ])("accepts %j", (s, n) => {
    expect(strictBase64Length(s)).toBe(n);
  });

  it.each([
    ["missing padding", "QQ"],
    ["a line break", "QUJD\nQUJD"],
    ["a space", "QUJD QUJD"],
    ["the url alphabet", "-_-_"],
    ["padding in the middle", "QQ==QUJD"],
    ["non-canonical final bits", "QR=="],
    ["too much padding", "Q==="],
    ["a non-base64 character", "QUJ*"],
  ])("refuses %s", (_n, s) => {
    const r = refusal(() => strictBase64Length(s));
    expect(r.error.extensions.code).toBe("BAD_USER_INPUT");
    expect(r.reason).toBe("malformed_base64");
  });
});

describe("checking a JWE the application encrypted", () => {
  const enc = (pt: Uint8Array, header: Record<string, unknown>, k: CryptoKey | JWK) =>
    new CompactEncrypt(pt).setProtectedHeader(header as never).encrypt(k);
  const check = (jwe: string, key: RecipientKey, max = 1024 * 1024) => {
    const s = checkJweStructure(jwe, max);
    checkJweHeader(s.parts, key);
    return s;
  };

  it.each([
    ["RSA", "RSA-OAEP-256"],
    ["P-256", "ECDH-ES+A256KW"],
    ["P-256", "ECDH-ES"],
    ["X25519", "ECDH-ES+A256KW"],
    ["X25519", "ECDH-ES"],
  ] as const)("accepts a %s key's JWE with %s", async (kind, alg) => {
    const { key, publicKey } = await userKey(kind);
    const jwe = await enc(randomBytes(500), { alg, enc: "A256GCM", kid: key.kid }, publicKey);
    expect(check(jwe, key).contentBytes).toBe(500);
    expect(digestJwe(jwe).size).toBe(jwe.length);
  });

  it("refuses a kid that is not the postbox key's thumbprint", async () => {
    const { key, publicKey } = await userKey("RSA");
    const jwe = await enc(randomBytes(10), { alg: "RSA-OAEP-256", enc: "A256GCM", kid: "someone-else" }, publicKey);
    const r = refusal(() => check(jwe, key));
    expect(r.reason).toBe("wrong_kid");
    expect(r.message).toContain(key.kid);
  });

  it("refuses a JWE encrypted to another postbox's key", async () => {
    const mine = await userKey("RSA");
    const other = await userKey("RSA");
    const jwe = await enc(randomBytes(10), { alg: "RSA-OAEP-256", enc: "A256GCM", kid: other.key.kid }, other.publicKey);
    expect(refusal(() => check(jwe, mine.key)).reason).toBe("wrong_kid");
  });

  it("refuses the wrong content encryption", async () => {
    const { key, publicKey } = await userKey("RSA");
    const jwe = await enc(randomBytes(10), { alg: "RSA-OAEP-256", enc: "A128GCM", kid: key.kid }, publicKey);
    expect(refusal(() => check(jwe, key)).reason).toBe("bad_jwe_enc");
  });

  it("refuses RSA-OAEP (SHA-1) for an RSA key", async () => {
    const { key } = await userKey("RSA");
    // jose binds a CryptoKey to its hash; the bare JWK can be used with either.
    const jwe = await enc(randomBytes(10), { alg: "RSA-OAEP", enc: "A256GCM", kid: key.kid }, key.jwk as never);
    expect(refusal(() => check(jwe, key)).reason).toBe("bad_jwe_alg");
  });

  it("refuses an RSA algorithm for an EC key", async () => {
    const ec = await userKey("P-256");
    const rsa = await userKey("RSA");
    const jwe = await enc(randomBytes(10), { alg: "RSA-OAEP-256", enc: "A256GCM", kid: ec.key.kid }, rsa.publicKey);
    expect(refusal(() => check(jwe, ec.key)).reason).toBe("bad_jwe_alg");
  });

  it("refuses an epk on another curve", async () => {
    const p256 = await userKey("P-256");
    const x = await userKey("X25519");
    const jwe = await enc(randomBytes(10), { alg: "ECDH-ES+A256KW", enc: "A256GCM", kid: p256.key.kid }, x.publicKey);
    expect(refusal(() => check(jwe, p256.key)).reason).toBe("bad_jwe_epk");
  });

  it("refuses a compressed JWE", async () => {
    const { key } = await userKey("RSA");
    const h = Buffer.from(JSON.stringify({ alg: "RSA-OAEP-256", enc: "A256GCM", kid: key.kid, zip: "DEF" })).toString("base64url");
    const jwe = [h, Buffer.alloc(256).toString("base64url"), Buffer.alloc(12).toString("base64url"), "AAAA", Buffer.alloc(16).toString("base64url")].join(".");
    expect(refusal(() => check(jwe, key)).reason).toBe("bad_jwe_header");
  });

  it.each([
    ["four parts", "a.b.c.d"],
    ["six parts", "a.b.c.d.e.f"],
    ["padding", "eyJhIjoxfQ==.AAAA.AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA"],
    ["a standard-base64 character", "eyJhIjoxfQ.AA+A.AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA"],
    ["a short iv", "eyJhIjoxfQ.AAAA.AAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA"],
    ["a short tag", "eyJhIjoxfQ.AAAA.AAAAAAAAAAAAAAAA.AAAA.AAAA"],
    ["a header that is not JSON", "bm90IGpzb24.AAAA.AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA"],
  ])("refuses a malformed JWE with %s", async (_n, jwe) => {
    const { key } = await userKey("RSA");
    const r = refusal(() => check(jwe, key));
    expect(r.error.extensions.code).toBe("BAD_USER_INPUT");
    expect(r.reason).toMatch(/^malformed_jwe/);
  });

  it("refuses an empty file", async () => {
    const { key, publicKey } = await userKey("RSA");
    const jwe = await enc(new Uint8Array(0), { alg: "RSA-OAEP-256", enc: "A256GCM", kid: key.kid }, publicKey);
    const r = refusal(() => check(jwe, key));
    expect(r.reason).toBe("empty_file");
  });

  it("refuses an oversized file from its length alone", async () => {
    const { key, publicKey } = await userKey("RSA");
    const jwe = await enc(randomBytes(2049), { alg: "RSA-OAEP-256", enc: "A256GCM", kid: key.kid }, publicKey);
    const r = refusal(() => checkJweStructure(jwe, 2048));
    expect(r.error.extensions.code).toBe("PAYLOAD_TOO_LARGE");
    expect(checkJweStructure(jwe, 2049).contentBytes).toBe(2049);
  });
});

describe("streams (multipart uploads)", () => {
  /** Splits `buf` at random places, as a socket would. */
  function pieces(buf: Buffer, seed: number): Buffer[] {
    const out: Buffer[] = [];
    let i = 0;
    let x = seed;
    while (i < buf.length) {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      const n = 1 + (x % 7000);
      out.push(Buffer.from(buf.subarray(i, i + n)));
      i += n;
    }
    return out;
  }

  it.each([1, 2, 3, 4, 5, 65_537])("encrypts %i bytes arriving in uneven pieces into a JWE jose decrypts", async (n) => {
    const { key, privateKey } = await userKey("RSA");
    const plaintext = randomBytes(n);
    const enc = await openEncryptor(key);
    const jwe = enc.head + pieces(plaintext, n).map((p) => enc.update(p)).join("") + enc.final();
    expect(jwe.split(".")).toHaveLength(5);
    expect(Buffer.from((await compactDecrypt(jwe, privateKey)).plaintext).equals(plaintext)).toBe(true);
  });

  it("checks a JWE fed in pieces like the whole, refusing too long a ciphertext before its end", async () => {
    const { key, publicKey } = await userKey("RSA");
    const jwe = await new CompactEncrypt(randomBytes(70_000)).setProtectedHeader({ alg: "RSA-OAEP-256", enc: "A256GCM", kid: key.kid }).encrypt(publicKey);
    for (const seed of [1, 2, 3]) {
      const c = new JweTextChecker(70_000);
      for (const p of pieces(Buffer.from(jwe), seed)) c.feed(p);
      const parts = c.end();
      expect(parts).toEqual([...jwe.split(".").slice(0, 3), "", jwe.split(".")[4]]);
      expect(() => checkJweHeader(parts, key, "encryptedFile")).not.toThrow();
    }
    const small = new JweTextChecker(60_000);
    const fed = pieces(Buffer.from(jwe), 4);
    let refused: PushRefusal | undefined;
    let i = 0;
    try {
      for (; i < fed.length; i++) small.feed(fed[i]);
    } catch (e) {
      refused = e as PushRefusal;
    }
    expect(refused?.error.extensions.code).toBe("PAYLOAD_TOO_LARGE");
    expect(i).toBeLessThan(fed.length - 1);
  });

  it.each([
    ["four parts", "a.b.c.d"],
    ["six parts", "a.b.c.d.e.f"],
    ["a standard-base64 character", "eyJhIjoxfQ.AA+A.AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA"],
    ["a short tag", "eyJhIjoxfQ.AAAA.AAAAAAAAAAAAAAAA.AAAA.AAAA"],
  ])("refuses a streamed JWE with %s", (_n, jwe) => {
    const r = refusal(() => {
      const c = new JweTextChecker(1000);
      for (const ch of jwe) c.feed(Buffer.from(ch));
      c.end();
    });
    expect(r.reason).toBe("malformed_jwe");
    expect(r.error.extensions.field).toBe("encryptedFile");
  });
});

describe("idempotency fingerprint", () => {
  const base: FingerprintInput = {
    postboxId: "pbx_1",
    fileName: "a.txt",
    mimeType: "text/plain",
    accounts: ["acc"],
    reference: ["r"],
    tags: ["t"],
    kind: "data",
    content: "QUJD",
  };
  const secret = "s".repeat(32);

  it("is stable for the same request and keyed by the server secret", () => {
    expect(requestFingerprint(secret, base)).toBe(requestFingerprint(secret, { ...base }));
    expect(requestFingerprint("t".repeat(32), base)).not.toBe(requestFingerprint(secret, base));
    expect(requestFingerprint(secret, base)).not.toBe(createHash("sha256").update(base.content).digest("hex"));
  });

  it.each<[string, Partial<FingerprintInput>]>([
    ["postboxId", { postboxId: "pbx_2" }],
    ["fileName", { fileName: "b.txt" }],
    ["mimeType", { mimeType: "text/csv" }],
    ["accounts", { accounts: ["acc", "x"] }],
    ["reference", { reference: [] }],
    ["tags", { tags: ["u"] }],
    ["kind", { kind: "encryptedData" }],
    ["content", { content: "QUJE" }],
    ["field boundaries", { fileName: "a.txt\",\"text/plain", mimeType: "" }],
  ])("changes with %s", (_n, change) => {
    expect(requestFingerprint(secret, { ...base, ...change })).not.toBe(requestFingerprint(secret, base));
  });
});

describe("randomBytesPooled", () => {
  it("hands out fresh bytes of the asked length, never the same twice, across pool refills", () => {
    const seen = new Set<string>();
    // 8 KiB pool: 1,000 draws of 32 bytes cross several refills.
    for (let i = 0; i < 1000; i++) {
      const b = randomBytesPooled(32);
      expect(b.length).toBe(32);
      seen.add(b.toString("hex"));
    }
    expect(seen.size).toBe(1000);
    expect(randomBytesPooled(1000).length).toBe(1000); // large draws go straight to the CSPRNG
  });

  it("gives the caller its own copy: wiping it does not touch the next draw", () => {
    const a = randomBytesPooled(16);
    a.fill(0);
    expect(randomBytesPooled(16).equals(Buffer.alloc(16))).toBe(false);
  });
});

describe("newContentKey", () => {
  it("gives a fresh 256-bit key and 96-bit IV every time, across refills of its pool", () => {
    const seen = new Set<string>();
    // 8 KiB pool, 44 bytes a draw: 1,000 draws cross five refills.
    for (let i = 0; i < 1000; i++) {
      const { cek, iv } = newContentKey();
      expect([cek.length, iv.length]).toEqual([32, 12]);
      seen.add(cek.toString("hex")).add(iv.toString("hex"));
    }
    expect(seen.size).toBe(2000);
  });

  it("gives the caller its own bytes: wiping a key (as the encryptor does) leaves the next one alone", () => {
    const first = newContentKey();
    first.cek.fill(0);
    first.iv.fill(0);
    const next = newContentKey();
    expect(next.cek.equals(Buffer.alloc(32))).toBe(false);
    expect(next.iv.equals(Buffer.alloc(12))).toBe(false);
  });
});
