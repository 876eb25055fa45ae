// Benchmark: pushData throughput against the same server's `{ __typename }`
// baseline, at 32 concurrent connections (autocannon), on the embedded database
// and on PostgreSQL in the same run; and the server's peak memory for a 10 MiB
// push (both ways in). Servers are the compiled server (`npm run build`, so
// decorator metadata is there), started as child processes.
//
//   npm run bench                      (builds, then runs every benchmark through bench/run.ts)
//   tsx bench/push.ts                  (after `npm run build`)
//   BENCH_DURATION=10 BENCH_ROUNDS=5 BENCH_KEY=X25519 BENCH_PROFILE=1 BENCH_DATABASES=embedded BENCH_MEMORY=0 tsx bench/push.ts
//
// BENCH_KEY: the user's keys to measure with, comma-separated: RSA (RSA-OAEP-256),
// X25519 (ECDH-ES+A256KW; what the postbox app generates) or P-256 (ECDH-ES+A256KW; the
// app's fallback in browsers without X25519). Default RSA,X25519,P-256.
// BENCH_PROFILE=1 starts the servers with --cpu-prof (profiles in bench/profiles/);
// BENCH_NODE_ARGS adds node flags to the servers' command line (say, "--trace-gc").
// EMBEDDED_DB_SYNC=false runs the servers without synced commits on the embedded database.
// Targets (issue 4): 1 KiB pushData ≥ 1/2 of the baseline on the embedded
// database, ≥ 1/3 on PostgreSQL; a 10 MiB push raises peak RSS by < 4× the payload.
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import autocannon from "autocannon";
import { CompactEncrypt, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from "jose";
import { Agent, request } from "undici";
import { PG_URL, ROOT, cpuBoundRate, cpuPerRequest, gql, reachable, registerAndSignIn, requireBuild, startServer, withScratchDatabase, type CpuPerRequest, type Server } from "./lib.js";

const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 3);
const CONNECTIONS = 32;
type KeyKind = "RSA" | "P-256" | "X25519";
const KEYS = (process.env.BENCH_KEY ?? "RSA,X25519,P-256").split(",") as KeyKind[];
for (const k of KEYS) if (!["RSA", "P-256", "X25519"].includes(k)) throw new Error(`BENCH_KEY: unknown key kind ${k} (RSA, P-256 or X25519)`);
const PROFILE = process.env.BENCH_PROFILE === "1";
// Extra flags for the servers' node (e.g. "--trace-gc"), space-separated.
const NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean);
const DATABASES = (process.env.BENCH_DATABASES ?? "embedded,postgres").split(",");
const MEMORY = process.env.BENCH_MEMORY !== "0";
const MiB = 1024 * 1024;

const dispatcher = new Agent({ connections: 4, keepAliveTimeout: 30_000, bodyTimeout: 120_000, headersTimeout: 120_000 });

async function start(label: string, env: Record<string, string>): Promise<Server> {
  const profileDir = path.join(ROOT, "bench", "profiles");
  if (PROFILE) await mkdir(profileDir, { recursive: true });
  const nodeArgs = [...NODE_ARGS, ...(PROFILE ? ["--cpu-prof", "--cpu-prof-dir", profileDir, "--cpu-prof-name", `push-${label}-${Date.now()}.cpuprofile`] : [])];
  return startServer({ label, env, nodeArgs, dispatcher, stopGraceMs: 15_000 });
}

interface Target {
  session: string;
  postboxId: string;
  jwk: JWK;
  kid: string;
  alg: string;
}

async function setUp(server: Server, KEY: KeyKind): Promise<Target> {
  const session = await registerAndSignIn(server);
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
  /** Where the CPU went (Linux only): the figures behind "where the time goes". */
  cpu: CpuPerRequest | null;
}

