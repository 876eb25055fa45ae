// The postbox lifecycle end to end over HTTP and WebSocket: an application's
// session creates a postbox, a frontend subscribes, the user accepts (GraphQL or
// the `user accept` CLI as a child process), and both the subscriber and a signed
// webhook see READY. Then decline, close (by app and by user), token refresh,
// expiry by the sweeper, contract scoping and pagination.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { CompactEncrypt, compactDecrypt, importJWK, type JWK } from "jose";
import { createSession, makeUserKeyPair, registerApp, startWebhookReceiver, verifyWebhookSignature, type TestApp, type WebhookReceiver } from "../helpers/factories.js";
import { errorCode, startTestServer, type GqlResult, type TestServer } from "../helpers/server.js";
import { collect, wsClient } from "../helpers/ws.js";
import { sealChallenge } from "../../src/modules/user/user.challenge.js";
import {
  CLOSE,
  CLOSE_MINE,
  CONSENT,
  DECLINE,
  GET,
  LIST,
  MY_POSTBOX,
  REFRESH,
  STATUS_CHANGED,
  accept,
  codeOf,
  createPostbox,
  waitUntil,
  type StatusEvent,
} from "./postbox.helpers.js";

const run = promisify(execFile);
const CALLBACKS = ["https://app.example.com/postbox/done", "https://app.example.com/cb/"];

let t: TestServer;
let rx: WebhookReceiver;
let app: TestApp;
let session: string;
let secret: string;
let tmp: string;
const clients: { dispose(): Promise<void> | void }[] = [];

beforeAll(async () => {
  t = await startTestServer();
  rx = await startWebhookReceiver();
  tmp = await mkdtemp(path.join(os.tmpdir(), "postbox-cli-"));
  app = await registerApp(t, { name: "Acme Energy", callbackUrls: CALLBACKS });
  session = await createSession(t, app);
  const hook = await t.gql(`mutation($url: String!) { setWebhook(url: $url) { secret } }`, { url: rx.url }, { token: session });
  expect(hook.errors).toBeUndefined();
  secret = hook.data!.setWebhook.secret;
});
afterAll(async () => {
  for (const c of clients) await c.dispose();
  await rx?.close();
  await t?.stop();
  await rm(tmp, { recursive: true, force: true });
});

function subscriber(token = session) {
  const c = wsClient(t.wsUrl, `Bearer ${token}`);
  clients.push(c);
  return c;
}

/** Delivers due webhooks and returns the ones received for `postboxId` so far, parsed. */
async function webhooksFor(postboxId: string, n: number) {
  const matching = () => rx.received.filter((w) => JSON.parse(w.body).data?.postboxId === postboxId);
  await waitUntil(async () => {
    await t.app.scheduler.tick();
    return matching().length >= n;
  }, `${n} webhook(s) for ${postboxId} arrived`);
  // Events to one endpoint may arrive out of order (two sends at once; README, Webhooks):
  // ordered by their timestamp, as a receiver is told to do.
  return matching()
    .map((w) => ({ raw: w, body: JSON.parse(w.body) as { type: string; timestamp: string; data: Record<string, unknown> } }))
    .sort((a, b) => Date.parse(a.body.timestamp) - Date.parse(b.body.timestamp));
}

