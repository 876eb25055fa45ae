// Data requested back from the user, end to end over HTTP and WebSocket: the app
// asks through a READY postbox → the user's device lists the request with the
// READ contract's public key, encrypts a file to it and answers → the app (its
// WRITE or its READ contract) fetches the ciphertext and decrypts it with the READ
// private key to the same bytes. Declines, expiry, purge, events, webhooks, the
// audit trail, scoping, and refusals that write nothing but an audit event.
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { createHash, randomBytes } from "node:crypto";
import { CompactEncrypt, compactDecrypt, decodeProtectedHeader, exportJWK, importJWK, calculateJwkThumbprint, type JWK } from "jose";
import { addContract, createReadyPostboxForPush, createSession, registerApp, type PushTarget, type TestApp } from "../helpers/factories.js";
import { errorCode, startTestServer, type TestServer } from "../helpers/server.js";
import { collect, wsClient } from "../helpers/ws.js";

const MAX_BYTES = 64 * 1024;

let t: TestServer;
let app: TestApp; // WRITE contract
let read: TestApp; // the same application's READ contract (PS512 key: RSA)
let session: string;
let readSession: string;
let target: PushTarget;

beforeAll(async () => {
  t = await startTestServer({ env: { MAX_PUSH_BYTES: String(MAX_BYTES), DATA_RESPONSE_RETENTION: "1d" } });
  app = await registerApp(t, { name: "Acme Health" });
  read = await addContract(t, app.appId, { kind: "READ", alg: "PS512" });
  session = await createSession(t, app);
  readSession = await createSession(t, read);
  target = await createReadyPostboxForPush(t, session, "P-256");
});
afterAll(async () => t?.stop());

const REQUEST_FIELDS = "id postboxId contractId readContractId readKeyKid title description acceptedMimeTypes status createdAt expiresAt respondedAt response { id size sha256 createdAt purgedAt }";
const REQUEST_DATA = `mutation($postboxId: ID!, $input: RequestDataInput!) { requestData(postboxId: $postboxId, input: $input) { ${REQUEST_FIELDS} } }`;
const DATA_REQUEST = `query($id: ID!) { dataRequest(id: $id) { ${REQUEST_FIELDS} } }`;
const DATA_REQUESTS = `query($postboxId: ID!, $status: DataRequestStatus, $first: Int, $after: String) { dataRequests(postboxId: $postboxId, status: $status, first: $first, after: $after) { edges { cursor node { id status } } pageInfo { hasNextPage endCursor } } }`;
const DATA_RESPONSE = `query($requestId: ID!) { dataResponse(requestId: $requestId) { requestId ciphertext descriptor kid size sha256 createdAt } }`;
const MY_REQUESTS = `query($status: DataRequestStatus) { myDataRequests(status: $status) { id postboxId applicationName title description acceptedMimeTypes status expiresAt respondedAt maxBytes recipientKey { kid alg enc jwk } } }`;
const MY_PENDING = `query { myDataRequests { id status recipientKey { kid alg enc jwk } } }`;
const RESPOND = `mutation($id: ID!, $input: DataResponseInput!) { respondToDataRequest(id: $id, input: $input) { id status respondedAt recipientKey { kid } } }`;
const DECLINE = `mutation($id: ID!) { declineDataRequest(id: $id) { id status respondedAt } }`;
const SUB = `subscription($postboxId: ID) { dataRequestStatusChanged(postboxId: $postboxId) { dataRequestId postboxId status at } }`;

interface RecipientKey {
  kid: string;
  alg: string;
  enc: string;
  jwk: Record<string, unknown>;
}

/** `token` null: no Authorization header. */
async function ask(input: Record<string, unknown> = {}, postboxId = target.postboxId, token: string | null = session) {
  return t.gql(REQUEST_DATA, { postboxId, input: { title: "Your latest blood test", description: "To update your care plan.", acceptedMimeTypes: ["application/pdf", "text/*"], ...input } }, { token: token ?? undefined });
}

