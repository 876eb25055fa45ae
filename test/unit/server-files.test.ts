// The secrets the server generates into DATA_DIR (admin-token, server-secret): a file
// left empty or cut short (a crash soon after the first start) counts as missing and is
// generated again, with a warning; a new file is written whole or not at all (temporary
// file, fsync, then linked or renamed into place, and the folder synced), mode 0600.
import * as realFs from "node:fs/promises";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it, jest } from "@jest/globals";

// Every call that writes or syncs, in order, with paths relative to the data directory.
const calls: string[] = [];
let root = "";
const rel = (p: unknown) => (path.relative(root, String(p)) || ".").replace(/\.\d+\.[0-9a-f]{8}\.tmp$/, ".TMP");
jest.unstable_mockModule("node:fs/promises", () => ({
  ...realFs,
  open: async (p: string, flags?: string, mode?: number) => {
    const fh = await realFs.open(p, flags, mode);
    calls.push(`open ${rel(p)} ${flags}`);
    const sync = fh.sync.bind(fh);
    fh.sync = async () => {
      calls.push(`sync ${rel(p)}`);
      return sync();
    };
    return fh;
  },
  link: async (a: string, b: string) => {
    calls.push(`link ${rel(a)} ${rel(b)}`);
    return realFs.link(a, b);
  },
  rename: async (a: string, b: string) => {
    calls.push(`rename ${rel(a)} ${rel(b)}`);
    return realFs.rename(a, b);
  },
}));
const { loadOrCreateSecret, MIN_SECRET_LENGTH } = await import("../../src/infra/server-files.js");

let dir: string;
let n = 0;
beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "postbox-server-files-"));
});
afterAll(async () => rm(root, { recursive: true, force: true }));
beforeEach(() => {
  dir = path.join(root, `data-${++n}`);
  calls.length = 0;
});

function logger() {
  const warnings: unknown[][] = [];
  return { warnings, log: { warn: (...args: unknown[]) => void warnings.push(args) } as never };
}

describe("loadOrCreateSecret", () => {
  it("generates a new secret whole into place: temporary file, fsync, link, folder fsync; mode 0600", async () => {
    const { log, warnings } = logger();
    const secret = await loadOrCreateSecret(dir, "admin-token", "pba", log);
    expect(secret).toMatch(/^pba_[A-Za-z0-9_-]{43}$/);
    const d = path.basename(dir);
    expect(calls).toEqual([`open ${d}/admin-token.TMP wx`, `sync ${d}/admin-token.TMP`, `link ${d}/admin-token.TMP ${d}/admin-token`, `open ${d} r`, `sync ${d}`]);
    expect(await readFile(path.join(dir, "admin-token"), "utf8")).toBe(secret + "\n");
    expect((await stat(path.join(dir, "admin-token"))).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(["admin-token"]); // no temporary file left
    expect(warnings).toEqual([]);
    // Read back on the next start, unchanged.
    expect(await loadOrCreateSecret(dir, "admin-token", "pba", log)).toBe(secret);
  });

  it.each([
    ["empty", ""],
    ["only a newline", "\n"],
    ["cut short", "pbk_abc"],
    ["one character short of the minimum", "x".repeat(MIN_SECRET_LENGTH - 1)],
  ])("treats a file that is %s as missing: a new secret replaces it, with a warning", async (_what, content) => {
    await realFs.mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, "server-secret"), content, { mode: 0o644 });
    const { log, warnings } = logger();
    const secret = await loadOrCreateSecret(dir, "server-secret", "pbk", log);
    expect(secret).toMatch(/^pbk_[A-Za-z0-9_-]{43}$/);
    expect(await readFile(path.join(dir, "server-secret"), "utf8")).toBe(secret + "\n");
    expect((await stat(path.join(dir, "server-secret"))).mode & 0o777).toBe(0o600);
    const d = path.basename(dir);
    expect(calls).toContain(`rename ${d}/server-secret.TMP ${d}/server-secret`);
    expect(calls.indexOf(`sync ${d}/server-secret.TMP`)).toBeLessThan(calls.indexOf(`rename ${d}/server-secret.TMP ${d}/server-secret`));
    expect(warnings).toHaveLength(1);
    expect(warnings[0][0]).toMatchObject({ file: path.join(dir, "server-secret"), length: content.trim().length });
    expect(String(warnings[0][1])).toMatch(/server-secret is empty or too short/);
    expect(await readdir(dir)).toEqual(["server-secret"]);
  });

  it("keeps a secret of the minimum length that an operator wrote", async () => {
    await realFs.mkdir(dir, { recursive: true });
    const mine = "y".repeat(MIN_SECRET_LENGTH);
    await writeFile(path.join(dir, "admin-token"), mine + "\n", { mode: 0o600 });
    const { log, warnings } = logger();
    expect(await loadOrCreateSecret(dir, "admin-token", "pba", log)).toBe(mine);
    expect(warnings).toEqual([]);
  });

  it("gives two starts at once the same secret", async () => {
    const [a, b] = await Promise.all([loadOrCreateSecret(dir, "server-secret", "pbk"), loadOrCreateSecret(dir, "server-secret", "pbk")]);
    expect(a).toBe(b);
    expect(await readFile(path.join(dir, "server-secret"), "utf8")).toBe(a + "\n");
    expect(await readdir(dir)).toEqual(["server-secret"]);
  });
});
