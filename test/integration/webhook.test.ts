// Webhooks end to end over HTTP: registration (GraphQL, admin API, CLI), the
// transactional outbox, signed delivery to a local receiver, retries, 410,
// attempts, restart and (PostgreSQL) two instances claiming the same outbox.
// Backoff is never slept through: tests move nextAttemptAt in the database and
// run the delivery task with app.scheduler.tick().
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { exportJWK, generateKeyPair } from "jose";
import { runCli } from "../../src/cli/lib.js";
import type { WebhookEventType } from "../../src/modules/webhook/webhook.service.js";
import { createSession, registerApp, startWebhookReceiver, verifyWebhookSignature, type TestApp, type WebhookReceiver } from "../helpers/factories.js";
import { createTestDatabase, errorCode, startTestServer, type TestServer } from "../helpers/server.js";
import { CLOSE, DECLINE, accept, codeOf, createPostbox, waitUntil } from "./postbox.helpers.js";

const SET = /* GraphQL */ `mutation Set($url: String!) { setWebhook(url: $url) { url secret createdAt } }`;
const ROTATE = /* GraphQL */ `mutation { rotateWebhookSecret { url secret createdAt previousSecretValidUntil } }`;
const DELETE = /* GraphQL */ `mutation { deleteWebhook }`;
const GET = /* GraphQL */ `query { webhook { url createdAt disabledAt disabledReason } }`;
const DELIVERIES = /* GraphQL */ `
  query Deliveries($first: Int, $after: String, $status: WebhookDeliveryStatus) {
    webhookDeliveries(first: $first, after: $after, status: $status) {
      edges { cursor node { id eventType status payload createdAt nextAttemptAt completedAt attempts { number at statusCode error durationMs } } }
      pageInfo { hasNextPage endCursor }
    }
  }`;

interface Tenant {
  app: TestApp;
  key: string;
  secret?: string;
}

let t: TestServer;
let rx: WebhookReceiver;
/** Every secret this file was shown, to prove none reaches the logs. */
const secrets: string[] = [];

beforeAll(async () => {
  t = await startTestServer();
  rx = await startWebhookReceiver();
});
afterAll(async () => {
  await rx?.close();
  await t?.stop();
});

async function tenant(server = t): Promise<Tenant> {
  const app = await registerApp(server);
  return { app, key: await createSession(server, app) };
}

async function setWebhook(who: Tenant, url = rx.url, server = t): Promise<string> {
  const r = await server.gql(SET, { url }, { token: who.key });
  expect(r.errors).toBeUndefined();
  who.secret = r.data!.setWebhook.secret;
  secrets.push(who.secret!);
  return who.secret!;
}

/** Emits an event the way the postbox/push services do: inside their transaction. */
async function emit(contractId: string, type: WebhookEventType = "postbox.ready", data: Record<string, unknown> = { postboxId: "pbx_test", status: "READY" }, server = t) {
  await server.app.db.prisma.$transaction((tx) => server.app.services.webhooks.enqueue(tx, { contractId, type, data }));
}

function deliveriesOf(contractId: string, server = t) {
  return server.app.db.prisma.webhookDelivery.findMany({ where: { contractId }, include: { attempts: { orderBy: { number: "asc" } } }, orderBy: { createdAt: "asc" } });
}

/** Makes every pending delivery of the contract due now (instead of waiting out the backoff). */
async function makeDue(contractId: string, server = t) {
  await server.app.db.prisma.webhookDelivery.updateMany({ where: { contractId, status: "PENDING" }, data: { nextAttemptAt: new Date(Date.now() - 1000) } });
}

function receivedFor(id: string) {
  return rx.received.filter((r) => r.id === id);
}