async function askOk(input: Record<string, unknown> = {}, postboxId = target.postboxId, token = session) {
  const r = await ask(input, postboxId, token);
  expect(r.errors).toBeUndefined();
  return r.data!.requestData as { id: string; status: string; readKeyKid: string; [k: string]: unknown };
}

/** What the user's device does: encrypts to the request's recipient key with jose. */
async function encryptTo(key: RecipientKey, bytes: Uint8Array, header: Record<string, unknown> = {}) {
  return new CompactEncrypt(bytes).setProtectedHeader({ alg: key.alg, enc: "A256GCM", kid: key.kid, ...header } as never).encrypt(await importJWK(key.jwk as JWK, key.alg));
}

async function recipientKeyOf(requestId: string, token = target.accessToken): Promise<RecipientKey> {
  const r = await t.gql(MY_PENDING, {}, { token });
  expect(r.errors).toBeUndefined();
  const found = (r.data!.myDataRequests as { id: string; recipientKey: RecipientKey }[]).find((x) => x.id === requestId);
  if (!found) throw new Error(`request ${requestId} is not pending for this user`);
  return found.recipientKey;
}

async function answer(requestId: string, bytes: Uint8Array, meta = { fileName: "result.pdf", mimeType: "application/pdf" }, token = target.accessToken) {
  const key = await recipientKeyOf(requestId, token);
  const ciphertext = await encryptTo(key, bytes);
  const descriptor = await encryptTo(key, new TextEncoder().encode(JSON.stringify({ ...meta, size: bytes.length })));
  return { r: await t.gql(RESPOND, { id: requestId, input: { ciphertext, descriptor } }, { token }), ciphertext, descriptor };
}

/** The READ contract's private key as the app would use it: its signing key, re-imported for decryption. */
async function readDecryptionKey(contract: TestApp) {
  const jwk = await exportJWK(contract.privateKey);
  const alg = jwk.kty === "RSA" ? "RSA-OAEP-256" : "ECDH-ES+A256KW";
  return importJWK({ ...jwk, alg, key_ops: undefined, use: undefined } as JWK, alg);
}

async function counts() {
  const p = t.app.db.prisma;
  return {
    requests: await p.dataRequest.count(),
    byStatus: Object.fromEntries((await p.dataRequest.groupBy({ by: ["status"], _count: { _all: true } })).map((g) => [g.status, g._count._all])),
    responses: await p.dataResponse.count(),
    deliveries: await p.webhookDelivery.count(),
    success: await p.auditEvent.count({ where: { outcome: "SUCCESS" } }),
  };
}

function refused(action: string) {
  return t.app.db.prisma.auditEvent.count({ where: { action, outcome: "REFUSED" } });
}

async function waitForSubscriptions(n: number) {
  // Polls the server's own count, so the change cannot race the subscription's registration.
  while (t.app.services.dataRequests.openSubscriptions < n) await new Promise((r) => setTimeout(r, 10));
}

