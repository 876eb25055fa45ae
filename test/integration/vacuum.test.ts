// The embedded database has no autovacuum (PGlite is PostgreSQL in single-user
// mode), so the server vacuums it itself (infra/db/maintenance.ts). Without that,
// a purged push's ciphertext stayed in its table as a dead row, and the
// files grew with every push ever made. Both projects run this on an embedded
// database (the postgres project too: PostgreSQL's autovacuum is its own).
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { randomBytes } from "node:crypto";
import { PUSH_DATA, DESCRIPTOR, createReadyPostboxForPush, createSession, encryptForPostbox, registerApp, type PushTarget } from "../helpers/factories.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const MINUTE = 60_000;
// The times the background tasks are run at: two minutes apart, so a vacuum is due at each (it runs at most once a minute).
let clock = Date.now();
const nextRun = () => new Date((clock += 2 * MINUTE));

let t: TestServer;
let session: string;
let target: PushTarget;

beforeAll(async () => {
  t = await startTestServer({ env: { DATABASE_URL: "" } });
  session = await createSession(t, await registerApp(t));
  target = await createReadyPostboxForPush(t, session, "X25519");
});
afterAll(async () => t?.stop());

/** Pushes `bytes` encrypted by the app (encryptedData); the push's id. */
async function pushJwe(bytes: Buffer): Promise<string> {
  const jwe = await encryptForPostbox(target, bytes);
  const r = await t.gql(PUSH_DATA, { input: { postboxId: target.postboxId, fileName: "f.bin", fileDescriptor: DESCRIPTOR, encryptedData: jwe } }, { token: session });
  expect(r.errors).toBeUndefined();
  return r.data!.pushData.id;
}

/** Purges everything pushed so far (as at their expiry), then runs the background tasks `at`. */
async function purgeAndTick(ids: string[], at: Date): Promise<void> {
  const p = t.app.db.prisma;
  await p.push.updateMany({ where: { id: { in: ids } }, data: { expiresAt: new Date(Date.now() - 1000) } });
  expect((await t.app.services.pushes.retention()).purged).toBe(ids.length);
  expect(await p.pushContent.count({ where: { pushId: { in: ids } } })).toBe(0);
  await t.app.scheduler.tick(at);
}

describe("embedded database housekeeping", () => {
  it("vacuums the tables no foreign key points to, and leaves small ones that foreign keys point to alone", async () => {
    expect(t.app.db.kind).toBe("pglite");
    await pushJwe(randomBytes(100));
    await t.app.scheduler.tick(nextRun());
    const vacuumed = async (table: string) =>
      Number((await t.app.db.sql<{ n: string }>(`SELECT vacuum_count::text AS n FROM pg_stat_user_tables WHERE relname = $1`, [table]))[0].n);
    expect(await vacuumed("PushContent")).toBeGreaterThanOrEqual(1);
    expect(await vacuumed("AuditEvent")).toBeGreaterThanOrEqual(1);
    // Vacuumed while this small, Push's foreign-key checks would be planned as table scans (see maintenance.ts).
    expect(await vacuumed("Push")).toBe(0);
    expect(await vacuumed("Postbox")).toBe(0);
  });

  it("keeps the files from growing with every push ever purged", async () => {
    const sizes: number[] = [];
    const size = async () => Number((await t.app.db.sql<{ n: string }>(`SELECT pg_total_relation_size('"PushContent"')::text AS n`, []))[0].n);
    for (let round = 0; round < 4; round++) {
      const ids: string[] = [];
      // 60 pushes of 4 KiB each round: about 330 KiB of ciphertext, more than the table holds once vacuumed.
      for (let i = 0; i < 60; i += 10) ids.push(...(await Promise.all(Array.from({ length: 10 }, () => pushJwe(randomBytes(4096))))));
      await purgeAndTick(ids, nextRun());
      sizes.push(await size());
    }
    // Without the vacuum each round added its 330 KiB; with it, later rounds reuse the space of earlier ones.
    expect(sizes[0]).toBeGreaterThan(0);
    expect(sizes[3]).toBeLessThanOrEqual(sizes[0] * 1.25);
  });
});
