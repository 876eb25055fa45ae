// The self-applied migrations: fresh database, idempotent re-run, refusal of an
// edited migration, and bookkeeping rows shaped like Prisma's own.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { MIGRATIONS_DIR, migrate, readMigrations, type SqlRunner } from "../../src/infra/db/migrate.js";
import { PgliteThread } from "../../src/infra/db/pglite-proxy.js";

interface Row {
  id: string;
  checksum: string;
  finished_at: Date | null;
  migration_name: string;
  logs: string | null;
  rolled_back_at: Date | null;
  started_at: Date;
  applied_steps_count: number;
}

// The server's own runner (PgliteThread.runner), in the embedded database's thread,
// rather than a copy of it written for this test.
let thread: PgliteThread;
let db: SqlRunner;

beforeAll(async () => {
  thread = await PgliteThread.start("memory://");
  db = thread.runner();
});
afterAll(async () => thread?.close());

describe("migrations", () => {
  it("reads the committed migrations in order, with sha256 checksums of the files", async () => {
    const all = await readMigrations();
    expect(all.length).toBeGreaterThan(0);
    expect(all.map((m) => m.name)).toEqual([...all.map((m) => m.name)].sort());
    for (const m of all) {
      expect(m.name).toMatch(/^\d{14}_[a-z0-9_]+$/);
      const bytes = await readFile(path.join(MIGRATIONS_DIR, m.name, "migration.sql"));
      expect(m.checksum).toBe(createHash("sha256").update(bytes).digest("hex"));
    }
  });

  it("applies every migration to a fresh database", async () => {
    const all = await readMigrations();
    const r = await migrate(db);
    expect(r).toEqual({ applied: all.map((m) => m.name), alreadyApplied: 0 });
    const tables = (await db.query<{ tablename: string }>(`SELECT tablename FROM pg_tables WHERE schemaname = 'public'`)).map((t) => t.tablename);
    expect(tables).toEqual(expect.arrayContaining(["_prisma_migrations", "Application", "Contract", "ContractKey", "Session", "UsedNonce", "AuditEvent"]));
  });

  it("keeps _prisma_migrations rows the way Prisma does", async () => {
    const all = await readMigrations();
    const cols = await db.query<{ column_name: string; data_type: string; is_nullable: string }>(
      `SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = '_prisma_migrations' ORDER BY column_name`,
    );
    expect(Object.fromEntries(cols.map((c) => [c.column_name, `${c.data_type} ${c.is_nullable}`]))).toEqual({
      applied_steps_count: "integer NO",
      checksum: "character varying NO",
      finished_at: "timestamp with time zone YES",
      id: "character varying NO",
      logs: "text YES",
      migration_name: "character varying NO",
      rolled_back_at: "timestamp with time zone YES",
      started_at: "timestamp with time zone NO",
    });
    const rows = await db.query<Row>(`SELECT * FROM "_prisma_migrations" ORDER BY started_at, migration_name`);
    expect(rows.map((r) => r.migration_name)).toEqual(all.map((m) => m.name));
    for (const [i, r] of rows.entries()) {
      expect(r.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(r.checksum).toBe(all[i].checksum);
      // A Date, from the database thread's realm (so not instanceof this file's Date).
      expect(Object.prototype.toString.call(r.finished_at)).toBe("[object Date]");
      expect(r.finished_at!.getTime()).toBeGreaterThanOrEqual(r.started_at.getTime());
      expect(r.rolled_back_at).toBeNull();
      expect(r.logs).toBeNull();
      expect(r.applied_steps_count).toBe(1);
    }
  });

  it("does nothing on a second run", async () => {
    const before = await db.query(`SELECT * FROM "_prisma_migrations" ORDER BY migration_name`);
    const all = await readMigrations();
    expect(await migrate(db)).toEqual({ applied: [], alreadyApplied: all.length });
    expect(await db.query(`SELECT * FROM "_prisma_migrations" ORDER BY migration_name`)).toEqual(before);
  });

  it("refuses a migration that was changed after it was applied", async () => {
    const all = await readMigrations();
    const edited = all.map((m, i) => (i === 0 ? { ...m, sql: m.sql + "\n-- edited", checksum: createHash("sha256").update(m.sql + "\n-- edited").digest("hex") } : m));
    await expect(migrate(db, edited)).rejects.toThrow(new RegExp(`Migration ${all[0].name} was modified after it was applied \\(checksum mismatch\\)`));
  });

  it("refuses a database with migrations this code does not know", async () => {
    await expect(migrate(db, [])).rejects.toThrow(/has migrations this server does not know/);
  });

  it("applies a new migration in a transaction, and rolls a failing one back without bookkeeping", async () => {
    const all = await readMigrations();
    const good = { name: "29991231000000_add_probe", sql: `CREATE TABLE "Probe" (id INT);`, checksum: "a".repeat(64) };
    expect(await migrate(db, [...all, good])).toEqual({ applied: [good.name], alreadyApplied: all.length });
    const bad = { name: "29991231000001_broken", sql: `CREATE TABLE "Probe2" (id INT); SELECT no_such_function();`, checksum: "b".repeat(64) };
    await expect(migrate(db, [...all, good, bad])).rejects.toThrow(/no_such_function/);
    expect(await db.query(`SELECT 1 FROM pg_tables WHERE tablename = 'Probe2'`)).toEqual([]);
    expect(await db.query(`SELECT 1 FROM "_prisma_migrations" WHERE migration_name = $1`, [bad.name])).toEqual([]);
  });

  it("refuses to go on after a migration that started but did not finish", async () => {
    await db.query(`INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at) VALUES ('00000000-0000-4000-8000-000000000000', 'c', '29991231000002_half', now())`);
    await expect(migrate(db)).rejects.toThrow(/29991231000002_half started but did not finish/);
  });
});

describe("data carried by migrations", () => {
  it("webhook_retired_secrets moves a secret still in its overlap into the list, and leaves others with an empty one", async () => {
    const t = await PgliteThread.start("memory://");
    try {
      const run = t.runner();
      const all = await readMigrations();
      const at = all.findIndex((m) => m.name.endsWith("_webhook_retired_secrets"));
      expect(at).toBeGreaterThan(0);
      await migrate(run, all.slice(0, at));
      await run.query(`INSERT INTO "Application" (id, name) VALUES ('app_1', 'a')`);
      await run.query(`INSERT INTO "Contract" (id, "applicationId", "postboxTtlSeconds") VALUES ('con_1', 'app_1', 60), ('con_2', 'app_1', 60)`);
      await run.query(
        `INSERT INTO "WebhookEndpoint" (id, "contractId", url, secret, "previousSecret", "previousSecretUntil") VALUES
           ('whe_1', 'con_1', 'https://a.example/', 'whsec_new', 'whsec_old', '2026-12-03 10:11:12.345'),
           ('whe_2', 'con_2', 'https://b.example/', 'whsec_only', NULL, NULL)`,
      );
      await migrate(run, all);
      const rows = await run.query<{ id: string; retiredSecrets: unknown }>(`SELECT id, "retiredSecrets" FROM "WebhookEndpoint" ORDER BY id`);
      expect(rows).toEqual([
        { id: "whe_1", retiredSecrets: [{ secret: "whsec_old", until: "2026-12-03T10:11:12.345Z" }] },
        { id: "whe_2", retiredSecrets: [] },
      ]);
    } finally {
      await t.close();
    }
  });
});
