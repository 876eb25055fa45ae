// The user key rules of acceptPostbox, the callbackUrl allow-list and redirect,
// and the shared cursor helper, without a server.
import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "@jest/globals";
import { CompactEncrypt, calculateJwkThumbprint, compactDecrypt, exportJWK, generateKeyPair, importJWK } from "jose";
import { KeyRefusal, parseUserPublicKey } from "../../src/modules/postbox/postbox.keys.js";
import { callbackAllowed, redirectUrl } from "../../src/modules/postbox/postbox.service.js";
import { decodeCursor, encodeCursor, pageRequest, toConnection } from "../../src/infra/graphql/pagination.js";

const jwkOf = (k: { export(o: { format: "jwk" }): unknown }) => k.export({ format: "jwk" }) as Record<string, unknown>;

async function refusal(input: unknown): Promise<KeyRefusal> {
  try {
    await parseUserPublicKey(input);
  } catch (e) {
    if (e instanceof KeyRefusal) return e;
    throw e;
  }
  throw new Error("the key was accepted");
}

describe("parseUserPublicKey accepts", () => {
  it.each([
    ["RSA 2048", () => jwkOf(generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey), "RSA-OAEP-256"],
    ["EC P-256", () => jwkOf(generateKeyPairSync("ec", { namedCurve: "prime256v1" }).publicKey), "ECDH-ES+A256KW"],
    ["X25519", () => jwkOf(generateKeyPairSync("x25519").publicKey), "ECDH-ES+A256KW"],
  ])("%s, pinning its algorithm and kid", async (_name, make, alg) => {
    const jwk = make();
    const key = await parseUserPublicKey({ ...jwk, ext: true, key_ops: [] });
    expect(key.alg).toBe(alg);
    expect(key.kid).toBe(await calculateJwkThumbprint(jwk as never, "sha256"));
    expect(key.publicJwk).toMatchObject({ ...jwk, alg, use: "enc", kid: key.kid });
    // Only the public members survive.
    expect(Object.keys(key.publicJwk).sort()).toEqual([...Object.keys(jwk), "alg", "use", "kid"].sort());
  });

  it("produces a JWK that jose can encrypt to and the private key decrypts", async () => {
    const { publicKey, privateKey } = await generateKeyPair("ECDH-ES+A256KW", { extractable: true });
    const key = await parseUserPublicKey(await exportJWK(publicKey));
    const jwe = await new CompactEncrypt(new TextEncoder().encode("hello")).setProtectedHeader({ alg: key.alg, enc: "A256GCM", kid: key.kid }).encrypt(await importJWK(key.publicJwk, key.alg));
    expect(new TextDecoder().decode((await compactDecrypt(jwe, privateKey)).plaintext)).toBe("hello");
  });

  it("accepts an explicit matching alg and use enc", async () => {
    const jwk = jwkOf(generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey);
    await expect(parseUserPublicKey({ ...jwk, alg: "RSA-OAEP-256", use: "enc" })).resolves.toMatchObject({ alg: "RSA-OAEP-256" });
  });
});

describe("parseUserPublicKey refuses", () => {
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const ec = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const cases: [string, () => unknown, string][] = [
    ["a string", () => "not a key", "not_a_jwk"],
    ["an array", () => [], "not_a_jwk"],
    ["a private RSA key", () => rsa.privateKey.export({ format: "jwk" }), "private_key"],
    ["a private EC key", () => ec.privateKey.export({ format: "jwk" }), "private_key"],
    ["a public key with a d member added", () => ({ ...jwkOf(ec.publicKey), d: "AAAA" }), "private_key"],
    ["a symmetric key", () => ({ kty: "oct", k: "c2VjcmV0" }), "private_key"],
    ["RSA 1024", () => jwkOf(generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey), "weak_rsa"],
    ["RSA with e = 3", () => jwkOf(generateKeyPairSync("rsa", { modulusLength: 2048, publicExponent: 3 }).publicKey), "weak_rsa_exponent"],
    ["EC P-384", () => jwkOf(generateKeyPairSync("ec", { namedCurve: "secp384r1" }).publicKey), "unsupported_curve"],
    ["Ed25519", () => jwkOf(generateKeyPairSync("ed25519").publicKey), "unsupported_curve"],
    ["an EC point off the curve", () => ({ ...jwkOf(ec.publicKey), y: jwkOf(ec.publicKey).x }), "invalid_key"],
    ["the all-zero X25519 point", () => ({ kty: "OKP", crv: "X25519", x: Buffer.alloc(32).toString("base64url") }), "weak_point"],
    ["an X25519 key of the wrong length", () => ({ kty: "OKP", crv: "X25519", x: "AAAA" }), "invalid_key"],
    ["a key without kty", () => ({ n: "x", e: "AQAB" }), "unsupported_kty"],
    ["RSA with the wrong alg", () => ({ ...jwkOf(rsa.publicKey), alg: "RSA-OAEP" }), "wrong_alg"],
    ["EC with alg ECDH-ES (direct)", () => ({ ...jwkOf(ec.publicKey), alg: "ECDH-ES" }), "wrong_alg"],
    ["a signing key (use sig)", () => ({ ...jwkOf(ec.publicKey), use: "sig" }), "wrong_use"],
    ["an oversized object", () => ({ ...jwkOf(ec.publicKey), x5c: ["A".repeat(9000)] }), "too_large"],
  ];
  it.each(cases)("%s", async (_name, make, reason) => {
    const e = await refusal(make());
    expect(e.reason).toBe(reason);
    expect(e.message.length).toBeGreaterThan(20);
  });
});

