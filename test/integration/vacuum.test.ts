// The embedded database has no autovacuum (PGlite is PostgreSQL in single-user
// mode), so the server vacuums it itself (infra/db/maintenance.ts). Without that,
// a purged push's ciphertext stayed in the database's files as a dead row, and the
// files grew with every push ever made. Both projects run this on a file-backed
// embedded database (the postgres project too: PostgreSQL's autovacuum is its own).
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { randomBytes } from "node:crypto";
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { PUSH_DATA, DESCRIPTOR, createReadyPostboxForPush, createSession, encryptForPostbox, registerApp, type PushTarget } from "../helpers/factories.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const MINUTE = 60_000;

let t: TestServer;
let session: string;
let target: PushTarget;

beforeAll(async () => {
  t = await startTestServer({ env: { DATABASE_URL: "" } });
  session = await createSession(t, await registerApp(t));
  target = await createReadyPostboxForPush(t, session, "X25519");
});
afterAll(async () => t?.stop());

async function* walk(dir: string): AsyncGenerator<string> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(p);
    else if (entry.isFile()) yield p;
  }
}

/** The table and index files (base/) of the embedded database that hold `text`, after a checkpoint has written them out. */
async function filesHolding(text: string): Promise<string[]> {
  await t.app.db.sql("CHECKPOINT", []);
  const found: string[] = [];
  for await (const f of walk(path.join(t.dataDir, "db", "base"))) if ((await readFile(f)).includes(text)) found.push(f);
  return found;
}

async function pushJwe(bytes: Buffer): Promise<{ id: string; jwe: string }> {
  const jwe = await encryptForPostbox(target, bytes);
  const r = await t.gql(PUSH_DATA, { input: { postboxId: target.postboxId, fileName: "f.bin", fileDescriptor: DESCRIPTOR, encryptedData: jwe } }, { token: session });
  expect(r.errors).toBeUndefined();
  return { id: r.data!.pushData.id, jwe };
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
  it("has a vacuum task on the embedded database", () => {
    expect(t.app.db.kind).toBe("pglite");
    expect(t.app.db.vacuum).toBeInstanceOf(Function);
  });

  it("removes a purged push's ciphertext from the database's files", async () => {
    const { id, jwe } = await pushJwe(randomBytes(3000));
    // A stretch of the ciphertext itself, as stored (the JWE's fourth part).
    const ciphertext = jwe.split(".")[3];
    const needle = ciphertext.slice(1000, 1100);
    expect(needle).toHaveLength(100);
    // The scan finds it while the push is stored: it would find it after the purge too, without a vacuum.
    expect((await filesHolding(needle)).length).toBeGreaterThan(0);

    await purgeAndTick([id], new Date());
    expect(await filesHolding(needle)).toEqual([]);
  });

  it("keeps the files from growing with every push ever purged", async () => {
    const sizes: number[] = [];
    const size = async () => Number((await t.app.db.sql<{ n: string }>(`SELECT pg_total_relation_size('"PushContent"')::text AS n`, []))[0].n);
    for (let round = 0; round < 4; round++) {
      const ids: string[] = [];
      // 60 pushes of 4 KiB each round: about 330 KiB of ciphertext, more than the table holds once vacuumed.
      for (let i = 0; i < 60; i += 10) ids.push(...(await Promise.all(Array.from({ length: 10 }, () => pushJwe(randomBytes(4096))))).map((x) => x.id));
      // Each round a vacuum is due: the task runs at most once a minute.
      await purgeAndTick(ids, new Date(Date.now() + (round + 1) * 2 * MINUTE));
      sizes.push(await size());
    }
    // Without the vacuum each round added its 330 KiB; with it, later rounds reuse the space of earlier ones.
    expect(sizes[0]).toBeGreaterThan(0);
    expect(sizes[3]).toBeLessThanOrEqual(sizes[0] * 1.25);
  });
});
