// The user's live view of its postbox (myFilesChanged over graphql-ws, with the
// access token): ADDED when the app pushes, DELIVERED on acknowledgement, PURGED
// at expiry; only its own postbox's files; and the stream ends with the credential
// (access token expiry, refresh-token reuse, the postbox closed).
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { PUSH_DATA, createReadyPostboxForPush, createSession, dataInput, registerApp, type PushTarget } from "../helpers/factories.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { collect, wsClient } from "../helpers/ws.js";

const LIVE = `subscription { myFilesChanged { fileId change at } }`;
const ACK = `mutation($ids: [ID!]!) { acknowledgeFiles(ids: $ids) { id status } }`;
const REFRESH = `mutation($t: String!) { refreshUserToken(refreshToken: $t) { accessToken refreshToken } }`;

interface Live {
  myFilesChanged: { fileId: string; change: string; at: string };
}

let t: TestServer;
let session: string;

beforeAll(async () => {
  t = await startTestServer();
  session = await createSession(t, await registerApp(t));
});
afterAll(async () => t?.stop());

async function push(target: PushTarget, text: string): Promise<string> {
  const r = await t.gql(PUSH_DATA, { input: dataInput(target, Buffer.from(text)) }, { token: session });
  expect(r.errors).toBeUndefined();
  return r.data!.pushData.id;
}

