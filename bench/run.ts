// `npm run bench`: builds the server (compiled JavaScript keeps the decorator
// metadata type-graphql needs), then runs every benchmark in bench/ one after the
// other, each in its own process starting its own servers, and prints a summary
// of the figures each reported on its `BENCH_RESULT {json}` line.
//
//   npm run bench                     all benchmarks
//   npm run bench -- push             only bench/push.ts (names as in BENCHMARKS)
//
// Benchmarks share the machine with their servers: run them on an otherwise idle host.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";

const ROOT = path.resolve(import.meta.dirname, "..");

/** name → script. Each prints its own report and one `BENCH_RESULT <json>` line on stdout. */
const BENCHMARKS: Record<string, string> = {
  push: "bench/push.ts",
  "postbox-ready": "bench/postbox-ready.ts",
};

function runOne(script: string): Promise<{ code: number | null; result?: unknown }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", script], { cwd: ROOT, env: process.env, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    let partial = "";
    child.stdout.on("data", (d: Buffer) => {
      const s = d.toString();
      out += s;
      // Echo whole lines only, so the machine-readable line is never shown half-filtered.
      const lines = (partial + s).split("\n");
      partial = lines.pop() ?? "";
      for (const l of lines) if (!l.startsWith("BENCH_RESULT ")) process.stdout.write(l + "\n");
    });
    child.on("exit", (code) => {
      const line = out.split("\n").find((l) => l.startsWith("BENCH_RESULT "));
      resolve({ code, result: line ? JSON.parse(line.slice("BENCH_RESULT ".length)) : undefined });
    });
  });
}

async function main() {
  if (!existsSync(path.join(ROOT, "dist", "main.js"))) {
    process.stderr.write("dist/main.js is missing: `npm run bench` builds it first; with tsx directly, run `npm run build`.\n");
    process.exit(2);
  }
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((w) => !(w in BENCHMARKS));
  if (unknown.length) {
    process.stderr.write(`Unknown benchmark ${unknown.join(", ")}. Known: ${Object.keys(BENCHMARKS).join(", ")}.\n`);
    process.exit(2);
  }
  const names = wanted.length ? wanted : Object.keys(BENCHMARKS);
  const summary: Record<string, unknown> = {};
  let failed = 0;
  for (const name of names) {
    const script = BENCHMARKS[name];
    if (!existsSync(path.join(ROOT, script))) {
      process.stderr.write(`\n== ${name}: ${script} not found, skipped\n`);
      continue;
    }
    process.stderr.write(`\n== ${name} (${script})\n`);
    const { code, result } = await runOne(script);
    if (code !== 0) failed++;
    summary[name] = result ?? { failed: true, exitCode: code };
  }
  process.stdout.write(`\n== summary (JSON)\n${JSON.stringify(summary, null, 2)}\n`);
  process.exit(failed ? 1 : 0);
}

void main();
