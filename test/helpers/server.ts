// Starts a real Postbox server for a test file: on a restored, migrated PGlite
// (project "pglite") or on a fresh PostgreSQL database (project "postgres").
// Clients talk to it over HTTP (undici) and WebSocket (graphql-ws) like any client.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import pg from "pg";
import { request } from "undici";
import { createApp, type App, type AppOptions } from "../../src/app.js";
import { loadConfig, type Env } from "../../src/infra/config.js";

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test";

export interface GqlResult<T = Record<string, any>> {
  status: number;
  data?: T;
  errors?: { message: string; extensions?: { code?: string; [k: string]: unknown } }[];
  headers: Record<string, string | string[] | undefined>;
}

export interface TestServer {
  app: App;
  url: string;
  wsUrl: string;
  dataDir: string;
  databaseUrl?: string;
  adminToken: string;
  /** Every log line the server wrote (JSON strings). */
  logs: string[];
  gql<T = Record<string, any>>(query: string, variables?: Record<string, unknown>, opts?: { token?: string; headers?: Record<string, string> }): Promise<GqlResult<T>>;
  admin<T = any>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  stop(): Promise<void>;
}

export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `pbt_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(TEST_DATABASE_URL);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export interface StartOptions {
  env?: Env;
  /** Reuse a database (several instances on one PostgreSQL database). */
  databaseUrl?: string;
  scheduler?: boolean;
  /**
   * Use this DATA_DIR instead of a fresh one, e.g. to restart on the same embedded
   * database. The caller owns it: stop() leaves it in place.
   */
  dataDir?: string;
  /** The embedded database thread's script and reopen delay (a failing disk: test/helpers/failing-disk.worker.mjs). */
  dbThread?: AppOptions["dbThread"];
}

export async function startTestServer(opts: StartOptions = {}): Promise<TestServer> {
  const dataDir = opts.dataDir ?? (await mkdtemp(path.join(os.tmpdir(), "postbox-test-")));
  const adminToken = `test-admin-${randomBytes(16).toString("hex")}`;
  let dropDb: (() => Promise<void>) | undefined;
  let databaseUrl = opts.databaseUrl;
  let loadDataDir: Blob | undefined;
  if (process.env.TEST_DB === "postgres") {
    if (!databaseUrl) {
      const db = await createTestDatabase();
      databaseUrl = db.url;
      dropDb = db.drop;
    }
  } else if (process.env.TEST_PGLITE_DUMP && !(opts.dataDir && existsSync(path.join(opts.dataDir, "db")))) {
    loadDataDir = new Blob([await readFile(process.env.TEST_PGLITE_DUMP)]);
  }
  const config = loadConfig({
    NODE_ENV: "test",
    HOST: "127.0.0.1",
    PORT: "0",
    LOG_LEVEL: "info",
    DATA_DIR: dataDir,
    ADMIN_TOKEN: adminToken,
    ALLOW_PRIVATE_URLS: "true",
    SWEEP_INTERVAL: "1h",
    RATE_LIMIT_PER_MINUTE: "0",
    // Test servers skip the disk sync of every commit (it only adds the disk's latency);
    // server.test.ts starts one with the default, and pglite-durable.test.ts tests the sync.
    EMBEDDED_DB_SYNC: "false",
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    ...opts.env,
  });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(...chunk.toString().split("\n").filter(Boolean));
      cb();
    },
  });
  const app = await createApp(config, { loadDataDir, logDestination: sink, scheduler: opts.scheduler ?? false, dbThread: opts.dbThread });
  const url = app.url;
  return {
    app,
    url,
    wsUrl: url.replace(/^http/, "ws") + "/graphql",
    dataDir,
    databaseUrl,
    adminToken,
    logs,
    async gql(query, variables, o = {}) {
      const res = await request(`${url}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(o.token ? { authorization: `Bearer ${o.token}` } : {}), ...o.headers },
        body: JSON.stringify({ query, variables }),
      });
      const text = await res.body.text();
      let json: { data?: any; errors?: any };
      try {
        json = JSON.parse(text);
      } catch {
        throw new Error(`Non-JSON response ${res.statusCode}: ${text.slice(0, 200)}`);
      }
      return { status: res.statusCode, data: json.data, errors: json.errors, headers: res.headers };
    },
    async admin(method, p, body) {
      const res = await request(`${url}/admin${p}`, {
        method: method as "GET",
        headers: { authorization: `Bearer ${adminToken}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        body: body !== undefined ? JSON.stringify(body) : undefined,
      });
      return { status: res.statusCode, body: (await res.body.json()) as any };
    },
    async stop() {
      await app.stop();
      await dropDb?.();
      if (!opts.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** The error code of the first GraphQL error, for compact assertions. */
export function errorCode(r: GqlResult): string | undefined {
  return r.errors?.[0]?.extensions?.code as string | undefined;
}
