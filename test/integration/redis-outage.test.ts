// With REDIS_URL set and Redis unreachable, the server keeps serving what does not
// need Redis, and a subscription that cannot be set up ends with a masked internal
// error (the driver's message stays in the log), not with the process ending on an
// unhandled rejection or the driver's message shown as a request error. An ended
// session's streams on this instance end though the announcement cannot cross Redis.
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { Redis } from "ioredis";
import { createSession, registerApp, type TestApp } from "../helpers/factories.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { collect, wsClient } from "../helpers/ws.js";
import { waitUntil } from "./postbox.helpers.js";

describe("while Redis is unreachable", () => {
  let t: TestServer;
  let app: TestApp;
  beforeAll(async () => {
    // Nothing listens on port 1: every Redis command fails once ioredis gives up retrying it.
    t = await startTestServer({ env: { REDIS_URL: "redis://127.0.0.1:1" } });
    app = await registerApp(t);
  });
  afterAll(async () => t?.stop());

  it.each([
    `subscription { postboxStatusChanged { postboxId status } }`,
    `subscription { pushStatusChanged { pushId status } }`,
    `subscription { dataRequestStatusChanged { dataRequestId status } }`,
  ])("%s ends with INTERNAL_SERVER_ERROR and a masked message; the server goes on serving", async (query) => {
    const session = await createSession(t, app);
    const client = wsClient(t.wsUrl, `Bearer ${session}`);
    try {
      const s = collect(client, query);
      const err = (await s.next(1, 15_000).catch((e) => e)) as { message: string; extensions?: { code?: string } }[];
      expect(Array.isArray(err)).toBe(true);
      expect(err[0]).toEqual({ message: "Internal server error.", extensions: { code: "INTERNAL_SERVER_ERROR" } });
      expect(t.logs.some((l) => l.includes("max retries per request"))).toBe(true);
    } finally {
      await client.dispose();
    }
    const r = await t.gql(`query { postboxes(first: 1) { edges { cursor } } }`, {}, { token: session });
    expect(r.errors).toBeUndefined();
    expect(r.data?.postboxes.edges).toEqual([]);
  });
});

/** A port nothing listens on now (the OS picks it). */
async function freePort(): Promise<number> {
  const srv = createServer().listen(0, "127.0.0.1");
  await once(srv, "listening");
  const { port } = srv.address() as { port: number };
  srv.close();
  await once(srv, "close");
  return port;
}

describe("when Redis goes away while a session's stream is open", () => {
  // A Redis of this file's own, to stop (the shared one serves other tests).
  let redis: ChildProcess | undefined;
  let probe: Redis | undefined;
  let t: TestServer;
  let app: TestApp;
  let port: number;
  beforeAll(async () => {
    port = await freePort();
    redis = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
    probe = new Redis(port, "127.0.0.1", { maxRetriesPerRequest: 0, retryStrategy: () => 50, lazyConnect: true });
    probe.on("error", () => {});
    await waitUntil(() => probe!.ping().then(() => true, () => false), "the private redis-server answers");
    t = await startTestServer({ env: { REDIS_URL: `redis://127.0.0.1:${port}` } });
    app = await registerApp(t);
  });
  afterAll(async () => {
    probe?.disconnect();
    await t?.stop();
    if (redis && redis.exitCode === null && redis.signalCode === null) {
      redis.kill("SIGKILL");
      await once(redis, "exit");
    }
  });

  it("endSession still ends this instance's streams of the session at once", async () => {
    const session = await createSession(t, app);
    const client = wsClient(t.wsUrl, `Bearer ${session}`);
    try {
      const s = collect(client, `subscription { pushStatusChanged { pushId status } }`);
      // An event through Redis: the stream is open past its ready(), not still setting up.
      const event = { contractId: app.contractId, postboxId: "pbx_none", pushId: "psh_probe", status: "PENDING", at: new Date().toISOString() };
      await waitUntil(async () => {
        await probe!.publish(`PUSH_STATUS:${app.contractId}`, JSON.stringify(event));
        return s.events.length > 0;
      }, "the stream receives an event through Redis");
      expect(s.events[0]).toEqual({ pushStatusChanged: { pushId: "psh_probe", status: "PENDING" } });

      const errorsBefore = t.logs.filter((l) => l.includes("redis connection error")).length;
      redis!.kill("SIGKILL");
      await once(redis!, "exit");
      // The server has seen the connection go (its publishes now fail rather than wait on a dead socket).
      await waitUntil(() => t.logs.filter((l) => l.includes("redis connection error")).length > errorsBefore, "the server notices Redis is gone");

      const r = await t.gql(`mutation { endSession }`, {}, { token: session });
      expect(r.data?.endSession).toBe(true);
      // (The probe may have been heard more than once; all of that came before Redis went.)
      await expect(s.next(s.events.length + 1, 5000)).rejects.toThrow("subscription completed");
      await waitUntil(() => t.app.services.pushes.openSubscriptions === 0, "the stream is released");
    } finally {
      await client.dispose();
    }
  });
});