async function load(server: Server, body: string, token: string | undefined, duration: number): Promise<Load> {
  let r!: Awaited<ReturnType<typeof autocannon>>;
  const { cpu } = await cpuPerRequest(server.proc.pid!, async () => {
    r = await autocannon({
      url: `${server.url}/graphql`,
      method: "POST",
      connections: CONNECTIONS,
      duration,
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body,
      // A GraphQL error comes back with HTTP 200: count it as a failure too.
      verifyBody: (b: string) => !b.includes('"errors"'),
    });
    return r.requests.total;
  });
  return {
    rps: Math.round(r.requests.average),
    p50: r.latency.p50,
    p99: r.latency.p99,
    requests: r.requests.total,
    errors: r.errors + r.non2xx + r.timeouts + (r.mismatches ?? 0),
    cpu,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** The round with the median rate (its latencies belong to it). */
function medianLoad(loads: Load[]): Load {
  const s = [...loads].sort((a, b) => a.rps - b.rps);
  return s[Math.floor((s.length - 1) / 2)];
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
  key: KeyKind;
  baseline: Load;
  pushData: Load;
  pushEncrypted: Load;
  ratioData: number;
  ratioEncrypted: number;
  roundRatios: number[][];
  target: number;
  memory10MiB: Record<"data" | "encryptedData" | "file" | "encryptedFile", Awaited<ReturnType<typeof peakRssDuring>>>;
}

async function run(label: string, env: Record<string, string>, target: number, key: KeyKind, memory: boolean): Promise<DbResult> {
  const server = await start(label, env);
  try {
    const t = await setUp(server, key);
    const file = randomBytes(1024);
    const dataBody = JSON.stringify({ query: PUSH, variables: { input: { postboxId: t.postboxId, fileName: "bench.bin", fileDescriptor: DESCRIPTOR, data: file.toString("base64") } } });
    const jweBody = JSON.stringify({ query: PUSH, variables: { input: { postboxId: t.postboxId, fileName: "bench.bin", fileDescriptor: DESCRIPTOR, encryptedData: await encrypt(t, file) } } });
    const baselineBody = JSON.stringify({ query: "{ __typename }" });

    process.stderr.write(`[${label}, ${key} key] warm-up\n`);
    await load(server, baselineBody, undefined, WARMUP);
    await load(server, dataBody, t.session, WARMUP);
    // Rounds of baseline, data, encryptedData in turn, so that a slow spell of this
    // (shared, 2-core) machine hits all three alike; each ratio is the median over rounds
    // of the round's push rate over the same round's baseline.
    process.stderr.write(`[${label}] measuring ${ROUNDS} rounds of ${DURATION}s each at ${CONNECTIONS} connections\n`);
    const rounds: { baseline: Load; pushData: Load; pushEncrypted: Load }[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const baseline = await load(server, baselineBody, undefined, DURATION);
      const pushData = await load(server, dataBody, t.session, DURATION);
      const pushEncrypted = await load(server, jweBody, t.session, DURATION);
      rounds.push({ baseline, pushData, pushEncrypted });
    }
    const pick = (k: "baseline" | "pushData" | "pushEncrypted") => medianLoad(rounds.map((r) => r[k]));
    const ratio = (k: "pushData" | "pushEncrypted") => Math.round(median(rounds.map((r) => r[k].rps / r.baseline.rps)) * 100) / 100;
    const result = {
      database: label,
      key,
      baseline: pick("baseline"),
      pushData: pick("pushData"),
      pushEncrypted: pick("pushEncrypted"),
      ratioData: ratio("pushData"),
      ratioEncrypted: ratio("pushEncrypted"),
      roundRatios: rounds.map((r) => [r.pushData.rps / r.baseline.rps, r.pushEncrypted.rps / r.baseline.rps].map((x) => Math.round(x * 100) / 100)),
      target,
    };
    if (!memory) return { ...result, memory10MiB: { data: null, encryptedData: null, file: null, encryptedFile: null } };
    process.stderr.write(`[${label}] 10 MiB pushes\n`);
    const big = randomBytes(10 * MiB);
    const bigData = JSON.stringify({ query: PUSH, variables: { input: { postboxId: t.postboxId, fileName: "big.bin", fileDescriptor: DESCRIPTOR, data: big.toString("base64") } } });
    const bigJwe = JSON.stringify({ query: PUSH, variables: { input: { postboxId: t.postboxId, fileName: "big.bin", fileDescriptor: DESCRIPTOR, encryptedData: await encrypt(t, big) } } });
    const send = (body: string) => async () => {
      const res = await request(`${server.url}/graphql`, { method: "POST", dispatcher, headers: { "content-type": "application/json", authorization: `Bearer ${t.session}` }, body });
      const text = await res.body.text();
      if (res.statusCode !== 200 || text.includes('"errors"')) throw new Error(`10 MiB push failed: ${res.statusCode} ${text.slice(0, 300)}`);
    };
    // The same file as a multipart upload (GraphQL multipart request spec): raw bytes, streamed.
    const sendUpload = (field: "file" | "encryptedFile", bytes: Buffer) => async () => {
      const boundary = `----bench${randomBytes(8).toString("hex")}`;
      const operations = JSON.stringify({ query: PUSH, variables: { input: { postboxId: t.postboxId, fileName: "big.bin", fileDescriptor: DESCRIPTOR, [field]: null } } });
      const head = `--${boundary}\r\nContent-Disposition: form-data; name="operations"\r\n\r\n${operations}\r\n--${boundary}\r\nContent-Disposition: form-data; name="map"\r\n\r\n{"0":["variables.input.${field}"]}\r\n--${boundary}\r\nContent-Disposition: form-data; name="0"; filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`;
      const body = Buffer.concat([Buffer.from(head), bytes, Buffer.from(`\r\n--${boundary}--\r\n`)]);
      const res = await request(`${server.url}/graphql`, {
        method: "POST",
        dispatcher,
        headers: { "content-type": `multipart/form-data; boundary=${boundary}`, "apollo-require-preflight": "true", authorization: `Bearer ${t.session}` },
        body,
      });
      const text = await res.body.text();
      if (res.statusCode !== 200 || text.includes('"errors"')) throw new Error(`10 MiB upload failed: ${res.statusCode} ${text.slice(0, 300)}`);
    };
    const bigJweBytes = Buffer.from(await encrypt(t, big));
    // One unmeasured push of each first, so lazily initialised code and buffers are not counted.
    await send(bigData)();
    await send(bigJwe)();
    await sendUpload("file", big)();
    await sendUpload("encryptedFile", bigJweBytes)();
    const memory10MiB = {
      data: await peakRssDuring(server, send(bigData)),
      encryptedData: await peakRssDuring(server, send(bigJwe)),
      file: await peakRssDuring(server, sendUpload("file", big)),
      encryptedFile: await peakRssDuring(server, sendUpload("encryptedFile", bigJweBytes)),
    };
    return { ...result, memory10MiB };
  } finally {
    await server.stop();
  }
}

/**
 * The server's main thread, its two busiest other threads (on the embedded database the
 * database thread and, with EC keys, the encryption thread), the rest together (V8's
 * garbage-collection and compiler helpers), and the load generator.
 */
function cpuLine(c: CpuPerRequest): string {
  const [a = 0, b = 0, ...rest] = c.threads;
  const machine = c.machine ? `; whole machine ${c.machine}, its cores ${Math.round((c.busy ?? 0) * 100)}% busy` : "";
  return `(µs) main ${c.main}, next threads ${a} + ${b}, ${rest.length} others ${rest.reduce((x, y) => x + y, 0)}, load generator ${c.client}${machine}`;
}

/**
 * How far CPU alone lets a push go: the rate at which the machine's cores, all busy,
 * would serve pushes at the CPU each one cost (PostgreSQL's processes included), as a
 * ratio to the baseline. A ratio under the target here cannot be met by better
 * scheduling, only by less CPU per push.
 */
function ceilingLine(what: string, push: Load, baseline: Load): string | null {
  const rate = push.cpu && cpuBoundRate(push.cpu);
  if (!rate) return null;
  return `  CPU-bound ceiling, ${what.padEnd(13)} ${rate} req/s with every core busy = ${(rate / baseline.rps).toFixed(2)} of the baseline (reached ${(push.rps / rate).toFixed(2)} of it)\n`;
}

async function main() {
  requireBuild("bench");
  process.stderr.write(`push: ${ROUNDS} rounds of ${DURATION}s per measurement, ${CONNECTIONS} connections, user keys ${KEYS.join(", ")}\n`);
  // One server per database and key kind; the 10 MiB memory figures with the first key only.
  const results: DbResult[] = [];
  if (DATABASES.includes("embedded")) for (const [i, key] of KEYS.entries()) results.push(await run("embedded", {}, 1 / 2, key, MEMORY && i === 0));
  const pgUrl = new URL(PG_URL);
  if (!DATABASES.includes("postgres")) {
    // not asked for
  } else if (await reachable(pgUrl.hostname, Number(pgUrl.port || 5432))) {
    for (const [i, key] of KEYS.entries()) results.push(await withScratchDatabase((DATABASE_URL) => run("postgres", { DATABASE_URL }, 1 / 3, key, MEMORY && i === 0)));
  } else {
    process.stderr.write(`skipping PostgreSQL: ${pgUrl.host} is not reachable\n`);
  }

  const fmt = (l: Load) => `${String(l.rps).padStart(6)} req/s  p50 ${String(l.p50).padStart(4)} ms  p99 ${String(l.p99).padStart(4)} ms  (${l.requests} requests, ${l.errors} failed)`;
  for (const r of results) {
    const verdict = (x: number) => (x >= r.target ? "met" : "MISSED");
    process.stdout.write(`\npushData, 1 KiB file, ${CONNECTIONS} connections, ${r.database} database (user key ${r.key}):\n`);
    process.stdout.write(`  { __typename } baseline   ${fmt(r.baseline)}   (median round)\n`);
    process.stdout.write(`  pushData (data)           ${fmt(r.pushData)}\n`);
    process.stdout.write(`  pushData (encryptedData)  ${fmt(r.pushEncrypted)}\n`);
    process.stdout.write(`  ratio to baseline (median of ${r.roundRatios.length} rounds): data ${r.ratioData} (${verdict(r.ratioData)}), encryptedData ${r.ratioEncrypted} (${verdict(r.ratioEncrypted)}); target ≥ ${r.target.toFixed(2)}\n`);
    process.stdout.write(`  per round (data, encryptedData): ${r.roundRatios.map((x) => x.join(", ")).join(" | ")}\n`);
    for (const [what, l] of [["baseline", r.baseline], ["data", r.pushData], ["encryptedData", r.pushEncrypted]] as const) {
      if (l.cpu) process.stdout.write(`  CPU per request, ${what.padEnd(13)} ${cpuLine(l.cpu)}\n`);
    }
    for (const [what, l] of [["data", r.pushData], ["encryptedData", r.pushEncrypted]] as const) process.stdout.write(ceilingLine(what, l, r.baseline) ?? "");
    // The 10 MiB figures belong to the database, measured with the first key only.
    if (r.key === KEYS[0]) for (const [way, m] of Object.entries(r.memory10MiB)) {
      if (!m) {
        process.stdout.write(`  10 MiB push (${way}): peak RSS not measured (BENCH_MEMORY=0, or no Linux /proc)\n`);
        continue;
      }
      const x = Math.round((m.increaseMiB / 10) * 100) / 100;
      const how = way === "file" || way === "encryptedFile" ? `${way}, multipart upload` : `${way}, base64 in JSON`;
      process.stdout.write(`  10 MiB push (${how}): RSS ${m.baselineMiB} → peak ${m.peakMiB} MiB, +${m.increaseMiB} MiB = ${x}× the payload (target < 4×: ${x < 4 ? "met" : "MISSED"})\n`);
    }
  }
  process.stdout.write(`BENCH_RESULT ${JSON.stringify({ bench: "push", keys: KEYS, connections: CONNECTIONS, durationSeconds: DURATION, rounds: ROUNDS, results })}\n`);
  await dispatcher.close();
}

main().catch((e) => {
  process.stderr.write(`push benchmark failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