describe("callbackUrl allow-list", () => {
  const list = ["https://app.example.com/done", "https://app.example.com/cb/"];
  it.each([
    ["https://app.example.com/done", true],
    ["https://app.example.com/done?x=1", false],
    ["https://app.example.com/done/more", false],
    ["https://app.example.com/cb/", true],
    ["https://app.example.com/cb/anything?x=1", true],
    ["https://app.example.com/cb", false],
    ["https://app.example.com/cb/../admin", false],
    ["https://app.example.com/cb/%2e%2e/admin", false],
    ["https://app.example.com.evil.test/cb/x", false],
    ["http://app.example.com/cb/x", false],
    ["https://APP.example.com/cb/x", true],
    ["not a url", false],
  ])("%s → %s", (url, ok) => {
    expect(callbackAllowed(url, list)).toBe(ok);
  });
  it("allows nothing with an empty list", () => {
    expect(callbackAllowed("https://app.example.com/done", [])).toBe(false);
  });
});

describe("redirectUrl", () => {
  it("adds postboxId and result, replacing any given by the app", () => {
    const u = new URL(redirectUrl("https://app.example.com/cb/x?state=abc&result=FAKE", "pbx_1", "ACCEPTED")!);
    expect(u.searchParams.get("state")).toBe("abc");
    expect(u.searchParams.get("postboxId")).toBe("pbx_1");
    expect(u.searchParams.getAll("result")).toEqual(["ACCEPTED"]);
  });
  it("is null without a callbackUrl", () => {
    expect(redirectUrl(null, "pbx_1", "DECLINED")).toBeNull();
  });
});

describe("pagination", () => {
  it("round-trips a cursor", () => {
    const k = { createdAt: new Date("2026-11-28T10:00:00.123Z"), id: "pbx_abc" };
    expect(decodeCursor(encodeCursor(k))).toEqual(k);
  });
  it.each(["", "!!!", Buffer.from("[1,2]").toString("base64url"), Buffer.from('["nodate","x"]').toString("base64url"), "A".repeat(300)])("refuses cursor %p", (c) => {
    expect(() => decodeCursor(c)).toThrow(/not a valid cursor/);
  });
  it.each([0, -1, 101, 1.5])("refuses first = %p", (n) => {
    expect(() => pageRequest(n, null)).toThrow(/first must be/);
  });
  it("fetches one extra row to know whether a next page exists", () => {
    const page = pageRequest(2, null);
    expect(page.take).toBe(3);
    const rows = [3, 2, 1].map((i) => ({ createdAt: new Date(i * 1000), id: `r${i}` }));
    const c = toConnection(rows, page, (r) => r.id);
    expect(c.edges.map((e) => e.node)).toEqual(["r3", "r2"]);
    expect(c.pageInfo).toEqual({ hasNextPage: true, endCursor: encodeCursor(rows[1]) });
    const last = toConnection(rows.slice(2), page, (r) => r.id);
    expect(last.pageInfo.hasNextPage).toBe(false);
    expect(toConnection([], page, (r) => r).pageInfo).toEqual({ hasNextPage: false, endCursor: null });
  });
});
