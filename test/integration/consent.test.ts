// Every refusal of the postbox issue's "Bad input" list, over HTTP/WebSocket:
// each gets a clear error code and message and writes nothing but (when the
// caller is identified or the request reaches a mutation) one refusal audit event.
import { generateKeyPairSync } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { addContract, createSession, makeUserKeyPair, registerApp, type TestApp } from "../helpers/factories.js";
import { errorCode, startTestServer, type TestServer } from "../helpers/server.js";
import { collect, wsClient } from "../helpers/ws.js";
import {
  ACCEPT,
  CONSENT,
  CREATE,
  DECLINE,
  MY_POSTBOX,
  REFRESH,
  STATUS_CHANGED,
  accept,
  codeOf,
  createPostbox,
  refusedAuditCount,
  stateCounts,
} from "./postbox.helpers.js";

let t: TestServer;
let app: TestApp;
let session: string;
const clients: { dispose(): Promise<void> | void }[] = [];

beforeAll(async () => {
  t = await startTestServer();
  app = await registerApp(t, { callbackUrls: ["https://app.example.com/done", "https://app.example.com/cb/"] });
  session = await createSession(t, app);
});
afterAll(async () => {
  for (const c of clients) await c.dispose();
  await t?.stop();
});

/** Runs `fn`, expects the error, and checks that only refusal audit events were written. */
async function refused(fn: () => Promise<{ errors?: { message: string; extensions?: Record<string, unknown> }[]; data?: unknown }>, code: string, message: RegExp, audited: number | null) {
  const before = await stateCounts(t);
  const auditBefore = await refusedAuditCount(t);
  const r = await fn();
  expect(r.errors?.[0]?.extensions?.code).toBe(code);
  expect(r.errors![0].message).toMatch(message);
  expect(await stateCounts(t)).toEqual(before);
  if (audited !== null) expect(await refusedAuditCount(t)).toBe(auditBefore + audited);
  return r;
}

