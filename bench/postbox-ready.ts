// Benchmark: latency from the acceptPostbox response to the subscriber's READY
// event, with 1,000 other subscriptions open.
//   1. one instance, in-memory pub/sub (embedded database)
//   2. two instances on one PostgreSQL database, events through Redis:
//      the user accepts through instance A, the subscriber listens on instance B
// The 1,000 other subscriptions watch other postboxes of the same contract, so
// every status event wakes all of them (the worst case for per-contract routing).
// Servers are the compiled server (`npm run build`), started as child processes.
//
//   npm run bench:postbox                 (builds first)
//   BENCH_ITERATIONS=300 BENCH_OTHER_SUBSCRIPTIONS=1000 tsx bench/postbox-ready.ts
//
// Only loopback addresses are used; every loop is bounded.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { createClient, type Client } from "graphql-ws";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import pg from "pg";
import { Agent, request } from "undici";
import WebSocket from "ws";

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 300);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 20);
const OTHER_SUBSCRIPTIONS = Number(process.env.BENCH_OTHER_SUBSCRIPTIONS ?? 1000);
const SUBS_PER_CONNECTION = 50;
const PG_URL = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test";
const REDIS_URL = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";
const ROOT = path.resolve(import.meta.dirname, "..");
const MAIN = path.join(ROOT, "dist", "main.js");
const EVENT_TIMEOUT_MS = 10_000;

const dispatcher = new Agent({ connections: 16, keepAliveTimeout: 30_000 });

// ---------------------------------------------------------------- servers

