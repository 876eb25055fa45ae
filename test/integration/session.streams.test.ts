// A subscription lives no longer than the session that opened it: ending the
// session (endSession) ends its streams at once, whatever they follow, and leaves
// other sessions' streams alone; disabling the application ends all of its streams,
// and rotating a contract's key ends that contract's.
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { createSession, makeKeyPair, registerApp, type TestApp } from "../helpers/factories.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { collect, wsClient } from "../helpers/ws.js";
import { waitUntil } from "./postbox.helpers.js";

let t: TestServer;
let app: TestApp;

beforeAll(async () => {
  t = await startTestServer();
  app = await registerApp(t);
});
afterAll(async () => t?.stop());

const STREAMS = [
  `subscription { postboxStatusChanged { postboxId status } }`,
  `subscription { pushStatusChanged { pushId status } }`,
  `subscription { dataRequestStatusChanged { dataRequestId status } }`,
];

const open = () => t.app.services.postboxes.openSubscriptions + t.app.services.pushes.openSubscriptions + t.app.services.dataRequests.openSubscriptions;

function subscribeAll(key: string) {
  const client = wsClient(t.wsUrl, `Bearer ${key}`);
  return { client, streams: STREAMS.map((q) => collect(client, q)) };
}

describe("streams end with their session", () => {
  it("endSession completes the session's streams and no other's; disabling the application completes the rest", async () => {
    const ending = await createSession(t, app);
    const staying = await createSession(t, app);
    const before = open();
    const a = subscribeAll(ending);
    const b = subscribeAll(staying);
    await waitUntil(() => open() === before + 6, "all six streams are registered");

    const r = await t.gql(`mutation { endSession }`, {}, { token: ending });
    expect(r.data?.endSession).toBe(true);
    for (const s of a.streams) await expect(s.next(1, 5000)).rejects.toThrow("subscription completed");
    await waitUntil(() => open() === before + 3, "the ended session's streams are released");
    expect(b.streams.every((s) => s.errors.length === 0 && s.events.length === 0)).toBe(true);

    const disabled = await t.admin("POST", `/applications/${app.appId}/disable`);
    expect(disabled.status).toBe(200);
    for (const s of b.streams) await expect(s.next(1, 5000)).rejects.toThrow("subscription completed");
    await waitUntil(() => open() === before, "every stream is released");
    // And the session itself is refused now.
    const again = subscribeAll(staying);
    await expect(again.streams[0].next(1, 5000)).rejects.toBeTruthy();
    for (const c of [a.client, b.client, again.client]) await c.dispose();
  });

  it("rotating a contract's key completes its sessions' streams and leaves another contract's alone", async () => {
    const rotated = await registerApp(t, { name: "Rotated" });
    const untouched = await registerApp(t, { name: "Untouched" });
    const before = open();
    const a = subscribeAll(await createSession(t, rotated));
    const b = subscribeAll(await createSession(t, untouched));
    await waitUntil(() => open() === before + 6, "all six streams are registered");

    const next = await makeKeyPair("PS512");
    const r = await t.admin("POST", `/contracts/${rotated.contractId}/keys`, { publicKey: next.publicJwk });
    expect(r.status).toBe(201);
    expect(r.body.sessionsEnded).toBe(1);
    for (const s of a.streams) await expect(s.next(1, 5000)).rejects.toThrow("subscription completed");
    await waitUntil(() => open() === before + 3, "the rotated contract's streams are released");
    expect(b.streams.every((s) => s.errors.length === 0 && s.events.length === 0)).toBe(true);
    for (const c of [a.client, b.client]) await c.dispose();
  });
});
