// The install step (scripts/postinstall.mjs) builds only where the development
// dependencies are: an `npm ci --omit=dev` beside a dist/ built elsewhere must succeed.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "@jest/globals";

const SCRIPT = fileURLToPath(new URL("../../scripts/postinstall.mjs", import.meta.url));
let dirs: string[] = [];
afterEach(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs = [];
});

/** A project holding the script, the given (empty) packages, and build scripts that fail. */
function project(packages: string[]): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "postbox-postinstall-"));
  dirs.push(dir);
  mkdirSync(path.join(dir, "scripts"));
  copyFileSync(SCRIPT, path.join(dir, "scripts", "postinstall.mjs"));
  for (const name of packages) {
    mkdirSync(path.join(dir, "node_modules", name), { recursive: true });
    writeFileSync(path.join(dir, "node_modules", name, "package.json"), JSON.stringify({ name, version: "0.0.0" }));
  }
  writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "x", type: "module", scripts: { generate: "exit 1", "build:web": "exit 1" } }));
  return dir;
}

const run = (dir: string) => execFileSync(process.execPath, [path.join(dir, "scripts", "postinstall.mjs")], { cwd: dir, encoding: "utf8", stdio: "pipe" });

describe("postinstall", () => {
  it("skips the Prisma client and web app builds, and succeeds, when their tools are not installed", () => {
    // A production install: the prisma CLI (a peer of @prisma/client) is there, esbuild is not.
    expect(run(project(["prisma"]))).toMatch(/development dependencies not installed; the Prisma client and the web app are not built/);
  });

  it("builds both when they are (the scripts run, and their failure is the install's)", () => {
    expect(() => run(project(["prisma", "esbuild"]))).toThrow(/npm run generate/);
  });
});