interface Server {
  url: string;
  wsUrl: string;
  adminToken: string;
  proc: ChildProcess;
  stop(): Promise<void>;
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

async function startServer(env: Record<string, string>): Promise<Server> {
  const port = await freePort();
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "postbox-bench-"));
  const adminToken = randomBytes(24).toString("hex");
  const url = `http://127.0.0.1:${port}`;
  const proc = spawn(process.execPath, [MAIN], {
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
      ...env,
    },
    stdio: ["ignore", "inherit", "inherit"],
  });
  let exited = false;
  proc.once("exit", () => (exited = true));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) throw new Error(`server on port ${port} exited during start`);
    if (Date.now() > deadline) throw new Error(`server on port ${port} not ready after 60 s`);
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
    async stop() {
      if (!exited) {
        const done = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await Promise.race([done, new Promise((r) => setTimeout(r, 10_000))]);
        if (!exited) proc.kill("SIGKILL");
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------- clients

async function gql<T = any>(server: Server, query: string, variables: Record<string, unknown>, token?: string): Promise<T> {
  const res = await request(`${server.url}/graphql`, {
    method: "POST",
    dispatcher,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.body.json()) as { data?: T; errors?: { message: string }[] };
  if (body.errors?.length || !body.data) throw new Error(`GraphQL error: ${JSON.stringify(body.errors)}`);
  return body.data;
}

async function registerAndSignIn(server: Server): Promise<string> {
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  const res = await request(`${server.url}/admin/applications`, {
    method: "POST",
    dispatcher,
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

const CREATE = `mutation { createPostbox { id consentUrl } }`;
const ACCEPT = `mutation($input: AcceptPostboxInput!) { acceptPostbox(input: $input) { status } }`;
const SUB = `subscription($postboxId: ID) { postboxStatusChanged(postboxId: $postboxId) { postboxId status } }`;

function wsClient(server: Server, session: string): Client {
  return createClient({ url: server.wsUrl, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${session}` }, retryAttempts: 0, lazy: true });
}

interface Watch {
  /** Resolves with performance.now() when an event with `status` arrives. */
  status(status: string): Promise<number>;
  dispose(): void;
}

function watch(client: Client, postboxId: string): Watch {
  const seen = new Map<string, number>();
  const waiters = new Map<string, (t: number) => void>();
  let failed: unknown;
  const dispose = client.subscribe<{ postboxStatusChanged: { status: string } }>(
    { query: SUB, variables: { postboxId } },
    {
      next: (v) => {
        const at = performance.now();
        const s = v.data?.postboxStatusChanged.status;
        if (!s) return void (failed = v.errors);
        seen.set(s, at);
        waiters.get(s)?.(at);
      },
      error: (e) => (failed = e),
      complete: () => {},
    },
  );
  return {
    status(status) {
      if (seen.has(status)) return Promise.resolve(seen.get(status)!);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${status} event within ${EVENT_TIMEOUT_MS} ms ${failed ? JSON.stringify(failed) : ""}`)), EVENT_TIMEOUT_MS);
        waiters.set(status, (t) => {
          clearTimeout(timer);
          resolve(t);
        });
      });
    },
    dispose,
  };
}

/** Opens `count` subscriptions, each on its own PENDING postbox, and waits until each reported PENDING. */
async function openOtherSubscriptions(create: Server, listen: Server, session: string, count: number): Promise<Client[]> {
  const clients: Client[] = [];
  const ready: Promise<number>[] = [];
  for (let i = 0; i < count; i++) {
    if (i % SUBS_PER_CONNECTION === 0) clients.push(wsClient(listen, session));
    const { createPostbox } = await gql<{ createPostbox: { id: string } }>(create, CREATE, {}, session);
    ready.push(watch(clients[clients.length - 1], createPostbox.id).status("PENDING"));
  }
  await Promise.all(ready);
  return clients;
}

// ---------------------------------------------------------------- measurement

interface Distribution {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

interface Stats {
  scenario: string;
  iterations: number;
  otherSubscriptions: number;
  /** acceptPostbox response received → READY event received (0 when the event came first). */
  responseToEvent: Distribution;
  /** acceptPostbox request sent → READY event received. */
  requestToEvent: Distribution;
  /** acceptPostbox request sent → response received. */
  requestToResponse: Distribution;
  /** How often the READY event arrived before the HTTP response. */
  eventBeforeResponse: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function distribution(samples: number[]): Distribution {
  const sorted = [...samples].sort((a, b) => a - b);
  const round = (n: number) => Math.round(n * 100) / 100;
  return {
    p50: round(percentile(sorted, 50)),
    p90: round(percentile(sorted, 90)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted[sorted.length - 1]),
    mean: round(samples.reduce((a, b) => a + b, 0) / samples.length),
  };
}

async function measure(scenario: string, acceptOn: Server, listenOn: Server, session: string): Promise<Stats> {
  const listener = wsClient(listenOn, session);
  const keys = await Promise.all(Array.from({ length: 16 }, async () => exportJWK((await generateKeyPair("ECDH-ES+A256KW", { extractable: true })).publicKey)));
  const responseToEvent: number[] = [];
  const requestToEvent: number[] = [];
  const requestToResponse: number[] = [];
  let early = 0;
  for (let i = 0; i < WARMUP + ITERATIONS; i++) {
    const { createPostbox } = await gql<{ createPostbox: { id: string; consentUrl: string } }>(acceptOn, CREATE, {}, session);
    const w = watch(listener, createPostbox.id);
    await w.status("PENDING"); // the subscription is live before the user accepts
    const readyAt = w.status("READY");
    const code = createPostbox.consentUrl.split("/").pop();
    const sent = performance.now();
    const r = await gql<{ acceptPostbox: { status: string } }>(acceptOn, ACCEPT, { input: { code, publicKey: keys[i % keys.length] } });
    const responded = performance.now();
    if (r.acceptPostbox.status !== "READY") throw new Error(`acceptPostbox answered ${r.acceptPostbox.status}`);
    const evented = await readyAt;
    w.dispose();
    if (i < WARMUP) continue;
    if (evented < responded) early++;
    responseToEvent.push(Math.max(0, evented - responded));
    requestToEvent.push(evented - sent);
    requestToResponse.push(responded - sent);
  }
  await listener.dispose();
  return {
    scenario,
    iterations: responseToEvent.length,
    otherSubscriptions: OTHER_SUBSCRIPTIONS,
    responseToEvent: distribution(responseToEvent),
    requestToEvent: distribution(requestToEvent),
    requestToResponse: distribution(requestToResponse),
    eventBeforeResponse: early,
  };
}

async function oneInstance(): Promise<Stats> {
  const s = await startServer({});
  try {
    const session = await registerAndSignIn(s);
    const others = await openOtherSubscriptions(s, s, session, OTHER_SUBSCRIPTIONS);
    try {
      return await measure("one instance, in-memory pub/sub, embedded database", s, s, session);
    } finally {
      await Promise.all(others.map((c) => c.dispose()));
    }
  } finally {
    await s.stop();
  }
}

async function twoInstances(): Promise<Stats> {
  const name = `pbbench_${randomBytes(5).toString("hex")}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(PG_URL);
  u.pathname = `/${name}`;
  const env = { DATABASE_URL: u.toString(), REDIS_URL };
  let a: Server | undefined;
  let b: Server | undefined;
  try {
    a = await startServer(env);
    b = await startServer(env);
    const session = await registerAndSignIn(a);
    const others = await openOtherSubscriptions(a, b, session, OTHER_SUBSCRIPTIONS);
    try {
      return await measure("two instances, PostgreSQL + Redis (accept on A, subscriber on B)", a, b, session);
    } finally {
      await Promise.all(others.map((c) => c.dispose()));
    }
  } finally {
    await a?.stop();
    await b?.stop();
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.end();
  }
}

async function reachable(host: string, port: number): Promise<boolean> {
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

async function main() {
  if (!existsSync(MAIN)) {
    process.stderr.write(`${MAIN} is missing: run \`npm run build\` first (or \`npm run bench:postbox\`).\n`);
    process.exit(2);
  }
  const results: Stats[] = [];
  process.stderr.write(`postbox-ready: ${ITERATIONS} iterations (+${WARMUP} warm-up), ${OTHER_SUBSCRIPTIONS} other subscriptions\n`);
  results.push(await oneInstance());
  const pgUrl = new URL(PG_URL);
  const redisUrl = new URL(REDIS_URL);
  if ((await reachable(pgUrl.hostname, Number(pgUrl.port || 5432))) && (await reachable(redisUrl.hostname, Number(redisUrl.port || 6379)))) {
    results.push(await twoInstances());
  } else {
    process.stderr.write(`skipping the two-instance run: PostgreSQL (${pgUrl.host}) or Redis (${redisUrl.host}) is not reachable\n`);
  }
  const targets: Record<number, number> = { 0: 25, 1: 60 };
  const row = (label: string, d: Distribution, extra = "") =>
    "  " + label.padEnd(28) + [d.p50, d.p90, d.p99, d.max, d.mean].map((n) => n.toFixed(1).padStart(8)).join("") + extra + "\n";
  results.forEach((r, i) => {
    process.stdout.write(`\n${r.scenario}: ${r.iterations} acceptances, ${r.otherSubscriptions} other subscriptions open\n`);
    process.stdout.write("  " + "(ms)".padEnd(28) + ["p50", "p90", "p99", "max", "mean"].map((h) => h.padStart(8)).join("") + "\n");
    process.stdout.write(row("response → READY event", r.responseToEvent, `   target p99 < ${targets[i]} ms: ${r.responseToEvent.p99 < targets[i] ? "met" : "MISSED"}`));
    process.stdout.write(row("request sent → READY event", r.requestToEvent));
    process.stdout.write(row("request sent → response", r.requestToResponse));
    process.stdout.write(`  READY arrived before the HTTP response in ${r.eventBeforeResponse} of ${r.iterations} (counted as 0 ms above)\n`);
  });
  process.stdout.write(`BENCH_RESULT ${JSON.stringify({ bench: "postbox-ready", results })}\n`);
  await dispatcher.close();
}

main().catch((e) => {
  process.stderr.write(`postbox-ready failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