describe("the whole flow", () => {
  it("session → createPostbox → subscribe → acceptPostbox → subscriber and signed webhook see READY", async () => {
    const before = Date.now();
    const pb = await createPostbox(t, session, { reference: "customer-42", callbackUrl: "https://app.example.com/cb/return?state=xyz" });
    expect(pb.id).toMatch(/^pbx_[a-z2-7]{26}$/);
    expect(pb.status).toBe("PENDING");
    expect(pb.reference).toBe("customer-42");
    expect(pb.callbackUrl).toBe("https://app.example.com/cb/return?state=xyz");
    expect(pb.consentUrl).toMatch(new RegExp(`^${t.url}/consent/[A-Za-z0-9_-]{43}$`));
    expect(pb.publicKey).toBeNull();
    const consentTtl = new Date(pb.consentExpiresAt).getTime() - before;
    expect(consentTtl).toBeGreaterThan(14 * 60_000);
    expect(consentTtl).toBeLessThanOrEqual(15 * 60_000 + 5_000);
    const lifetime = new Date(pb.expiresAt).getTime() - before;
    expect(lifetime).toBeGreaterThan(7 * 86_400_000 - 60_000); // ONE_OFF default 7d
    expect(lifetime).toBeLessThanOrEqual(7 * 86_400_000 + 5_000);

    // Only the hash of the code is stored, and the link is returned once.
    const code = codeOf(pb.consentUrl);
    const row = await t.app.db.prisma.postbox.findUniqueOrThrow({ where: { id: pb.id } });
    expect(JSON.stringify(row)).not.toContain(code);
    expect((await t.gql(GET, { id: pb.id }, { token: session })).data!.postbox.consentUrl).toBeNull();

    // Two frontends: one on this postbox (first event = current status), one on the whole contract.
    const one = collect<StatusEvent>(subscriber(), STATUS_CHANGED, { postboxId: pb.id });
    expect((await one.next(1)).postboxStatusChanged).toMatchObject({ postboxId: pb.id, status: "PENDING", previousStatus: null });
    const opened = t.app.services.postboxes.openSubscriptions;
    const all = collect<StatusEvent>(subscriber(), STATUS_CHANGED, {});
    await waitUntil(() => t.app.services.postboxes.openSubscriptions > opened, "the contract-wide subscription is registered");

    // The user's app shows who is asking.
    const consent = await t.gql(CONSENT, { code });
    expect(consent.errors).toBeUndefined();
    expect(consent.data!.consentRequest).toEqual({
      postboxId: pb.id,
      applicationName: "Acme Energy",
      contractId: app.contractId,
      contractKind: "WRITE",
      postboxMode: "ONE_OFF",
      reference: "customer-42",
      status: "PENDING",
      canRespond: true,
      consentExpiresAt: pb.consentExpiresAt,
      expiresAt: pb.expiresAt,
      hasCallback: true,
      acceptedAlgorithms: ["RSA-OAEP-256", "ECDH-ES+A256KW"],
    });

    const user = await makeUserKeyPair("RSA");
    const acceptedAt = Date.now();
    const a = await accept(t, pb.consentUrl, user.publicJwk);
    expect(a.postboxId).toBe(pb.id);
    expect(a.status).toBe("READY");
    const redirect = new URL(a.redirectUrl!);
    expect(`${redirect.origin}${redirect.pathname}`).toBe("https://app.example.com/cb/return");
    expect(Object.fromEntries(redirect.searchParams)).toEqual({ state: "xyz", postboxId: pb.id, result: "ACCEPTED" });
    expect(a.credential.accessToken).toMatch(/^pbu_[A-Za-z0-9_-]{43}$/);
    // Named after its grant (pbr_<grantId>.<secret>), so that an old one is known as a reuse.
    expect(a.credential.refreshToken).toMatch(/^pbr_grt_[a-z2-7]{26}\.[A-Za-z0-9_-]{43}$/);
    expect(a.credential.tokenType).toBe("Bearer");
    expect(a.credential.postboxId).toBe(pb.id);
    expect(new Date(a.credential.accessTokenExpiresAt).getTime() - acceptedAt).toBeLessThanOrEqual(3_600_000 + 5_000);
    expect(a.credential.refreshTokenExpiresAt).toBe(pb.expiresAt);

    const ready = (await one.next(2)).postboxStatusChanged;
    expect(ready).toMatchObject({ postboxId: pb.id, status: "READY", previousStatus: "PENDING" });
    expect(new Date(ready.at).getTime()).toBeGreaterThanOrEqual(acceptedAt - 1000);
    expect((await all.next(1)).postboxStatusChanged).toMatchObject({ postboxId: pb.id, status: "READY", previousStatus: "PENDING" });

    // The application now sees the user's key and can encrypt to it; the user's private key decrypts.
    const got = (await t.gql(GET, { id: pb.id }, { token: session })).data!.postbox;
    expect(got).toMatchObject({ status: "READY", publicKey: { kid: a.publicKeyThumbprint, alg: "RSA-OAEP-256", enc: "A256GCM", kty: "RSA", crv: null } });
    expect(got.publicKey.jwk).toMatchObject({ kty: "RSA", n: user.publicJwk.n, e: user.publicJwk.e, alg: "RSA-OAEP-256", use: "enc", kid: a.publicKeyThumbprint });
    expect(got.publicKey.jwk.d).toBeUndefined();
    expect(new Date(got.readyAt).getTime()).toBeGreaterThanOrEqual(acceptedAt - 1000);
    const jwe = await new CompactEncrypt(new TextEncoder().encode("hi")).setProtectedHeader({ alg: got.publicKey.alg, enc: got.publicKey.enc }).encrypt(await importJWK(got.publicKey.jwk as JWK, got.publicKey.alg));
    expect(new TextDecoder().decode((await compactDecrypt(jwe, user.privateKey)).plaintext)).toBe("hi");

    // The user's device reads its postbox with the access token.
    const mine = await t.gql(MY_POSTBOX, {}, { token: a.credential.accessToken });
    expect(mine.data!.myPostbox).toEqual({ id: pb.id, status: "READY", expiresAt: pb.expiresAt, readyAt: got.readyAt, applicationName: "Acme Energy", contractId: app.contractId, publicKeyThumbprint: a.publicKeyThumbprint, keyAlg: "RSA-OAEP-256" });

    // The backend's webhook: signed per Standard Webhooks, ids and status only.
    const [hook] = await webhooksFor(pb.id, 1);
    expect(verifyWebhookSignature(secret, hook.raw)).toBe(true);
    expect(hook.body.type).toBe("postbox.ready");
    expect(hook.body.data).toEqual({ postboxId: pb.id, reference: "customer-42", status: "READY", previousStatus: "PENDING", keyId: a.publicKeyThumbprint });

    // Audited, with no secrets anywhere.
    const events = await t.app.db.prisma.auditEvent.findMany({ where: { postboxId: pb.id }, orderBy: { seq: "asc" } });
    expect(events.map((e) => [e.action, e.outcome, e.actorType])).toEqual([
      ["postbox.create", "SUCCESS", "APP"],
      ["postbox.accept", "SUCCESS", "USER"],
    ]);
    const dump = JSON.stringify(await t.app.db.prisma.userGrant.findMany()) + JSON.stringify(events.map((e) => ({ ...e, seq: String(e.seq) }))) + t.logs.join("\n");
    for (const s of [code, a.credential.accessToken, a.credential.refreshToken]) expect(dump).not.toContain(s);
    await one.dispose();
    await all.dispose();
  });

  it("accepts through the `user accept` CLI, which keeps the private key and credential in a 0600 file", async () => {
    const pb = await createPostbox(t, session, { callbackUrl: "https://app.example.com/postbox/done" });
    const sub = collect<StatusEvent>(subscriber(), STATUS_CHANGED, { postboxId: pb.id });
    expect((await sub.next(1)).postboxStatusChanged.status).toBe("PENDING");

    const shown = await run(process.execPath, ["node_modules/tsx/dist/cli.mjs", "src/cli/main.ts", "user", "show", pb.consentUrl, "--json"], {
      cwd: process.cwd(),
      env: { ...process.env, NODE_OPTIONS: "" },
    });
    expect(JSON.parse(shown.stdout)).toMatchObject({ postboxId: pb.id, applicationName: "Acme Energy", status: "PENDING", canRespond: true, hasCallback: true });

    const keyFile = path.join(tmp, "alice.json");
    const { stdout } = await run(process.execPath, ["node_modules/tsx/dist/cli.mjs", "src/cli/main.ts", "user", "accept", pb.consentUrl, "--key-out", keyFile, "--json"], {
      cwd: process.cwd(),
      env: { ...process.env, NODE_OPTIONS: "" },
    });
    const out = JSON.parse(stdout);
    expect(out).toMatchObject({ postboxId: pb.id, status: "READY", keyFile });
    expect(new URL(out.redirectUrl).searchParams.get("result")).toBe("ACCEPTED");
    expect((await sub.next(2)).postboxStatusChanged).toMatchObject({ postboxId: pb.id, status: "READY", previousStatus: "PENDING" });

    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    const saved = JSON.parse(await readFile(keyFile, "utf8"));
    expect(saved).toMatchObject({ postboxId: pb.id, status: "READY", serverUrl: t.url, graphqlUrl: `${t.url}/graphql`, applicationName: "Acme Energy" });
    expect(saved.privateKey).toMatchObject({ kty: "OKP", crv: "X25519", alg: "ECDH-ES+A256KW" });
    expect(typeof saved.privateKey.d).toBe("string");

    // The saved credential works, and the saved private key decrypts what is encrypted to the postbox key.
    const mine = await t.gql(MY_POSTBOX, {}, { token: saved.credential.accessToken });
    expect(mine.data!.myPostbox).toMatchObject({ id: pb.id, status: "READY", keyAlg: "ECDH-ES+A256KW", publicKeyThumbprint: saved.publicKeyThumbprint });
    const pub = (await t.gql(GET, { id: pb.id }, { token: session })).data!.postbox.publicKey;
    const jwe = await new CompactEncrypt(new TextEncoder().encode("for alice")).setProtectedHeader({ alg: pub.alg, enc: pub.enc }).encrypt(await importJWK(pub.jwk, pub.alg));
    expect(new TextDecoder().decode((await compactDecrypt(jwe, await importJWK(saved.privateKey, saved.privateKey.alg))).plaintext)).toBe("for alice");

    // The server never saw the private key.
    const row = await t.app.db.prisma.postbox.findUniqueOrThrow({ where: { id: pb.id } });
    expect(JSON.stringify(row)).not.toContain(saved.privateKey.d);
    await sub.dispose();
  });

  it("the CLI refuses to overwrite a key file and then accepts nothing", async () => {
    const pb = await createPostbox(t, session);
    const keyFile = path.join(tmp, "exists.json");
    await writeFile(keyFile, "precious");
    const r = await run(process.execPath, ["node_modules/tsx/dist/cli.mjs", "src/cli/main.ts", "user", "accept", pb.consentUrl, "--key-out", keyFile, "--json"], {
      cwd: process.cwd(),
      env: { ...process.env, NODE_OPTIONS: "" },
    }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(r?.code).toBe(1);
    expect(r?.stderr).toMatch(/already exists/);
    expect(await readFile(keyFile, "utf8")).toBe("precious");
    expect((await t.gql(GET, { id: pb.id }, { token: session })).data!.postbox.status).toBe("PENDING");
  });

  it("declines through the CLI and through GraphQL; a postboxId stream ends after a final status", async () => {
    const viaCli = await createPostbox(t, session);
    const { stdout } = await run(process.execPath, ["node_modules/tsx/dist/cli.mjs", "src/cli/main.ts", "user", "decline", viaCli.consentUrl, "--json"], {
      cwd: process.cwd(),
      env: { ...process.env, NODE_OPTIONS: "" },
    });
    expect(JSON.parse(stdout)).toEqual({ postboxId: viaCli.id, status: "DECLINED", redirectUrl: null });

    const pb = await createPostbox(t, session, { callbackUrl: "https://app.example.com/postbox/done" });
    const sub = collect<StatusEvent>(subscriber(), STATUS_CHANGED, { postboxId: pb.id });
    await sub.next(1);
    const r = await t.gql(DECLINE, { input: { code: codeOf(pb.consentUrl) } });
    expect(r.errors).toBeUndefined();
    expect(r.data!.declinePostbox).toEqual({ postboxId: pb.id, status: "DECLINED", redirectUrl: `https://app.example.com/postbox/done?postboxId=${pb.id}&result=DECLINED` });
    expect((await sub.next(2)).postboxStatusChanged).toMatchObject({ status: "DECLINED", previousStatus: "PENDING" });
    await expect(sub.next(3)).rejects.toThrow("subscription completed");

    const [hook] = await webhooksFor(pb.id, 1);
    expect(hook.body).toMatchObject({ type: "postbox.declined", data: { postboxId: pb.id, status: "DECLINED", previousStatus: "PENDING" } });
    expect((await t.gql(CONSENT, { code: codeOf(pb.consentUrl) })).data!.consentRequest).toMatchObject({ status: "DECLINED", canRespond: false });
    // Subscribing after the fact reports the final status and ends.
    const late = collect<StatusEvent>(subscriber(), STATUS_CHANGED, { postboxId: pb.id });
    expect((await late.next(1)).postboxStatusChanged).toMatchObject({ status: "DECLINED", previousStatus: null });
    await expect(late.next(2)).rejects.toThrow("subscription completed");
  });
});

describe("closing", () => {
  it("the application closes a READY postbox: event, webhook, revoked user token; closing again is a CONFLICT", async () => {
    const pb = await createPostbox(t, session);
    const a = await accept(t, pb.consentUrl, (await makeUserKeyPair("X25519")).publicJwk);
    const sub = collect<StatusEvent>(subscriber(), STATUS_CHANGED, { postboxId: pb.id });
    expect((await sub.next(1)).postboxStatusChanged.status).toBe("READY");

    const r = await t.gql(CLOSE, { id: pb.id }, { token: session });
    expect(r.errors).toBeUndefined();
    expect(r.data!.closePostbox).toMatchObject({ id: pb.id, status: "CLOSED" });
    expect(r.data!.closePostbox.closedAt).toBeTruthy();
    expect((await sub.next(2)).postboxStatusChanged).toMatchObject({ status: "CLOSED", previousStatus: "READY" });

    const mine = await t.gql(MY_POSTBOX, {}, { token: a.credential.accessToken });
    expect(errorCode(mine)).toBe("UNAUTHENTICATED");
    expect(errorCode(await t.gql(REFRESH, { refreshToken: a.credential.refreshToken }))).toBe("UNAUTHENTICATED");
    expect(await t.app.db.prisma.userGrant.count({ where: { postboxId: pb.id, revokedAt: null } })).toBe(0);

    const hooks = await webhooksFor(pb.id, 2);
    expect(hooks.map((h) => h.body.type)).toEqual(["postbox.ready", "postbox.closed"]);
    expect(hooks[1].body.data).toMatchObject({ status: "CLOSED", previousStatus: "READY", reason: "closed_by_application" });

    const again = await t.gql(CLOSE, { id: pb.id }, { token: session });
    expect(errorCode(again)).toBe("CONFLICT");
    expect(again.errors![0].message).toMatch(/is CLOSED; only a READY postbox can be closed/);
  });

  it("a READY postbox past its expiry, not yet swept, is not closed: POSTBOX_EXPIRED, and the sweep expires it", async () => {
    const pb = await createPostbox(t, session);
    await accept(t, pb.consentUrl, (await makeUserKeyPair("X25519")).publicJwk);
    await t.app.db.prisma.postbox.update({ where: { id: pb.id }, data: { expiresAt: new Date(Date.now() - 1000) } });
    const r = await t.gql(CLOSE, { id: pb.id }, { token: session });
    expect(errorCode(r)).toBe("POSTBOX_EXPIRED");
    expect(r.errors![0].message).toMatch(/expired at .*nothing left to close/);
    expect((await t.app.db.prisma.postbox.findUniqueOrThrow({ where: { id: pb.id } })).status).toBe("READY");
    await t.app.services.postboxes.sweep();
    expect((await t.app.db.prisma.postbox.findUniqueOrThrow({ where: { id: pb.id } })).status).toBe("EXPIRED");
  });

  it("a PENDING postbox cannot be closed (CONFLICT naming its status)", async () => {
    const pb = await createPostbox(t, session);
    const r = await t.gql(CLOSE, { id: pb.id }, { token: session });
    expect(errorCode(r)).toBe("CONFLICT");
    expect(r.errors![0].message).toMatch(/is PENDING/);
    expect((await t.gql(GET, { id: pb.id }, { token: session })).data!.postbox.status).toBe("PENDING");
  });

  it("the user closes their postbox with closeMyPostbox", async () => {
    const pb = await createPostbox(t, session);
    const a = await accept(t, pb.consentUrl, (await makeUserKeyPair("P-256")).publicJwk);
    const r = await t.gql(CLOSE_MINE, {}, { token: a.credential.accessToken });
    expect(r.errors).toBeUndefined();
    expect(r.data!.closeMyPostbox).toEqual({ id: pb.id, status: "CLOSED" });
    expect((await t.gql(GET, { id: pb.id }, { token: session })).data!.postbox.status).toBe("CLOSED");
    expect(errorCode(await t.gql(CLOSE_MINE, {}, { token: a.credential.accessToken }))).toBe("UNAUTHENTICATED");
    const ev = await t.app.db.prisma.auditEvent.findFirstOrThrow({ where: { postboxId: pb.id, action: "postbox.close" } });
    expect([ev.outcome, ev.actorType]).toEqual(["SUCCESS", "USER"]);
    const hooks = await webhooksFor(pb.id, 2);
    expect(hooks[1].body.data).toMatchObject({ status: "CLOSED", reason: "closed_by_user" });
  });
});

describe("user credentials", () => {
  it("refreshUserToken rotates both tokens; the old ones stop working", async () => {
    const pb = await createPostbox(t, session);
    const a = await accept(t, pb.consentUrl, (await makeUserKeyPair("RSA")).publicJwk);
    const r = await t.gql(REFRESH, { refreshToken: a.credential.refreshToken });
    expect(r.errors).toBeUndefined();
    const c = r.data!.refreshUserToken;
    expect(c.postboxId).toBe(pb.id);
    expect(c.accessToken).not.toBe(a.credential.accessToken);
    expect(c.refreshToken).not.toBe(a.credential.refreshToken);
    expect(c.refreshTokenExpiresAt).toBe(pb.expiresAt);
    expect((await t.gql(MY_POSTBOX, {}, { token: c.accessToken })).data!.myPostbox.id).toBe(pb.id);
    expect(errorCode(await t.gql(MY_POSTBOX, {}, { token: a.credential.accessToken }))).toBe("UNAUTHENTICATED");
    const next = await t.gql(REFRESH, { refreshToken: c.refreshToken });
    expect(next.data!.refreshUserToken.accessToken).toMatch(/^pbu_/);
    expect(errorCode(await t.gql(REFRESH, { refreshToken: "pbr_neverissued" }))).toBe("UNAUTHENTICATED");
  });

  it("a refresh token used a second time revokes its credential, whoever holds the current pair", async () => {
    const pb = await createPostbox(t, session);
    const a = await accept(t, pb.consentUrl, (await makeUserKeyPair("RSA")).publicJwk);
    const first = (await t.gql(REFRESH, { refreshToken: a.credential.refreshToken })).data!.refreshUserToken;
    // Say an attacker copied the original refresh token and the device used it first: the copy shows up again.
    const reuse = await t.gql(REFRESH, { refreshToken: a.credential.refreshToken });
    expect(errorCode(reuse)).toBe("UNAUTHENTICATED");
    expect(reuse.errors![0].message).toMatch(/already used once.*revoked.*userKeyChallenge/);
    expect(errorCode(await t.gql(MY_POSTBOX, {}, { token: first.accessToken }))).toBe("UNAUTHENTICATED");
    expect(errorCode(await t.gql(REFRESH, { refreshToken: first.refreshToken }))).toBe("UNAUTHENTICATED");
    const refused = await t.app.db.prisma.auditEvent.findMany({ where: { action: "user.token_refresh", postboxId: pb.id, outcome: "REFUSED" }, orderBy: { seq: "asc" } });
    expect(refused.map((e) => e.reason)).toEqual(["UNAUTHENTICATED:reused", "UNAUTHENTICATED:revoked"]);
    // The revoked grant's history of used tokens is no longer needed.
    const grant = await t.app.db.prisma.userGrant.findFirstOrThrow({ where: { postboxId: pb.id } });
    expect(await t.app.db.prisma.usedRefreshToken.count({ where: { grantId: grant.id } })).toBe(1);
    await t.app.services.users.sweep();
    expect(await t.app.db.prisma.usedRefreshToken.count({ where: { grantId: grant.id } })).toBe(0);
  });

  it("remembers a grant's 100 newest exchanged refresh tokens, not every one, and still catches an older one's reuse", async () => {
    const pb = await createPostbox(t, session);
    const a = await accept(t, pb.consentUrl, (await makeUserKeyPair("RSA")).publicJwk);
    const grant = await t.app.db.prisma.userGrant.findFirstOrThrow({ where: { postboxId: pb.id } });
    // As if the device had refreshed 120 times already, an hour apart.
    const old = Array.from({ length: 120 }, (_, i) => ({ hash: createHash("sha256").update(`old ${pb.id} ${i}`).digest("hex"), grantId: grant.id, usedAt: new Date(Date.now() - (120 - i) * 3_600_000) }));
    await t.app.db.prisma.usedRefreshToken.createMany({ data: old });
    const r = await t.gql(REFRESH, { refreshToken: a.credential.refreshToken });
    expect(r.errors).toBeUndefined();
    const kept = await t.app.db.prisma.usedRefreshToken.findMany({ where: { grantId: grant.id }, select: { hash: true } });
    expect(kept).toHaveLength(100);
    const hashes = new Set(kept.map((k) => k.hash));
    expect(hashes.has(createHash("sha256").update(a.credential.refreshToken).digest("hex"))).toBe(true); // the newest
    expect(hashes.has(old[119].hash)).toBe(true);
    expect(hashes.has(old[20].hash)).toBe(false); // the oldest 21 went
    expect(hashes.has(old[21].hash)).toBe(true);
    // A token no longer on record is still caught by the grant it names: say a thief refreshed
    // more than 100 times before the device came back with the token both had.
    await t.app.db.prisma.usedRefreshToken.deleteMany({ where: { grantId: grant.id } });
    expect((await t.gql(REFRESH, { refreshToken: a.credential.refreshToken })).errors![0].message).toMatch(/already used once/);
    expect((await t.app.db.prisma.userGrant.findUniqueOrThrow({ where: { id: grant.id } })).revokedAt).toBeInstanceOf(Date);
    // One that names no grant of this server stays unknown.
    expect((await t.gql(REFRESH, { refreshToken: "pbr_grt_aaaaaaaaaaaaaaaaaaaaaaaaaa.x" })).errors![0].message).toMatch(/Unknown refresh token/);
  });

  it("a used refresh token presented after the postbox closed says the postbox is over, not to get a new credential", async () => {
    const pb = await createPostbox(t, session);
    const a = await accept(t, pb.consentUrl, (await makeUserKeyPair("RSA")).publicJwk);
    expect((await t.gql(REFRESH, { refreshToken: a.credential.refreshToken })).errors).toBeUndefined();
    expect((await t.gql(CLOSE, { id: pb.id }, { token: session })).errors).toBeUndefined();
    const r = await t.gql(REFRESH, { refreshToken: a.credential.refreshToken });
    expect(errorCode(r)).toBe("UNAUTHENTICATED");
    expect(r.errors![0].message).toMatch(/The postbox is CLOSED/);
    expect(r.errors![0].extensions?.reissue).toBeUndefined();
  });

  it("two refreshes with one token at the same time are a reuse too: one may answer, and the credential ends either way", async () => {
    const pb = await createPostbox(t, session);
    const a = await accept(t, pb.consentUrl, (await makeUserKeyPair("RSA")).publicJwk);
    const both = await Promise.all([1, 2].map(() => t.gql(REFRESH, { refreshToken: a.credential.refreshToken })));
    const won = both.filter((r) => !r.errors);
    expect(won.length).toBeLessThanOrEqual(1);
    // The other is told to get a new credential by proof of the key, whichever order the two ran in.
    const lost = both.filter((r) => r.errors);
    expect(lost.length).toBeGreaterThanOrEqual(1);
    for (const r of lost) {
      expect(errorCode(r)).toBe("UNAUTHENTICATED");
      expect(r.errors![0].extensions).toMatchObject({ reissue: true });
    }
    for (const r of won) expect(errorCode(await t.gql(MY_POSTBOX, {}, { token: r.data!.refreshUserToken.accessToken }))).toBe("UNAUTHENTICATED");
    expect((await t.app.db.prisma.userGrant.findFirstOrThrow({ where: { postboxId: pb.id } })).revokedAt).toBeInstanceOf(Date);
  });

  describe("a new credential by proof of the postbox key", () => {
    const CHALLENGE = `mutation($postboxId: ID!) { userKeyChallenge(postboxId: $postboxId) { challengeId jwe expiresAt } }`;
    const REISSUE = `mutation($challengeId: ID!, $answer: String!) { reissueUserCredential(challengeId: $challengeId, answer: $answer) { postboxId accessToken refreshToken refreshTokenExpiresAt } }`;

    async function answer(jwe: string, privateKey: CryptoKey) {
      return Buffer.from((await compactDecrypt(jwe, privateKey)).plaintext).toString("base64url");
    }

    it.each(["RSA", "P-256", "X25519"] as const)("the holder of the %s private key gets a working credential; the challenge works once", async (kind) => {
      const pb = await createPostbox(t, session);
      const keys = await makeUserKeyPair(kind);
      const a = await accept(t, pb.consentUrl, keys.publicJwk);
      const ch = (await t.gql(CHALLENGE, { postboxId: pb.id })).data!.userKeyChallenge;
      expect(Date.parse(ch.expiresAt) - Date.now()).toBeGreaterThan(60_000);
      const r = await t.gql(REISSUE, { challengeId: ch.challengeId, answer: await answer(ch.jwe, keys.privateKey) });
      expect(r.errors).toBeUndefined();
      const c = r.data!.reissueUserCredential;
      expect(c.postboxId).toBe(pb.id);
      expect(c.refreshTokenExpiresAt).toBe(pb.expiresAt);
      expect((await t.gql(MY_POSTBOX, {}, { token: c.accessToken })).data!.myPostbox.id).toBe(pb.id);
      // The device's existing credential is untouched: a reissue adds a grant.
      expect((await t.gql(MY_POSTBOX, {}, { token: a.credential.accessToken })).data!.myPostbox.id).toBe(pb.id);
      expect(errorCode(await t.gql(REISSUE, { challengeId: ch.challengeId, answer: await answer(ch.jwe, keys.privateKey) }))).toBe("UNAUTHENTICATED");
      expect(await t.app.db.prisma.auditEvent.count({ where: { action: "user.reissue", postboxId: pb.id, outcome: "SUCCESS" } })).toBe(1);
    });

    it("refuses a wrong answer (and burns the challenge), another key's answer, and postboxes that are not READY", async () => {
      const pb = await createPostbox(t, session);
      const keys = await makeUserKeyPair("P-256");
      await accept(t, pb.consentUrl, keys.publicJwk);
      const ch = (await t.gql(CHALLENGE, { postboxId: pb.id })).data!.userKeyChallenge;
      const wrong = await t.gql(REISSUE, { challengeId: ch.challengeId, answer: Buffer.alloc(32).toString("base64url") });
      expect(errorCode(wrong)).toBe("UNAUTHENTICATED");
      expect(wrong.errors![0].message).toMatch(/Wrong answer/);
      expect(errorCode(await t.gql(REISSUE, { challengeId: ch.challengeId, answer: await answer(ch.jwe, keys.privateKey) }))).toBe("UNAUTHENTICATED");
      const other = await makeUserKeyPair("P-256");
      const ch2 = (await t.gql(CHALLENGE, { postboxId: pb.id })).data!.userKeyChallenge;
      await expect(answer(ch2.jwe, other.privateKey)).rejects.toThrow();
      expect(await t.app.db.prisma.auditEvent.count({ where: { action: "user.reissue", postboxId: pb.id, outcome: "REFUSED", reason: "UNAUTHENTICATED:wrong_answer" } })).toBe(1);

      const pending = await createPostbox(t, session);
      expect(errorCode(await t.gql(CHALLENGE, { postboxId: pending.id }))).toBe("NOT_FOUND");
      expect(errorCode(await t.gql(CHALLENGE, { postboxId: "pbx_nosuchthing" }))).toBe("NOT_FOUND");
      expect(await t.app.db.prisma.userGrant.count({ where: { postboxId: pb.id } })).toBe(1);
    });

    it("asking writes nothing, so no number of askers crowds out the user's challenge; altered, forged and expired ones are refused", async () => {
      const pb = await createPostbox(t, session);
      const keys = await makeUserKeyPair("X25519");
      await accept(t, pb.consentUrl, keys.publicJwk);
      const used = () => t.app.db.prisma.usedKeyChallenge.count();
      const usedBefore = await used();
      const mine = (await t.gql(CHALLENGE, { postboxId: pb.id })).data!.userKeyChallenge;
      expect(mine.challengeId).toMatch(/^uch_/);
      // A stored, bounded set of open challenges let 1,000 asks from other addresses push the user's out.
      const others = await Promise.all(Array.from({ length: 1200 }, () => t.app.services.users.keyChallenge(pb.id)));
      expect(new Set(others.map((c) => c.challengeId)).size).toBe(1200);
      expect(await used()).toBe(usedBefore);

      // One character changed, or a challenge sealed with another key: no such challenge; neither uses up the real one.
      const i = 40;
      const altered = mine.challengeId.slice(0, i) + (mine.challengeId[i] === "A" ? "B" : "A") + mine.challengeId.slice(i + 1);
      const refusedAltered = await t.gql(REISSUE, { challengeId: altered, answer: await answer(mine.jwe, keys.privateKey) });
      expect(refusedAltered.errors![0].message).toMatch(/Unknown, used or expired challenge/);
      const forgedAnswer = Buffer.alloc(32, 7).toString("base64url");
      const forged = sealChallenge("another server's secret, 32 characters or more", {
        nonce: Buffer.alloc(16, 1).toString("base64url"),
        postboxId: pb.id,
        answerHash: createHash("sha256").update(forgedAnswer).digest(),
        expiresAt: new Date(Date.now() + 60_000),
      });
      expect(errorCode(await t.gql(REISSUE, { challengeId: forged, answer: forgedAnswer }))).toBe("UNAUTHENTICATED");
      expect(errorCode(await t.gql(REISSUE, { challengeId: "uch_" + "A".repeat(5000), answer: forgedAnswer }))).toBe("UNAUTHENTICATED");

      // A challenge past its time (made as if asked six minutes ago).
      const old = await t.app.services.users.keyChallenge(pb.id, new Date(Date.now() - 6 * 60_000));
      const late = await t.gql(REISSUE, { challengeId: old.challengeId, answer: await answer(old.jwe, keys.privateKey) });
      expect(late.errors![0].message).toMatch(/expired/);

      const ok = await t.gql(REISSUE, { challengeId: mine.challengeId, answer: await answer(mine.jwe, keys.privateKey) });
      expect(ok.errors).toBeUndefined();
      expect(ok.data!.reissueUserCredential.postboxId).toBe(pb.id);
      // Only the answered challenge is on record, until it expires.
      expect(await used()).toBe(usedBefore + 1);
      await t.app.services.users.sweep(new Date(Date.now() + 6 * 60_000));
      expect(await used()).toBe(0);
    });

    it("two answers to one challenge at the same time: one gets a credential", async () => {
      const pb = await createPostbox(t, session);
      const keys = await makeUserKeyPair("RSA");
      await accept(t, pb.consentUrl, keys.publicJwk);
      const ch = (await t.gql(CHALLENGE, { postboxId: pb.id })).data!.userKeyChallenge;
      const a = await answer(ch.jwe, keys.privateKey);
      const both = await Promise.all([t.gql(REISSUE, { challengeId: ch.challengeId, answer: a }), t.gql(REISSUE, { challengeId: ch.challengeId, answer: a })]);
      expect(both.filter((r) => r.data?.reissueUserCredential).length).toBe(1);
      expect(both.filter((r) => errorCode(r) === "UNAUTHENTICATED").length).toBe(1);
    });
  });

  it("an expired access token is refused with a hint to refresh", async () => {
    const pb = await createPostbox(t, session);
    const a = await accept(t, pb.consentUrl, (await makeUserKeyPair("RSA")).publicJwk);
    await t.app.db.prisma.userGrant.updateMany({ where: { postboxId: pb.id }, data: { accessExpiresAt: new Date(Date.now() - 1000) } });
    const r = await t.gql(MY_POSTBOX, {}, { token: a.credential.accessToken });
    expect(errorCode(r)).toBe("UNAUTHENTICATED");
    expect(r.errors![0].message).toMatch(/refreshUserToken/);
  });

  it("user tokens work over WebSocket, and session-only operations refuse them", async () => {
    const pb = await createPostbox(t, session);
    const a = await accept(t, pb.consentUrl, (await makeUserKeyPair("RSA")).publicJwk);
    const c = subscriber(a.credential.accessToken);
    const q = collect<{ myPostbox: { id: string } }>(c, MY_POSTBOX);
    expect((await q.next(1)).myPostbox.id).toBe(pb.id);
    expect(errorCode(await t.gql(GET, { id: pb.id }, { token: a.credential.accessToken }))).toBe("UNAUTHENTICATED");
    expect(errorCode(await t.gql(MY_POSTBOX, {}, { token: session }))).toBe("UNAUTHENTICATED");
  });
});

describe("expiry (sweeper)", () => {
  it("expires a PENDING postbox whose consent link ran out, exactly once", async () => {
    const pb = await createPostbox(t, session);
    const sub = collect<StatusEvent>(subscriber(), STATUS_CHANGED, { postboxId: pb.id });
    await sub.next(1);
    await t.app.db.prisma.postbox.update({ where: { id: pb.id }, data: { consentExpiresAt: new Date(Date.now() - 1000) } });

    // Until the sweeper runs, the link is already refused.
    const early = await t.gql(DECLINE, { input: { code: codeOf(pb.consentUrl) } });
    expect(errorCode(early)).toBe("POSTBOX_EXPIRED");

    await t.app.scheduler.tick();
    await t.app.scheduler.tick();
    expect((await sub.next(2)).postboxStatusChanged).toMatchObject({ status: "EXPIRED", previousStatus: "PENDING" });
    await expect(sub.next(3)).rejects.toThrow("subscription completed");
    expect((await t.gql(GET, { id: pb.id }, { token: session })).data!.postbox.status).toBe("EXPIRED");
    const audits = await t.app.db.prisma.auditEvent.findMany({ where: { postboxId: pb.id, action: "postbox.expire" } });
    expect(audits.map((e) => [e.outcome, e.actorType])).toEqual([["SUCCESS", "SYSTEM"]]);
    const hooks = await webhooksFor(pb.id, 1);
    expect(hooks.map((h) => h.body.type)).toEqual(["postbox.expired"]);
    expect(hooks[0].body.data).toMatchObject({ status: "EXPIRED", previousStatus: "PENDING", reason: "consent_expired" });
    expect(await t.app.db.prisma.webhookDelivery.count({ where: { eventType: "postbox.expired", payload: { contains: pb.id } } })).toBe(1);
  });

  it("expires a READY postbox at the end of its lifetime and revokes the user's grant", async () => {
    const pb = await createPostbox(t, session);
    const a = await accept(t, pb.consentUrl, (await makeUserKeyPair("RSA")).publicJwk);
    const sub = collect<StatusEvent>(subscriber(), STATUS_CHANGED, { postboxId: pb.id });
    expect((await sub.next(1)).postboxStatusChanged.status).toBe("READY");
    await t.app.db.prisma.postbox.update({ where: { id: pb.id }, data: { expiresAt: new Date(Date.now() - 1000) } });

    await t.app.scheduler.tick();
    expect((await sub.next(2)).postboxStatusChanged).toMatchObject({ status: "EXPIRED", previousStatus: "READY" });
    const grant = await t.app.db.prisma.userGrant.findFirstOrThrow({ where: { postboxId: pb.id } });
    expect(grant.revokedAt).not.toBeNull();
    const r = await t.gql(MY_POSTBOX, {}, { token: a.credential.accessToken });
    expect(errorCode(r)).toBe("UNAUTHENTICATED");
    const hooks = await webhooksFor(pb.id, 2);
    expect(hooks[1].body).toMatchObject({ type: "postbox.expired", data: { previousStatus: "READY", reason: "lifetime_ended" } });
  });
});

describe("subscription lifetime", () => {
  it("a stream ends when its session expires", async () => {
    const key = await createSession(t, app);
    await t.app.db.prisma.session.updateMany({ where: { revokedAt: null, contractId: app.contractId, expiresAt: { gt: new Date(Date.now() + 60_000) } }, data: { expiresAt: new Date(Date.now() + 1500) } });
    const opened = t.app.services.postboxes.openSubscriptions;
    const s = collect<StatusEvent>(subscriber(key), STATUS_CHANGED, {});
    await waitUntil(() => t.app.services.postboxes.openSubscriptions > opened, "the subscription is registered");
    await expect(s.next(1)).rejects.toThrow("subscription completed");
    await waitUntil(() => t.app.services.postboxes.openSubscriptions === opened, "the stream is released on the server");
    session = await createSession(t, app);
  });
});

describe("scoping to the session's contract", () => {
  let other: TestApp;
  let otherSession: string;
  beforeAll(async () => {
    other = await registerApp(t, { name: "Other app" });
    otherSession = await createSession(t, other);
  });

  it("another contract's postbox is NOT_FOUND on query, close and subscribe", async () => {
    const pb = await createPostbox(t, session);
    await accept(t, pb.consentUrl, (await makeUserKeyPair("RSA")).publicJwk);

    const q = await t.gql(GET, { id: pb.id }, { token: otherSession });
    expect(errorCode(q)).toBe("NOT_FOUND");
    expect(q.errors![0].message).toBe(`Postbox ${pb.id} was not found.`);

    const refusedBefore = await t.app.db.prisma.auditEvent.count({ where: { action: "postbox.close", outcome: "REFUSED", contractId: other.contractId } });
    const c = await t.gql(CLOSE, { id: pb.id }, { token: otherSession });
    expect(errorCode(c)).toBe("NOT_FOUND");
    expect((await t.gql(GET, { id: pb.id }, { token: session })).data!.postbox.status).toBe("READY");
    expect(await t.app.db.prisma.auditEvent.count({ where: { action: "postbox.close", outcome: "REFUSED", contractId: other.contractId } })).toBe(refusedBefore + 1);

    const s = collect<StatusEvent>(subscriber(otherSession), STATUS_CHANGED, { postboxId: pb.id });
    await expect(s.next(1)).rejects.toEqual([expect.objectContaining({ message: `Postbox ${pb.id} was not found.`, extensions: expect.objectContaining({ code: "NOT_FOUND" }) })]);

    const list = await t.gql(LIST, {}, { token: otherSession });
    expect(list.data!.postboxes.edges.map((e: { node: { id: string } }) => e.node.id)).not.toContain(pb.id);
  });

  it("a contract-wide subscription never sees another contract's changes", async () => {
    const opened = t.app.services.postboxes.openSubscriptions;
    const theirs = collect<StatusEvent>(subscriber(otherSession), STATUS_CHANGED, {});
    await waitUntil(() => t.app.services.postboxes.openSubscriptions > opened, "subscription registered");
    const mine = await createPostbox(t, session);
    await accept(t, mine.consentUrl, (await makeUserKeyPair("RSA")).publicJwk);
    const own = await createPostbox(t, otherSession);
    await accept(t, own.consentUrl, (await makeUserKeyPair("RSA")).publicJwk);
    // Events arrive in publication order: had the first contract's event leaked, it would come first.
    expect((await theirs.next(1)).postboxStatusChanged).toMatchObject({ postboxId: own.id, status: "READY" });
    expect(theirs.events).toHaveLength(1);
  });
});

describe("postboxes pagination", () => {
  it("pages newest first with opaque cursors, filters by status, and refuses bad arguments", async () => {
    const a = await registerApp(t);
    const s = await createSession(t, a);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await createPostbox(t, s, { reference: `r${i}` })).id);
    const newestFirst = [...ids].reverse();

    const seen: string[] = [];
    let after: string | null = null;
    const pages: number[] = [];
    for (;;) {
      const r: GqlResult = await t.gql(LIST, { first: 2, after }, { token: s });
      expect(r.errors).toBeUndefined();
      const conn: { edges: { cursor: string; node: { id: string } }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } } = r.data!.postboxes;
      pages.push(conn.edges.length);
      seen.push(...conn.edges.map((e) => e.node.id));
      expect(conn.pageInfo.endCursor).toBe(conn.edges.at(-1)?.cursor ?? null);
      if (!conn.pageInfo.hasNextPage) break;
      after = conn.pageInfo.endCursor;
    }
    expect(pages).toEqual([2, 2, 1]);
    expect(seen).toEqual(newestFirst);

    await accept(t, (await createPostbox(t, s)).consentUrl, (await makeUserKeyPair("RSA")).publicJwk);
    const ready = await t.gql(LIST, { status: "READY" }, { token: s });
    expect(ready.data!.postboxes.edges).toHaveLength(1);
    expect(ready.data!.postboxes.edges[0].node.status).toBe("READY");
    expect((await t.gql(LIST, { status: "PENDING", first: 100 }, { token: s })).data!.postboxes.edges).toHaveLength(5);

    for (const [vars, field] of [[{ first: 0 }, "first"], [{ first: 101 }, "first"], [{ after: "garbage!" }, "after"], [{ after: Buffer.from('["x","y"]').toString("base64url") }, "after"]] as const) {
      const r = await t.gql(LIST, vars, { token: s });
      expect(errorCode(r)).toBe("BAD_USER_INPUT");
      expect(r.errors![0].extensions?.field).toBe(field);
    }
    expect(errorCode(await t.gql(LIST, {}))).toBe("UNAUTHENTICATED");
  });
});
