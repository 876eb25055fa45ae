// Applies prisma/migrations/<name>/migration.sql in order, keeping Prisma's own
// `_prisma_migrations` bookkeeping (id, sha256 checksum, start and finish times),
// so that `prisma migrate status/deploy` on a machine with Prisma's engine agrees
// with what the server did. Prisma's migrate CLI cannot run offline (its engine is
// a download), which is why the server does this itself.
import { randomUUID, createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const MIGRATIONS_DIR = fileURLToPath(new URL("../../../prisma/migrations", import.meta.url));

/** The few operations the migrator needs; implemented for PGlite and for pg. */
export interface SqlRunner {
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Runs a multi-statement script inside one transaction. */
  execInTransaction(script: string, after: (q: SqlRunner["query"]) => Promise<void>): Promise<void>;
  /** Serialises migrators across processes (PostgreSQL advisory lock). */
  withLock<T>(fn: () => Promise<T>): Promise<T>;
}

export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

const BOOKKEEPING = `
CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
  "id"                  VARCHAR(36) PRIMARY KEY NOT NULL,
  "checksum"            VARCHAR(64) NOT NULL,
  "finished_at"         TIMESTAMPTZ,
  "migration_name"      VARCHAR(255) NOT NULL,
  "logs"                TEXT,
  "rolled_back_at"      TIMESTAMPTZ,
  "started_at"          TIMESTAMPTZ NOT NULL DEFAULT now(),
  "applied_steps_count" INTEGER NOT NULL DEFAULT 0
)`;

export async function readMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const names = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
  return Promise.all(
    names.map(async (name) => {
      const sql = await readFile(path.join(dir, name, "migration.sql"), "utf8");
      return { name, sql, checksum: createHash("sha256").update(sql).digest("hex") };
    }),
  );
}

interface AppliedRow {
  migration_name: string;
  checksum: string;
  finished_at: Date | null;
  rolled_back_at: Date | null;
}

export interface MigrateResult {
  applied: string[];
  alreadyApplied: number;
}

export async function migrate(db: SqlRunner, migrations?: Migration[]): Promise<MigrateResult> {
  const all = migrations ?? (await readMigrations());
  return db.withLock(async () => {
    await db.query(BOOKKEEPING);
    const rows = await db.query<AppliedRow>(
      `SELECT migration_name, checksum, finished_at, rolled_back_at FROM "_prisma_migrations" WHERE rolled_back_at IS NULL`,
    );
    const done = new Map(rows.map((r) => [r.migration_name, r]));
    const failed = rows.find((r) => r.finished_at === null);
    if (failed) {
      throw new Error(
        `Migration ${failed.migration_name} started but did not finish. Fix the database by hand, then mark it rolled back (prisma migrate resolve --rolled-back ${failed.migration_name}).`,
      );
    }
    const known = new Set(all.map((m) => m.name));
    const unknown = rows.filter((r) => !known.has(r.migration_name)).map((r) => r.migration_name);
    if (unknown.length) {
      throw new Error(`The database has migrations this server does not know (${unknown.join(", ")}): is it an older version of Postbox?`);
    }
    const applied: string[] = [];
    for (const m of all) {
      const prev = done.get(m.name);
      if (prev) {
        if (prev.checksum !== m.checksum) {
          throw new Error(`Migration ${m.name} was modified after it was applied (checksum mismatch). Restore the original file.`);
        }
        continue;
      }
      const id = randomUUID();
      const startedAt = new Date();
      await db.execInTransaction(m.sql, async (q) => {
        await q(
          `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, finished_at, applied_steps_count)
           VALUES ($1, $2, $3, $4, now(), 1)`,
          [id, m.checksum, m.name, startedAt],
        );
      });
      applied.push(m.name);
    }
    return { applied, alreadyApplied: all.length - applied.length };
  });
}
