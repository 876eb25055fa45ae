// Prisma's queries on the embedded database as cached prepared statements
// (pglite-statements.mjs): they must answer exactly as PGlite's query() does, reuse
// one statement per SQL text, stay bounded, survive the statement going stale, and
// keep query()'s transaction semantics.
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { PGlite, messages } from "@electric-sql/pglite";
import { cachedStatements } from "../../src/infra/db/pglite-statements.mjs";

describe("cachedStatements", () => {
  let db: PGlite;
  const held = async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name LIKE 'prisma\\_%'`)).rows[0].n;

  beforeAll(async () => {
    db = await PGlite.create("memory://");
    await db.exec(`CREATE TABLE t (
      id text PRIMARY KEY, n int4, big int8, ok bool, at timestamp(3), atz timestamptz, doc jsonb, raw bytea, tags text[], amount numeric, note text
    )`);
  });
  afterAll(async () => db?.close());

  it("returns what query() returns, for every type Prisma reads and writes", async () => {
    const { client } = cachedStatements(db);
    const insert = `INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *`;
    const row = (id: string) => [id, 7, "9007199254740993", true, "2026-12-01 10:11:12.345", new Date("2026-12-01T10:11:12.345Z"), '{"a":[1,"x"]}', new Uint8Array([0, 1, 254, 255]), ["a", "b,c", "d\"e"], "12.50", null];
    const viaQuery = await db.query(insert, row("q"));
    const viaCache = await client.query(insert, row("c"));
    expect({ ...viaCache, rows: viaCache.rows.map((r) => ({ ...(r as object), id: "q" })) }).toEqual(viaQuery);
    expect((viaCache.rows[0] as { raw: Uint8Array }).raw).toEqual(new Uint8Array([0, 1, 254, 255]));

    // With the adapter's options (rows as arrays, its own parsers) too.
    const options = { rowMode: "array" as const, parsers: { [1114]: (s: string) => `ts:${s}` } };
    const select = `SELECT id, at, tags, note FROM t WHERE id = ANY($1) ORDER BY id`;
    expect(await client.query(select, [["c", "q"]], options)).toEqual(await db.query(select, [["c", "q"]], options));
    expect((await client.query(select, [["c"]], options)).rows).toEqual([["c", "ts:2026-12-01 10:11:12.345", ["a", "b,c", 'd"e'], null]]);
    const update = `UPDATE t SET note = $1 WHERE id <> $2`;
    expect((await client.query(update, ["x", "none"])).affectedRows).toBe(2);
  });

  it("parses each SQL text once and reuses its statement", async () => {
    const cached = cachedStatements(db);
    const before = await held();
    for (let i = 0; i < 20; i++) expect((await cached.client.query(`SELECT $1::int + 1 AS v`, [i])).rows).toEqual([{ v: i + 1 }]);
    expect(cached.size()).toBe(1);
    expect((await held()) - before).toBe(1);
  });

  it("keeps at most `max` statements, closing the least recently used", async () => {
    const cached = cachedStatements(db, { max: 3 });
    const before = await held();
    const q = (k: number) => cached.client.query<{ v: number }>(`SELECT ${k} + $1::int AS v`, [0]);
    for (const k of [1, 2, 3]) await q(k);
    await q(1); // 1 is now the most recent: 2 goes first
    await q(4);
    await q(5);
    expect(cached.size()).toBe(3);
    expect((await held()) - before).toBe(3);
    expect((await q(1)).rows).toEqual([{ v: 1 }]);
    expect((await q(2)).rows).toEqual([{ v: 2 }]); // parsed again
  });

  it("parses again when its statement went stale: deallocated, or its table changed", async () => {
    const { client } = cachedStatements(db);
    await db.exec(`CREATE TABLE s (id int PRIMARY KEY); INSERT INTO s VALUES (1)`);
    const all = `SELECT * FROM s WHERE id = $1`;
    expect((await client.query(all, [1])).rows).toEqual([{ id: 1 }]);
    await db.exec(`ALTER TABLE s ADD COLUMN label text DEFAULT 'new'`); // "cached plan must not change result type"
    expect((await client.query(all, [1])).rows).toEqual([{ id: 1, label: "new" }]);
    await db.exec(`DEALLOCATE ALL`); // "prepared statement does not exist"
    expect((await client.query(all, [1])).rows).toEqual([{ id: 1, label: "new" }]);
  });

  it("parses again only once: an error that a new parse does not cure is thrown", async () => {
    const { client } = cachedStatements(db);
    // 0A000 like a stale plan, but raised by the planner at every execution.
    const sql = `SELECT * FROM s LEFT JOIN t ON t.n = s.id WHERE s.id = $1 FOR UPDATE OF t`;
    await expect(client.query(sql, [1])).rejects.toMatchObject({ code: "0A000", message: expect.stringContaining("nullable side of an outer join") });
    expect((await client.query(`SELECT 1 AS one`, [])).rows).toEqual([{ one: 1 }]);
  });

  it("throws PostgreSQL's errors as query() does (the adapter maps them by class and SQLSTATE)", async () => {
    const { client } = cachedStatements(db);
    const insert = `INSERT INTO t (id) VALUES ($1)`;
    await client.query(insert, ["dup"]);
    const e = await client.query(insert, ["dup"]).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(messages.DatabaseError);
    expect((e as { code: string }).code).toBe("23505");
    await expect(client.query(`SELECT nonsense FROM`, [])).rejects.toMatchObject({ code: "42601" });
    expect((await client.query(`SELECT count(*)::int AS n FROM t WHERE id = $1`, ["dup"])).rows).toEqual([{ n: 1 }]);
  });

  it("runs a transaction's queries inside it, and others after it", async () => {
    const { client } = cachedStatements(db);
    const count = `SELECT count(*)::int AS n FROM t WHERE id LIKE $1`;
    let handle: { query: typeof client.query; closed: boolean } | undefined;
    let outside: Promise<unknown> | undefined;
    await expect(
      client.transaction(async (tx) => {
        handle = tx;
        await tx.query(`INSERT INTO t (id) VALUES ($1)`, ["tx-1"]);
        expect((await tx.query(count, ["tx-%"])).rows).toEqual([{ n: 1 }]);
        outside = client.query(count, ["tx-%"]); // waits for the transaction to end
        await new Promise((r) => setTimeout(r, 50));
        throw new Error("abort");
      }),
    ).rejects.toThrow("abort");
    expect(await outside).toMatchObject({ rows: [{ n: 0 }] });
    expect(handle!.closed).toBe(true);
    await expect(handle!.query(count, ["tx-%"])).rejects.toThrow("Transaction is closed");

    await client.transaction(async (tx) => {
      await tx.query(`INSERT INTO t (id) VALUES ($1)`, ["tx-2"]);
    });
    expect((await client.query(count, ["tx-%"])).rows).toEqual([{ n: 1 }]);
  });
});