describe("request → answer → fetch → decrypt", () => {
  it.each(["PS512", "ES256"] as const)("the app decrypts the user's answer with its READ private key (%s READ key) and gets the same bytes", async (alg) => {
    // Each application has one READ contract; the ES256 case uses its own application.
    const a = alg === "PS512" ? { app, read, session, readSession, target } : await (async () => {
      const w = await registerApp(t, { name: "Acme EC" });
      const r = await addContract(t, w.appId, { kind: "READ", alg: "ES256" });
      const s = await createSession(t, w);
      return { app: w, read: r, session: s, readSession: await createSession(t, r), target: await createReadyPostboxForPush(t, s, "RSA") };
    })();
    const hook = await t.gql(`mutation($url: String!) { setWebhook(url: $url) { url } }`, { url: "http://127.0.0.1:9/hooks" }, { token: a.session });
    expect(hook.errors).toBeUndefined();

    const subscriber = wsClient(t.wsUrl, `Bearer ${a.session}`);
    const readSubscriber = wsClient(t.wsUrl, `Bearer ${a.readSession}`);
    const open = t.app.services.dataRequests.openSubscriptions;
    const events = collect(subscriber, SUB, { postboxId: a.target.postboxId });
    const readEvents = collect(readSubscriber, SUB, {});
    await waitForSubscriptions(open + 2);

    const created = await askOk({}, a.target.postboxId, a.session);
    expect(created).toMatchObject({ status: "PENDING", postboxId: a.target.postboxId, contractId: a.app.contractId, readContractId: a.read.contractId, response: null });
    const readThumb = await calculateJwkThumbprint(a.read.publicJwk as JWK, "sha256");
    expect(created.readKeyKid).toBe(readThumb);
    expect((await events.next(1)).dataRequestStatusChanged).toMatchObject({ dataRequestId: created.id, status: "PENDING" });

    // The user's device sees the request with the READ key as an encryption key, public members only.
    const mine = await t.gql(MY_REQUESTS, {}, { token: a.target.accessToken });
    expect(mine.errors).toBeUndefined();
    const pending = mine.data!.myDataRequests.find((x: { id: string }) => x.id === created.id);
    expect(pending).toMatchObject({ applicationName: a.app.appId === app.appId ? "Acme Health" : "Acme EC", title: "Your latest blood test", acceptedMimeTypes: ["application/pdf", "text/*"], status: "PENDING", maxBytes: MAX_BYTES });
    const key = pending.recipientKey as RecipientKey;
    expect(key).toMatchObject({ kid: readThumb, alg: alg === "PS512" ? "RSA-OAEP-256" : "ECDH-ES+A256KW", enc: "A256GCM" });
    expect(key.jwk).toMatchObject({ kid: readThumb, alg: key.alg, use: "enc" });
    for (const m of ["d", "p", "q", "dp", "dq", "qi"]) expect(key.jwk).not.toHaveProperty(m);

    const bytes = randomBytes(3000);
    const { r, ciphertext, descriptor } = await answer(created.id, bytes, { fileName: "result.pdf", mimeType: "application/pdf" }, a.target.accessToken);
    expect(r.errors).toBeUndefined();
    expect(r.data!.respondToDataRequest).toMatchObject({ id: created.id, status: "FULFILLED", recipientKey: null });
    expect((await events.next(2)).dataRequestStatusChanged).toMatchObject({ dataRequestId: created.id, status: "FULFILLED" });
    // The READ contract's session follows the requests answered to it.
    expect((await readEvents.next(2)).dataRequestStatusChanged).toMatchObject({ dataRequestId: created.id, status: "FULFILLED" });

    // Both the asking WRITE contract and the READ contract can fetch; the READ private key decrypts.
    for (const token of [a.session, a.readSession]) {
      const got = await t.gql(DATA_RESPONSE, { requestId: created.id }, { token });
      expect(got.errors).toBeUndefined();
      const res = got.data!.dataResponse;
      expect(res).toMatchObject({ requestId: created.id, ciphertext, descriptor, kid: readThumb, size: ciphertext.length, sha256: createHash("sha256").update(ciphertext).digest("hex") });
      const priv = await readDecryptionKey(a.read);
      expect(Buffer.from((await compactDecrypt(res.ciphertext, priv)).plaintext).equals(bytes)).toBe(true);
      expect(JSON.parse(Buffer.from((await compactDecrypt(res.descriptor, priv)).plaintext).toString())).toEqual({ fileName: "result.pdf", mimeType: "application/pdf", size: 3000 });
      expect(decodeProtectedHeader(res.ciphertext)).toMatchObject({ kid: readThumb, enc: "A256GCM" });
    }
    const info = await t.gql(DATA_REQUEST, { id: created.id }, { token: a.session });
    expect(info.data!.dataRequest).toMatchObject({ status: "FULFILLED", response: { size: ciphertext.length, purgedAt: null } });
    expect(info.data!.dataRequest.respondedAt).toBeTruthy();

    // Webhook outbox (the asking contract has an endpoint), and the audit trail.
    const delivery = await t.app.db.prisma.webhookDelivery.findFirst({ where: { contractId: a.app.contractId, eventType: "data_request.fulfilled" } });
    expect(JSON.parse(delivery!.payload)).toMatchObject({ type: "data_request.fulfilled", data: { dataRequestId: created.id, postboxId: a.target.postboxId, status: "FULFILLED" } });
    expect(delivery!.payload).not.toContain(ciphertext.slice(0, 40));
    const audit = await t.app.db.prisma.auditEvent.findMany({ where: { targetId: created.id, outcome: "SUCCESS" }, orderBy: { seq: "asc" } });
    expect(audit.map((e) => e.action)).toEqual(["data_request.create", "data_request.fulfill", "data_request.fetch", "data_request.fetch"]);
    expect(audit[1]).toMatchObject({ actorType: "USER", postboxId: a.target.postboxId, contractId: a.app.contractId });

    // Only ciphertext is stored; nothing of the file appears in the database row or the logs.
    const row = await t.app.db.prisma.dataResponse.findUnique({ where: { requestId: created.id } });
    expect(row!.ciphertext).toBe(ciphertext);
    expect(t.logs.join("\n")).not.toContain(bytes.toString("base64").slice(0, 40));

    events.dispose();
    readEvents.dispose();
    await subscriber.dispose();
    await readSubscriber.dispose();
  });

  it("lists the postbox's requests for the asking contract and the READ contract, newest first, in pages", async () => {
    const p = await createReadyPostboxForPush(t, session, "P-256");
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await askOk({ title: `Request ${i}` }, p.postboxId)).id);
    for (const token of [session, readSession]) {
      const first = await t.gql(DATA_REQUESTS, { postboxId: p.postboxId, first: 2 }, { token });
      expect(first.errors).toBeUndefined();
      expect(first.data!.dataRequests.edges.map((e: { node: { id: string } }) => e.node.id)).toEqual([ids[2], ids[1]]);
      expect(first.data!.dataRequests.pageInfo.hasNextPage).toBe(true);
      const second = await t.gql(DATA_REQUESTS, { postboxId: p.postboxId, first: 2, after: first.data!.dataRequests.pageInfo.endCursor }, { token });
      expect(second.data!.dataRequests.edges.map((e: { node: { id: string } }) => e.node.id)).toEqual([ids[0]]);
      expect(second.data!.dataRequests.pageInfo.hasNextPage).toBe(false);
    }
    await t.gql(DECLINE, { id: ids[1] }, { token: p.accessToken });
    const declined = await t.gql(DATA_REQUESTS, { postboxId: p.postboxId, status: "DECLINED" }, { token: session });
    expect(declined.data!.dataRequests.edges.map((e: { node: { id: string } }) => e.node.id)).toEqual([ids[1]]);
    const bad = await t.gql(DATA_REQUESTS, { postboxId: p.postboxId, after: "not-a-cursor" }, { token: session });
    expect(errorCode(bad)).toBe("BAD_USER_INPUT");
  });
});

