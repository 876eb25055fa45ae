// The embedded database's commits reach the disk (pglite-durable.mjs): PostgreSQL's
// fsync is on, its fsync calls arrive at fs.fsyncSync for the files they name, a new
// database's files are synced once, and the server's thread opens it that way unless
// EMBEDDED_DB_SYNC is off; a sync that fails stops the thread, and the database reopens.
import fs from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from "@jest/globals";
import type { PGlite } from "@electric-sql/pglite";
import { openPglite, syncTree } from "../../src/infra/db/pglite-durable.mjs";
import { PrismaClient } from "../../src/generated/prisma/client.js";
import { PgliteThread } from "../../src/infra/db/pglite-proxy.js";

let root: string;
beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "postbox-durable-"));
});
afterAll(async () => rm(root, { recursive: true, force: true }));
afterEach(() => {
  jest.restoreAllMocks();
});

/** Every file and folder under `dir`, itself included. */
function entries(dir: string): string[] {
  return [dir, ...fs.readdirSync(dir, { recursive: true }).map((p) => path.join(dir, String(p)))];
}

describe("syncTree", () => {
  it("fsyncs every file and folder, and the folder's entry in its parent", () => {
    const dir = path.join(root, "tree");
    fs.mkdirSync(path.join(dir, "a", "b"), { recursive: true });
    fs.writeFileSync(path.join(dir, "one"), "1");
    fs.writeFileSync(path.join(dir, "a", "b", "two"), "2");
    const synced: string[] = [];
    const fsync = fs.fsyncSync;
    const open = fs.openSync;
    const paths = new Map<number, string>();
    jest.spyOn(fs, "openSync").mockImplementation(((p: string, ...rest: unknown[]) => {
      const fd = (open as (...a: unknown[]) => number)(p, ...rest);
      paths.set(fd, String(p));
      return fd;
    }) as typeof fs.openSync);
    jest.spyOn(fs, "fsyncSync").mockImplementation((fd: number) => {
      synced.push(paths.get(fd) ?? `fd ${fd}`);
      fsync(fd);
    });
    syncTree(dir);
    expect(synced.sort()).toEqual([...entries(dir), root].sort());
  });
});

describe("openPglite with sync", () => {
  const dataDir = () => path.join(root, "db");
  const synced: string[] = [];
  let pglite: PGlite;
  let fsyncsAtCreation = 0;

  beforeAll(async () => {
    const fsync = fs.fsyncSync;
    const spy = jest.spyOn(fs, "fsyncSync").mockImplementation((fd: number) => {
      fsyncsAtCreation++;
      fsync(fd);
    });
    pglite = await openPglite(dataDir(), { onSync: (p) => synced.push(p) });
    spy.mockRestore();
  });
  afterAll(async () => pglite?.close());

  it("runs PostgreSQL with fsync on, by a method that reaches the file layer", async () => {
    expect((await pglite.query<{ fsync: string }>("SHOW fsync")).rows).toEqual([{ fsync: "on" }]);
    expect((await pglite.query<{ wal_sync_method: string }>("SHOW wal_sync_method")).rows).toEqual([{ wal_sync_method: "fsync" }]);
  });

  it("synced every file of the new database once it was created", () => {
    // initdb's files and folders (about a thousand), written with no sync of their own.
    expect(fsyncsAtCreation).toBeGreaterThanOrEqual(entries(dataDir()).length);
  });

  it("syncs the write-ahead log at every commit (its data: fdatasync), and not for a read", async () => {
    await pglite.exec("CREATE TABLE t (id int PRIMARY KEY, v text)");
    const wal = (list: string[]) => list.filter((p) => /\/pg_wal\/[0-9A-F]{24}$/.test(p));
    const fdatasync = jest.spyOn(fs, "fdatasyncSync");
    for (let i = 1; i <= 3; i++) {
      const before = wal(synced).length;
      await pglite.query("INSERT INTO t VALUES ($1, 'x')", [i]);
      expect(wal(synced).length).toBe(before + 1);
    }
    expect(fdatasync).toHaveBeenCalledTimes(3);
    const before = synced.length;
    await pglite.query("SELECT count(*) FROM t");
    expect(synced.length).toBe(before);
  });

  it("syncs the table's data files at a checkpoint (before the log that covers them may go)", async () => {
    const file = (await pglite.query<{ f: string }>("SELECT pg_relation_filepath('t') AS f")).rows[0].f;
    synced.length = 0;
    const fsync = jest.spyOn(fs, "fsyncSync");
    await pglite.exec("CHECKPOINT");
    expect(synced.some((p) => p.endsWith(`/${file}`))).toBe(true);
    expect(fsync).toHaveBeenCalled(); // a table's file gets a full fsync
    // The real file on disk is the one synced: it holds the three rows.
    expect(fs.statSync(path.join(dataDir(), file)).size).toBeGreaterThan(0);
  });
});

describe("the database thread", () => {
  // Reopens the database the tests above created (no initdb here: fast).
  const dataDir = () => path.join(root, "db");

  it.each([
    [true, "on"],
    [false, "off"],
  ])("opens it with sync %s: PostgreSQL's fsync is %s", async (sync, expected) => {
    const thread = await PgliteThread.start(dataDir(), { sync });
    try {
      expect(await thread.runner().query("SHOW fsync")).toEqual([{ fsync: expected }]);
      // Still the same database, whichever way it is opened.
      expect(await thread.runner().query("SELECT count(*)::int AS n FROM t")).toEqual([{ n: 3 }]);
    } finally {
      await thread.close();
    }
  });
});

