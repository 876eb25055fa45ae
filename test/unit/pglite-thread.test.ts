// The embedded database's thread (pglite.worker.mjs) through its proxy: the
// migrator's runner and transactions, driver errors as Prisma expects them, and
// what callers see once the thread is gone.
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { PrismaClient } from "../../src/generated/prisma/client.js";
import { PgliteThread } from "../../src/infra/db/pglite-proxy.js";
import { isUniqueViolation } from "../../src/infra/db/prisma-errors.js";

describe("PgliteThread", () => {
  let thread: PgliteThread;

  beforeAll(async () => {
    thread = await PgliteThread.start("memory://");
  });
  afterAll(async () => thread?.close().catch(() => {}));

  it("runs queries and commits or rolls back the migrator's transactions", async () => {
    const run = thread.runner();
    await run.execInTransaction(`CREATE TABLE t (id int PRIMARY KEY, v text)`, async (q) => {
      await q(`INSERT INTO t VALUES ($1, $2)`, [1, "kept"]);
    });
    await expect(
      run.execInTransaction(`INSERT INTO t VALUES (2, 'dropped')`, async () => {
        throw new Error("migration step failed");
      }),
    ).rejects.toThrow("migration step failed");
    expect(await run.query<{ id: number; v: string }>(`SELECT id, v FROM t ORDER BY id`)).toEqual([{ id: 1, v: "kept" }]);
  });

  it("serves Prisma, whose unique violations arrive as such (so they map to CONFLICT)", async () => {
    const prisma = new PrismaClient({ adapter: thread.adapterFactory() });
    await prisma.$executeRawUnsafe(`CREATE TABLE u (k text PRIMARY KEY)`);
    await prisma.$executeRaw`INSERT INTO u VALUES (${"a"})`;
    const dup = await prisma.$executeRaw`INSERT INTO u VALUES (${"a"})`.catch((e: unknown) => e);
    expect(isUniqueViolation(dup)).toBe(true);
    // An interactive transaction that throws leaves nothing behind.
    await expect(
      prisma.$transaction(async (tx) => {
        await tx.$executeRaw`INSERT INTO u VALUES (${"b"})`;
        throw new Error("abort");
      }),
    ).rejects.toThrow("abort");
    expect(await prisma.$queryRaw<{ k: string }[]>`SELECT k FROM u ORDER BY k`).toEqual([{ k: "a" }]);
    await prisma.$disconnect();
  });

  it("reports a unique violation from plain SQL with its SQLSTATE (Database.sql, used for batches of pushes)", async () => {
    const run = thread.runner();
    await run.query(`CREATE TABLE w (k text PRIMARY KEY)`);
    await run.query(`INSERT INTO w SELECT unnest($1::text[])`, [["a", "b"]]);
    const dup = await run.query(`INSERT INTO w SELECT unnest($1::text[])`, [["c", "a"]]).catch((e: unknown) => e);
    expect(isUniqueViolation(dup)).toBe(true);
    expect(isUniqueViolation(new Error("something else"))).toBe(false);
    expect(await run.query<{ k: string }>(`SELECT k FROM w ORDER BY k`)).toEqual([{ k: "a" }, { k: "b" }]);
  });

  it("fails every call clearly once the thread is gone", async () => {
    const other = await PgliteThread.start("memory://");
    await other.close();
    await expect(other.runner().query("SELECT 1")).rejects.toThrow(/embedded database thread stopped/);
  });
});