describe("createPostbox refuses", () => {
  it("a request without a session (nothing written at all)", async () => {
    await refused(() => t.gql(CREATE, { input: {} }), "UNAUTHENTICATED", /needs a session/, 0);
  });

  it("an expired session", async () => {
    const key = await createSession(t, app);
    await t.app.db.prisma.session.updateMany({ where: { revokedAt: null, contractId: app.contractId, expiresAt: { gt: new Date(Date.now() + 60_000) } }, data: { expiresAt: new Date(Date.now() - 1000) } });
    await refused(() => t.gql(CREATE, { input: {} }, { token: key }), "UNAUTHENTICATED", /expired/, 0);
    session = await createSession(t, app);
  });

  it("a READ contract's session", async () => {
    const read = await addContract(t, app.appId, { kind: "READ" });
    const key = await createSession(t, read);
    await refused(() => t.gql(CREATE, { input: {} }, { token: key }), "FORBIDDEN", /WRITE contract/, 1);
  });

  const bad: [string, Record<string, unknown>, RegExp][] = [
    ["a callback URL not on the allow-list", { callbackUrl: "https://evil.example.com/done" }, /not on this contract's allow-list/],
    ["a callback URL only sharing a prefix without /", { callbackUrl: "https://app.example.com/done-and-more" }, /allow-list/],
    ["a callback URL escaping a prefix entry", { callbackUrl: "https://app.example.com/cb/../admin" }, /allow-list/],
    ["a non-http callback URL", { callbackUrl: "javascript:alert(1)" }, /http or https/],
    ["a callback URL with credentials", { callbackUrl: "https://user:pw@app.example.com/done" }, /credentials/],
    ["a TTL of zero", { expiresInSeconds: 0 }, /expiresInSeconds must be a whole number from 60/],
    ["a negative TTL", { expiresInSeconds: -3600 }, /expiresInSeconds/],
    ["a TTL under a minute", { expiresInSeconds: 59 }, /expiresInSeconds/],
    ["a TTL beyond POSTBOX_MAX_TTL", { expiresInSeconds: 730 * 86_400 + 1 }, /POSTBOX_MAX_TTL/],
    ["an absurd TTL (30 years)", { expiresInSeconds: 30 * 365 * 86_400 }, /POSTBOX_MAX_TTL/],
    ["an empty reference", { reference: "" }, /reference must be/],
    ["an over-long reference", { reference: "x".repeat(201) }, /reference must be/],
    ["a reference with control characters", { reference: "a\nb" }, /reference must be/],
    ["a reference with a C1 control character", { reference: "a\u0085b" }, /reference must be/],
    ["a reference with a bidirectional override", { reference: "acct-\u202E4321" }, /bidirectional overrides/],
  ];
  it.each(bad)("%s", async (_name, input, message) => {
    const r = await refused(() => t.gql(CREATE, { input }, { token: session }), "BAD_USER_INPUT", message, 1);
    expect(r.errors![0].extensions?.field).toBeDefined();
    const ev = await t.app.db.prisma.auditEvent.findFirstOrThrow({ where: { action: "postbox.create", outcome: "REFUSED" }, orderBy: { seq: "desc" } });
    expect(ev.contractId).toBe(app.contractId);
    expect(ev.reason).toMatch(/^BAD_USER_INPUT:/);
  });

  it("a TTL that is not a 32-bit integer (refused by GraphQL before anything runs)", async () => {
    await refused(() => t.gql(CREATE, { input: { expiresInSeconds: 1e12 } }, { token: session }), "BAD_USER_INPUT", /Int/, 0);
  });

  it("any callbackUrl when the contract registered none", async () => {
    const bare = await registerApp(t);
    const key = await createSession(t, bare);
    await refused(() => t.gql(CREATE, { input: { callbackUrl: "https://app.example.com/done" } }, { token: key }), "BAD_USER_INPUT", /no callback URLs registered/, 1);
  });

  it("accepts the boundary values the refusals surround", async () => {
    const pb = await createPostbox(t, session, { expiresInSeconds: 60, callbackUrl: "https://app.example.com/done", reference: "x".repeat(200) });
    // The consent link never outlives the postbox.
    expect(pb.consentExpiresAt).toBe(pb.expiresAt);
    const long = await createPostbox(t, session, { expiresInSeconds: 730 * 86_400, callbackUrl: "https://app.example.com/cb/deep/path?x=1" });
    expect(new Date(long.expiresAt).getTime() - new Date(long.consentExpiresAt).getTime()).toBeGreaterThan(729 * 86_400_000);
  });
});

describe("consent refuses", () => {
  async function pending(input: Record<string, unknown> = {}) {
    return createPostbox(t, session, input);
  }

  it("an unknown code (well-formed), on view, accept and decline", async () => {
    const code = "A".repeat(43);
    await refused(() => t.gql(CONSENT, { code }), "NOT_FOUND", /consent link is not valid/, 0);
    await refused(async () => t.gql(ACCEPT, { input: { code, publicKey: (await makeUserKeyPair("RSA")).publicJwk } }), "NOT_FOUND", /code is unknown/, 1);
    await refused(() => t.gql(DECLINE, { input: { code } }), "NOT_FOUND", /code is unknown/, 1);
  });

  it("a malformed code", async () => {
    await refused(() => t.gql(DECLINE, { input: { code: "../../etc/passwd" } }), "NOT_FOUND", /code is unknown/, 1);
    await refused(() => t.gql(DECLINE, { input: { code: "x".repeat(5000) } }), "NOT_FOUND", /code is unknown/, 1);
  });

  it("a used code: accepting or declining twice", async () => {
    const pb = await pending();
    const first = await accept(t, pb.consentUrl, (await makeUserKeyPair("RSA")).publicJwk);
    expect(first.status).toBe("READY");
    await refused(async () => t.gql(ACCEPT, { input: { code: codeOf(pb.consentUrl), publicKey: (await makeUserKeyPair("RSA")).publicJwk } }), "CONFLICT", /already used: the postbox is READY/, 1);
    await refused(() => t.gql(DECLINE, { input: { code: codeOf(pb.consentUrl) } }), "CONFLICT", /already used: the postbox is READY/, 1);
    // The first key stays.
    const row = await t.app.db.prisma.postbox.findUniqueOrThrow({ where: { id: pb.id } });
    expect(row.publicKeyThumbprint).toBe(first.publicKeyThumbprint);
    const ev = await t.app.db.prisma.auditEvent.findFirstOrThrow({ where: { postboxId: pb.id, action: "postbox.accept", outcome: "REFUSED" } });
    expect(ev.reason).toBe("CONFLICT:code_used");
    expect(ev.contractId).toBe(app.contractId);
  });

  it("an expired code (before and after the sweeper ran)", async () => {
    const pb = await pending();
    await t.app.db.prisma.postbox.update({ where: { id: pb.id }, data: { consentExpiresAt: new Date(Date.now() - 1000) } });
    const key = (await makeUserKeyPair("RSA")).publicJwk;
    await refused(() => t.gql(ACCEPT, { input: { code: codeOf(pb.consentUrl), publicKey: key } }), "POSTBOX_EXPIRED", /expired at .* Ask Test app for a new one/, 1);
    expect((await t.gql(CONSENT, { code: codeOf(pb.consentUrl) })).data!.consentRequest).toMatchObject({ status: "PENDING", canRespond: false });
    await t.app.scheduler.tick();
    await refused(() => t.gql(ACCEPT, { input: { code: codeOf(pb.consentUrl), publicKey: key } }), "POSTBOX_EXPIRED", /has expired/, 1);
  });

  it("a postbox whose lifetime ended before consent", async () => {
    const pb = await pending();
    await t.app.db.prisma.postbox.update({ where: { id: pb.id }, data: { expiresAt: new Date(Date.now() - 1000) } });
    await refused(() => t.gql(DECLINE, { input: { code: codeOf(pb.consentUrl) } }), "POSTBOX_EXPIRED", /expired/, 1);
  });

  const rsa = () => generateKeyPairSync("rsa", { modulusLength: 2048 });
  const jwk = (k: { export(o: { format: "jwk" }): unknown }) => k.export({ format: "jwk" }) as Record<string, unknown>;
  const keys: [string, () => Record<string, unknown>, RegExp][] = [
    ["a private RSA key", () => jwk(rsa().privateKey), /private or secret key material/],
    ["a private X25519 key", () => jwk(generateKeyPairSync("x25519").privateKey), /private or secret key material/],
    ["a public key carrying d", () => ({ ...jwk(rsa().publicKey), d: "AQAB" }), /private/],
    ["a symmetric key", () => ({ kty: "oct", k: "c2VjcmV0c2VjcmV0c2VjcmV0" }), /private or secret/],
    ["a weak RSA key (1024 bits)", () => jwk(generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey), /at least 2048 bits/],
    ["an RSA key with e = 3", () => jwk(generateKeyPairSync("rsa", { modulusLength: 2048, publicExponent: 3 }).publicKey), /exponent/],
    ["an EC P-384 key", () => jwk(generateKeyPairSync("ec", { namedCurve: "secp384r1" }).publicKey), /P-256/],
    ["an Ed25519 (signing) key", () => jwk(generateKeyPairSync("ed25519").publicKey), /signing key/],
    ["the all-zero X25519 point", () => ({ kty: "OKP", crv: "X25519", x: Buffer.alloc(32).toString("base64url") }), /weak key/],
    ["an EC point not on the curve", () => {
      const k = jwk(generateKeyPairSync("ec", { namedCurve: "prime256v1" }).publicKey);
      return { ...k, y: k.x };
    }, /not a valid EC public key/],
    ["an unknown key type", () => ({ kty: "PQC", x: "AAAA" }), /Unsupported key type/],
    ["a key for another algorithm", () => ({ ...jwk(rsa().publicKey), alg: "RSA1_5" }), /RSA-OAEP-256/],
    ["a signing-use key", () => ({ ...jwk(rsa().publicKey), use: "sig" }), /encryption key/],
  ];
  it.each(keys)("%s", async (_name, make, message) => {
    const pb = await pending();
    const r = await refused(() => t.gql(ACCEPT, { input: { code: codeOf(pb.consentUrl), publicKey: make() } }), "BAD_USER_INPUT", message, 1);
    expect(r.errors![0].extensions?.field).toBe("publicKey");
    const row = await t.app.db.prisma.postbox.findUniqueOrThrow({ where: { id: pb.id } });
    expect([row.status, row.publicJwk, row.keyAlg]).toEqual(["PENDING", null, null]);
    const ev = await t.app.db.prisma.auditEvent.findFirstOrThrow({ where: { postboxId: pb.id, action: "postbox.accept", outcome: "REFUSED" } });
    expect(ev.reason).toMatch(/^BAD_USER_INPUT:/);
    // A refused private key is not kept anywhere, not even in the audit detail or logs.
    expect(JSON.stringify(ev.detail ?? null)).not.toMatch(/"d"/);
    // The link still works afterwards with a proper key.
    expect((await accept(t, pb.consentUrl, (await makeUserKeyPair("P-256")).publicJwk)).status).toBe("READY");
  });

  it("a publicKey that is not a JSON object (refused by GraphQL)", async () => {
    const pb = await pending();
    await refused(() => t.gql(ACCEPT, { input: { code: codeOf(pb.consentUrl), publicKey: "-----BEGIN PUBLIC KEY-----" } }), "BAD_USER_INPUT", /JSONObject|object/i, 0);
  });

  it("a consent for a disabled application", async () => {
    const a = await registerApp(t);
    const s = await createSession(t, a);
    const pb = await createPostbox(t, s);
    expect((await t.admin("POST", `/applications/${a.appId}/disable`)).status).toBe(200);
    await refused(() => t.gql(DECLINE, { input: { code: codeOf(pb.consentUrl) } }), "FORBIDDEN", /disabled/, 1);
  });
});

describe("user credentials refuse", () => {
  it.each([
    ["an unknown refresh token", "pbr_" + "A".repeat(43), /Unknown refresh token/],
    ["a non-refresh token", "pbu_" + "A".repeat(43), /not a refresh token/],
  ])("%s", async (_n, token, message) => {
    await refused(() => t.gql(REFRESH, { refreshToken: token }), "UNAUTHENTICATED", message, 1);
  });

  it.each([
    ["no token", undefined, /needs the user's access token/],
    ["a session key", "session", /not a user access token/],
    ["an unknown access token", "pbu_" + "B".repeat(43), /Unknown access token/],
  ])("myPostbox with %s", async (_n, token, message) => {
    const r = await t.gql(MY_POSTBOX, {}, token ? { token: token === "session" ? session : token } : {});
    expect(errorCode(r)).toBe("UNAUTHENTICATED");
    expect(r.errors![0].message).toMatch(message);
  });
});

describe("subscribing refuses", () => {
  function client(authorization?: string) {
    const c = wsClient(t.wsUrl, authorization);
    clients.push(c);
    return c;
  }

  it("without a session", async () => {
    const pb = await createPostbox(t, session);
    const s = collect(client(), STATUS_CHANGED, { postboxId: pb.id });
    await expect(s.next(1)).rejects.toEqual([expect.objectContaining({ extensions: expect.objectContaining({ code: "UNAUTHENTICATED" }) })]);
    const all = collect(client(), STATUS_CHANGED, {});
    await expect(all.next(1)).rejects.toEqual([expect.objectContaining({ message: expect.stringMatching(/needs a session/) })]);
  });

  it("with a user access token instead of a session", async () => {
    const pb = await createPostbox(t, session);
    const a = await accept(t, pb.consentUrl, (await makeUserKeyPair("RSA")).publicJwk);
    const s = collect(client(`Bearer ${a.credential.accessToken}`), STATUS_CHANGED, { postboxId: pb.id });
    await expect(s.next(1)).rejects.toEqual([expect.objectContaining({ extensions: expect.objectContaining({ code: "UNAUTHENTICATED" }) })]);
  });

  it("with an unknown or expired session key: the connection is refused", async () => {
    const s = collect(client(`Bearer pbs_${"C".repeat(43)}`), STATUS_CHANGED, {});
    await expect(s.next(1)).rejects.toMatchObject({ code: 4403 });
  });

  it("another contract's postbox, or an unknown id", async () => {
    const other = await registerApp(t);
    const otherKey = await createSession(t, other);
    const pb = await createPostbox(t, session);
    for (const id of [pb.id, "pbx_unknown"]) {
      const before = await stateCounts(t);
      const s = collect(client(`Bearer ${otherKey}`), STATUS_CHANGED, { postboxId: id });
      await expect(s.next(1)).rejects.toEqual([expect.objectContaining({ message: `Postbox ${id} was not found.`, extensions: expect.objectContaining({ code: "NOT_FOUND" }) })]);
      expect(await stateCounts(t)).toEqual(before);
    }
  });
});
