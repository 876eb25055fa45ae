// The push flow end to end over HTTP and WebSocket: session → postbox → accept →
// push (as `data`, and as `encryptedData` the app made with jose) → the user lists,
// fetches, decrypts and acknowledges → the app sees DELIVERED (query, subscription,
// webhook outbox) → content purged at expiry → the audit chain verifies, and an
// edited audit row is named.
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { createHash, randomBytes } from "node:crypto";
import { CompactEncrypt, compactDecrypt, decodeProtectedHeader, importJWK } from "jose";
import {
  DESCRIPTOR,
  PUSH_DATA,
  createReadyPostboxForPush,
  createSession,
  dataInput,
  encryptForPostbox,
  registerApp,
  type PushTarget,
  type TestApp,
  type UserKeyKind,
} from "../helpers/factories.js";
import { errorCode, startTestServer, type TestServer } from "../helpers/server.js";
import { collect, wsClient } from "../helpers/ws.js";

let t: TestServer;
let app: TestApp;
let session: string;

beforeAll(async () => {
  t = await startTestServer({ env: { PUSH_RETENTION: "1h" } });
  app = await registerApp(t);
  session = await createSession(t, app);
});
afterAll(async () => t?.stop());

const FILES = `query($first: Int, $after: String) { postboxFiles(first: $first, after: $after) { edges { cursor node { id status size sha256 receivedAt expiresAt deliveredAt purgedAt } } pageInfo { hasNextPage endCursor } } }`;
const FILE = `query($id: ID!) { postboxFile(id: $id) { id ciphertext descriptor sha256 size } }`;
const ACK = `mutation($ids: [ID!]!) { acknowledgeFiles(ids: $ids) { id status deliveredAt expiresAt } }`;
const PUSHES = `query($postboxId: ID!, $first: Int, $after: String) { pushes(postboxId: $postboxId, first: $first, after: $after) { edges { node { id postboxId status size sha256 receivedAt expiresAt deliveredAt purgedAt } } pageInfo { hasNextPage endCursor } } }`;
const SUB = `subscription($postboxId: ID) { pushStatusChanged(postboxId: $postboxId) { pushId postboxId status at } }`;

async function push(input: Record<string, unknown>, token = session) {
  return t.gql(PUSH_DATA, { input }, { token });
}

async function fetchAndDecrypt(target: PushTarget, id: string) {
  const r = await t.gql(FILE, { id }, { token: target.accessToken });
  expect(r.errors).toBeUndefined();
  const f = r.data!.postboxFile;
  const file = await compactDecrypt(f.ciphertext, target.privateKey);
  const descriptor = JSON.parse(Buffer.from((await compactDecrypt(f.descriptor, target.privateKey)).plaintext).toString("utf8"));
  return { f, bytes: Buffer.from(file.plaintext), header: file.protectedHeader, descriptor };
}

async function waitForSubscriptions(n: number) {
  // Polls the server's own count, so the acknowledgement cannot race the subscription's registration.
  while (t.app.services.pushes.openSubscriptions < n) await new Promise((r) => setTimeout(r, 10));
}