describe("the user declines", () => {
  it("marks the request DECLINED, audits it, writes the webhook and refuses a later answer", async () => {
    await t.gql(`mutation($url: String!) { setWebhook(url: $url) { url } }`, { url: "http://127.0.0.1:9/hooks" }, { token: session });
    const created = await askOk();
    const key = await recipientKeyOf(created.id);
    const r = await t.gql(DECLINE, { id: created.id }, { token: target.accessToken });
    expect(r.errors).toBeUndefined();
    expect(r.data!.declineDataRequest).toMatchObject({ id: created.id, status: "DECLINED" });
    const delivery = await t.app.db.prisma.webhookDelivery.findFirst({ where: { eventType: "data_request.declined", payload: { contains: created.id } } });
    expect(JSON.parse(delivery!.payload).data).toMatchObject({ dataRequestId: created.id, status: "DECLINED" });
    expect(await t.app.db.prisma.auditEvent.count({ where: { targetId: created.id, action: "data_request.decline", outcome: "SUCCESS" } })).toBe(1);

    // Gone from the user's pending list; listed with status: null.
    const pending = await t.gql(MY_PENDING, {}, { token: target.accessToken });
    expect(pending.data!.myDataRequests.map((x: { id: string }) => x.id)).not.toContain(created.id);
    const all = await t.gql(MY_REQUESTS, { status: null }, { token: target.accessToken });
    expect(all.data!.myDataRequests.find((x: { id: string }) => x.id === created.id)).toMatchObject({ status: "DECLINED", recipientKey: null });

    const before = await counts();
    const refusedBefore = await refused("data_request.fulfill");
    const late = await t.gql(RESPOND, { id: created.id, input: { ciphertext: await encryptTo(key, new Uint8Array([1])), descriptor: await encryptTo(key, new Uint8Array([2])) } }, { token: target.accessToken });
    expect(errorCode(late)).toBe("CONFLICT");
    expect(late.errors![0].message).toMatch(/already DECLINED/);
    expect(await counts()).toEqual(before);
    expect(await refused("data_request.fulfill")).toBe(refusedBefore + 1);
    const again = await t.gql(DECLINE, { id: created.id }, { token: target.accessToken });
    expect(errorCode(again)).toBe("CONFLICT");
  });
});