describe("registration over GraphQL", () => {
  it("refuses every webhook operation without a session, writing nothing", async () => {
    const before = await t.app.db.prisma.webhookEndpoint.count();
    for (const q of [SET, ROTATE, DELETE, GET, DELIVERIES]) {
      const r = await t.gql(q, q === SET ? { url: rx.url } : {});
      expect(errorCode(r)).toBe("UNAUTHENTICATED");
    }
    expect(await t.app.db.prisma.webhookEndpoint.count()).toBe(before);
  });

  it("registers a URL and shows the whsec_ secret once", async () => {
    const who = await tenant();
    const r = await t.gql(SET, { url: rx.url }, { token: who.key });
    expect(r.errors).toBeUndefined();
    const reg = r.data!.setWebhook;
    secrets.push(reg.secret);
    expect(reg.url).toBe(rx.url);
    expect(reg.secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    expect(Buffer.from(reg.secret.slice(6), "base64").length).toBe(32);

    const got = await t.gql(GET, {}, { token: who.key });
    expect(got.data!.webhook).toEqual({ url: rx.url, createdAt: reg.createdAt, disabledAt: null, disabledReason: null });
    expect(JSON.stringify(got)).not.toContain(reg.secret);

    const audit = await t.app.db.prisma.auditEvent.findFirst({ where: { action: "webhook.set", contractId: who.app.contractId, outcome: "SUCCESS" } });
    expect(audit).toBeTruthy();
    expect(JSON.stringify({ ...audit, seq: String(audit!.seq) })).not.toContain(reg.secret);
  });

  it("registering again replaces the URL and the secret", async () => {
    const who = await tenant();
    const first = await setWebhook(who);
    const second = await setWebhook(who, rx.url.replace("/hooks/postbox", "/hooks/other"));
    expect(second).not.toBe(first);
    expect(await t.app.db.prisma.webhookEndpoint.count({ where: { contractId: who.app.contractId } })).toBe(1);
    expect((await t.gql(GET, {}, { token: who.key })).data!.webhook.url).toMatch(/\/hooks\/other$/);
  });

  it.each([
    ["a non-http scheme", "ftp://hooks.example.com/postbox", /http or https/],
    ["a relative URL", "/hooks/postbox", /absolute http/],
    ["credentials in the URL", "https://user:pw@hooks.example.com/", /credentials/],
    ["an empty URL", "", /url is required/],
    ["an overlong URL", `https://hooks.example.com/${"a".repeat(2100)}`, /too long/],
  ])("refuses %s with BAD_USER_INPUT, writing only a refusal audit event", async (_n, url, message) => {
    const who = await tenant();
    const refusalsBefore = await t.app.db.prisma.auditEvent.count({ where: { action: "webhook.set", outcome: "REFUSED", contractId: who.app.contractId } });
    const r = await t.gql(SET, { url }, { token: who.key });
    expect(errorCode(r)).toBe("BAD_USER_INPUT");
    expect(r.errors![0].message).toMatch(message);
    expect(await t.app.db.prisma.webhookEndpoint.count({ where: { contractId: who.app.contractId } })).toBe(0);
    expect(await t.app.db.prisma.auditEvent.count({ where: { action: "webhook.set", outcome: "REFUSED", contractId: who.app.contractId } })).toBe(refusalsBefore + 1);
  });

  it("rotates the secret: deliveries verify with the new one, and with the old one only until the overlap ends", async () => {
    const who = await tenant();
    const old = await setWebhook(who);
    const r = await t.gql(ROTATE, {}, { token: who.key });
    expect(r.errors).toBeUndefined();
    const fresh = r.data!.rotateWebhookSecret.secret as string;
    secrets.push(fresh);
    expect(fresh).not.toBe(old);
    // WEBHOOK_SECRET_OVERLAP (24 h by default) from now.
    const until = Date.parse(r.data!.rotateWebhookSecret.previousSecretValidUntil);
    expect(Math.abs(until - (Date.now() + 24 * 3600_000))).toBeLessThan(60_000);
    await emit(who.app.contractId);
    await t.app.scheduler.tick();
    const [d] = await deliveriesOf(who.app.contractId);
    const [msg] = receivedFor(d.id);
    expect(msg.signature.split(" ")).toHaveLength(2);
    expect(verifyWebhookSignature(fresh, msg)).toBe(true);
    expect(verifyWebhookSignature(old, msg)).toBe(true);
    expect(verifyWebhookSignature(`whsec_${randomBytes(32).toString("base64")}`, msg)).toBe(false);

    // Once the overlap is over, the old secret no longer signs.
    await t.app.db.prisma.webhookEndpoint.update({ where: { contractId: who.app.contractId }, data: { retiredSecrets: [{ secret: old, until: new Date(Date.now() - 1000).toISOString() }] } });
    await emit(who.app.contractId);
    await t.app.scheduler.tick();
    const later = (await deliveriesOf(who.app.contractId)).find((x) => x.id !== d.id)!;
    const [msg2] = receivedFor(later.id);
    expect(msg2.signature.split(" ")).toHaveLength(1);
    expect(verifyWebhookSignature(fresh, msg2)).toBe(true);
    expect(verifyWebhookSignature(old, msg2)).toBe(false);
    expect(await t.app.db.prisma.auditEvent.count({ where: { action: "webhook.rotate_secret", contractId: who.app.contractId } })).toBe(1);
  });

  it("a second rotation within the overlap drops no secret: each replaced one signs until its own overlap ends", async () => {
    const who = await tenant();
    const a = await setWebhook(who);
    const rotate = async () => {
      const r = await t.gql(ROTATE, {}, { token: who.key });
      expect(r.errors).toBeUndefined();
      secrets.push(r.data!.rotateWebhookSecret.secret);
      return r.data!.rotateWebhookSecret.secret as string;
    };
    // Say the answer showing b was lost and the app called again: its receiver is still on a.
    const b = await rotate();
    const c = await rotate();
    await emit(who.app.contractId);
    await t.app.scheduler.tick();
    const [d] = await deliveriesOf(who.app.contractId);
    const [msg] = receivedFor(d.id);
    expect(msg.signature.split(" ")).toHaveLength(3);
    for (const s of [a, b, c]) expect(verifyWebhookSignature(s, msg)).toBe(true);

    // Up to five replaced secrets sign at once; a sixth rotation is refused until the oldest's overlap ends.
    for (let i = 0; i < 3; i++) await rotate();
    const refused = await t.gql(ROTATE, {}, { token: who.key });
    expect(errorCode(refused)).toBe("CONFLICT");
    expect(refused.errors![0].message).toMatch(/5 secrets replaced.*setWebhook/);
    expect(await t.app.db.prisma.auditEvent.count({ where: { action: "webhook.rotate_secret", contractId: who.app.contractId, outcome: "REFUSED", reason: "CONFLICT:too_many_secrets" } })).toBe(1);
    // Registering again starts over with one secret.
    const fresh = await setWebhook(who);
    expect((await t.app.db.prisma.webhookEndpoint.findUniqueOrThrow({ where: { contractId: who.app.contractId } })).retiredSecrets).toEqual([]);
    expect(await rotate()).not.toBe(fresh);
  });

  it("deletes the endpoint; then nothing is enqueued and a second delete is NOT_FOUND", async () => {
    const who = await tenant();
    await setWebhook(who);
    expect((await t.gql(DELETE, {}, { token: who.key })).data!.deleteWebhook).toBe(true);
    expect((await t.gql(GET, {}, { token: who.key })).data!.webhook).toBeNull();
    await emit(who.app.contractId);
    expect(await deliveriesOf(who.app.contractId)).toHaveLength(0);
    const again = await t.gql(DELETE, {}, { token: who.key });
    expect(errorCode(again)).toBe("NOT_FOUND");
    expect(errorCode(await t.gql(ROTATE, {}, { token: who.key }))).toBe("NOT_FOUND");
    expect(await t.app.db.prisma.auditEvent.count({ where: { action: "webhook.delete", contractId: who.app.contractId, outcome: "SUCCESS" } })).toBe(1);
  });
});

describe("delivery", () => {
  it("writes nothing for a contract without an endpoint", async () => {
    const who = await tenant();
    await emit(who.app.contractId);
    expect(await deliveriesOf(who.app.contractId)).toHaveLength(0);
  });

  it("sends as soon as the transaction commits, without waiting for the periodic run", async () => {
    // The test server's SWEEP_INTERVAL is 1 h and its scheduler is off: only the post-commit kick can send this.
    const who = await tenant();
    await setWebhook(who);
    const before = rx.received.length;
    await emit(who.app.contractId);
    await rx.waitFor(before + 1);
    const [d] = await deliveriesOf(who.app.contractId);
    expect(receivedFor(d.id)).toHaveLength(1);
  });

  it("delivers a Standard Webhooks signed POST with the exact stored payload", async () => {
    const who = await tenant();
    const secret = await setWebhook(who);
    await emit(who.app.contractId, "postbox.ready", { postboxId: "pbx_abc", status: "READY", reference: "user-42" });
    await t.app.scheduler.tick();

    const [d] = await deliveriesOf(who.app.contractId);
    expect(d.id).toMatch(/^msg_[a-z2-7]{26}$/);
    const msgs = receivedFor(d.id);
    expect(msgs).toHaveLength(1);
    const msg = msgs[0];
    expect(msg.contentType).toBe("application/json");
    expect(msg.userAgent).toMatch(/^Postbox-Webhooks\//);
    expect(msg.body).toBe(d.payload);
    const body = JSON.parse(msg.body);
    expect(body).toEqual({ type: "postbox.ready", timestamp: d.createdAt.toISOString(), data: { postboxId: "pbx_abc", status: "READY", reference: "user-42" } });
    expect(msg.timestamp).toMatch(/^\d{10}$/);
    expect(Math.abs(Number(msg.timestamp) - Date.now() / 1000)).toBeLessThan(300);
    expect(verifyWebhookSignature(secret, msg)).toBe(true);
    // A tampered body or another secret does not verify.
    expect(verifyWebhookSignature(secret, { ...msg, body: msg.body.replace("READY", "CLOSED") })).toBe(false);

    const q = await t.gql(DELIVERIES, {}, { token: who.key });
    expect(q.errors).toBeUndefined();
    const node = q.data!.webhookDeliveries.edges[0].node;
    expect(node).toMatchObject({ id: d.id, eventType: "postbox.ready", status: "SUCCEEDED", payload: d.payload, nextAttemptAt: null });
    expect(node.completedAt).toBeTruthy();
    expect(node.attempts).toHaveLength(1);
    expect(node.attempts[0]).toMatchObject({ number: 1, statusCode: 204, error: null });
    expect(node.attempts[0].durationMs).toBeGreaterThanOrEqual(0);
  });

  it("writes and sends nothing when the emitting transaction rolls back", async () => {
    const who = await tenant();
    await setWebhook(who);
    const before = rx.received.length;
    await expect(
      t.app.db.prisma.$transaction(async (tx) => {
        await t.app.services.webhooks.enqueue(tx, { contractId: who.app.contractId, type: "postbox.declined", data: { postboxId: "pbx_x" } });
        throw new Error("state change failed");
      }),
    ).rejects.toThrow("state change failed");
    await t.app.scheduler.tick();
    expect(await deliveriesOf(who.app.contractId)).toHaveLength(0);
    expect(rx.received.length).toBe(before);
  });

  it("retries after a 500 on the 5 s step, with the same id and body, then succeeds", async () => {
    const who = await tenant();
    const secret = await setWebhook(who);
    rx.respondWith(500);
    await emit(who.app.contractId, "push.delivered", { postboxId: "pbx_r", pushId: "psh_r", status: "DELIVERED" });
    await t.app.scheduler.tick();

    let [d] = await deliveriesOf(who.app.contractId);
    expect(d.status).toBe("PENDING");
    expect(d.attemptCount).toBe(1);
    expect(d.attempts).toHaveLength(1);
    expect(d.attempts[0]).toMatchObject({ number: 1, statusCode: 500, error: "HTTP 500" });
    const wait = d.nextAttemptAt.getTime() - d.attempts[0].at.getTime();
    expect(wait).toBeGreaterThanOrEqual(4000);
    expect(wait).toBeLessThanOrEqual(6000);
    expect(d.lockedUntil).toBeNull();

    // Not due yet: a run sends nothing.
    await t.app.scheduler.tick();
    expect(receivedFor(d.id)).toHaveLength(1);

    await makeDue(who.app.contractId);
    await t.app.scheduler.tick();
    [d] = await deliveriesOf(who.app.contractId);
    expect(d.status).toBe("SUCCEEDED");
    expect(d.attempts.map((a) => [a.number, a.statusCode])).toEqual([[1, 500], [2, 204]]);
    const msgs = receivedFor(d.id);
    expect(msgs).toHaveLength(2);
    expect(msgs[1].body).toBe(msgs[0].body);
    expect(msgs.every((m) => verifyWebhookSignature(secret, m))).toBe(true);

    const node = (await t.gql(DELIVERIES, { status: "SUCCEEDED" }, { token: who.key })).data!.webhookDeliveries.edges[0].node;
    expect(node.attempts.map((a: { number: number; statusCode: number }) => [a.number, a.statusCode])).toEqual([[1, 500], [2, 204]]);
  });

  it("marks a delivery FAILED after the eighth failed attempt", async () => {
    const who = await tenant();
    await setWebhook(who);
    rx.respondWith(503);
    await emit(who.app.contractId);
    await t.app.scheduler.tick();
    // Pretend attempts 2–7 failed too, then let the eighth fail.
    await t.app.db.prisma.webhookDelivery.updateMany({ where: { contractId: who.app.contractId }, data: { attemptCount: 7, nextAttemptAt: new Date(Date.now() - 1000) } });
    rx.respondWith(503);
    await t.app.scheduler.tick();
    const [d] = await deliveriesOf(who.app.contractId);
    expect(d.status).toBe("FAILED");
    expect(d.completedAt).toBeTruthy();
    expect(d.attempts.map((a) => a.number)).toEqual([1, 8]);
    const node = (await t.gql(DELIVERIES, { status: "FAILED" }, { token: who.key })).data!.webhookDeliveries.edges[0].node;
    expect(node).toMatchObject({ id: d.id, status: "FAILED", nextAttemptAt: null });
  });

  it("disables the endpoint on 410 Gone, fails its pending deliveries and stops enqueueing", async () => {
    const who = await tenant();
    await setWebhook(who);
    // One delivery waiting for a retry when the 410 comes in.
    rx.respondWith(500);
    await emit(who.app.contractId, "postbox.expired", { postboxId: "pbx_1" });
    await t.app.scheduler.tick();
    rx.respondWith(410);
    await emit(who.app.contractId, "postbox.closed", { postboxId: "pbx_2" });
    await t.app.scheduler.tick();

    const ds = await deliveriesOf(who.app.contractId);
    expect(ds.map((d) => [d.eventType, d.status])).toEqual([["postbox.expired", "FAILED"], ["postbox.closed", "FAILED"]]);
    expect(ds[1].attempts[0]).toMatchObject({ number: 1, statusCode: 410 });
    const hook = (await t.gql(GET, {}, { token: who.key })).data!.webhook;
    expect(hook.disabledAt).toBeTruthy();
    expect(hook.disabledReason).toMatch(/410/);
    const audit = await t.app.db.prisma.auditEvent.findFirst({ where: { action: "webhook.disable", contractId: who.app.contractId } });
    expect(audit).toMatchObject({ actorType: "SYSTEM", outcome: "SUCCESS" });

    await emit(who.app.contractId, "postbox.ready");
    expect(await deliveriesOf(who.app.contractId)).toHaveLength(2);

    // Registering again re-enables it.
    await setWebhook(who);
    expect((await t.gql(GET, {}, { token: who.key })).data!.webhook.disabledAt).toBeNull();
    await emit(who.app.contractId, "postbox.ready");
    await t.app.scheduler.tick();
    expect((await deliveriesOf(who.app.contractId)).map((d) => d.status)).toEqual(["FAILED", "FAILED", "SUCCEEDED"]);
  });

  it("a 410 from a URL the app replaced while the send was out leaves the new registration alone; the delivery goes there", async () => {
    const who = await tenant();
    const moved = await startWebhookReceiver();
    let release!: () => void;
    try {
      await setWebhook(who);
      rx.hold(new Promise<void>((r) => (release = r)));
      rx.respondWith(410);
      const before = rx.received.length;
      await emit(who.app.contractId);
      await rx.waitFor(before + 1); // the old host has it and sits on its answer
      const secret = await setWebhook(who, moved.url);
      release();
      await waitUntil(async () => (await deliveriesOf(who.app.contractId))[0]?.attempts.length === 1, "the 410 is recorded");
      const hook = (await t.gql(GET, {}, { token: who.key })).data!.webhook;
      expect(hook).toMatchObject({ url: moved.url, disabledAt: null });
      const [d] = await deliveriesOf(who.app.contractId);
      expect(d.status).toBe("PENDING");
      expect(d.attempts[0]).toMatchObject({ number: 1, statusCode: 410 });
      expect(await t.app.db.prisma.auditEvent.count({ where: { action: "webhook.disable", contractId: who.app.contractId } })).toBe(0);

      await t.app.db.prisma.webhookDelivery.update({ where: { id: d.id }, data: { nextAttemptAt: new Date() } });
      await t.app.scheduler.tick();
      const [done] = await deliveriesOf(who.app.contractId);
      expect(done.status).toBe("SUCCEEDED");
      const got = moved.received.filter((m) => m.id === d.id);
      expect(got).toHaveLength(1);
      expect(verifyWebhookSignature(secret, got[0])).toBe(true);
    } finally {
      release?.();
      rx.hold(Promise.resolve());
      await moved.close();
    }
  });

  it("leaves a claimed delivery alone until its claim expires (a crashed instance's claim)", async () => {
    const who = await tenant();
    await setWebhook(who);
    rx.respondWith(500);
    await emit(who.app.contractId);
    await t.app.scheduler.tick();
    const [d] = await deliveriesOf(who.app.contractId);
    await t.app.db.prisma.webhookDelivery.update({ where: { id: d.id }, data: { nextAttemptAt: new Date(Date.now() - 1000), lockedUntil: new Date(Date.now() + 60_000) } });
    await t.app.scheduler.tick();
    expect(receivedFor(d.id)).toHaveLength(1);
    await t.app.db.prisma.webhookDelivery.update({ where: { id: d.id }, data: { lockedUntil: new Date(Date.now() - 1000) } });
    await t.app.scheduler.tick();
    expect(receivedFor(d.id)).toHaveLength(2);
    expect((await deliveriesOf(who.app.contractId))[0].status).toBe("SUCCEEDED");
  });

  it("re-checks the address at delivery time: an endpoint that now points inwards is refused", async () => {
    const strict = await startTestServer({ env: { ALLOW_PRIVATE_URLS: "false" } });
    try {
      const who = await tenant(strict);
      // As if the URL had been accepted earlier (before a policy or DNS change).
      await strict.app.db.prisma.webhookEndpoint.create({ data: { id: "whe_inward", contractId: who.app.contractId, url: rx.url, secret: "whsec_" + Buffer.alloc(32, 1).toString("base64") } });
      const before = rx.received.length;
      await emit(who.app.contractId, "postbox.ready", {}, strict);
      await strict.app.scheduler.tick();
      const [d] = await deliveriesOf(who.app.contractId, strict);
      expect(d.status).toBe("PENDING");
      expect(d.attempts[0].statusCode).toBeNull();
      expect(d.attempts[0].error).toMatch(/^refused: .*private or loopback/);
      expect(rx.received.length).toBe(before);
    } finally {
      await strict.stop();
    }
  });
});

describe("fairness between endpoints", () => {
  it("sends at most two deliveries at a time to one endpoint, so a hanging receiver does not hold up others", async () => {
    const slow = await startWebhookReceiver();
    let release!: () => void;
    slow.hold(new Promise<void>((r) => (release = r)));
    try {
      const hanging = await tenant();
      await setWebhook(hanging, slow.url);
      const other = await tenant();
      await setWebhook(other);
      for (let i = 0; i < 6; i++) await emit(hanging.app.contractId, "push.delivered", { i });
      await slow.waitFor(2);
      const before = rx.received.length;
      await emit(other.app.contractId);
      // The other tenant's event goes out while the hanging endpoint still holds its two.
      await rx.waitFor(before + 1);
      expect(slow.received).toHaveLength(2);
      const [d] = await deliveriesOf(other.app.contractId);
      expect(rx.received.some((m) => m.id === d.id)).toBe(true);

      release();
      for (let i = 0; i < 50 && slow.received.length < 6; i++) {
        await t.app.scheduler.tick();
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(slow.received).toHaveLength(6);
    } finally {
      release?.();
      await slow.close();
    }
  });
});

describe("fairness between endpoints, for retries", () => {
  it("sends another endpoint's retry that comes due while a receiver hangs, on a free lane, without waiting for that receiver", async () => {
    // The periodic task's calls join the run that waits for the hanging lanes, and that
    // run fills free lanes every SWEEP_INTERVAL itself.
    const s = await startTestServer({ env: { SWEEP_INTERVAL: "200ms" } });
    const slow = await startWebhookReceiver();
    let release!: () => void;
    slow.hold(new Promise<void>((r) => (release = r)));
    try {
      const hanging = await tenant(s);
      await setWebhook(hanging, slow.url, s);
      const other = await tenant(s);
      await setWebhook(other, rx.url, s);
      for (let i = 0; i < 6; i++) {
        await s.app.db.prisma.$transaction((tx) => s.app.services.webhooks.enqueue(tx, { contractId: hanging.app.contractId, type: "push.delivered", data: { i } }));
      }
      await slow.waitFor(2);
      const run = s.app.services.webhooks.deliverDue(); // joins the run that waits for the two hanging sends
      // Another tenant's retry comes due (no enqueue, so nothing but a claim finds it).
      const ep = await s.app.db.prisma.webhookEndpoint.findUniqueOrThrow({ where: { contractId: other.app.contractId } });
      const id = `msg_retry_${randomBytes(6).toString("hex")}`;
      await s.app.db.prisma.webhookDelivery.create({
        data: { id, endpointId: ep.id, contractId: other.app.contractId, eventType: "postbox.ready", payload: "{}", attemptCount: 1, nextAttemptAt: new Date(Date.now() - 1000) },
      });
      await waitUntil(() => rx.received.some((m) => m.id === id), "the other endpoint's retry is sent");
      expect(slow.received).toHaveLength(2); // the hanging receiver still holds its two
      release();
      await run;
    } finally {
      release?.();
      await slow.close();
      await s.stop();
    }
  });
});

describe("history", () => {
  it("deletes finished deliveries and their attempts WEBHOOK_RETENTION after they finished, and keeps pending ones", async () => {
    const who = await tenant();
    await setWebhook(who);
    const before = rx.received.length;
    await emit(who.app.contractId, "postbox.ready", { postboxId: "pbx_old" });
    await rx.waitFor(before + 1);
    await waitUntil(async () => (await deliveriesOf(who.app.contractId))[0]?.status === "SUCCEEDED", "the delivery is recorded as sent");
    const [done] = await deliveriesOf(who.app.contractId);
    const p = t.app.db.prisma;
    const ep = await p.webhookEndpoint.findUniqueOrThrow({ where: { contractId: who.app.contractId } });
    await p.webhookDelivery.create({ data: { id: `msg_pending_${randomBytes(4).toString("hex")}`, endpointId: ep.id, contractId: who.app.contractId, eventType: "postbox.ready", payload: "{}", nextAttemptAt: new Date(Date.now() + 3_600_000) } });
    expect(await p.webhookAttempt.count({ where: { deliveryId: done.id } })).toBe(1);

    // Within the retention (30 days by default) nothing goes.
    expect(await t.app.services.webhooks.prune(new Date(Date.now() + 29 * 86_400_000))).toBe(0);
    // Past it, the finished delivery goes with its attempts; the pending one stays.
    expect(await t.app.services.webhooks.prune(new Date(Date.now() + 31 * 86_400_000))).toBeGreaterThanOrEqual(1);
    expect(await p.webhookDelivery.findUnique({ where: { id: done.id } })).toBeNull();
    expect(await p.webhookAttempt.count({ where: { deliveryId: done.id } })).toBe(0);
    expect(await p.webhookDelivery.count({ where: { contractId: who.app.contractId, status: "PENDING" } })).toBe(1);
    await p.webhookDelivery.deleteMany({ where: { contractId: who.app.contractId } });
  });
});

describe("private addresses without ALLOW_PRIVATE_URLS", () => {
  let strict: TestServer;
  beforeAll(async () => {
    strict = await startTestServer({ env: { ALLOW_PRIVATE_URLS: "false" } });
  });
  afterAll(async () => strict?.stop());

  it.each(["http://127.0.0.1:9/hook", "http://10.0.0.8/hook", "http://[::1]/hook", "http://localhost/hook", "http://169.254.169.254/latest"])(
    "refuses %s over GraphQL and the admin API, writing only refusal audit events",
    async (url) => {
      const who = await tenant(strict);
      const r = await strict.gql(SET, { url }, { token: who.key });
      expect(errorCode(r)).toBe("BAD_USER_INPUT");
      expect(r.errors![0].message).toMatch(/private or loopback/);
      const a = await strict.admin("PUT", `/contracts/${who.app.contractId}/webhook`, { url });
      expect(a.status).toBe(400);
      expect(a.body.error).toMatchObject({ code: "BAD_USER_INPUT", field: "url" });
      expect(await strict.app.db.prisma.webhookEndpoint.count({ where: { contractId: who.app.contractId } })).toBe(0);
      const refusals = await strict.app.db.prisma.auditEvent.findMany({ where: { action: "webhook.set", contractId: who.app.contractId } });
      expect(refusals.map((e) => [e.outcome, e.actorType])).toEqual([["REFUSED", "APP"], ["REFUSED", "ADMIN"]]);
    },
  );

  it("accepts a public URL", async () => {
    const who = await tenant(strict);
    const r = await strict.gql(SET, { url: "https://hooks.example.com/postbox" }, { token: who.key });
    expect(r.errors).toBeUndefined();
    secrets.push(r.data!.setWebhook.secret);
  });
});

describe("deliveries query", () => {
  it("pages newest first, filters by status, and shows only the caller's contract", async () => {
    const who = await tenant();
    await setWebhook(who);
    for (const type of ["postbox.ready", "postbox.declined", "postbox.closed"] as const) await emit(who.app.contractId, type);
    await t.app.scheduler.tick();
    rx.respondWith(500);
    await emit(who.app.contractId, "push.purged");
    await t.app.scheduler.tick();

    type Node = { id: string; eventType: string; createdAt: string };
    const p1 = (await t.gql(DELIVERIES, { first: 2 }, { token: who.key })).data!.webhookDeliveries;
    expect(p1.edges).toHaveLength(2);
    expect(p1.pageInfo.hasNextPage).toBe(true);
    const p2 = (await t.gql(DELIVERIES, { first: 2, after: p1.pageInfo.endCursor }, { token: who.key })).data!.webhookDeliveries;
    expect(p2.edges).toHaveLength(2);
    expect(p2.pageInfo.hasNextPage).toBe(false);
    // Together: every delivery once, newest first (ties on createdAt broken by id, descending).
    const nodes: Node[] = [...p1.edges, ...p2.edges].map((e: { node: Node }) => e.node);
    const expected = (await deliveriesOf(who.app.contractId))
      .sort((x, y) => y.createdAt.getTime() - x.createdAt.getTime() || (y.id < x.id ? -1 : 1))
      .map((d) => d.id);
    expect(nodes.map((n) => n.id)).toEqual(expected);
    expect(new Set(nodes.map((n) => n.eventType))).toEqual(new Set(["postbox.ready", "postbox.declined", "postbox.closed", "push.purged"]));

    const pending = (await t.gql(DELIVERIES, { status: "PENDING" }, { token: who.key })).data!.webhookDeliveries.edges;
    expect(pending).toHaveLength(1);
    expect(pending[0].node).toMatchObject({ eventType: "push.purged", status: "PENDING" });
    expect(pending[0].node.nextAttemptAt).toBeTruthy();

    const other = await tenant();
    const theirs = (await t.gql(DELIVERIES, {}, { token: other.key })).data!.webhookDeliveries;
    expect(theirs.edges).toHaveLength(0);
    expect((await t.gql(GET, {}, { token: other.key })).data!.webhook).toBeNull();

    expect(errorCode(await t.gql(DELIVERIES, { after: "garbage!" }, { token: who.key }))).toBe("BAD_USER_INPUT");
    expect(errorCode(await t.gql(DELIVERIES, { first: 1000 }, { token: who.key }))).toBe("BAD_USER_INPUT");
    // Leave no retry behind for later tests' receiver.
    expect((await t.gql(DELETE, {}, { token: who.key })).data!.deleteWebhook).toBe(true);
  });
});

describe("admin API and CLI", () => {
  async function cli(...argv: string[]) {
    let stdout = "";
    let stderr = "";
    const code = await runCli(argv, { webhook: () => import("../../src/cli/commands/webhook.js") }, {
      stdout: (s) => void (stdout += s),
      stderr: (s) => void (stderr += s),
      env: { POSTBOX_URL: t.url, ADMIN_TOKEN: t.adminToken },
    });
    return { code, stdout, stderr };
  }

  it("registers, shows, lists deliveries and deletes through the admin API", async () => {
    const { app } = await tenant();
    const put = await t.admin("PUT", `/contracts/${app.contractId}/webhook`, { url: rx.url });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ contractId: app.contractId, url: rx.url });
    expect(put.body.secret).toMatch(/^whsec_/);
    secrets.push(put.body.secret);
    const get = await t.admin("GET", `/contracts/${app.contractId}/webhook`);
    expect(get.body.webhook).toMatchObject({ url: rx.url, disabledAt: null });
    expect(JSON.stringify(get.body)).not.toContain("whsec_");

    await emit(app.contractId);
    await t.app.scheduler.tick();
    const list = await t.admin("GET", `/contracts/${app.contractId}/webhook/deliveries`);
    expect(list.status).toBe(200);
    expect(list.body.deliveries).toHaveLength(1);
    expect(list.body.deliveries[0]).toMatchObject({ eventType: "postbox.ready", status: "SUCCEEDED" });
    expect(verifyWebhookSignature(put.body.secret, receivedFor(list.body.deliveries[0].id)[0])).toBe(true);

    const audit = await t.app.db.prisma.auditEvent.findFirst({ where: { action: "webhook.set", contractId: app.contractId } });
    expect(audit).toMatchObject({ actorType: "ADMIN", outcome: "SUCCESS" });

    expect((await t.admin("DELETE", `/contracts/${app.contractId}/webhook`)).body).toEqual({ contractId: app.contractId, deleted: true });
    expect((await t.admin("DELETE", `/contracts/${app.contractId}/webhook`)).status).toBe(404);
    expect((await t.admin("PUT", `/contracts/ctr_unknown/webhook`, { url: rx.url })).status).toBe(404);
    expect((await t.admin("GET", `/contracts/${app.contractId}/webhook/deliveries?status=BOGUS`)).status).toBe(400);
  });

  it("works from the CLI: webhook set / show / rotate-secret / deliveries / delete", async () => {
    const { app } = await tenant();
    const set = await cli("webhook", "set", app.contractId, rx.url, "--json");
    expect(set.stderr).toBe("");
    expect(set.code).toBe(0);
    const reg = JSON.parse(set.stdout);
    expect(reg).toMatchObject({ contractId: app.contractId, url: rx.url });
    expect(reg.secret).toMatch(/^whsec_/);
    secrets.push(reg.secret);

    const show = await cli("webhook", "show", app.contractId, "--json");
    expect(JSON.parse(show.stdout).webhook).toMatchObject({ url: rx.url, disabledAt: null });
    expect(show.stdout).not.toContain("whsec_");
    const rotated = await cli("webhook", "rotate-secret", app.contractId, "--json");
    const fresh = JSON.parse(rotated.stdout).secret as string;
    secrets.push(fresh);
    expect(fresh).toMatch(/^whsec_/);
    expect(fresh).not.toBe(reg.secret);

    rx.respondWith(500);
    await emit(app.contractId, "data_request.fulfilled", { dataRequestId: "drq_1" });
    await t.app.scheduler.tick();
    const list = await cli("webhook", "deliveries", app.contractId, "--json");
    expect(list.code).toBe(0);
    const { deliveries } = JSON.parse(list.stdout);
    expect(deliveries).toHaveLength(1);
    expect(deliveries[0]).toMatchObject({ eventType: "data_request.fulfilled", status: "PENDING" });
    expect(deliveries[0].attempts[0]).toMatchObject({ number: 1, statusCode: 500 });
    expect(verifyWebhookSignature(fresh, receivedFor(deliveries[0].id)[0])).toBe(true);

    const human = await cli("webhook", "deliveries", app.contractId);
    expect(human.stdout).toContain(deliveries[0].id);
    expect(human.stdout).toContain("PENDING");

    const del = await cli("webhook", "delete", app.contractId, "--json");
    expect(JSON.parse(del.stdout)).toEqual({ contractId: app.contractId, deleted: true });
    const again = await cli("webhook", "delete", app.contractId);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/No webhook is registered.*\[NOT_FOUND\]/);

    const bad = await cli("webhook", "set", app.contractId, "gopher://x.example.com/");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/http or https.*\[BAD_USER_INPUT, field url\]/);
  });
});

