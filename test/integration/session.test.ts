// createSession and session-key authentication, end to end over HTTP, including
// every refusal the foundation issue lists. Each refusal must write nothing but
// its audit event.
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { SignJWT, base64url } from "jose";
import { CREATE_SESSION, createSession, makeKeyPair, newNonce, registerApp, signAssertion, type TestApp } from "../helpers/factories.js";
import { errorCode, startTestServer, type TestServer } from "../helpers/server.js";

let t: TestServer;
let app: TestApp;

beforeAll(async () => {
  t = await startTestServer();
  app = await registerApp(t);
});
afterAll(async () => t?.stop());

const CURRENT = `query { currentSession { appId contractId contractKind expiresAt } }`;

async function attempt(assertion: string, ids: { appId?: string; contractId?: string } = {}) {
  return t.gql(CREATE_SESSION, { input: { appId: ids.appId ?? app.appId, contractId: ids.contractId ?? app.contractId, assertion } });
}

async function counts() {
  const p = t.app.db.prisma;
  return { sessions: await p.session.count(), nonces: await p.usedNonce.count() };
}

describe("createSession", () => {
  it.each(["PS512", "PS256", "ES256", "EdDSA"] as const)("issues a session for a %s-signed assertion", async (alg) => {
    const a = alg === "PS512" ? app : await registerApp(t, { alg });
    const before = Date.now();
    const r = await attempt(await signAssertion(a), a);
    expect(r.errors).toBeUndefined();
    const s = r.data!.createSession;
    expect(s.key).toMatch(/^pbs_[A-Za-z0-9_-]{40,}$/);
    expect(s.appId).toBe(a.appId);
    expect(s.contractId).toBe(a.contractId);
    const ttl = new Date(s.expiresAt).getTime() - before;
    expect(ttl).toBeGreaterThan(29 * 60_000);
    expect(ttl).toBeLessThan(31 * 60_000);
    const me = await t.gql(CURRENT, {}, { token: s.key });
    expect(me.data?.currentSession).toMatchObject({ appId: a.appId, contractId: a.contractId, contractKind: "WRITE" });
  });

  it("stores only the hash of the session key", async () => {
    const key = await createSession(t, app);
    const rows = await t.app.db.prisma.session.findMany();
    expect(rows.length).toBeGreaterThan(0);
    expect(JSON.stringify(rows)).not.toContain(key);
    expect(t.logs.join("\n")).not.toContain(key);
  });

  it("records the success in the audit log", async () => {
    await createSession(t, app);
    const ev = await t.app.db.prisma.auditEvent.findFirst({ where: { action: "session.create", outcome: "SUCCESS", contractId: app.contractId }, orderBy: { seq: "desc" } });
    expect(ev).toBeTruthy();
  });
});

