// Benchmark: pushData throughput against the same server's `{ __typename }`
// baseline, at 32 concurrent connections (autocannon), on the embedded database
// and on PostgreSQL in the same run; and the server's peak memory for a 10 MiB
// push (both ways in). Servers are the compiled server (`npm run build`, so
// decorator metadata is there), started as child processes.
//
//   npm run bench                      (builds, then runs every benchmark through bench/run.ts)
//   tsx bench/push.ts                  (after `npm run build`)
//   BENCH_DURATION=10 BENCH_KEY=P-256 BENCH_PROFILE=1 BENCH_DATABASES=embedded BENCH_MEMORY=0 tsx bench/push.ts
//
// BENCH_KEY: the user's key, RSA (default: RSA-OAEP-256), P-256 or X25519 (ECDH-ES+A256KW).
// BENCH_PROFILE=1 starts the servers with --cpu-prof (profiles in bench/profiles/).
// Targets (issue 4): 1 KiB pushData ≥ 1/2 of the baseline on the embedded
// database, ≥ 1/3 on PostgreSQL; a 10 MiB push raises peak RSS by < 4× the payload.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import autocannon from "autocannon";
import { CompactEncrypt, SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from "jose";
import pg from "pg";
import { Agent, request } from "undici";

const DURATION = Number(process.env.BENCH_DURATION ?? 10);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 3);
const CONNECTIONS = 32;
const KEY = (process.env.BENCH_KEY ?? "RSA") as "RSA" | "P-256" | "X25519";
const PROFILE = process.env.BENCH_PROFILE === "1";
const DATABASES = (process.env.BENCH_DATABASES ?? "embedded,postgres").split(",");
const MEMORY = process.env.BENCH_MEMORY !== "0";
const PG_URL = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test";
const ROOT = path.resolve(import.meta.dirname, "..");
const MAIN = path.join(ROOT, "dist", "main.js");
const MiB = 1024 * 1024;

const dispatcher = new Agent({ connections: 4, keepAliveTimeout: 30_000, bodyTimeout: 120_000, headersTimeout: 120_000 });