describe("a change between the user's request and its commit", () => {
  /** Runs `between` once, after the service's checks and before its transaction (as another request or the clock would). */
  function before(between: () => Promise<unknown>) {
    const repo = (t.app.services.dataRequests as unknown as { repo: { transaction: (fn: unknown) => Promise<unknown> } }).repo;
    const original = repo.transaction;
    repo.transaction = async (fn) => {
      repo.transaction = original;
      await between();
      return original.call(repo, fn);
    };
  }

  it("refuses an answer once the postbox was closed, and a refusal once the deadline passed, leaving the request to the sweeper", async () => {
    const user = await createReadyPostboxForPush(t, session, "P-256");
    const answered = await askOk({}, user.postboxId);
    const key = await recipientKeyOf(answered.id, user.accessToken);
    const input = { ciphertext: await encryptTo(key, new Uint8Array([1])), descriptor: await encryptTo(key, new Uint8Array([2])) };
    const declined = await askOk({}, user.postboxId);

    before(() => t.app.db.prisma.dataRequest.update({ where: { id: declined.id }, data: { expiresAt: new Date(Date.now() - 1000) } }));
    const late = await t.gql(DECLINE, { id: declined.id }, { token: user.accessToken });
    expect(errorCode(late)).toBe("CONFLICT");

    before(() => t.app.db.prisma.postbox.update({ where: { id: user.postboxId }, data: { status: "CLOSED", closedAt: new Date() } }));
    const closed = await t.gql(RESPOND, { id: answered.id, input }, { token: user.accessToken });
    expect(errorCode(closed)).toBe("CONFLICT");

    const rows = await t.app.db.prisma.dataRequest.findMany({ where: { id: { in: [answered.id, declined.id] } } });
    expect(rows.map((r) => r.status)).toEqual(["PENDING", "PENDING"]);
    expect(await t.app.db.prisma.dataResponse.count({ where: { requestId: answered.id } })).toBe(0);
    await t.app.services.dataRequests.sweep();
    const swept = await t.app.db.prisma.dataRequest.findMany({ where: { id: { in: [answered.id, declined.id] } } });
    expect(swept.map((r) => r.status)).toEqual(["EXPIRED", "EXPIRED"]);
  });
});

