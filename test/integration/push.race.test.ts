// A push racing a postbox's close on PostgreSQL: the close commits while the push is
// on its way into the database. The push must see the close (refused, nothing stored),
// never be taken by a postbox that is already CLOSED.
// PostgreSQL only: the embedded database runs one transaction at a time.
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import pg from "pg";
import { PUSH_DATA, createReadyPostboxForPush, createSession, dataInput, registerApp } from "../helpers/factories.js";
import { errorCode, startTestServer, type TestServer } from "../helpers/server.js";
import { waitUntil } from "./postbox.helpers.js";

describe("a push racing its postbox's close", () => {
  let t: TestServer;
  let other: pg.Client;
  beforeAll(async () => {
    t = await startTestServer();
    other = new pg.Client({ connectionString: t.databaseUrl });
    await other.connect();
  });
  afterAll(async () => {
    await other?.end();
    await t?.stop();
  });

  it("is refused when the close commits while the push waits for the audit log", async () => {
    const app = await registerApp(t);
    const session = await createSession(t, app);
    const target = await createReadyPostboxForPush(t, session);
    // Another transaction closes the postbox as closePostbox does: the status, then the
    // audit log's head, held until it commits.
    await other.query("BEGIN");
    await other.query(`UPDATE "Postbox" SET "status" = 'CLOSED', "closedAt" = now() WHERE "id" = $1`, [target.postboxId]);
    await other.query(`SELECT "hash" FROM "AuditHead" WHERE "id" = 1 FOR UPDATE`);
    const push = t.gql(PUSH_DATA, { input: dataInput(target, Buffer.from("racing the close")) }, { token: session });
    const waiting = async () =>
      Number((await other.query(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rows[0].n) > 0;
    await waitUntil(waiting, "the push waits for the audit log's head");
    await other.query("COMMIT");
    const r = await push;
    expect(r.data?.pushData ?? null).toBeNull();
    expect(errorCode(r)).toBe("CONFLICT");
    expect(await t.app.db.prisma.push.count({ where: { postboxId: target.postboxId } })).toBe(0);
  });
});
