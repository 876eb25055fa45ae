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
    // Prisma's statements are the thread's cached prepared statements (pglite-statements.mjs), one per SQL text.
    const lookup = (k: string) => prisma.$queryRaw<{ k: string }[]>`SELECT k FROM u WHERE k = ${k}`;
    for (const k of ["a", "b", "a"]) await lookup(k);
    const held = await prisma.$queryRaw<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_prepared_statements WHERE statement = 'SELECT k FROM u WHERE k = $1'`;
    expect(held).toEqual([{ n: 1 }]);
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

  describe("prepared statements with binary parameters (Database.sql with `prepare`)", () => {
    const ROUND_TRIP = `SELECT t, i, ts, s FROM unnest($1::text[], $2::int[], $3::timestamp(3)[]) WITH ORDINALITY AS u(t, i, ts, n), (SELECT $4::text AS s) x ORDER BY n`;
    const TYPES = ["text[]", "int4[]", "timestamp[]", "text"] as const;

    it("sends text, integers, timestamps and NULLs exactly, in arrays and alone", async () => {
      const texts = ["plain", "", null, `quo"te \\ back{slash},`, "é 🚀 中文", "x".repeat(70_000)];
      const rows = await thread.prepared<Record<string, string | null>>("round_trip", ROUND_TRIP, [...TYPES], [
        texts,
        [0, -1, 2_147_483_647, null, -2_147_483_648, 7],
        [new Date("2026-11-30T13:59:29.179Z"), "2000-01-01T00:00:00.000Z", null, "1999-12-31T23:59:59.999Z", new Date(0), "2126-01-02T03:04:05.006Z"],
        "alone",
      ]);
      expect(rows.map((r) => r.t)).toEqual(texts);
      expect(rows.map((r) => r.i)).toEqual(["0", "-1", "2147483647", null, "-2147483648", "7"]);
      expect(rows.map((r) => r.ts)).toEqual(["2026-11-30 13:59:29.179", "2000-01-01 00:00:00", null, "1999-12-31 23:59:59.999", "1970-01-01 00:00:00", "2126-01-02 03:04:05.006"]);
      expect(rows.every((r) => r.s === "alone")).toBe(true);
      // A NULL array is no rows; a wrong value is refused before anything is sent.
      expect(await thread.prepared("round_trip", ROUND_TRIP, [...TYPES], [null, null, null, null])).toEqual([]);
      await expect(thread.prepared("round_trip", ROUND_TRIP, [...TYPES], [[1], [1], [null], "x"])).rejects.toThrow(/expected a string/);
      await expect(thread.prepared("round_trip", ROUND_TRIP, [...TYPES], [["a"], [1.5], [null], "x"])).rejects.toThrow(/expected an integer/);
      await expect(thread.prepared("round_trip", ROUND_TRIP, [...TYPES], [["a"], [1], ["not a date"], "x"])).rejects.toThrow(/expected a date/);
    });

    it("reports a unique violation with its SQLSTATE and keeps working after it", async () => {
      await thread.runner().query(`CREATE TABLE pw (k text PRIMARY KEY)`);
      const insert = (keys: string[]) => thread.prepared<{ k: string }>("pw_insert", `INSERT INTO pw SELECT unnest($1::text[]) RETURNING k`, ["text[]"], [keys]);
      expect(await insert(["a", "b"])).toEqual([{ k: "a" }, { k: "b" }]);
      expect(isUniqueViolation(await insert(["c", "a"]).catch((e: unknown) => e))).toBe(true);
      expect(await insert(["d"])).toEqual([{ k: "d" }]);
      expect(await thread.runner().query<{ k: string }>(`SELECT k FROM pw ORDER BY k`)).toEqual([{ k: "a" }, { k: "b" }, { k: "d" }]);
    });

    it("prepares again when the connection lost the statement, or the same name gets other SQL", async () => {
      const one = () => thread.prepared<{ v: string }>("again", `SELECT $1::text || '!' AS v`, ["text"], ["hi"]);
      expect(await one()).toEqual([{ v: "hi!" }]);
      await thread.runner().query("DEALLOCATE ALL");
      expect(await one()).toEqual([{ v: "hi!" }]);
      expect(await thread.prepared("again", `SELECT $1::text || '?' AS v`, ["text"], ["hi"])).toEqual([{ v: "hi?" }]);
      expect(await one()).toEqual([{ v: "hi!" }]);
    });

    it("waits for an open transaction instead of running inside it", async () => {
      const prisma = new PrismaClient({ adapter: thread.adapterFactory() });
      await thread.runner().query(`CREATE TABLE px (k text PRIMARY KEY)`);
      let outside: Promise<unknown> | undefined;
      await expect(
        prisma.$transaction(async (tx) => {
          await tx.$executeRaw`INSERT INTO px VALUES (${"in the transaction"})`;
          outside = thread.prepared("px_insert", `INSERT INTO px SELECT unnest($1::text[])`, ["text[]"], [["outside it"]]);
          await new Promise((r) => setTimeout(r, 50)); // time enough to slip in, were it not waiting
          throw new Error("roll back");
        }),
      ).rejects.toThrow("roll back");
      await outside;
      expect(await thread.runner().query<{ k: string }>(`SELECT k FROM px`)).toEqual([{ k: "outside it" }]);
      await prisma.$disconnect();
    });
  });

  it("fails every call clearly once the thread is gone", async () => {
    const other = await PgliteThread.start("memory://");
    await other.close();
    await expect(other.runner().query("SELECT 1")).rejects.toThrow(/embedded database thread stopped/);
  });
});
