// Public keys applications register: PEM or JWK, public only, strong enough, and
// pinned to exactly one algorithm.
import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "@jest/globals";
import { calculateJwkThumbprint, type JWK } from "jose";
import { AppError } from "../../src/infra/errors.js";
import { parsePublicKey } from "../../src/modules/application/application.keys.js";

const rsa2048 = generateKeyPairSync("rsa", { modulusLength: 2048 });
const rsa1024 = generateKeyPairSync("rsa", { modulusLength: 1024 });
const p256 = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
const p384 = generateKeyPairSync("ec", { namedCurve: "secp384r1" });
const ed25519 = generateKeyPairSync("ed25519");
const x25519 = generateKeyPairSync("x25519");

const spki = (k: { publicKey: import("node:crypto").KeyObject }) => k.publicKey.export({ type: "spki", format: "pem" }).toString();
const jwkOf = (k: { publicKey: import("node:crypto").KeyObject }) => k.publicKey.export({ format: "jwk" }) as JWK;

async function refusal(input: unknown, alg?: string): Promise<AppError> {
  try {
    await parsePublicKey(input, alg);
  } catch (e) {
    if (e instanceof AppError) return e;
    throw e;
  }
  throw new Error("expected the key to be refused");
}

describe("accepted keys", () => {
  it("reads an RSA SPKI PEM, defaulting to PS512", async () => {
    const k = await parsePublicKey(spki(rsa2048));
    expect(k.alg).toBe("PS512");
    expect(k.publicJwk).toMatchObject({ kty: "RSA", alg: "PS512", use: "sig", kid: k.kid });
    expect(k.publicJwk).not.toHaveProperty("d");
  });

  it("reads a PKCS#1 RSA public key PEM", async () => {
    const pem = rsa2048.publicKey.export({ type: "pkcs1", format: "pem" }).toString();
    expect(pem).toContain("BEGIN RSA PUBLIC KEY");
    expect((await parsePublicKey(pem)).alg).toBe("PS512");
  });

  it("reads a JWK given as an object or as a JSON string, with the same key id", async () => {
    const fromObject = await parsePublicKey(jwkOf(rsa2048));
    const fromString = await parsePublicKey(JSON.stringify(jwkOf(rsa2048)));
    const fromPem = await parsePublicKey(spki(rsa2048));
    expect(fromObject.kid).toBe(fromPem.kid);
    expect(fromString.kid).toBe(fromPem.kid);
  });

  it("uses the RFC 7638 thumbprint as the key id", async () => {
    const k = await parsePublicKey(jwkOf(p256));
    expect(k.kid).toBe(await calculateJwkThumbprint(jwkOf(p256), "sha256"));
  });

  it("pins P-256 to ES256 and Ed25519 to EdDSA", async () => {
    expect((await parsePublicKey(spki(p256))).alg).toBe("ES256");
    expect((await parsePublicKey(jwkOf(ed25519))).alg).toBe("EdDSA");
    expect((await parsePublicKey(spki(ed25519), "EdDSA")).alg).toBe("EdDSA");
  });

  it("lets an RSA key be registered for PS256 instead", async () => {
    expect((await parsePublicKey(spki(rsa2048), "PS256")).alg).toBe("PS256");
  });
});

describe("refused keys", () => {
  it.each([
    ["a PKCS#8 private key PEM", () => rsa2048.privateKey.export({ type: "pkcs8", format: "pem" }).toString(), /private key/],
    ["a PKCS#1 private key PEM", () => rsa2048.privateKey.export({ type: "pkcs1", format: "pem" }).toString(), /private key/],
    ["an EC private key PEM", () => p256.privateKey.export({ type: "sec1", format: "pem" }).toString(), /private key/],
    ["a private JWK", () => rsa2048.privateKey.export({ format: "jwk" }), /private or secret/],
    ["a private OKP JWK", () => ed25519.privateKey.export({ format: "jwk" }), /private or secret/],
    ["a symmetric (oct) JWK", () => ({ kty: "oct", k: "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0" }), /private or secret/],
  ])("refuses %s", async (_name, make, message) => {
    const e = await refusal(make());
    expect(e.code).toBe("BAD_USER_INPUT");
    expect(e.extensions.field).toBe("publicKey");
    expect(e.message).toMatch(message);
  });

  it("refuses RSA keys shorter than 2048 bits", async () => {
    expect((await refusal(spki(rsa1024))).message).toMatch(/at least 2048 bits/);
    expect((await refusal(jwkOf(rsa1024))).message).toMatch(/at least 2048 bits/);
  });

  it("refuses EC curves other than P-256", async () => {
    expect((await refusal(spki(p384))).message).toMatch(/P-256/);
  });

  it("refuses key types that cannot sign (X25519)", async () => {
    expect((await refusal(spki(x25519))).message).toMatch(/Unsupported key type x25519/);
  });

  it.each([
    ["an RSA key", () => spki(rsa2048), "RS256", /PS512 or PS256, not RS256/],
    ["an RSA key", () => spki(rsa2048), "ES256", /PS512 or PS256, not ES256/],
    ["an RSA key", () => spki(rsa2048), "none", /not none/],
    ["an RSA key", () => spki(rsa2048), "HS256", /not HS256/],
    ["a P-256 key", () => spki(p256), "PS512", /ES256, not PS512/],
    ["a P-256 key", () => spki(p256), "ES384", /ES256, not ES384/],
    ["an Ed25519 key", () => spki(ed25519), "ES256", /EdDSA, not ES256/],
  ])("refuses %s registered for %s", async (_name, make, alg, message) => {
    const e = await refusal(make(), alg);
    expect(e.extensions.field).toBe("alg");
    expect(e.message).toMatch(message);
  });

  it.each([
    ["garbage text", "hello"],
    ["a broken PEM", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"],
    ["a JWK without key material", { kty: "RSA" }],
    ["a number", 42],
    ["null", null],
    ["an array", []],
  ])("refuses %s", async (_name, input) => {
    const e = await refusal(input);
    expect(e.code).toBe("BAD_USER_INPUT");
    expect(e.message).toMatch(/PEM public key or a public JWK/);
  });
});