describe("requestData refusals write nothing but an audit event", () => {
  let noReadApp: TestApp;
  let noReadSession: string;
  let noReadTarget: PushTarget;
  let other: TestApp;
  let otherSession: string;
  let pendingPostboxId: string;

  beforeAll(async () => {
    noReadApp = await registerApp(t, { name: "No READ contract" });
    noReadSession = await createSession(t, noReadApp);
    noReadTarget = await createReadyPostboxForPush(t, noReadSession, "P-256");
    other = await registerApp(t, { name: "Other" });
    await addContract(t, other.appId, { kind: "READ" });
    otherSession = await createSession(t, other);
    const created = await t.gql(`mutation { createPostbox { id } }`, {}, { token: session });
    pendingPostboxId = created.data!.createPostbox.id;
  });

  const cases: [string, () => Promise<{ postboxId: string; token?: string | null; input?: Record<string, unknown> }>, string, RegExp][] = [
    ["an application without a READ contract", async () => ({ postboxId: noReadTarget.postboxId, token: noReadSession }), "BAD_USER_INPUT", /no READ contract.*npm run cli -- contract add app_\w+ --kind READ/],
    ["another contract's postbox", async () => ({ postboxId: target.postboxId, token: otherSession }), "NOT_FOUND", /not found/],
    ["a READ contract's session", async () => ({ postboxId: target.postboxId, token: readSession }), "NOT_FOUND", /WRITE contract/],
    ["an unknown postbox", async () => ({ postboxId: "pbx_unknown" }), "NOT_FOUND", /not found/],
    ["a PENDING postbox", async () => ({ postboxId: pendingPostboxId }), "POSTBOX_NOT_READY", /not accepted it yet/],
    ["a blank title", async () => ({ postboxId: target.postboxId, input: { title: "   " } }), "BAD_USER_INPUT", /title/],
    ["a bad MIME type", async () => ({ postboxId: target.postboxId, input: { acceptedMimeTypes: ["pdf"] } }), "BAD_USER_INPUT", /not a MIME type/],
    ["a deadline beyond DATA_REQUEST_TTL", async () => ({ postboxId: target.postboxId, input: { expiresInSeconds: 30 * 86400 } }), "BAD_USER_INPUT", /expiresInSeconds/],
    ["no session", async () => ({ postboxId: target.postboxId, token: null }), "UNAUTHENTICATED", /session/],
  ];

  it.each(cases)("refuses %s", async (_name, make, code, message) => {
    const { postboxId, token, input } = await make();
    const before = await counts();
    const refusedBefore = await refused("data_request.create");
    const r = await ask(input ?? {}, postboxId, token === undefined ? session : token);
    expect(errorCode(r)).toBe(code);
    expect(r.errors![0].message).toMatch(message);
    expect(await counts()).toEqual(before);
    expect(await refused("data_request.create")).toBe(refusedBefore + 1);
  });

  it("refuses a closed postbox", async () => {
    const p = await createReadyPostboxForPush(t, session, "P-256");
    expect((await t.gql(`mutation($id: ID!) { closePostbox(id: $id) { status } }`, { id: p.postboxId }, { token: session })).errors).toBeUndefined();
    const before = await counts();
    const r = await ask({}, p.postboxId);
    expect(errorCode(r)).toBe("POSTBOX_NOT_READY");
    expect(await counts()).toEqual(before);
  });
});

describe("respondToDataRequest refusals write nothing but an audit event", () => {
  let requestId: string;
  let key: RecipientKey;
  let otherUser: PushTarget;

  beforeAll(async () => {
    requestId = (await askOk()).id;
    key = await recipientKeyOf(requestId);
    otherUser = await createReadyPostboxForPush(t, session, "P-256");
  });

  const small = new Uint8Array([1, 2, 3]);
  const cases: [string, () => Promise<{ ciphertext: string; descriptor: string; token?: string }>, string, RegExp][] = [
    ["a JWE to another kid", async () => ({ ciphertext: await encryptTo(key, small, { kid: "someone-else" }), descriptor: await encryptTo(key, small) }), "BAD_USER_INPUT", /kid/],
    ["a descriptor to another kid", async () => ({ ciphertext: await encryptTo(key, small), descriptor: await encryptTo(key, small, { kid: "x" }) }), "BAD_USER_INPUT", /descriptor.*kid/],
    ["another key management algorithm", async () => ({ ciphertext: await new CompactEncrypt(small).setProtectedHeader({ alg: "dir", enc: "A256GCM", kid: key.kid }).encrypt(randomBytes(32)), descriptor: await encryptTo(key, small) }), "BAD_USER_INPUT", /alg/],
    ["another content encryption", async () => ({ ciphertext: await encryptTo(key, small, { enc: "A128GCM" }), descriptor: await encryptTo(key, small) }), "BAD_USER_INPUT", /enc|iv/],
    ["text that is not a JWE", async () => ({ ciphertext: "hello", descriptor: await encryptTo(key, small) }), "BAD_USER_INPUT", /compact serialization/],
    ["a file over MAX_PUSH_BYTES", async () => ({ ciphertext: await encryptTo(key, randomBytes(MAX_BYTES + 1)), descriptor: await encryptTo(key, small) }), "PAYLOAD_TOO_LARGE", /at most 65536 bytes/],
    ["an answer from another postbox's user", async () => ({ ciphertext: await encryptTo(key, small), descriptor: await encryptTo(key, small), token: otherUser.accessToken }), "NOT_FOUND", /not found/],
  ];

  it.each(cases)("refuses %s", async (_name, make, code, message) => {
    const { ciphertext, descriptor, token } = await make();
    const before = await counts();
    const refusedBefore = await refused("data_request.fulfill");
    const r = await t.gql(RESPOND, { id: requestId, input: { ciphertext, descriptor } }, { token: token ?? target.accessToken });
    expect(errorCode(r)).toBe(code);
    expect(r.errors![0].message).toMatch(message);
    expect(await counts()).toEqual(before);
    expect(await refused("data_request.fulfill")).toBe(refusedBefore + 1);
  });

  it("refuses a session key or no token on the user side", async () => {
    for (const token of [session, undefined]) {
      expect(errorCode(await t.gql(MY_PENDING, {}, { token }))).toBe("UNAUTHENTICATED");
      expect(errorCode(await t.gql(DECLINE, { id: requestId }, { token }))).toBe("UNAUTHENTICATED");
    }
    expect((await t.gql(DATA_REQUEST, { id: requestId }, { token: session })).data!.dataRequest.status).toBe("PENDING");
  });
});

