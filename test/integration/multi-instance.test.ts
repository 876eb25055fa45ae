// Two Postbox instances on one PostgreSQL database with Redis pub/sub: a
// subscriber on one instance sees a postbox accepted through the other; racing
// acceptances and sweepers on both instances change each postbox once, with one
// audit event, one webhook delivery and one status event per transition; a session
// ended on one instance ends its streams on the other; rate limits count requests
// to either instance in one window; a user's live file stream hears pushes made on the other.
// PostgreSQL only: the embedded database belongs to a single process.
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { DESCRIPTOR, PUSH_DATA, createReadyPostboxForPush, createSession, makeUserKeyPair, registerApp, type TestApp } from "../helpers/factories.js";
import { randomInt } from "node:crypto";
import { createTestDatabase, errorCode, startTestServer, type TestServer } from "../helpers/server.js";
import { collect, wsClient } from "../helpers/ws.js";
import { ACCEPT, GET, STATUS_CHANGED, accept, codeOf, createPostbox, type StatusEvent } from "./postbox.helpers.js";

const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

// Runs in the postgres project only (jest.config.js): two processes cannot share an embedded database.
describe("two instances on PostgreSQL + Redis", () => {
  let db: { url: string; drop(): Promise<void> };
  let a: TestServer;
  let b: TestServer;
  let app: TestApp;
  let session: string;
  const clients: { dispose(): Promise<void> | void }[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    // A long SESSION_RECHECK: an ended session must be refused everywhere because the end
    // is announced, not because an instance happened to read the session again.
    a = await startTestServer({ databaseUrl: db.url, env: { REDIS_URL, SESSION_RECHECK: "10m" } });
    b = await startTestServer({ databaseUrl: db.url, env: { REDIS_URL, SESSION_RECHECK: "10m" } });
    app = await registerApp(a, { name: "Two-instance app" });
    session = await createSession(a, app);
  });
  afterAll(async () => {
    for (const c of clients) await c.dispose();
    await a?.stop();
    await b?.stop();
    await db?.drop();
  });

  function subscribe(server: TestServer, postboxId?: string) {
    const c = wsClient(server.wsUrl, `Bearer ${session}`);
    clients.push(c);
    return collect<StatusEvent>(c, STATUS_CHANGED, postboxId ? { postboxId } : {});
  }

  it("a subscriber on instance B sees READY when the user accepts through instance A", async () => {
    const pb = await createPostbox(a, session);
    const onB = subscribe(b, pb.id);
    expect((await onB.next(1)).postboxStatusChanged).toMatchObject({ postboxId: pb.id, status: "PENDING" });
    const res = await accept(a, pb.consentUrl, (await makeUserKeyPair("RSA")).publicJwk);
    expect(res.status).toBe("READY");
    expect((await onB.next(2)).postboxStatusChanged).toMatchObject({ postboxId: pb.id, status: "READY", previousStatus: "PENDING" });
    // And the other way round: a session made on A works on B, and B's writes reach A's subscribers.
    const onA = subscribe(a, pb.id);
    expect((await onA.next(1)).postboxStatusChanged.status).toBe("READY");
    const closed = await b.gql(`mutation($id: ID!) { closePostbox(id: $id) { status } }`, { id: pb.id }, { token: session });
    expect(closed.data?.closePostbox.status).toBe("CLOSED");
    expect((await onA.next(2)).postboxStatusChanged).toMatchObject({ status: "CLOSED", previousStatus: "READY" });
    expect((await onB.next(3)).postboxStatusChanged).toMatchObject({ status: "CLOSED", previousStatus: "READY" });
  });

  it("endSession through instance A ends the session's streams held by instance B", async () => {
    const ending = await createSession(a, app);
    const c = wsClient(b.wsUrl, `Bearer ${ending}`);
    clients.push(c);
    const before = b.app.services.pushes.openSubscriptions;
    const stream = collect(c, `subscription { pushStatusChanged { pushId status } }`);
    for (let i = 0; i < 200 && b.app.services.pushes.openSubscriptions === before; i++) await new Promise((r) => setTimeout(r, 10));
    expect(b.app.services.pushes.openSubscriptions).toBe(before + 1);
    // Another session's stream on B stays open.
    const staying = subscribe(b);
    const ended = await a.gql(`mutation { endSession }`, {}, { token: ending });
    expect(ended.data?.endSession).toBe(true);
    await expect(stream.next(1, 5000)).rejects.toThrow("subscription completed");
    expect(staying.errors).toEqual([]);
    for (let i = 0; i < 200 && b.app.services.pushes.openSubscriptions !== before; i++) await new Promise((r) => setTimeout(r, 10));
    expect(b.app.services.pushes.openSubscriptions).toBe(before);
  });

  it("the user's stream on instance B catches up, hears a push made through A, and ends when the user closes the postbox through A", async () => {
    const target = await createReadyPostboxForPush(a, session, "P-256");
    const push = async (text: string) => {
      const r = await a.gql(PUSH_DATA, { input: { postboxId: target.postboxId, fileName: "x.bin", fileDescriptor: DESCRIPTOR, data: Buffer.from(text).toString("base64") } }, { token: session });
      expect(r.errors).toBeUndefined();
      return r.data!.pushData.id as string;
    };
    const earlier = await push("before the stream");
    const c = wsClient(b.wsUrl, `Bearer ${target.accessToken}`);
    clients.push(c);
    const stream = collect(c, `subscription { myFilesChanged(includeCurrent: true) { fileId change } }`);
    expect((await stream.next(1)).myFilesChanged).toEqual({ fileId: earlier, change: "ADDED" });
    expect(b.app.services.files.openSubscriptions).toBe(1);
    const later = await push("across");
    expect((await stream.next(2)).myFilesChanged).toEqual({ fileId: later, change: "ADDED" });
    const closed = await a.gql(`mutation { closeMyPostbox { status } }`, {}, { token: target.accessToken });
    expect(closed.data?.closeMyPostbox.status).toBe("CLOSED");
    await expect(stream.next(3, 5000)).rejects.toThrow("subscription completed");
  });

  it("a session ended through A, or whose application is disabled through A, is refused by B, which had verified it", async () => {
    const CURRENT = `query { currentSession { appId } }`;
    const refusedOnB = async (key: string) => {
      for (let i = 0; i < 200; i++) {
        const r = await b.gql(CURRENT, {}, { token: key });
        if (r.errors) return r.errors[0].extensions?.code;
        await new Promise((res) => setTimeout(res, 10));
      }
      return "still accepted after 2 s";
    };
    const ending = await createSession(a, app);
    expect((await b.gql(CURRENT, {}, { token: ending })).data?.currentSession.appId).toBe(app.appId);
    expect((await a.gql(`mutation { endSession }`, {}, { token: ending })).data?.endSession).toBe(true);
    expect(await refusedOnB(ending)).toBe("UNAUTHENTICATED");

    const other = await registerApp(a, { name: "Disabled through A" });
    const key = await createSession(a, other);
    expect((await b.gql(CURRENT, {}, { token: key })).data?.currentSession.appId).toBe(other.appId);
    expect((await a.admin("POST", `/applications/${other.appId}/disable`)).status).toBe(200);
    expect(await refusedOnB(key)).toBe("FORBIDDEN");
    // The session of the app that was not disabled still works on B.
    expect((await b.gql(CURRENT, {}, { token: session })).errors).toBeUndefined();
  });

  it("pushes and other audited writes racing on both instances leave one unbroken audit chain", async () => {
    const target = await createReadyPostboxForPush(a, session);
    const before = await a.app.db.prisma.auditEvent.count();
    const push = (s: TestServer, i: number) =>
      s.gql(PUSH_DATA, { input: { postboxId: target.postboxId, fileName: `f${i}.txt`, fileDescriptor: DESCRIPTOR, data: Buffer.from(`racing ${i}`).toString("base64") } }, { token: session });
    // Batched pushes (one statement chains their events) and single events (createPostbox) interleave.
    const results = await Promise.all([
      ...Array.from({ length: 24 }, (_, i) => push(i % 2 ? a : b, i)),
      ...Array.from({ length: 6 }, (_, i) => (i % 2 ? a : b).gql(`mutation { createPostbox { id } }`, {}, { token: session })),
    ]);
    expect(results.filter((r) => r.errors)).toEqual([]);
    expect(await a.app.db.prisma.auditEvent.count()).toBe(before + 30);
    const verify = await b.admin("GET", "/audit/verify");
    expect(verify.body).toMatchObject({ ok: true });
    const head = await a.app.db.prisma.auditHead.findUniqueOrThrow({ where: { id: 1 } });
    const newest = await a.app.db.prisma.auditEvent.findFirstOrThrow({ orderBy: { seq: "desc" } });
    expect(head.hash).toBe(newest.hash);
  });

  it("two acceptances of one code racing on both instances: exactly one wins", async () => {
    const pb = await createPostbox(a, session);
    const [k1, k2] = await Promise.all([makeUserKeyPair("RSA"), makeUserKeyPair("P-256")]);
    const results = await Promise.all([
      a.gql(ACCEPT, { input: { code: codeOf(pb.consentUrl), publicKey: k1.publicJwk } }),
      b.gql(ACCEPT, { input: { code: codeOf(pb.consentUrl), publicKey: k2.publicJwk } }),
    ]);
    const won = results.filter((r) => r.data?.acceptPostbox?.status === "READY");
    const lost = results.filter((r) => r.errors);
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(lost[0].errors![0].extensions?.code).toBe("CONFLICT");
    const prisma = a.app.db.prisma;
    expect(await prisma.userGrant.count({ where: { postboxId: pb.id } })).toBe(1);
    expect(await prisma.auditEvent.count({ where: { postboxId: pb.id, action: "postbox.accept", outcome: "SUCCESS" } })).toBe(1);
    const row = (await a.gql(GET, { id: pb.id }, { token: session })).data!.postbox;
    expect(row.publicKey.kid).toBe(won[0].data!.acceptPostbox.publicKeyThumbprint);
  });

  it("sweepers running on both instances expire each postbox once: one audit event, one webhook, one status event", async () => {
    const hook = await a.gql(`mutation($url: String!) { setWebhook(url: $url) { secret } }`, { url: "http://127.0.0.1:9/unused" }, { token: session });
    expect(hook.errors).toBeUndefined();
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push((await createPostbox(a, session)).id);
    const onA = subscribe(a);
    const onB = subscribe(b);
    const markers = [await createPostbox(a, session), await createPostbox(a, session)];
    // Wait until both contract-wide streams are live: each instance delivers its own marker.
    await a.gql(`mutation($input: DeclinePostboxInput!) { declinePostbox(input: $input) { status } }`, { input: { code: codeOf(markers[0].consentUrl) } });
    await waitFor(onA, (e) => e.postboxId === markers[0].id);
    await waitFor(onB, (e) => e.postboxId === markers[0].id);

    await a.app.db.prisma.postbox.updateMany({ where: { id: { in: ids } }, data: { consentExpiresAt: new Date(Date.now() - 1000) } });
    await Promise.all([a.app.scheduler.tick(), b.app.scheduler.tick(), a.app.services.postboxes.sweep(), b.app.services.postboxes.sweep()]);

    const prisma = a.app.db.prisma;
    const rows = await prisma.postbox.findMany({ where: { id: { in: ids } } });
    expect(rows.map((r) => r.status)).toEqual(ids.map(() => "EXPIRED"));
    for (const id of ids) {
      expect(await prisma.auditEvent.count({ where: { postboxId: id, action: "postbox.expire" } })).toBe(1);
      expect(await prisma.webhookDelivery.count({ where: { eventType: "postbox.expired", payload: { contains: id } } })).toBe(1);
    }

    // A second marker from each instance: anything either instance published before it has arrived.
    await a.gql(`mutation($input: DeclinePostboxInput!) { declinePostbox(input: $input) { status } }`, { input: { code: codeOf(markers[1].consentUrl) } });
    const late = await createPostbox(b, session);
    await b.gql(`mutation($input: DeclinePostboxInput!) { declinePostbox(input: $input) { status } }`, { input: { code: codeOf(late.consentUrl) } });
    for (const sub of [onA, onB]) {
      await waitFor(sub, (e) => e.postboxId === markers[1].id);
      await waitFor(sub, (e) => e.postboxId === late.id);
      const expiredEvents = sub.events.map((e) => e.postboxStatusChanged).filter((e) => ids.includes(e.postboxId));
      expect(expiredEvents.map((e) => e.status)).toEqual(ids.map(() => "EXPIRED"));
      expect(new Set(expiredEvents.map((e) => e.postboxId)).size).toBe(ids.length);
    }
  });

  it("rate limits hold across instances: requests to either count in one window (Redis)", async () => {
    const env = { REDIS_URL, RATE_LIMIT_PER_MINUTE: "3", TRUST_PROXY: "true", SESSION_RECHECK: "10m" };
    const c = await startTestServer({ databaseUrl: db.url, env });
    const d = await startTestServer({ databaseUrl: db.url, env });
    try {
      // Windows are whole minutes: start early in one so that the four requests share it.
      const intoMinute = Date.now() % 60_000;
      if (intoMinute > 50_000) await new Promise((r) => setTimeout(r, 60_000 - intoMinute + 100));
      // A client address of this run only (behind the trusted proxy), so that earlier runs' counts do not matter.
      const ip = `10.${randomInt(256)}.${randomInt(256)}.${randomInt(1, 255)}`;
      const ask = (s: TestServer, from = ip) => s.gql(`query($code: String!) { consentRequest(code: $code) { status } }`, { code: "pbc_unknown" }, { headers: { "x-forwarded-for": from } });
      for (const s of [c, d, c]) expect(errorCode(await ask(s))).toBe("NOT_FOUND");
      // Each instance has seen fewer than 3; together they have seen 3.
      const limited = await ask(d);
      expect(errorCode(limited)).toBe("RATE_LIMITED");
      expect(limited.errors![0].extensions?.retryAfterSeconds).toBeGreaterThanOrEqual(1);
      expect(errorCode(await ask(c))).toBe("RATE_LIMITED");
      // Another address has its own count.
      expect(errorCode(await ask(c, `192.0.2.${randomInt(1, 255)}`))).toBe("NOT_FOUND");
    } finally {
      await c.stop();
      await d.stop();
    }
  });
});

async function waitFor(sub: ReturnType<typeof collect<StatusEvent>>, match: (e: StatusEvent["postboxStatusChanged"]) => boolean) {
  for (let n = 1; ; n++) {
    const e = await sub.next(n);
    if (match(e.postboxStatusChanged)) return;
  }
}