describe("restart", () => {
  it("sends a delivery that was in flight at shutdown after a restart on the same database", async () => {
    const pg = process.env.TEST_DB === "postgres" ? await createTestDatabase() : undefined;
    const dataDir = pg ? undefined : await mkdtemp(path.join(os.tmpdir(), "postbox-webhook-restart-"));
    const where = pg ? { databaseUrl: pg.url } : { dataDir };
    let release!: () => void;
    try {
      const first = await startTestServer(where);
      const who = await tenant(first);
      const secret = await setWebhook(who, rx.url, first);
      // The receiver sits on the request, so it is still in flight when the server stops.
      rx.hold(new Promise<void>((r) => (release = r)));
      const before = rx.received.length;
      await emit(who.app.contractId, "postbox.ready", { postboxId: "pbx_restart" }, first);
      await rx.waitFor(before + 1);
      await first.stop();
      release();

      const second = await startTestServer(where);
      try {
        const [pending] = await deliveriesOf(who.app.contractId, second);
        expect(pending.status).toBe("PENDING");
        expect(pending.lockedUntil).toBeNull();
        expect(pending.attempts).toHaveLength(1);
        expect(pending.attempts[0]).toMatchObject({ number: 1, statusCode: null, error: "aborted: server shutting down" });
        // Interrupted by our own shutdown, not the receiver's fault: due again at once, no backoff.
        expect(pending.nextAttemptAt.getTime()).toBeLessThanOrEqual(Date.now());

        // The receiver fails the next send: the backoff is the first step's (5 s), as for a
        // first failure; the interrupted send is not counted against the delivery.
        rx.respondWith(500);
        const failedAt = Date.now();
        await second.app.scheduler.tick();
        const [failed] = await deliveriesOf(who.app.contractId, second);
        expect(failed.attempts.map((a) => [a.number, a.statusCode])).toEqual([[1, null], [2, 500]]);
        expect(failed.nextAttemptAt.getTime() - failedAt).toBeLessThan(5_000 * 1.2 + 1_000);
        await second.app.db.prisma.webhookDelivery.update({ where: { id: failed.id }, data: { nextAttemptAt: new Date() } });

        await second.app.scheduler.tick();
        const [d] = await deliveriesOf(who.app.contractId, second);
        expect(d.id).toBe(pending.id);
        expect(d.status).toBe("SUCCEEDED");
        expect(d.attempts.map((a) => [a.number, a.statusCode])).toEqual([[1, null], [2, 500], [3, 204]]);
        const msgs = receivedFor(d.id);
        expect(msgs).toHaveLength(3);
        expect(msgs[2].body).toBe(msgs[0].body);
        expect(verifyWebhookSignature(secret, msgs[2])).toBe(true);
      } finally {
        await second.stop();
      }
    } finally {
      release?.();
      await pg?.drop();
      if (dataDir) await rm(dataDir, { recursive: true, force: true });
    }
  });
});

