// The CLI toolkit in-process (no server): argument parsing, usage errors, help,
// and the admin client's handling of an unreachable server. The integration test
// (test/integration/cli.test.ts) runs the real process against a real server.
import { mkdtemp, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { Backoff, formatSeconds, runCli, table, type GroupLoader } from "../../src/cli/lib.js";

const registry: Record<string, GroupLoader> = {
  app: () => import("../../src/cli/commands/app.js"),
  contract: () => import("../../src/cli/commands/contract.js"),
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "postbox-cli-unit-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

async function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  let stdout = "";
  let stderr = "";
  // Port 9 (discard) on loopback refuses connections: nothing here may reach a server.
  const code = await runCli(args, registry, {
    stdout: (s) => void (stdout += s),
    stderr: (s) => void (stderr += s),
    env: { POSTBOX_URL: "http://127.0.0.1:9", ADMIN_TOKEN: "t".repeat(40), ...env },
  });
  return { code, stdout, stderr };
}

describe("usage errors (exit status 2, nothing on stdout, no request sent)", () => {
  it.each([
    [["app", "create", "--generate-key", "k.pem"], /--name is required/],
    [["app", "create", "--name", "X"], /A key is required: --public-key <file> .* or --generate-key <out-file>/],
    [["app", "create", "--name", "X", "--public-key", "a", "--generate-key", "b"], /either --public-key <file> or --generate-key <out-file>, not both/],
    [["app", "create", "--name", "", "--generate-key", "k.pem"], /--name must not be empty/],
    [["app", "create", "--name", "X", "--generate-key", "k.pem", "--alg", "RS256"], /--alg must be one of PS512, PS256, ES256, EdDSA \(got "RS256"\)/],
    [["app", "create", "--name", "X", "--generate-key", "k.pem", "--kind", "BOTH"], /--kind must be WRITE or READ/],
    [["app", "create", "--name", "X", "--generate-key", "k.pem", "--mode", "SOMETIMES"], /--mode must be ONE_OFF or ONGOING/],
    [["app", "create", "--name", "X", "--generate-key", "k.pem", "--ttl", "soon"], /--ttl must be a duration such as 7d/],
    [["app", "create", "--name", "X", "--public-key", "/no/such/file.pem"], /Cannot read the public key file \/no\/such\/file.pem: it does not exist/],
    [["app", "create", "--name", "X", "--frobnicate"], /Unknown option '--frobnicate'/],
    [["app", "create", "--name"], /--name <value>' argument missing/],
    [["app", "list", "extra"], /Unexpected argument "extra"/],
    [["app", "show"], /Missing <appId>/],
    [["app", "rotate-key", "ctr_x"], /A key is required/],
    [["app", "nonsense"], /Unknown command "app nonsense"\. Commands: create, list, show, disable, enable, rotate-key/],
    [["nonsense"], /Unknown command group "nonsense"\. Groups: app, contract/],
    [["contract", "add", "app_x", "--generate-key", "k.pem"], /--kind is required/],
    [["contract", "update", "ctr_x"], /Nothing to change/],
    [["contract", "update", "ctr_x", "--callback-url", "https://a.example", "--clear-callback-urls"], /not both/],
  ])("%j", async (args, message) => {
    const r = await cli(args);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(/^error: /);
    expect(r.stdout).toBe("");
    expect(r.code).toBe(2);
    expect(existsSync("k.pem")).toBe(false);
  });

  it("refuses a JWK file holding a private key", async () => {
    const { writeFile } = await import("node:fs/promises");
    const file = path.join(dir, "private.jwk");
    await writeFile(file, JSON.stringify({ kty: "EC", crv: "P-256", x: "a", y: "b", d: "secret" }));
    const r = await cli(["app", "create", "--name", "X", "--public-key", file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/holds private or secret key material/);
  });
});

describe("help", () => {
  it("lists the groups and the environment, and exits 2 when no group is given", async () => {
    const none = await cli([]);
    expect(none.code).toBe(2);
    expect(none.stdout).toMatch(/^Usage: npm run cli -- <group> <command> \[options\]/);
    const help = await cli(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^\s+app\s+Register and manage applications/m);
    expect(help.stdout).toMatch(/^\s+contract\s+/m);
    expect(help.stdout).toMatch(/POSTBOX_URL\s+The server's address \(default http:\/\/localhost:4000\)/);
    expect(help.stdout).toMatch(/ADMIN_TOKEN/);
  });

  it("lists a group's commands with their usage", async () => {
    const r = await cli(["contract", "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("npm run cli -- contract add <appId> --kind WRITE|READ (--public-key <file> | --generate-key <out-file>)");
    expect(r.stdout).toContain("npm run cli -- contract update <contractId> [--mode ONE_OFF|ONGOING] [--ttl <duration>] [--callback-url <url>]... [--clear-callback-urls] [--json]");
  });

  it("describes every option of a command", async () => {
    const r = await cli(["app", "rotate-key", "-h"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Usage: npm run cli -- app rotate-key <contractId> (--public-key <file> | --generate-key <out-file>)");
    for (const o of ["--public-key <file>", "--generate-key <out-file>", "--alg <alg>", "--json", "-h, --help"]) expect(r.stdout).toContain(o);
  });
});

describe("reaching the server", () => {
  it("says the server is not running, naming the address", async () => {
    const r = await cli(["app", "list"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: Cannot reach the Postbox server \(ECONNREFUSED\): is the server running at http:\/\/127\.0\.0\.1:9\?/);
  });

  it("asks for an admin token before any request when there is none", async () => {
    const r = await cli(["app", "list"], { ADMIN_TOKEN: undefined, DATA_DIR: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`No admin token: ADMIN_TOKEN is not set and ${path.join(dir, "admin-token")} does not exist`);
  });
});

describe("reconnection backoff (user watch)", () => {
  it("doubles from 1 s, stays at the 30 s cap, and starts over after a reset", () => {
    const b = new Backoff();
    expect(Array.from({ length: 8 }, () => b.next())).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
    b.reset();
    expect([b.next(), b.next()]).toEqual([1000, 2000]);
  });
});

describe("formatting", () => {
  it("formats lifetimes in the largest whole unit", () => {
    expect(formatSeconds(604_800)).toBe("7d");
    expect(formatSeconds(7200)).toBe("2h");
    expect(formatSeconds(5400)).toBe("90m");
    expect(formatSeconds(61)).toBe("61s");
  });

  it("aligns table columns", () => {
    expect(table(["A", "BB"], [["xxx", "y"], ["z", "w"]])).toBe("A    BB\nxxx  y\nz    w");
    expect(table(["A"], [])).toBe("");
  });
});