describe("scoping on the application side", () => {
  it("shows a request only to the asking WRITE contract and the application's READ contract", async () => {
    const created = await askOk();
    const other = await registerApp(t);
    const otherSession = await createSession(t, other);
    const secondWrite = await addContract(t, app.appId, { kind: "WRITE" });
    const secondWriteSession = await createSession(t, secondWrite);
    for (const token of [otherSession, secondWriteSession]) {
      expect(errorCode(await t.gql(DATA_REQUEST, { id: created.id }, { token }))).toBe("NOT_FOUND");
      expect(errorCode(await t.gql(DATA_REQUESTS, { postboxId: target.postboxId }, { token }))).toBe("NOT_FOUND");
      expect(errorCode(await t.gql(DATA_RESPONSE, { requestId: created.id }, { token }))).toBe("NOT_FOUND");
    }
    for (const token of [session, readSession]) expect((await t.gql(DATA_REQUEST, { id: created.id }, { token })).data!.dataRequest.id).toBe(created.id);

    // A subscription to someone else's postbox is refused, not silently empty.
    const client = wsClient(t.wsUrl, `Bearer ${otherSession}`);
    const sub = collect(client, SUB, { postboxId: target.postboxId });
    await expect(sub.next(1)).rejects.toBeTruthy();
    expect(JSON.stringify(sub.errors)).toMatch(/NOT_FOUND|not found/);
    await client.dispose();
  });

  it("refuses dataResponse for a request that has no answer, and audits the refusal", async () => {
    const created = await askOk();
    const before = await refused("data_request.fetch");
    const r = await t.gql(DATA_RESPONSE, { requestId: created.id }, { token: session });
    expect(errorCode(r)).toBe("CONFLICT");
    expect(r.errors![0].message).toMatch(/PENDING/);
    expect(await refused("data_request.fetch")).toBe(before + 1);
  });
});

