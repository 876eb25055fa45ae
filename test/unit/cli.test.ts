// The CLI toolkit in-process (no server): argument parsing, usage errors, help,
// and the admin client's handling of an unreachable server. The integration test
// (test/integration/cli.test.ts) runs the real process against a real server.
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { existsSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { calculateJwkThumbprint, importPKCS8, exportJWK } from "jose";
import { Backoff, formatSeconds, runCli, table, type GroupLoader } from "../../src/cli/lib.js";

const registry: Record<string, GroupLoader> = {
  app: () => import("../../src/cli/commands/app.js"),
  contract: () => import("../../src/cli/commands/contract.js"),
  user: () => import("../../src/cli/commands/user.js"),
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
    [["nonsense"], /Unknown command group "nonsense"\. Groups: app, contract, user/],
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

/**
 * A stand-in for the server: it reads each request whole, then answers as `answer`
 * says, or with "drop" destroys the socket instead (the request arrived, perhaps was
 * carried out, and the answer is lost).
 */
type Answer = "drop" | { status: number; body: unknown };
async function standIn(answer: (body: any) => Answer) {
  const bodies: any[] = [];
  const server = http.createServer(async (req, res) => {
    let text = "";
    for await (const c of req) text += c;
    const body = text ? JSON.parse(text) : undefined;
    bodies.push(body);
    const a = answer(body);
    if (a === "drop") return void req.socket.destroy();
    res.writeHead(a.status, { "content-type": typeof a.body === "string" ? "text/html" : "application/json" });
    res.end(typeof a.body === "string" ? a.body : JSON.stringify(a.body));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bodies,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

const refused = { status: 400, body: { error: { code: "BAD_USER_INPUT", message: "That key is refused.", field: "publicKey" } } };
const internal = { status: 500, body: { error: { code: "INTERNAL_SERVER_ERROR", message: "Internal server error" } } };
const badGateway = { status: 502, body: "<html>Bad Gateway</html>" };

describe("a generated private key file when the server's answer is lost or refused", () => {
  it.each([
    ["app create", ["app", "create", "--name", "X"], /app list --json/],
    ["app rotate-key", ["app", "rotate-key", "ctr_x"], /app show <appId>` for the application of contract ctr_x/],
    ["contract add", ["contract", "add", "app_x", "--kind", "WRITE"], /app show app_x/],
  ])("%s keeps the file when the answer is lost, says where it is and how to check", async (_name, args, check) => {
    for (const answer of ["drop", internal, badGateway] as Answer[]) {
      const server = await standIn(() => answer);
      try {
        const file = path.join(dir, `lost-${args[1]}-${server.bodies.length}-${Date.now()}.pem`);
        const r = await cli([...args, "--generate-key", file, "--alg", "ES256"], { POSTBOX_URL: server.url });
        expect(server.bodies).toHaveLength(1);
        expect(r.code).toBe(1);
        expect(r.stdout).toBe("");
        expect(existsSync(file)).toBe(true);
        expect((await stat(file)).mode & 0o777).toBe(0o600);
        // The error names the file and the key id the server would list.
        const kid = await calculateJwkThumbprint(await exportJWK(await importPKCS8(await readFile(file, "utf8"), "ES256", { extractable: true })), "sha256");
        expect(await calculateJwkThumbprint(server.bodies[0].publicKey, "sha256")).toBe(kid);
        expect(r.stderr).toContain(`Its private key stays in ${file}`);
        expect(r.stderr).toContain(`key ${kid}`);
        expect(r.stderr).toMatch(check);
      } finally {
        await server.close();
      }
    }
  });

  it("removes the file when the server refuses the request, or cannot be reached at all", async () => {
    const server = await standIn(() => refused);
    try {
      const file = path.join(dir, "refused.pem");
      const r = await cli(["app", "rotate-key", "ctr_x", "--generate-key", file, "--alg", "ES256"], { POSTBOX_URL: server.url });
      expect(r.code).toBe(1);
      expect(r.stderr).toBe("error: That key is refused. [BAD_USER_INPUT, field publicKey]\n");
      expect(existsSync(file)).toBe(false);
    } finally {
      await server.close();
    }
    // Port 9 refuses the connection: the request never left.
    const file = path.join(dir, "unreachable.pem");
    const r = await cli(["app", "create", "--name", "X", "--generate-key", file, "--alg", "ES256"]);
    expect(r.stderr).toMatch(/Cannot reach the Postbox server \(ECONNREFUSED\)/);
    expect(existsSync(file)).toBe(false);
  });
});

describe("user accept when the server's answer is lost or refused", () => {
  const consent = { postboxId: "pbx_1", applicationName: "Acme", contractId: "ctr_1", postboxMode: "ONE_OFF", reference: null, status: "PENDING", canRespond: true, consentExpiresAt: "2030-01-01T00:00:00Z", expiresAt: "2030-01-08T00:00:00Z", hasCallback: false };
  const gqlError = (code: string) => ({ status: 200, body: { errors: [{ message: `refused: ${code}`, extensions: { code } }], data: null } });

  async function accept(onAccept: Answer) {
    const server = await standIn((body) => (/acceptPostbox/.test(body.query) ? onAccept : { status: 200, body: { data: { consentRequest: consent } } }));
    try {
      const file = path.join(dir, `accept-${Date.now()}-${Math.random()}.json`);
      const r = await cli(["user", "accept", `${server.url}/consent/abc123`, "--key-out", file, "--json"]);
      return { r, file, sent: server.bodies.find((b) => /acceptPostbox/.test(b.query))?.variables.input.publicKey };
    } finally {
      await server.close();
    }
  }

  it.each([
    ["the connection drops after the request", "drop" as Answer],
    ["an internal error", gqlError("INTERNAL_SERVER_ERROR")],
    ["a 502 from a proxy", badGateway],
  ])("keeps the private key in the file on %s, and says how to check", async (_name, answer) => {
    const { r, file, sent } = await accept(answer);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(sent).toBeDefined();
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const kept = JSON.parse(await readFile(file, "utf8"));
    expect(kept).toMatchObject({ postboxId: "pbx_1", status: "UNCONFIRMED", graphqlUrl: expect.stringMatching(/\/graphql$/) });
    expect(kept.credential).toBeUndefined();
    // The private half of the public key that was sent.
    expect(kept.privateKey.d).toEqual(expect.any(String));
    expect(kept.privateKey.kid).toBe(await calculateJwkThumbprint(sent, "sha256"));
    expect(r.stderr).toContain(`The private key stays in ${file}`);
    expect(r.stderr).toMatch(/user show http:\/\/127\.0\.0\.1:\d+\/consent\/abc123`: if the postbox is READY/);
    expect(r.stderr).toContain(`user files --key-file ${file}`);
  });

  it("removes the file when the server refuses the acceptance", async () => {
    const { r, file, sent } = await accept(gqlError("BAD_USER_INPUT"));
    expect(sent).toBeDefined();
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: refused: BAD_USER_INPUT \[BAD_USER_INPUT\]$/m);
    expect(existsSync(file)).toBe(false);
  });
});