/** Opens the user's stream and waits until the server has registered it, so nothing published afterwards is missed. */
async function subscribe(accessToken: string, query = LIVE, variables?: Record<string, unknown>) {
  const before = t.app.services.files.openSubscriptions;
  const client = wsClient(t.wsUrl, `Bearer ${accessToken}`);
  const sub = collect<Live>(client, query, variables);
  const deadline = Date.now() + 10_000;
  while (t.app.services.files.openSubscriptions <= before && !sub.errors.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return { client, sub };
}

describe("myFilesChanged", () => {
  it("tells the user's app of new, delivered and purged files of its own postbox only", async () => {
    const mine = await createReadyPostboxForPush(t, session, "P-256");
    const other = await createReadyPostboxForPush(t, session, "RSA");
    const { client, sub } = await subscribe(mine.accessToken);
    try {
      await push(other, "not for this user");
      const before = Date.now();
      const id = await push(mine, "hello");
      const added = (await sub.next(1)).myFilesChanged;
      expect(added).toEqual({ fileId: id, change: "ADDED", at: expect.any(String) });
      expect(new Date(added.at).getTime()).toBeGreaterThanOrEqual(before - 1000);

      const acked = await t.gql(ACK, { ids: [id] }, { token: mine.accessToken });
      expect(acked.data!.acknowledgeFiles[0].status).toBe("DELIVERED");
      expect((await sub.next(2)).myFilesChanged).toMatchObject({ fileId: id, change: "DELIVERED" });

      await t.app.db.prisma.push.update({ where: { id }, data: { expiresAt: new Date(Date.now() - 1000) } });
      await t.app.scheduler.tick();
      expect((await sub.next(3)).myFilesChanged).toMatchObject({ fileId: id, change: "PURGED" });
      // Nothing of the other postbox arrived in between.
      expect(sub.events.map((e) => e.myFilesChanged.fileId)).toEqual([id, id, id]);
      expect(sub.errors).toEqual([]);
    } finally {
      sub.dispose();
      await client.dispose();
    }
  });

  it("with includeCurrent, opens with where each file stands (a reconnecting device catches up), then goes on live", async () => {
    const target = await createReadyPostboxForPush(t, session, "RSA");
    const other = await createReadyPostboxForPush(t, session, "RSA");
    // Three files that changed while no stream was open: one delivered, one pending, one purged.
    const delivered = await push(target, "one");
    const pending = await push(target, "two");
    const purged = await push(target, "three");
    await push(other, "not for this user");
    expect((await t.gql(ACK, { ids: [delivered] }, { token: target.accessToken })).errors).toBeUndefined();
    await t.app.db.prisma.push.update({ where: { id: purged }, data: { expiresAt: new Date(Date.now() - 1000) } });
    await t.app.scheduler.tick();
    const rows = new Map((await t.app.db.prisma.push.findMany({ where: { postboxId: target.postboxId } })).map((r) => [r.id, r]));

    const { client, sub } = await subscribe(target.accessToken, `subscription { myFilesChanged(includeCurrent: true) { fileId change at } }`);
    try {
      await sub.next(3);
      expect(sub.events.map((e) => e.myFilesChanged)).toEqual([
        { fileId: delivered, change: "DELIVERED", at: rows.get(delivered)!.deliveredAt!.toISOString() },
        { fileId: pending, change: "ADDED", at: rows.get(pending)!.receivedAt.toISOString() },
        { fileId: purged, change: "PURGED", at: rows.get(purged)!.purgedAt!.toISOString() },
      ]);
      const live = await push(target, "four");
      expect((await sub.next(4)).myFilesChanged).toMatchObject({ fileId: live, change: "ADDED" });
      expect((await t.gql(ACK, { ids: [pending] }, { token: target.accessToken })).errors).toBeUndefined();
      expect((await sub.next(5)).myFilesChanged).toMatchObject({ fileId: pending, change: "DELIVERED" });
      expect(sub.events).toHaveLength(5);
      expect(sub.errors).toEqual([]);
    } finally {
      sub.dispose();
      await client.dispose();
    }
  });

  it("with changedSince, a reconnecting device is told only of files changed since (give or take a minute)", async () => {
    const target = await createReadyPostboxForPush(t, session, "X25519");
    const old = await push(target, "seen before the connection dropped");
    const oldDelivered = await push(target, "delivered long ago");
    expect((await t.gql(ACK, { ids: [oldDelivered] }, { token: target.accessToken })).errors).toBeUndefined();
    // Both changed two minutes ago, as far as the database knows.
    const longAgo = new Date(Date.now() - 120_000);
    await t.app.db.prisma.push.updateMany({ where: { id: { in: [old, oldDelivered] } }, data: { receivedAt: longAgo } });
    await t.app.db.prisma.push.update({ where: { id: oldDelivered }, data: { deliveredAt: longAgo } });
    const lastSeen = new Date(Date.now() - 1000); // the `at` of the last event the device got
    const pushedMeanwhile = await push(target, "pushed while the device was away");
    const deliveredMeanwhile = old;
    expect((await t.gql(ACK, { ids: [deliveredMeanwhile] }, { token: target.accessToken })).errors).toBeUndefined();

    const { client, sub } = await subscribe(
      target.accessToken,
      `subscription($since: DateTimeISO) { myFilesChanged(includeCurrent: true, changedSince: $since) { fileId change } }`,
      { since: lastSeen.toISOString() },
    );
    try {
      await sub.next(2);
      expect(sub.events.map((e) => e.myFilesChanged)).toEqual([
        { fileId: deliveredMeanwhile, change: "DELIVERED" },
        { fileId: pushedMeanwhile, change: "ADDED" },
      ]);
      const live = await push(target, "live");
      expect((await sub.next(3)).myFilesChanged).toEqual({ fileId: live, change: "ADDED" });
      expect(sub.errors).toEqual([]);
    } finally {
      sub.dispose();
      await client.dispose();
    }

    // Without includeCurrent there is nothing to filter: refused with a reason.
    const bad = await subscribe(target.accessToken, `subscription { myFilesChanged(changedSince: "2026-01-01T00:00:00Z") { fileId } }`);
    try {
      await expect(bad.sub.next(1, 5000)).rejects.toBeTruthy();
      const errors = bad.sub.errors[0] as { message: string; extensions?: { code?: string } }[];
      expect(errors[0]).toMatchObject({ message: "changedSince only applies with includeCurrent: true.", extensions: { code: "BAD_USER_INPUT" } });
    } finally {
      await bad.client.dispose();
    }
  });

  it("needs the user's access token: an application session or no credential is refused", async () => {
    for (const authorization of [undefined, `Bearer ${session}`]) {
      const client = wsClient(t.wsUrl, authorization);
      const sub = collect<Live>(client, LIVE);
      try {
        await expect(sub.next(1, 5000)).rejects.toBeTruthy();
        const errors = sub.errors[0] as { extensions?: { code?: string } }[];
        expect(errors[0].extensions?.code).toBe("UNAUTHENTICATED");
      } finally {
        sub.dispose();
        await client.dispose();
      }
    }
  });

  it("ends when the access token expires", async () => {
    const target = await createReadyPostboxForPush(t, session, "X25519");
    await t.app.db.prisma.userGrant.updateMany({ where: { postboxId: target.postboxId }, data: { accessExpiresAt: new Date(Date.now() + 1500) } });
    const { client, sub } = await subscribe(target.accessToken);
    try {
      await expect(sub.next(1, 8000)).rejects.toThrow("subscription completed");
      expect(sub.events).toEqual([]);
    } finally {
      await client.dispose();
    }
  });

  it("ends when the credential is revoked (a refresh token used twice)", async () => {
    const target = await createReadyPostboxForPush(t, session, "RSA");
    const { client, sub } = await subscribe(target.accessToken);
    try {
      const first = await t.gql(REFRESH, { t: target.refreshToken });
      expect(first.errors).toBeUndefined();
      // The device refreshing its tokens does not end the stream: the grant is the same.
      await push(target, "still live");
      expect((await sub.next(1)).myFilesChanged.change).toBe("ADDED");
      const reused = await t.gql(REFRESH, { t: target.refreshToken });
      expect(reused.errors?.[0].extensions?.code).toBe("UNAUTHENTICATED");
      await expect(sub.next(2, 5000)).rejects.toThrow("subscription completed");
    } finally {
      await client.dispose();
    }
  });

  it("ends when the user closes the postbox, and keeps other postboxes' streams open", async () => {
    const closing = await createReadyPostboxForPush(t, session, "P-256");
    const staying = await createReadyPostboxForPush(t, session, "P-256");
    const a = await subscribe(closing.accessToken);
    const b = await subscribe(staying.accessToken);
    try {
      const closed = await t.gql(`mutation { closeMyPostbox { id status } }`, {}, { token: closing.accessToken });
      expect(closed.data!.closeMyPostbox.status).toBe("CLOSED");
      await expect(a.sub.next(1, 5000)).rejects.toThrow("subscription completed");
      const id = await push(staying, "after the other closed");
      expect((await b.sub.next(1)).myFilesChanged).toMatchObject({ fileId: id, change: "ADDED" });
    } finally {
      b.sub.dispose();
      await a.client.dispose();
      await b.client.dispose();
    }
  });

  it("ends at once when opened for a credential whose postbox closed between its check and the stream's start", async () => {
    const target = await createReadyPostboxForPush(t, session, "RSA");
    // What subscribe does, with the close landing in between: the credential checked first...
    const u = await t.app.services.users.authenticate(target.accessToken);
    const closed = await t.gql(`mutation { closeMyPostbox { id status } }`, {}, { token: target.accessToken });
    expect(closed.data!.closeMyPostbox.status).toBe("CLOSED");
    // ...then the stream, which heard nothing of the close.
    const stream = t.app.services.files.subscribeFiles(u, () => t.app.services.users.grantLive(u.grantId))[Symbol.asyncIterator]();
    const first = await Promise.race([stream.next(), new Promise((r) => setTimeout(() => r("still open"), 3000))]);
    expect(first).toEqual({ done: true, value: undefined });
    await stream.return?.();
  });
});