describe("the sweeper", () => {
  it("expires an unanswered request, publishes it, and refuses a late answer", async () => {
    const created = await askOk({ expiresInSeconds: 60 });
    const key = await recipientKeyOf(created.id);
    const client = wsClient(t.wsUrl, `Bearer ${session}`);
    const open = t.app.services.dataRequests.openSubscriptions;
    const events = collect(client, SUB, { postboxId: target.postboxId });
    await waitForSubscriptions(open + 1);
    await t.app.services.dataRequests.sweep(new Date());
    expect((await t.gql(DATA_REQUEST, { id: created.id }, { token: session })).data!.dataRequest.status).toBe("PENDING");
    await t.app.services.dataRequests.sweep(new Date(Date.now() + 61_000));
    expect((await events.next(1)).dataRequestStatusChanged).toMatchObject({ dataRequestId: created.id, status: "EXPIRED" });
    expect((await t.gql(DATA_REQUEST, { id: created.id }, { token: session })).data!.dataRequest.status).toBe("EXPIRED");
    expect(await t.app.db.prisma.auditEvent.count({ where: { targetId: created.id, action: "data_request.expire", actorType: "SYSTEM" } })).toBe(1);
    const late = await t.gql(RESPOND, { id: created.id, input: { ciphertext: await encryptTo(key, new Uint8Array([1])), descriptor: await encryptTo(key, new Uint8Array([1])) } }, { token: target.accessToken });
    expect(errorCode(late)).toBe("CONFLICT");
    events.dispose();
    await client.dispose();
  });

  it("a request past its deadline reads as EXPIRED before the sweeper marks it, without its recipient key", async () => {
    const created = await askOk({ expiresInSeconds: 60 });
    await t.app.db.prisma.dataRequest.update({ where: { id: created.id }, data: { expiresAt: new Date(Date.now() - 1000) } });
    expect((await t.app.db.prisma.dataRequest.findUniqueOrThrow({ where: { id: created.id } })).status).toBe("PENDING"); // not swept
    const mine = async (status: string | null) =>
      (await t.gql(MY_REQUESTS, { status }, { token: target.accessToken })).data!.myDataRequests.filter((r: { id: string }) => r.id === created.id);
    expect(await mine("PENDING")).toEqual([]);
    expect(await mine(null)).toEqual([expect.objectContaining({ status: "EXPIRED", recipientKey: null })]);
    expect(await mine("EXPIRED")).toEqual([expect.objectContaining({ status: "EXPIRED", recipientKey: null })]);
    const listed = async (status: string) =>
      (await t.gql(DATA_REQUESTS, { postboxId: target.postboxId, status, first: 50 }, { token: session })).data!.dataRequests.edges.filter((e: { node: { id: string } }) => e.node.id === created.id);
    expect(await listed("PENDING")).toEqual([]);
    expect(await listed("EXPIRED")).toEqual([expect.objectContaining({ node: { id: created.id, status: "EXPIRED" } })]);
    expect((await t.gql(DATA_REQUEST, { id: created.id }, { token: session })).data!.dataRequest.status).toBe("EXPIRED");
  });

  it("expires pending requests of a postbox that was closed", async () => {
    const p = await createReadyPostboxForPush(t, session, "P-256");
    const created = await askOk({}, p.postboxId);
    await t.gql(`mutation($id: ID!) { closePostbox(id: $id) { status } }`, { id: p.postboxId }, { token: session });
    await t.app.services.dataRequests.sweep(new Date());
    expect((await t.gql(DATA_REQUEST, { id: created.id }, { token: session })).data!.dataRequest.status).toBe("EXPIRED");
  });

  it("deletes an answer's ciphertext after DATA_RESPONSE_RETENTION, keeping its size and hash", async () => {
    const created = await askOk();
    const { r } = await answer(created.id, randomBytes(100));
    expect(r.errors).toBeUndefined();
    await t.app.services.dataRequests.sweep(new Date(Date.now() + 3_600_000));
    expect((await t.gql(DATA_RESPONSE, { requestId: created.id }, { token: session })).errors).toBeUndefined();
    await t.app.services.dataRequests.sweep(new Date(Date.now() + 86_400_000 + 60_000));
    const row = await t.app.db.prisma.dataResponse.findUnique({ where: { requestId: created.id } });
    expect(row).toMatchObject({ ciphertext: null, descriptor: null });
    expect(row!.purgedAt).toBeTruthy();
    const gone = await t.gql(DATA_RESPONSE, { requestId: created.id }, { token: session });
    expect(errorCode(gone)).toBe("NOT_FOUND");
    expect(gone.errors![0].message).toMatch(/deleted/);
    const info = await t.gql(DATA_REQUEST, { id: created.id }, { token: session });
    expect(info.data!.dataRequest.response.size).toBe(row!.size);
    expect(await t.app.db.prisma.auditEvent.count({ where: { targetId: created.id, action: "data_request.purge" } })).toBe(1);
  });
});
