// With REDIS_URL set and Redis unreachable, the server keeps serving what does not
// need Redis, and a subscription that cannot be set up ends with a masked internal
// error (the driver's message stays in the log), not with the process ending on an
// unhandled rejection or the driver's message shown as a request error.
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { createSession, registerApp, type TestApp } from "../helpers/factories.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { collect, wsClient } from "../helpers/ws.js";

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
