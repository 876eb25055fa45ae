// The database: embedded PostgreSQL (PGlite) in DATA_DIR by default, or a
// PostgreSQL server when DATABASE_URL is set. Same schema, migrations and Prisma
// client on both; only the driver adapter differs.
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { PrismaClient } from "../../generated/prisma/client.js";
import { acquireDbLock, type DbLock } from "./lock.js";
import { vacuumEmbedded } from "./maintenance.js";
import { migrate, type MigrateResult, type SqlRunner } from "./migrate.js";
import { binaryParam, type ParamType } from "./pglite-prepared.mjs";
import type { Logger } from "../logger.js";
import { PgliteThread, type ThreadOptions } from "./pglite-proxy.js";

export type { PrismaClient };
export type Tx = Omit<PrismaClient, "$connect" | "$disconnect" | "$on" | "$transaction" | "$extends">;

/**
 * One SQL statement straight through the driver (node-postgres, or PGlite in its
 * thread), outside Prisma's client. Only for a hot statement whose parameters are
 * large: `$queryRaw` turns every parameter into JSON and back before the driver
 * sees it, which for a batch of pushes cost more than the statement itself. Rows
 * come back as the driver makes them; errors carry the SQLSTATE in `code`
 * (see isUniqueViolation). Like Prisma, only repositories use it.
 */
export type RawSql = <T>(sql: string, params: unknown[], prepare?: PrepareAs) => Promise<T[]>;

/**
 * Keeps the statement prepared on the connection under `name` (parsed and planned
 * once, not on every call). The embedded database also sends its parameters in
 * binary, which needs each one's type; PostgreSQL takes them as text and casts.
 */
export interface PrepareAs {
  name: string;
  types: ParamType[];
}

export interface Database {
  readonly kind: "pglite" | "postgres";
  readonly prisma: PrismaClient;
  readonly sql: RawSql;
  migrate(): Promise<MigrateResult>;
  ping(): Promise<void>;
  /**
   * Embedded database only: reclaims the space of deleted rows (VACUUM; which tables, see maintenance.ts).
   * PGlite runs PostgreSQL in single-user mode, with no autovacuum: without this,
   * every row ever deleted stayed in its files, purged ciphertext included, and the
   * files only grew. Null on PostgreSQL, whose autovacuum does it (see vacuumTask).
   */
  readonly vacuum: (() => Promise<void>) | null;
  /** Idempotent: a second call waits for the first. */
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** postgresql:// URL; unset means embedded. */
  url?: string;
  /** Embedded database folder, or "memory://" (tests). */
  dataDir?: string;
  poolSize?: number;
  /** A PGlite data-dir dump to start from (tests restore a migrated database this way). */
  loadDataDir?: Blob;
  /** Embedded: sync every commit to disk before it is acknowledged (config EMBEDDED_DB_SYNC). Default true. */
  sync?: boolean;
  /** Embedded: told when the database's thread stops on its own and as it is reopened (see PgliteThread). */
  log?: Logger;
  /** Embedded, tests: the thread's script and reopen delay (see ThreadOptions). */
  thread?: Pick<ThreadOptions, "workerUrl" | "reopenAfterMs">;
}

export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  return opts.url ? openPostgres(opts.url, opts.poolSize ?? 10) : openPglite(opts.dataDir ?? "memory://", opts);
}

/** `<DATA_DIR>/db` is locked by `<DATA_DIR>/db.lock` (see lock.ts). */
export function pgliteLockFile(dataDir: string): string {
  return `${dataDir.replace(/[\\/]+$/, "")}.lock`;
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | undefined;
  return () => (p ??= fn());
}

async function openPglite(dataDir: string, opts: DatabaseOptions): Promise<Database> {
  let lock: DbLock | undefined;
  if (!dataDir.startsWith("memory://")) {
    await mkdir(path.dirname(dataDir), { recursive: true, mode: 0o700 });
    lock = await acquireDbLock(pgliteLockFile(dataDir));
  }
  // PGlite runs in its own thread (see pglite.worker.mjs).
  let thread: PgliteThread;
  try {
    const { log } = opts;
    thread = await PgliteThread.start(dataDir, {
      ...opts.thread,
      sync: opts.sync,
      loadDataDir: opts.loadDataDir,
      events: log && {
        stopped: (err) => log.error({ err }, "the embedded database stopped; it reopens in a new thread shortly"),
        reopenFailed: (err, retryInMs) => log.error({ err, retryInMs }, "the embedded database could not be reopened"),
        reopened: () => log.warn("the embedded database is open again"),
      },
    });
  } catch (e) {
    await lock?.release();
    throw e;
  }
  const prisma = new PrismaClient({ adapter: thread.adapterFactory() });
  const runner = thread.runner();
  return {
    kind: "pglite",
    prisma,
    sql: (sql, params, prepare) => (prepare ? thread.prepared(prepare.name, sql, prepare.types, params) : runner.query(sql, params)),
    migrate: () => migrate(runner),
    ping: async () => {
      await runner.query("SELECT 1");
    },
    vacuum: () => vacuumEmbedded(runner.query),
    close: once(async () => {
      try {
        await prisma.$disconnect();
        await thread.close();
      } finally {
        await lock?.release();
      }
    }),
  };
}

async function openPostgres(url: string, poolSize: number): Promise<Database> {
  const pool = new pg.Pool({ connectionString: url, max: poolSize });
  // An idle client error (server restart) must not crash the process; the pool replaces it.
  pool.on("error", () => {});
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  const runner: SqlRunner = {
    query: async <T>(sql: string, params?: unknown[]) => (await pool.query(sql, params)).rows as T[],
    execInTransaction: async (script, after) => {
      const client = await pool.connect();
      try {
        await client.query("BEGIN");
        await client.query(script);
        await after(async <T>(sql: string, params?: unknown[]) => (await client.query(sql, params)).rows as T[]);
        await client.query("COMMIT");
      } catch (e) {
        await client.query("ROLLBACK").catch(() => {});
        throw e;
      } finally {
        client.release();
      }
    },
    withLock: async (fn) => {
      // Several instances may start at once: one migrates, the others wait and find nothing to do.
      // fn's queries take other clients from the pool, so it needs 2 or more (DATABASE_POOL_SIZE ≥ 2).
      const client = await pool.connect();
      try {
        await client.query("SELECT pg_advisory_lock(727274)");
        return await fn();
      } finally {
        await client.query("SELECT pg_advisory_unlock(727274)").catch(() => {});
        client.release();
      }
    },
  };
  return {
    kind: "postgres",
    prisma,
    sql: async <T>(sql: string, params: unknown[], prepare?: PrepareAs) =>
      // A prepared statement's parameters go binary, as on the embedded database (pglite-prepared.mjs).
      (prepare
        ? await pool.query({ name: prepare.name, text: sql, values: params.map((p, i) => binaryParam(prepare.types[i], p)) })
        : await pool.query(sql, params)
      ).rows as T[],
    migrate: () => migrate(runner),
    ping: async () => {
      await pool.query("SELECT 1");
    },
    vacuum: null,
    close: once(async () => {
      await prisma.$disconnect();
      await pool.end();
    }),
  };
}