describe("push → fetch → decrypt → acknowledge", () => {
  it.each<UserKeyKind>(["RSA", "P-256", "X25519"])("delivers a file pushed as data to a %s key", async (kind) => {
    const target = await createReadyPostboxForPush(t, session, kind);
    const original = randomBytes(3000);
    const before = Date.now();
    const r = await push(dataInput(target, original, { fileName: "report.pdf" }));
    expect(r.errors).toBeUndefined();
    const result = r.data!.pushData;
    expect(result).toMatchObject({ postboxId: target.postboxId, status: "PENDING", duplicate: false });
    expect(result.id).toMatch(/^psh_/);
    expect(new Date(result.receivedAt).getTime()).toBeGreaterThanOrEqual(before - 1000);
    const postbox = await t.gql(`query($id: ID!) { postbox(id: $id) { expiresAt } }`, { id: target.postboxId }, { token: session });
    expect(result.expiresAt).toBe(postbox.data!.postbox.expiresAt);

    const list = await t.gql(FILES, {}, { token: target.accessToken });
    expect(list.errors).toBeUndefined();
    expect(list.data!.postboxFiles.edges.map((e: any) => e.node.id)).toEqual([result.id]);
    expect(list.data!.postboxFiles.edges[0].node).toMatchObject({ status: "PENDING", size: result.size, sha256: result.sha256, purgedAt: null });

    const { f, bytes, header, descriptor } = await fetchAndDecrypt(target, result.id);
    expect(bytes.equals(original)).toBe(true);
    expect(header).toMatchObject({ alg: target.keyAlg, enc: "A256GCM", kid: target.kid });
    expect(descriptor).toEqual({ fileName: "report.pdf", ...DESCRIPTOR });
    expect(createHash("sha256").update(f.ciphertext).digest("hex")).toBe(result.sha256);
    expect(f.size).toBe(f.ciphertext.length);
  });

  it.each<UserKeyKind>(["RSA", "P-256", "X25519"])("stores a JWE the app encrypted to a %s key as is", async (kind) => {
    const target = await createReadyPostboxForPush(t, session, kind);
    const original = randomBytes(2500);
    const jwe = await encryptForPostbox(target, original);
    const r = await push({ postboxId: target.postboxId, fileName: "app-encrypted.json", fileDescriptor: DESCRIPTOR, encryptedData: jwe });
    expect(r.errors).toBeUndefined();
    const result = r.data!.pushData;
    expect(result.size).toBe(jwe.length);
    expect(result.sha256).toBe(createHash("sha256").update(jwe).digest("hex"));
    const { f, bytes, descriptor } = await fetchAndDecrypt(target, result.id);
    expect(f.ciphertext).toBe(jwe);
    expect(bytes.equals(original)).toBe(true);
    expect(descriptor.fileName).toBe("app-encrypted.json");
  });

  it.each<UserKeyKind>(["RSA", "X25519"])("works as the README shows: encrypt to Postbox.publicKey with jose (%s)", async (kind) => {
    const target = await createReadyPostboxForPush(t, session, kind);
    const pb = await t.gql(`query($id: ID!) { postbox(id: $id) { status publicKey { kid alg enc jwk } } }`, { id: target.postboxId }, { token: session });
    const { jwk, alg, kid, enc } = pb.data!.postbox.publicKey;
    expect(enc).toBe("A256GCM");
    const fileBytes = randomBytes(777);
    const key = await importJWK(jwk, alg);
    const encryptedData = await new CompactEncrypt(fileBytes).setProtectedHeader({ alg, enc: "A256GCM", kid }).encrypt(key);
    const r = await push({ postboxId: target.postboxId, fileName: "readme.bin", fileDescriptor: DESCRIPTOR, encryptedData });
    expect(r.errors).toBeUndefined();
    expect((await fetchAndDecrypt(target, r.data!.pushData.id)).bytes.equals(fileBytes)).toBe(true);
  });

  it("accepts direct ECDH-ES from the app too", async () => {
    const target = await createReadyPostboxForPush(t, session, "P-256");
    const jwe = await encryptForPostbox(target, Buffer.from("direct key agreement"), { alg: "ECDH-ES" });
    const r = await push({ postboxId: target.postboxId, fileName: "a.txt", fileDescriptor: DESCRIPTOR, encryptedData: jwe });
    expect(r.errors).toBeUndefined();
    expect(decodeProtectedHeader(jwe).alg).toBe("ECDH-ES");
    expect(Buffer.from((await fetchAndDecrypt(target, r.data!.pushData.id)).bytes).toString()).toBe("direct key agreement");
  });

  it("shows DELIVERED to the app (query, subscription, webhook) once the user acknowledges", async () => {
    const hook = await t.gql(`mutation($url: String!) { setWebhook(url: $url) { url } }`, { url: "http://127.0.0.1:9/hooks" }, { token: session });
    expect(hook.errors).toBeUndefined();
    const target = await createReadyPostboxForPush(t, session, "RSA");
    const r = await push(dataInput(target, Buffer.from("please acknowledge me")));
    const id = r.data!.pushData.id;

    const client = wsClient(t.wsUrl, `Bearer ${session}`);
    const sub = collect(client, SUB, { postboxId: target.postboxId });
    const open = t.app.services.pushes.openSubscriptions;
    await waitForSubscriptions(1);
    try {
      const ack = await t.gql(ACK, { ids: [id] }, { token: target.accessToken });
      expect(ack.errors).toBeUndefined();
      const acked = ack.data!.acknowledgeFiles[0];
      expect(acked).toMatchObject({ id, status: "DELIVERED" });
      // Delivered content is kept PUSH_RETENTION (1h here) at most.
      const ttl = new Date(acked.expiresAt).getTime() - new Date(acked.deliveredAt).getTime();
      expect(ttl).toBe(3600_000);

      const event = await sub.next(1);
      expect(event.pushStatusChanged).toMatchObject({ pushId: id, postboxId: target.postboxId, status: "DELIVERED" });

      const listed = await t.gql(PUSHES, { postboxId: target.postboxId }, { token: session });
      expect(listed.data!.pushes.edges[0].node).toMatchObject({ id, status: "DELIVERED", deliveredAt: acked.deliveredAt, expiresAt: acked.expiresAt });
      const one = await t.gql(`query($id: ID!) { push(id: $id) { id status } }`, { id }, { token: session });
      expect(one.data!.push).toEqual({ id, status: "DELIVERED" });

      const outbox = await t.app.db.prisma.webhookDelivery.findMany({ where: { contractId: app.contractId, eventType: "push.delivered" } });
      expect(outbox).toHaveLength(1);
      expect(JSON.parse(outbox[0].payload)).toMatchObject({ type: "push.delivered", data: { pushId: id, postboxId: target.postboxId, status: "DELIVERED" } });

      // Acknowledging again is a no-op: no second event, audit entry or webhook.
      const audits = await t.app.db.prisma.auditEvent.count({ where: { action: "push.deliver", targetId: id } });
      const again = await t.gql(ACK, { ids: [id] }, { token: target.accessToken });
      expect(again.data!.acknowledgeFiles[0]).toMatchObject({ id, status: "DELIVERED", deliveredAt: acked.deliveredAt });
      expect(await t.app.db.prisma.auditEvent.count({ where: { action: "push.deliver", targetId: id } })).toBe(audits);
      expect(await t.app.db.prisma.webhookDelivery.count({ where: { eventType: "push.delivered" } })).toBe(1);
      expect(audits).toBe(1);
    } finally {
      await sub.dispose();
      await client.dispose();
      await t.gql(`mutation { deleteWebhook }`, {}, { token: session });
    }
    expect(open).toBe(0);
  });

  it("pages the user's files and the app's pushes newest first", async () => {
    const target = await createReadyPostboxForPush(t, session, "X25519");
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await push(dataInput(target, Buffer.from(`file ${i}`)))).data!.pushData.id);
    const p1 = await t.gql(FILES, { first: 2 }, { token: target.accessToken });
    expect(p1.data!.postboxFiles.pageInfo.hasNextPage).toBe(true);
    const p2 = await t.gql(FILES, { first: 2, after: p1.data!.postboxFiles.pageInfo.endCursor }, { token: target.accessToken });
    expect(p2.data!.postboxFiles.pageInfo.hasNextPage).toBe(false);
    const seen = [...p1.data!.postboxFiles.edges, ...p2.data!.postboxFiles.edges].map((e: any) => e.node.id);
    expect(seen).toEqual([...ids].reverse());
    const a1 = await t.gql(PUSHES, { postboxId: target.postboxId, first: 1 }, { token: session });
    const a2 = await t.gql(PUSHES, { postboxId: target.postboxId, first: 5, after: a1.data!.pushes.pageInfo.endCursor }, { token: session });
    expect([...a1.data!.pushes.edges, ...a2.data!.pushes.edges].map((e: any) => e.node.id)).toEqual([...ids].reverse());
  });
});

