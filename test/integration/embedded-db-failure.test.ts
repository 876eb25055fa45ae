// The embedded database on a disk whose syncs fail, as clients and the operator see it:
// writes fail with a masked internal error, the log says which file could not be synced,
// /readyz answers 503, and once the disk works again the server reopens the database by
// itself, with everything it had acknowledged. (The thread's own behaviour is tested in
// test/unit/pglite-durable.test.ts; this file runs on the embedded database only.)
import { rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { request } from "undici";
import { operation } from "../documents/index.js";
import { registerApp, signAssertion, type TestApp } from "../helpers/factories.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const FAILING_DISK = new URL("../helpers/failing-disk.worker.mjs", import.meta.url);

async function readyz(t: TestServer): Promise<number> {
  const r = await request(`${t.url}/readyz`);
  await r.body.dump();
  return r.statusCode;
}

const logged = (t: TestServer, msg: string) => t.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === msg);

describe("the embedded database on a disk whose syncs fail", () => {
  let t: TestServer;
  let marker: string;
  const createSession = (app: TestApp) => async () =>
    t.gql(operation("CreateSession"), { input: { appId: app.appId, contractId: app.contractId, assertion: await signAssertion(app) } });

  beforeAll(async () => {
    t = await startTestServer({ env: { EMBEDDED_DB_SYNC: "true" }, dbThread: { workerUrl: FAILING_DISK, reopenAfterMs: 100 } });
    marker = `${path.join(t.dataDir, "db")}.fail-syncs`;
  });
  afterAll(async () => {
    if (marker) rmSync(marker, { force: true });
    await t?.stop();
  });

  it("fails writes with a masked error and turns /readyz 503, then reopens the database once the disk works", async () => {
    const app = await registerApp(t);
    expect(await readyz(t)).toBe(200);

    writeFileSync(marker, "");
    const refused = await createSession(app)();
    expect(refused.errors).toEqual([{ message: "Internal server error.", path: ["createSession"], extensions: { code: "INTERNAL_SERVER_ERROR" } }]);
    expect(JSON.stringify(refused)).not.toMatch(/sync|EIO|pg_wal|stopped/i);
    // The operator's log names the file that could not be synced.
    const [stop] = logged(t, "the embedded database stopped; it reopens in a new thread shortly");
    expect(stop.level).toBe(50);
    expect(stop.err.message).toMatch(/^The embedded database stopped: it could not sync \S+\/db\/pg_wal\/[0-9A-F]{24} to disk \(EIO: i\/o error, fdatasync\)/);
    expect(await readyz(t)).toBe(503);

    rmSync(marker);
    for (let i = 0; i < 100 && (await readyz(t)) !== 200; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await readyz(t)).toBe(200);
    expect(logged(t, "the embedded database is open again")).toHaveLength(1);
    // The application registered before the failure is there: its sessions work again.
    const again = await createSession(app)();
    expect(again.errors).toBeUndefined();
    expect(again.data?.createSession).toMatchObject({ appId: app.appId, contractId: app.contractId, key: expect.any(String) });
  });
});