// Two server processes cannot share an embedded database: this part runs in the postgres project only.
if (process.env.TEST_DB === "postgres") describe("two instances on one PostgreSQL database", () => {
  it("send each delivery exactly once when they claim concurrently", async () => {
    const a = t;
    const b = await startTestServer({ databaseUrl: t.databaseUrl });
    const own = await startWebhookReceiver();
    try {
      // Eight tenants: at most two sends per endpoint, eight lanes per instance.
      const tenants: Tenant[] = [];
      for (let i = 0; i < 8; i++) {
        const who = await tenant(a);
        await setWebhook(who, `${own.url}?tenant=${i}`, a);
        tenants.push(who);
      }
      // Hold every answer until 16 requests are in flight: 8 lanes per instance,
      // so the gate opens only if both instances are sending at the same time.
      let open!: () => void;
      own.hold(new Promise<void>((r) => (open = r)));
      void own.waitFor(16).then(() => open());
      const N = 64;
      await a.app.db.prisma.$transaction(async (tx) => {
        for (let i = 0; i < N; i++) await a.app.services.webhooks.enqueue(tx, { contractId: tenants[i % 8].app.contractId, type: "push.delivered", data: { i } });
      });
      await Promise.all([a.app.scheduler.tick(), b.app.scheduler.tick()]);
      await Promise.all([a.app.scheduler.tick(), b.app.scheduler.tick()]);

      const ids = own.received.map((r) => r.id);
      expect(ids).toHaveLength(N);
      expect(new Set(ids).size).toBe(N);
      for (const who of tenants) {
        const ds = await deliveriesOf(who.app.contractId, a);
        expect(ds).toHaveLength(N / 8);
        expect(ds.every((d) => d.status === "SUCCEEDED" && d.attemptCount === 1 && d.attempts.length === 1)).toBe(true);
        const mine = new Set(ds.map((d) => d.id));
        expect(own.received.filter((m) => mine.has(m.id)).every((m) => verifyWebhookSignature(who.secret!, m))).toBe(true);
      }
      const sentBy = (s: TestServer) => s.logs.filter((l) => l.includes('"webhook delivered"') && tenants.some((w) => l.includes(w.app.contractId))).length;
      expect(sentBy(a)).toBeGreaterThan(0);
      expect(sentBy(b)).toBeGreaterThan(0);
      expect(sentBy(a) + sentBy(b)).toBe(N);
    } finally {
      await own.close();
      await b.stop();
    }
  });
});