describe("who can read what", () => {
  it("gives the application no way to read content back", async () => {
    const target = await createReadyPostboxForPush(t, session, "RSA");
    const id = (await push(dataInput(target, Buffer.from("not for the app")))).data!.pushData.id;
    // No content field exists on the application's types…
    const asField = await t.gql(`query($p: ID!) { pushes(postboxId: $p) { edges { node { id ciphertext } } } }`, { p: target.postboxId }, { token: session });
    expect(errorCode(asField)).toBe("GRAPHQL_VALIDATION_FAILED");
    const types = await t.gql(`{ push: __type(name: "Push") { fields { name } } result: __type(name: "PushResult") { fields { name } } }`);
    const names = [...types.data!.push.fields, ...types.data!.result.fields].map((f: any) => f.name);
    expect(names).toContain("sha256");
    expect(names.filter((n: string) => /cipher|descriptor|content|data/i.test(n))).toEqual([]);
    // …and the user's content query refuses a session key.
    const bySession = await t.gql(FILE, { id }, { token: session });
    expect(errorCode(bySession)).toBe("UNAUTHENTICATED");
    expect(bySession.data).toBeNull();
  });

  it("scopes the user's token to its own postbox", async () => {
    const mine = await createReadyPostboxForPush(t, session, "RSA");
    const other = await createReadyPostboxForPush(t, session, "RSA");
    const theirs = (await push(dataInput(other, Buffer.from("someone else's")))).data!.pushData.id;
    expect(errorCode(await t.gql(FILE, { id: theirs }, { token: mine.accessToken }))).toBe("NOT_FOUND");
    expect(errorCode(await t.gql(ACK, { ids: [theirs] }, { token: mine.accessToken }))).toBe("NOT_FOUND");
    const files = await t.gql(FILES, {}, { token: mine.accessToken });
    expect(files.data!.postboxFiles.edges).toEqual([]);
    const still = await t.app.db.prisma.push.findUnique({ where: { id: theirs } });
    expect(still?.status).toBe("PENDING");
  });

  it("keeps another contract's pushes NOT_FOUND for the app", async () => {
    const target = await createReadyPostboxForPush(t, session, "RSA");
    const id = (await push(dataInput(target, Buffer.from("x")))).data!.pushData.id;
    const other = await registerApp(t);
    const otherSession = await createSession(t, other);
    expect(errorCode(await t.gql(PUSHES, { postboxId: target.postboxId }, { token: otherSession }))).toBe("NOT_FOUND");
    expect(errorCode(await t.gql(`query($id: ID!) { push(id: $id) { id } }`, { id }, { token: otherSession }))).toBe("NOT_FOUND");
  });
});

