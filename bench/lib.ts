// What the benchmarks share: compiled servers started as child processes on
// loopback ports, a GraphQL client, app registration + sign-in, and a scratch
// PostgreSQL database. Only loopback addresses are used; every loop is bounded.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import pg from "pg";
import { request, type Dispatcher } from "undici";

export const ROOT = path.resolve(import.meta.dirname, "..");
export const MAIN = path.join(ROOT, "dist", "main.js");
export const PG_URL = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test";

export interface Server {
  url: string;
  wsUrl: string;
  adminToken: string;
  proc: ChildProcess;
  /** The HTTP client pool every request of the benchmark to this server goes through. */
  dispatcher: Dispatcher;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Names the server in error messages. */
  label: string;
  /** Added to the server's environment (DATABASE_URL, REDIS_URL, ...). */
  env?: Record<string, string>;
  /** Node options placed before the script (e.g. --cpu-prof). */
  nodeArgs?: string[];
  dispatcher: Dispatcher;
  /** How long stop() waits after SIGTERM before SIGKILL. */
  stopGraceMs?: number;
}

/** Exits with a hint when the compiled server is missing (benchmarks measure the build, not tsx). */
export function requireBuild(npmScript: string): void {
  if (!existsSync(MAIN)) {
    process.stderr.write(`${MAIN} is missing: run \`npm run build\` first (or \`npm run ${npmScript}\`).\n`);
    process.exit(2);
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Starts `dist/main.js` on a free port with its own data directory and admin token; resolves once /readyz answers 200. */
export async function startServer({ label, env = {}, nodeArgs = [], dispatcher, stopGraceMs = 10_000 }: StartOptions): Promise<Server> {
  const port = await freePort();
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "postbox-bench-"));
  const adminToken = randomBytes(24).toString("hex");
  const url = `http://127.0.0.1:${port}`;
  const proc = spawn(process.execPath, [...nodeArgs, MAIN], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? "",
      NODE_ENV: "production",
      HOST: "127.0.0.1",
      PORT: String(port),
      PUBLIC_URL: url,
      DATA_DIR: dataDir,
      ADMIN_TOKEN: adminToken,
      LOG_LEVEL: "warn",
      RATE_LIMIT_PER_MINUTE: "0",
      ...(process.env.EMBEDDED_DB_SYNC ? { EMBEDDED_DB_SYNC: process.env.EMBEDDED_DB_SYNC } : {}),
      ...env,
    },
    stdio: ["ignore", "inherit", "inherit"],
  });
  let exited = false;
  proc.once("exit", () => (exited = true));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) throw new Error(`server (${label}, port ${port}) exited during start`);
    if (Date.now() > deadline) throw new Error(`server (${label}, port ${port}) not ready after 60 s`);
    try {
      const r = await request(`${url}/readyz`, { dispatcher });
      await r.body.dump();
      if (r.statusCode === 200) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    wsUrl: `ws://127.0.0.1:${port}/graphql`,
    adminToken,
    proc,
    dispatcher,
    async stop() {
      if (!exited) {
        const done = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await Promise.race([done, new Promise((r) => setTimeout(r, stopGraceMs))]);
        if (!exited) proc.kill("SIGKILL");
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export async function gql<T = any>(server: Server, query: string, variables: Record<string, unknown>, token?: string): Promise<T> {
  const res = await request(`${server.url}/graphql`, {
    method: "POST",
    dispatcher: server.dispatcher,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.body.json()) as { data?: T; errors?: { message: string }[] };
  if (body.errors?.length || !body.data) throw new Error(`GraphQL error: ${JSON.stringify(body.errors)}`);
  return body.data;
}

/** Registers an application through the admin API and returns a session key for its contract. */
export async function registerAndSignIn(server: Server): Promise<string> {
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  const res = await request(`${server.url}/admin/applications`, {
    method: "POST",
    dispatcher: server.dispatcher,
    headers: { authorization: `Bearer ${server.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "Bench app", publicKey: await exportJWK(publicKey), alg: "ES256" }),
  });
  const app = (await res.body.json()) as { appId: string; contractId: string };
  if (res.statusCode !== 201) throw new Error(`registering the app failed: ${JSON.stringify(app)}`);
  const assertion = await new SignJWT({ client_id: `${app.appId}_${app.contractId}`, nonce: randomBytes(24).toString("base64url"), timestamp: Date.now() })
    .setProtectedHeader({ alg: "ES256", typ: "JWT" })
    .sign(privateKey);
  const data = await gql<{ createSession: { key: string } }>(
    server,
    `mutation($input: CreateSessionInput!) { createSession(input: $input) { key } }`,
    { input: { appId: app.appId, contractId: app.contractId, assertion } },
  );
  return data.createSession.key;
}

/** Whether a TCP connection to host:port opens within 2 s. */
export async function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port }, () => {
      s.end();
      resolve(true);
    });
    s.once("error", () => resolve(false));
    s.setTimeout(2000, () => {
      s.destroy();
      resolve(false);
    });
  });
}

/** Runs `fn` with the URL of a fresh database on PG_URL's server, dropped afterwards whatever happens. */
export async function withScratchDatabase<T>(fn: (databaseUrl: string) => Promise<T>): Promise<T> {
  const name = `pbbench_${randomBytes(5).toString("hex")}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(PG_URL);
  u.pathname = `/${name}`;
  try {
    return await fn(u.toString());
  } finally {
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.end();
  }
}

// Clock ticks per second of /proc's CPU times (almost always 100).
let clockTicks: number | undefined;

/** CPU time (µs) each thread of a process has used so far, by thread id; null without Linux /proc. */
export async function threadCpu(pid: number): Promise<Map<number, number> | null> {
  let tids: string[];
  try {
    tids = await readdir(`/proc/${pid}/task`);
  } catch {
    return null;
  }
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  const used = new Map<number, number>();
  for (const tid of tids) {
    try {
      const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, "utf8");
      // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      used.set(Number(tid), ((Number(f[11]) + Number(f[12])) * 1e6) / clockTicks);
    } catch {
      // the thread ended meanwhile
    }
  }
  return used;
}

/** The whole machine's CPU time so far (µs, busy and all), from /proc/stat's first line; null without it. */
export async function machineCpu(): Promise<{ busy: number; total: number } | null> {
  try {
    const line = (await readFile("/proc/stat", "utf8")).split("\n", 1)[0]!;
    // cpu  user nice system idle iowait irq softirq steal ...: idle and iowait are the only time not spent.
    const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const busy = user + nice + system + irq + softirq + (steal || 0);
    const tick = 1e6 / (clockTicks ?? 100);
    return { busy: busy * tick, total: (busy + idle + iowait) * tick };
  } catch {
    return null;
  }
}

/**
 * Where a load's CPU went, in µs per request: the server's main thread, its other threads
 * (largest first), this process (the load generator); and the whole machine's (PostgreSQL's
 * processes included), with the share of its cores that was busy meanwhile.
 */
export interface CpuPerRequest {
  main: number;
  threads: number[];
  client: number;
  machine?: number;
  busy?: number;
}

/**
 * The rate the machine's cores would allow at this CPU per request if they were all busy
 * with it: an upper bound, since threads that hand work to each other leave cores idle.
 */
export function cpuBoundRate(c: CpuPerRequest, cores = os.availableParallelism()): number | null {
  return c.machine ? Math.round((cores * 1e6) / c.machine) : null;
}

/** Runs `action` (which resolves to the number of requests it made) and splits the CPU it cost per request; null without /proc. */
export async function cpuPerRequest(pid: number, action: () => Promise<number>): Promise<{ requests: number; cpu: CpuPerRequest | null }> {
  const before = await threadCpu(pid);
  const machineBefore = await machineCpu();
  const client = process.cpuUsage();
  const requests = await action();
  const spent = process.cpuUsage(client);
  const machineAfter = await machineCpu();
  const after = await threadCpu(pid);
  if (!before || !after || requests === 0) return { requests, cpu: null };
  const per = (us: number) => Math.round(us / requests);
  const threads = [...after]
    .filter(([tid]) => tid !== pid)
    .map(([tid, us]) => per(us - (before.get(tid) ?? 0)))
    .filter((us) => us > 0)
    .sort((a, b) => b - a);
  const machine =
    machineBefore && machineAfter
      ? { machine: per(machineAfter.busy - machineBefore.busy), busy: Math.round(((machineAfter.busy - machineBefore.busy) / (machineAfter.total - machineBefore.total)) * 100) / 100 }
      : {};
  return { requests, cpu: { main: per((after.get(pid) ?? 0) - (before.get(pid) ?? 0)), threads, client: per(spent.user + spent.system), ...machine } };
}