describe("through the postbox lifecycle", () => {
  async function userKey() {
    const { publicKey } = await generateKeyPair("ECDH-ES+A256KW", { crv: "P-256", extractable: true });
    return (await exportJWK(publicKey)) as Record<string, unknown>;
  }

  /** The next delivery the receiver gets, checked against the contract's secret. */
  async function nextEvent(who: Tenant, act: () => Promise<unknown>) {
    const before = rx.received.length;
    await act();
    const [msg] = (await rx.waitFor(before + 1)).slice(before);
    expect(verifyWebhookSignature(who.secret!, msg)).toBe(true);
    return JSON.parse(msg.body) as { type: string; timestamp: string; data: Record<string, unknown> };
  }

  it("sends postbox.ready when the user accepts, then postbox.closed, postbox.declined and postbox.expired", async () => {
    const who = await tenant();
    await setWebhook(who);

    const pb = await createPostbox(t, who.key, { reference: "customer-7" });
    const ready = await nextEvent(who, async () => accept(t, pb.consentUrl, await userKey()));
    expect(ready).toMatchObject({ type: "postbox.ready", data: { postboxId: pb.id, status: "READY", previousStatus: "PENDING", reference: "customer-7" } });

    const closed = await nextEvent(who, async () => expect((await t.gql(CLOSE, { id: pb.id }, { token: who.key })).errors).toBeUndefined());
    expect(closed).toMatchObject({ type: "postbox.closed", data: { postboxId: pb.id, status: "CLOSED", previousStatus: "READY" } });

    const pb2 = await createPostbox(t, who.key);
    const declined = await nextEvent(who, async () => expect((await t.gql(DECLINE, { input: { code: codeOf(pb2.consentUrl) } })).errors).toBeUndefined());
    expect(declined).toMatchObject({ type: "postbox.declined", data: { postboxId: pb2.id, status: "DECLINED" } });

    const pb3 = await createPostbox(t, who.key);
    await t.app.db.prisma.postbox.update({ where: { id: pb3.id }, data: { consentExpiresAt: new Date(Date.now() - 1000) } });
    const expired = await nextEvent(who, () => t.app.scheduler.tick());
    expect(expired).toMatchObject({ type: "postbox.expired", data: { postboxId: pb3.id, status: "EXPIRED" } });

    await t.app.scheduler.tick();
    const q = (await t.gql(DELIVERIES, {}, { token: who.key })).data!.webhookDeliveries.edges;
    expect(q.map((e: { node: { eventType: string; status: string } }) => [e.node.eventType, e.node.status])).toEqual([
      ["postbox.expired", "SUCCEEDED"],
      ["postbox.declined", "SUCCEEDED"],
      ["postbox.closed", "SUCCEEDED"],
      ["postbox.ready", "SUCCEEDED"],
    ]);
  });
});

describe("secrets", () => {
  it("never appear in the server's logs", () => {
    expect(secrets.length).toBeGreaterThan(5);
    const logs = t.logs.join("\n");
    for (const s of secrets) {
      expect(logs).not.toContain(s);
      expect(logs).not.toContain(s.slice(6));
    }
  });
});
