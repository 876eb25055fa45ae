// The embedded database's housekeeping: VACUUM once a minute (see Database.vacuum for
// why PGlite needs it). Frequent rather than rare because it stops the database thread
// while it runs, and its cost grows with the rows changed since the last one: measured
// on a database of 20,000 pushes (86 MB), 6 ms with nothing changed and 14 ms after
// 10,000 purges.
//
// Not every table, every time. A vacuum records the table's size for the planner, and
// PostgreSQL keeps the plans of foreign-key checks (and of PL/pgSQL statements) until
// such a record changes. A table vacuumed while nearly empty gets sequential-scan plans,
// which stay while it grows: measured, a push batch's foreign-key check on Push then
// scanned the whole table, and a push cost 1.3 ms of the database thread instead of
// 0.1 ms, more with every push, until the next vacuum. A table never vacuumed is assumed
// to have at least 10 pages, and is planned with its indexes. So:
// - tables no foreign key points to (the content, nonces, audit events, ...) are
//   vacuumed every time, whatever their size: nothing is planned against their size;
// - tables a foreign key points to (Push, Postbox, ...) only once they have
//   MIN_PARENT_PAGES pages, and never truncated, so that they stay that large for the
//   planner, whose plans then use their indexes;
// - the whole database (system catalogs too) once its oldest unfrozen transaction is
//   WRAPAROUND_AGE old: PostgreSQL must freeze old rows before its transaction counter
//   wraps around, and stops taking writes if it is not done.
import type { Logger } from "../logger.js";
import type { Task } from "../scheduler.js";
import type { Database } from "./database.js";
import type { SqlRunner } from "./migrate.js";

export const VACUUM_EVERY_MS = 60_000;
export const MIN_PARENT_PAGES = 64;
/** Half of PostgreSQL's own anti-wraparound threshold (autovacuum_freeze_max_age, 200 million). */
export const WRAPAROUND_AGE = 100_000_000;

/** A table as vacuumStatements sees it. */
export interface TableInfo {
  name: string;
  pages: number;
  /** A foreign key points to it. */
  referenced: boolean;
}

const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** The VACUUM statements of one run (each a statement of its own: VACUUM refuses a transaction). */
export function vacuumStatements(tables: TableInfo[], xidAge: number): string[] {
  if (xidAge >= WRAPAROUND_AGE) return ["VACUUM (TRUNCATE false)"];
  const leaves = tables.filter((t) => !t.referenced).map((t) => ident(t.name));
  const parents = tables.filter((t) => t.referenced && t.pages >= MIN_PARENT_PAGES).map((t) => ident(t.name));
  return [...(leaves.length ? [`VACUUM ${leaves.join(", ")}`] : []), ...(parents.length ? [`VACUUM (TRUNCATE false) ${parents.join(", ")}`] : [])];
}

/** One vacuum run on the embedded database. */
export async function vacuumEmbedded(query: SqlRunner["query"]): Promise<void> {
  const rows = await query<{ name: string; pages: number; referenced: boolean; xid_age: number }>(
    `SELECT c.relname AS name, (pg_relation_size(c.oid) / current_setting('block_size')::int)::int AS pages,
            EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.confrelid = c.oid) AS referenced,
            (SELECT age(datfrozenxid) FROM pg_database WHERE datname = current_database()) AS xid_age
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = current_schema() AND c.relkind = 'r'`,
  );
  for (const sql of vacuumStatements(rows, rows[0]?.xid_age ?? 0)) await query(sql);
}

/** The scheduler task that vacuums the embedded database when a minute has passed; null on PostgreSQL. */
export function vacuumTask(db: Pick<Database, "vacuum">, log: Logger, everyMs = VACUUM_EVERY_MS): Task | null {
  const vacuum = db.vacuum;
  if (!vacuum) return null;
  let last: number | undefined;
  return {
    name: "database.vacuum",
    async run(now: Date) {
      if (last !== undefined && now.getTime() - last < everyMs) return;
      last = now.getTime();
      const started = performance.now();
      await vacuum();
      const ms = Math.round(performance.now() - started);
      // Slow runs held every query up for that long: worth seeing at the default level.
      if (ms >= 500) log.info({ ms }, "embedded database vacuumed (slow)");
      else log.debug({ ms }, "embedded database vacuumed");
    },
  };
}