describe("retention", () => {
  it("deletes content at expiry, audits it, and the audit chain still verifies", async () => {
    const target = await createReadyPostboxForPush(t, session, "P-256");
    const id = (await push(dataInput(target, Buffer.from("short-lived")))).data!.pushData.id;
    const keep = (await push(dataInput(target, Buffer.from("still fresh")))).data!.pushData.id;
    const p = t.app.db.prisma;
    // Move this push's expiry into the past (the postbox's is untouched), then run the background tasks once.
    await p.push.update({ where: { id }, data: { expiresAt: new Date(Date.now() - 1000) } });
    // Past its expiry, the content is refused before the sweeper has deleted it too.
    const early = await t.gql(FILE, { id }, { token: target.accessToken });
    expect(errorCode(early)).toBe("NOT_FOUND");
    expect(early.errors![0].message).toMatch(/expired at/);
    expect(await p.pushContent.findUnique({ where: { pushId: id } })).not.toBeNull();
    expect(await p.auditEvent.count({ where: { action: "push.fetch", targetId: id, outcome: "REFUSED", reason: "NOT_FOUND:expired" } })).toBe(1);
    await t.app.scheduler.tick();

    expect(await p.pushContent.findUnique({ where: { pushId: id } })).toBeNull();
    expect(await p.pushContent.findUnique({ where: { pushId: keep } })).not.toBeNull();
    const row = await p.push.findUnique({ where: { id } });
    expect(row?.purgedAt).toBeInstanceOf(Date);
    expect(await p.auditEvent.count({ where: { action: "push.purge", targetId: id } })).toBe(1);

    const fetched = await t.gql(FILE, { id }, { token: target.accessToken });
    expect(errorCode(fetched)).toBe("NOT_FOUND");
    expect(fetched.errors![0].message).toMatch(/deleted/);
    const listed = await t.gql(PUSHES, { postboxId: target.postboxId }, { token: session });
    expect(listed.data!.pushes.edges.find((e: any) => e.node.id === id).node.purgedAt).not.toBeNull();

    // A second run finds nothing more to do.
    await t.app.scheduler.tick();
    expect(await p.auditEvent.count({ where: { action: "push.purge", targetId: id } })).toBe(1);

    const verify = await t.admin("GET", "/audit/verify");
    expect(verify.status).toBe(200);
    expect(verify.body).toMatchObject({ ok: true });
    expect(verify.body.checked).toBeGreaterThan(10);
  });

  it("purges everything of a postbox when it expires", async () => {
    const target = await createReadyPostboxForPush(t, session, "RSA");
    const a = (await push(dataInput(target, Buffer.from("a")))).data!.pushData.id;
    const b = (await push(dataInput(target, Buffer.from("b")))).data!.pushData.id;
    const past = new Date(Date.now() - 1000);
    const p = t.app.db.prisma;
    await p.postbox.update({ where: { id: target.postboxId }, data: { expiresAt: past } });
    await p.push.updateMany({ where: { postboxId: target.postboxId }, data: { expiresAt: past } });
    await t.app.scheduler.tick();
    expect(await p.pushContent.count({ where: { pushId: { in: [a, b] } } })).toBe(0);
    expect((await t.gql(PUSHES, { postboxId: target.postboxId }, { token: session })).data!.pushes.edges.every((e: any) => e.node.purgedAt)).toBe(true);
    expect(errorCode(await push(dataInput(target, Buffer.from("late"))))).toBe("POSTBOX_EXPIRED");
  });

  it("names an edited audit event", async () => {
    const p = t.app.db.prisma;
    const victim = await p.auditEvent.findFirst({ where: { action: "push.create", outcome: "SUCCESS" }, orderBy: { seq: "asc" } });
    await p.auditEvent.update({ where: { id: victim!.id }, data: { reason: "edited" } });
    const verify = await t.admin("GET", "/audit/verify");
    expect(verify.body.ok).toBe(false);
    expect(verify.body.firstBroken).toMatchObject({ id: victim!.id, seq: victim!.seq.toString() });
    expect(verify.body.firstBroken.problem).toMatch(/edited/);
    await p.auditEvent.update({ where: { id: victim!.id }, data: { reason: null } });
    expect((await t.admin("GET", "/audit/verify")).body.ok).toBe(true);
  });
});