describe("a sync that fails", () => {
  // The real thread's script, on a disk whose syncs fail while a marker file exists.
  const FAILING_DISK = new URL("../helpers/failing-disk.worker.mjs", import.meta.url);
  const dataDir = () => path.join(root, "failing");
  const marker = () => `${dataDir()}.fail-syncs`;
  const stopped = /^The embedded database stopped: it could not sync \S+\/pg_wal\/[0-9A-F]{24} to disk \(EIO: i\/o error, fdatasync\)\. Nothing after that was acknowledged/;

  it("stops the thread before anything more is acknowledged; calls fail, saying why, until the database is reopened", async () => {
    const events: string[] = [];
    let reopened!: () => void;
    const back = new Promise<void>((r) => (reopened = r));
    const thread = await PgliteThread.start(dataDir(), {
      sync: true,
      workerUrl: FAILING_DISK,
      reopenAfterMs: 50,
      events: {
        stopped: (e) => events.push(`stopped: ${e.message}`),
        reopenFailed: (e, retryInMs) => events.push(`reopen failed, next in ${retryInMs} ms: ${e.message}`),
        reopened: () => {
          events.push("reopened");
          reopened();
        },
      },
    });
    // The server's Prisma client, connected before the stop, goes on working after it.
    const prisma = new PrismaClient({ adapter: thread.adapterFactory() });
    try {
      const db = thread.runner();
      await db.query("CREATE TABLE t (id int PRIMARY KEY)");
      await db.query("INSERT INTO t VALUES (1)");
      expect(await prisma.$queryRaw`SELECT count(*)::int AS n FROM t`).toEqual([{ n: 1 }]);
      // A transaction open when the thread stops (as Prisma's are, by id).
      const lost = await thread.call<number>("begin");
      await thread.call("txQuery", lost, "INSERT INTO t VALUES (2)", []);
      fs.writeFileSync(marker(), "");
      // Told of the failure, PostgreSQL's PANIC would come back as an ordinary error, and
      // the database would go on: the thread must stop instead, with a reason.
      await expect(thread.call("end", lost, "commit")).rejects.toThrow(stopped);
      await expect(db.query("SELECT count(*) FROM t")).rejects.toThrow(stopped);
      // Reopening fails while the disk does (recovery syncs too), each time waiting longer.
      while (events.length < 3) await new Promise((r) => setTimeout(r, 20));
      expect(events[0]).toMatch(/^stopped: The embedded database stopped/);
      expect(events[1]).toMatch(/^reopen failed, next in 100 ms: The embedded database stopped: it could not sync/);
      expect(events[2]).toMatch(/^reopen failed, next in 200 ms: /);
      await expect(db.query("SELECT 1")).rejects.toThrow(stopped);

      fs.rmSync(marker());
      await back;
      // The lost transaction's id means nothing to the new thread, not even once it has
      // transactions of its own.
      const fresh = await thread.call<number>("begin");
      await expect(thread.call("txQuery", lost, "SELECT 1", [])).rejects.toThrow(`no open transaction ${lost}`);
      await thread.call("end", fresh, "rollback");
      // Recovered from the log: what was acknowledged is there (row 2 was written to the
      // log but never acknowledged, so recovery may have replayed it or not).
      const ids = (await db.query<{ id: number }>("SELECT id FROM t ORDER BY id")).map((r) => r.id);
      expect(ids[0]).toBe(1);
      await prisma.$executeRaw`INSERT INTO t VALUES (3)`;
      expect((await db.query<{ n: number }>("SELECT count(*)::int AS n FROM t WHERE id = 3"))[0].n).toBe(1);
    } finally {
      fs.rmSync(marker(), { force: true });
      await prisma.$disconnect();
      await thread.close();
    }
  });

  it("leaves a database that opens again in a thread of its own", async () => {
    const thread = await PgliteThread.start(dataDir(), { sync: true });
    try {
      expect(await thread.runner().query("SELECT count(*)::int AS n FROM t WHERE id IN (1, 3)")).toEqual([{ n: 2 }]);
    } finally {
      await thread.close();
    }
  });

  it("never reopens an in-memory database (nothing of it outlives its thread)", async () => {
    const events: string[] = [];
    // A stand-in for the thread that opens, then crashes (exit code 1) a moment later.
    const crashing = new URL(`data:text/javascript,${encodeURIComponent('import { parentPort } from "node:worker_threads"; parentPort.postMessage({ id: 0, ok: "ready" }); setTimeout(() => process.exit(1), 20);')}`);
    const thread = await PgliteThread.start("memory://", {
      workerUrl: crashing,
      reopenAfterMs: 10,
      events: { stopped: () => events.push("stopped"), reopenFailed: () => events.push("reopen failed"), reopened: () => events.push("reopened") },
    });
    await new Promise((r) => setTimeout(r, 200));
    await expect(thread.runner().query("SELECT 1")).rejects.toThrow("The embedded database thread stopped (exit code 1).");
    await thread.close().catch(() => {});
    expect(events).toEqual(["stopped"]);
  });
});