describe("createSession refusals write nothing but an audit event", () => {
  const cases: [string, () => Promise<{ assertion: string; appId?: string; contractId?: string }>, string, RegExp][] = [
    ["an unknown application", async () => ({ assertion: await signAssertion(app), appId: "app_unknown" }), "UNAUTHENTICATED", /No contract/],
    ["an unknown contract", async () => ({ assertion: await signAssertion(app), contractId: "ctr_unknown" }), "UNAUTHENTICATED", /No contract/],
    ["a key that is not the contract's", async () => {
      const other = await makeKeyPair("PS512");
      return { assertion: await signAssertion({ ...app, privateKey: other.privateKey }) };
    }, "UNAUTHENTICATED", /signature does not verify/],
    ["alg none", async () => {
      const h = base64url.encode(JSON.stringify({ alg: "none", typ: "JWT" }));
      const p = base64url.encode(JSON.stringify({ client_id: `${app.appId}_${app.contractId}`, nonce: newNonce(), timestamp: Date.now() }));
      return { assertion: `${h}.${p}.` };
    }, "UNAUTHENTICATED", /Algorithm none is not accepted/],
    ["HS256 signed with the public key as the secret", async () => {
      const secret = new TextEncoder().encode(JSON.stringify(app.publicJwk));
      const assertion = await new SignJWT({ client_id: `${app.appId}_${app.contractId}`, nonce: newNonce(), timestamp: Date.now() })
        .setProtectedHeader({ alg: "HS256", typ: "JWT" })
        .sign(secret);
      return { assertion };
    }, "UNAUTHENTICATED", /Algorithm HS256 is not accepted/],
    ["another registered algorithm (PS256 for a PS512 key)", async () => {
      const { privateKey } = await makeKeyPair("PS256");
      return { assertion: await signAssertion({ ...app, alg: "PS256", privateKey }) };
    }, "UNAUTHENTICATED", /Algorithm PS256 is not accepted/],
    ["a missing typ", async () => ({ assertion: await signAssertion(app, { header: { typ: undefined } }) }), "UNAUTHENTICATED", /typ/],
    ["a wrong client_id", async () => ({ assertion: await signAssertion(app, { claims: { client_id: `${app.appId}_ctr_other` } }) }), "UNAUTHENTICATED", /client_id/],
    ["a missing client_id", async () => ({ assertion: await signAssertion(app, { omit: ["client_id"] }) }), "UNAUTHENTICATED", /client_id/],
    ["a missing nonce", async () => ({ assertion: await signAssertion(app, { omit: ["nonce"] }) }), "BAD_USER_INPUT", /nonce/],
    ["a short nonce", async () => ({ assertion: await signAssertion(app, { claims: { nonce: "short" } }) }), "BAD_USER_INPUT", /nonce/],
    ["a missing timestamp", async () => ({ assertion: await signAssertion(app, { omit: ["timestamp"] }) }), "BAD_USER_INPUT", /timestamp/],
    ["a timestamp in seconds", async () => ({ assertion: await signAssertion(app, { claims: { timestamp: "now" as unknown as number } }) }), "BAD_USER_INPUT", /timestamp/],
    ["a stale timestamp", async () => ({ assertion: await signAssertion(app, { claims: { timestamp: Date.now() - 6 * 60_000 } }) }), "UNAUTHENTICATED", /timestamp/],
    ["a future timestamp", async () => ({ assertion: await signAssertion(app, { claims: { timestamp: Date.now() + 6 * 60_000 } }) }), "UNAUTHENTICATED", /timestamp/],
    ["an expired assertion (exp)", async () => ({ assertion: await signAssertion(app, { claims: { exp: Math.floor(Date.now() / 1000) - 60 } }) }), "UNAUTHENTICATED", /expired/],
    ["a malformed assertion", async () => ({ assertion: "not-a-jws" }), "BAD_USER_INPUT", /compact JWS/],
    ["a tampered payload", async () => {
      const [h, , s] = (await signAssertion(app)).split(".");
      const p = base64url.encode(JSON.stringify({ client_id: `${app.appId}_${app.contractId}`, nonce: newNonce(), timestamp: Date.now() }));
      return { assertion: `${h}.${p}.${s}` };
    }, "UNAUTHENTICATED", /signature does not verify/],
  ];

  it.each(cases)("refuses %s", async (_name, make, code, message) => {
    const before = await counts();
    const auditBefore = await t.app.db.prisma.auditEvent.count({ where: { outcome: "REFUSED" } });
    const { assertion, ...ids } = await make();
    const r = await attempt(assertion, ids);
    expect(r.data).toBeNull();
    expect(errorCode(r)).toBe(code);
    expect(r.errors![0].message).toMatch(message);
    expect(await counts()).toEqual(before);
    expect(await t.app.db.prisma.auditEvent.count({ where: { outcome: "REFUSED" } })).toBe(auditBefore + 1);
  });

  it("files a refusal under a contract only when the request named that contract's own application", async () => {
    const victim = await registerApp(t, { name: "Victim" });
    const underVictim = () => t.app.db.prisma.auditEvent.count({ where: { contractId: victim.contractId } });
    const before = await underVictim();
    // Anyone who knows a contract id (users see it) could otherwise write into its log.
    const forged = await attempt("x.y", { appId: `${victim.appId}_forged`, contractId: victim.contractId });
    expect(errorCode(forged)).toBe("BAD_USER_INPUT");
    const wrongApp = await attempt(await signAssertion(victim), { appId: app.appId, contractId: victim.contractId });
    expect(errorCode(wrongApp)).toBe("UNAUTHENTICATED");
    expect(await underVictim()).toBe(before);
    const ev = await t.app.db.prisma.auditEvent.findFirst({ where: { action: "session.create", outcome: "REFUSED" }, orderBy: { seq: "desc" } });
    expect(ev).toMatchObject({ applicationId: null, contractId: null, reason: "UNAUTHENTICATED:unknown_contract", detail: { requestedAppId: app.appId, requestedContractId: victim.contractId } });
    // A refusal of the contract's own application is its business, and is filed under it.
    const badSignature = await attempt(await signAssertion({ ...victim, privateKey: app.privateKey }), victim);
    expect(errorCode(badSignature)).toBe("UNAUTHENTICATED");
    expect(await underVictim()).toBe(before + 1);
  });

  it("refuses a replayed nonce, leaving the first session valid", async () => {
    const assertion = await signAssertion(app);
    const first = await attempt(assertion);
    expect(first.data?.createSession.key).toBeTruthy();
    const before = await counts();
    const replay = await attempt(assertion);
    expect(errorCode(replay)).toBe("UNAUTHENTICATED");
    expect(replay.errors![0].message).toMatch(/nonce was already used/);
    expect(await counts()).toEqual(before);
    const ev = await t.app.db.prisma.auditEvent.findFirst({ where: { action: "session.create", outcome: "REFUSED" }, orderBy: { seq: "desc" } });
    expect(ev?.reason).toBe("UNAUTHENTICATED:replayed_nonce");
    expect(JSON.stringify({ ...ev, seq: String(ev?.seq) })).not.toContain(assertion);
  });

  it("refuses a disabled application, and accepts it again once enabled", async () => {
    const a = await registerApp(t);
    expect((await t.admin("POST", `/applications/${a.appId}/disable`)).status).toBe(200);
    const r = await attempt(await signAssertion(a), a);
    expect(errorCode(r)).toBe("FORBIDDEN");
    expect(r.errors![0].message).toMatch(/disabled/);
    await t.admin("POST", `/applications/${a.appId}/enable`);
    expect((await attempt(await signAssertion(a), a)).data?.createSession.key).toBeTruthy();
  });

  it("accepts only the new key after a rotation", async () => {
    const a = await registerApp(t);
    const next = await makeKeyPair("PS512");
    const rot = await t.admin("POST", `/contracts/${a.contractId}/keys`, { publicKey: next.publicJwk });
    expect(rot.status).toBe(201);
    expect(errorCode(await attempt(await signAssertion(a), a))).toBe("UNAUTHENTICATED");
    expect((await attempt(await signAssertion({ ...a, privateKey: next.privateKey }), a)).data?.createSession.key).toBeTruthy();
  });
});