interface Server {
  url: string;
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

async function startServer(label: string, env: Record<string, string>): Promise<Server> {
  const port = await freePort();
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "postbox-bench-"));
  const adminToken = randomBytes(24).toString("hex");
  const url = `http://127.0.0.1:${port}`;
  const profileDir = path.join(ROOT, "bench", "profiles");
  if (PROFILE) await mkdir(profileDir, { recursive: true });
  const args = [...(PROFILE ? ["--cpu-prof", "--cpu-prof-dir", profileDir, "--cpu-prof-name", `push-${label}-${Date.now()}.cpuprofile`] : []), MAIN];
  const proc = spawn(process.execPath, args, {
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
    if (exited) throw new Error(`server (${label}) exited during start`);
    if (Date.now() > deadline) throw new Error(`server (${label}) not ready after 60 s`);
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
    adminToken,
    proc,
    async stop() {
      if (!exited) {
        const done = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await Promise.race([done, new Promise((r) => setTimeout(r, 15_000))]);
        if (!exited) proc.kill("SIGKILL");
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

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

interface Target {
  session: string;
  postboxId: string;
  jwk: JWK;
  kid: string;
  alg: string;
}

async function setUp(server: Server): Promise<Target> {
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
  const { createSession } = await gql(server, `mutation($input: CreateSessionInput!) { createSession(input: $input) { key } }`, { input: { appId: app.appId, contractId: app.contractId, assertion } });
  const session = createSession.key as string;
  const { createPostbox } = await gql(server, `mutation { createPostbox(input: { expiresInSeconds: 86400 }) { id consentUrl } }`, {}, session);
  const alg = KEY === "RSA" ? "RSA-OAEP-256" : "ECDH-ES+A256KW";
  const user = await generateKeyPair(alg, { extractable: true, ...(KEY === "RSA" ? { modulusLength: 2048 } : { crv: KEY }) });
  const jwk = (await exportJWK(user.publicKey)) as JWK;
  await gql(server, `mutation($input: AcceptPostboxInput!) { acceptPostbox(input: $input) { status } }`, { input: { code: String(createPostbox.consentUrl).split("/").pop(), publicKey: jwk } });
  return { session, postboxId: createPostbox.id, jwk, kid: await calculateJwkThumbprint(jwk, "sha256"), alg };
}

const PUSH = `mutation($input: PushDataInput!) { pushData(input: $input) { id status size } }`;
const DESCRIPTOR = { mimeType: "application/octet-stream", accounts: [{ accountId: "bench" }], reference: [], tags: [] };

async function encrypt(target: Target, bytes: Uint8Array): Promise<string> {
  const key = await importJWK(target.jwk, target.alg);
  return new CompactEncrypt(bytes).setProtectedHeader({ alg: target.alg, enc: "A256GCM", kid: target.kid } as never).encrypt(key);
}

interface Load {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  errors: number;
}

async function load(server: Server, body: string, token: string | undefined, duration: number): Promise<Load> {
  const r = await autocannon({
    url: `${server.url}/graphql`,
    method: "POST",
    connections: CONNECTIONS,
    duration,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body,
    // A GraphQL error comes back with HTTP 200: count it as a failure too.
    verifyBody: (b: string) => !b.includes('"errors"'),
  });
  return {
    rps: Math.round(r.requests.average),
    p50: r.latency.p50,
    p99: r.latency.p99,
    requests: r.requests.total,
    errors: r.errors + r.non2xx + r.timeouts + (r.mismatches ?? 0),
  };
}

/** Peak RSS (VmHWM) of the server process, after resetting the mark; Linux only. */
async function peakRssDuring(server: Server, action: () => Promise<void>): Promise<{ baselineMiB: number; peakMiB: number; increaseMiB: number } | null> {
  const pid = server.proc.pid!;
  const status = async () => readFile(`/proc/${pid}/status`, "utf8");
  const kib = (text: string, field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
  try {
    await writeFile(`/proc/${pid}/clear_refs`, "5"); // resets VmHWM to the current RSS
  } catch {
    return null;
  }
  const baseline = kib(await status(), "VmRSS");
  await action();
  const peak = kib(await status(), "VmHWM");
  const mib = (k: number) => Math.round((k / 1024) * 10) / 10;
  return { baselineMiB: mib(baseline), peakMiB: mib(peak), increaseMiB: mib(peak - baseline) };
}

interface DbResult {
  database: string;
  baseline: Load;
  pushData: Load;
  pushEncrypted: Load;
  ratioData: number;
  ratioEncrypted: number;
  target: number;
  memory10MiB: { data: Awaited<ReturnType<typeof peakRssDuring>>; encryptedData: Awaited<ReturnType<typeof peakRssDuring>> };
}

async function run(label: string, env: Record<string, string>, target: number): Promise<DbResult> {
  const server = await startServer(label, env);
  try {
    const t = await setUp(server);
    const file = randomBytes(1024);
    const dataBody = JSON.stringify({ query: PUSH, variables: { input: { postboxId: t.postboxId, fileName: "bench.bin", fileDescriptor: DESCRIPTOR, data: file.toString("base64") } } });
    const jweBody = JSON.stringify({ query: PUSH, variables: { input: { postboxId: t.postboxId, fileName: "bench.bin", fileDescriptor: DESCRIPTOR, encryptedData: await encrypt(t, file) } } });
    const baselineBody = JSON.stringify({ query: "{ __typename }" });

    process.stderr.write(`[${label}] warm-up\n`);
    await load(server, baselineBody, undefined, WARMUP);
    await load(server, dataBody, t.session, WARMUP);
    process.stderr.write(`[${label}] measuring ${DURATION}s each at ${CONNECTIONS} connections\n`);
    const baseline = await load(server, baselineBody, undefined, DURATION);
    const pushData = await load(server, dataBody, t.session, DURATION);
    const pushEncrypted = await load(server, jweBody, t.session, DURATION);

    const ratio = (l: Load) => Math.round((l.rps / baseline.rps) * 100) / 100;
    const result = { database: label, baseline, pushData, pushEncrypted, ratioData: ratio(pushData), ratioEncrypted: ratio(pushEncrypted), target };
    if (!MEMORY) return { ...result, memory10MiB: { data: null, encryptedData: null } };
    process.stderr.write(`[${label}] 10 MiB pushes\n`);
    const big = randomBytes(10 * MiB);
    const bigData = JSON.stringify({ query: PUSH, variables: { input: { postboxId: t.postboxId, fileName: "big.bin", fileDescriptor: DESCRIPTOR, data: big.toString("base64") } } });
    const bigJwe = JSON.stringify({ query: PUSH, variables: { input: { postboxId: t.postboxId, fileName: "big.bin", fileDescriptor: DESCRIPTOR, encryptedData: await encrypt(t, big) } } });
    const send = (body: string) => async () => {
      const res = await request(`${server.url}/graphql`, { method: "POST", dispatcher, headers: { "content-type": "application/json", authorization: `Bearer ${t.session}` }, body });
      const text = await res.body.text();
      if (res.statusCode !== 200 || text.includes('"errors"')) throw new Error(`10 MiB push failed: ${res.statusCode} ${text.slice(0, 300)}`);
    };
    // One unmeasured push of each first, so lazily initialised code and buffers are not counted.
    await send(bigData)();
    await send(bigJwe)();
    const memory10MiB = { data: await peakRssDuring(server, send(bigData)), encryptedData: await peakRssDuring(server, send(bigJwe)) };
    return { ...result, memory10MiB };
  } finally {
    await server.stop();
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
    process.stderr.write(`${MAIN} is missing: run \`npm run build\` first (or \`npm run bench\`).\n`);
    process.exit(2);
  }
  process.stderr.write(`push: ${DURATION}s per measurement, ${CONNECTIONS} connections, user key ${KEY}\n`);
  const results: DbResult[] = DATABASES.includes("embedded") ? [await run("embedded", {}, 1 / 2)] : [];
  const pgUrl = new URL(PG_URL);
  if (!DATABASES.includes("postgres")) {
    // not asked for
  } else if (await reachable(pgUrl.hostname, Number(pgUrl.port || 5432))) {
    const name = `pbbench_${randomBytes(5).toString("hex")}`;
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const u = new URL(PG_URL);
    u.pathname = `/${name}`;
    try {
      results.push(await run("postgres", { DATABASE_URL: u.toString() }, 1 / 3));
    } finally {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    }
  } else {
    process.stderr.write(`skipping PostgreSQL: ${pgUrl.host} is not reachable\n`);
  }

  const fmt = (l: Load) => `${String(l.rps).padStart(6)} req/s  p50 ${String(l.p50).padStart(4)} ms  p99 ${String(l.p99).padStart(4)} ms  (${l.requests} requests, ${l.errors} failed)`;
  for (const r of results) {
    const verdict = (x: number) => (x >= r.target ? "met" : "MISSED");
    process.stdout.write(`\npushData, 1 KiB file, ${CONNECTIONS} connections, ${r.database} database (user key ${KEY}):\n`);
    process.stdout.write(`  { __typename } baseline   ${fmt(r.baseline)}\n`);
    process.stdout.write(`  pushData (data)           ${fmt(r.pushData)}\n`);
    process.stdout.write(`  pushData (encryptedData)  ${fmt(r.pushEncrypted)}\n`);
    process.stdout.write(`  ratio to baseline: data ${r.ratioData} (${verdict(r.ratioData)}), encryptedData ${r.ratioEncrypted} (${verdict(r.ratioEncrypted)}); target ≥ ${r.target.toFixed(2)}\n`);
    for (const [way, m] of Object.entries(r.memory10MiB)) {
      if (!m) {
        process.stdout.write(`  10 MiB push (${way}): peak RSS not measured (BENCH_MEMORY=0, or no Linux /proc)\n`);
        continue;
      }
      const x = Math.round((m.increaseMiB / 10) * 100) / 100;
      process.stdout.write(`  10 MiB push (${way}): RSS ${m.baselineMiB} → peak ${m.peakMiB} MiB, +${m.increaseMiB} MiB = ${x}× the payload (target < 4×: ${x < 4 ? "met" : "MISSED"})\n`);
    }
  }
  process.stdout.write(`BENCH_RESULT ${JSON.stringify({ bench: "push", key: KEY, connections: CONNECTIONS, durationSeconds: DURATION, results })}\n`);
  await dispatcher.close();
}

main().catch((e) => {
  process.stderr.write(`push benchmark failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