describe("session keys", () => {
  it("refuses operations without a session", async () => {
    const r = await t.gql(CURRENT);
    expect(errorCode(r)).toBe("UNAUTHENTICATED");
    expect(r.errors![0].message).toMatch(/needs a session/);
  });

  it.each([
    ["garbage", "garbage"],
    ["an unknown pbs_ key", "pbs_" + "A".repeat(43)],
  ])("refuses a %s bearer token", async (_n, token) => {
    const r = await t.gql(CURRENT, {}, { token });
    expect(errorCode(r)).toBe("UNAUTHENTICATED");
  });

  it("refuses a malformed Authorization header", async () => {
    const r = await t.gql(CURRENT, {}, { headers: { authorization: "Basic abc" } });
    expect(errorCode(r)).toBe("UNAUTHENTICATED");
  });

  it("refuses an ended (revoked) session", async () => {
    const key = await createSession(t, app);
    const end = await t.gql(`mutation { endSession }`, {}, { token: key });
    expect(end.data?.endSession).toBe(true);
    const r = await t.gql(CURRENT, {}, { token: key });
    expect(errorCode(r)).toBe("UNAUTHENTICATED");
    expect(r.errors![0].message).toMatch(/ended/);
  });

  it("refuses a session at once when its application is disabled, though it was verified a moment before", async () => {
    const other = await registerApp(t, { name: "Disabled at once" });
    const key = await createSession(t, other);
    expect((await t.gql(CURRENT, {}, { token: key })).data?.currentSession.appId).toBe(other.appId);
    expect((await t.admin("POST", `/applications/${other.appId}/disable`)).status).toBe(200);
    expect(errorCode(await t.gql(CURRENT, {}, { token: key }))).toBe("FORBIDDEN");
  });

  it("sees a change made behind the server's back within SESSION_RECHECK", async () => {
    // Only changes that go through the server are announced; one made straight in the
    // database (an operator's UPDATE) is seen when the instance next reads the session.
    const s = await startTestServer({ env: { SESSION_RECHECK: "1500ms" } });
    try {
      const a = await registerApp(s, { name: "Recheck" });
      const key = await createSession(s, a);
      expect((await s.gql(CURRENT, {}, { token: key })).errors).toBeUndefined();
      const since = Date.now();
      await s.app.db.prisma.session.updateMany({ where: { contractId: a.contractId }, data: { revokedAt: new Date() } });
      const cached = await s.gql(CURRENT, {}, { token: key });
      if (Date.now() - since < 1000) expect(cached.errors).toBeUndefined(); // still within the interval: answered from memory
      await new Promise((r) => setTimeout(r, 1600));
      expect(errorCode(await s.gql(CURRENT, {}, { token: key }))).toBe("UNAUTHENTICATED");
    } finally {
      await s.stop();
    }
  });

  it("refuses an expired session", async () => {
    const key = await createSession(t, app);
    await t.app.db.prisma.session.updateMany({ where: { revokedAt: null, contractId: app.contractId }, data: { expiresAt: new Date(Date.now() - 1000) } });
    const r = await t.gql(CURRENT, {}, { token: key });
    expect(errorCode(r)).toBe("UNAUTHENTICATED");
    expect(r.errors![0].message).toMatch(/expired/);
  });
});
