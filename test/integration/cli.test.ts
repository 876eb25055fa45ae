// The operator CLI as operators and scripts run it: a child process talking to a
// started test server's admin API. Also `npm run db:migrate` next to a running server.
import { execFile } from "node:child_process";
import { createServer } from "node:net";
import { generateKeyPairSync } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { calculateJwkThumbprint, exportJWK, importPKCS8 } from "jose";
import { operation } from "../documents/index.js";
import type { CreateSessionMutation, CurrentSessionQuery } from "../generated/graphql.js";
import { signAssertion, type Alg } from "../helpers/factories.js";
import { request } from "undici";
import { answerDropper } from "../helpers/relay.js";
import { errorCode, startTestServer, type TestServer } from "../helpers/server.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

let t: TestServer;
let dir: string;

beforeAll(async () => {
  t = await startTestServer();
  dir = await mkdtemp(path.join(os.tmpdir(), "postbox-cli-"));
});
afterAll(async () => {
  await t?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a TypeScript entry point the way `npm run` does (tsx), with a clean environment. */
function run(script: string, args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  const base = { PATH: process.env.PATH, HOME: process.env.HOME, POSTBOX_URL: t.url, ADMIN_TOKEN: t.adminToken };
  const merged = Object.fromEntries(Object.entries({ ...base, ...env }).filter(([, v]) => v !== undefined)) as NodeJS.ProcessEnv;
  return new Promise((resolve) => {
    execFile(process.execPath, ["--import", "tsx", script, ...args], { cwd: root, env: merged, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}
const cli = (args: string[], env?: Record<string, string | undefined>) => run("src/cli/main.ts", args, env);

function json<T = any>(r: Run): T {
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as T;
}

async function session(appId: string, contractId: string, alg: Alg, privateKeyPem: string) {
  const privateKey = await importPKCS8(privateKeyPem, alg);
  const assertion = await signAssertion({ appId, contractId, alg, privateKey });
  return t.gql<CreateSessionMutation>(operation("CreateSession"), { input: { appId, contractId, assertion } });
}

/** The error code a session key gets from currentSession, or "OK" when it still works. */
async function sessionState(key: string): Promise<string> {
  const r = await t.gql<CurrentSessionQuery>(operation("CurrentSession"), {}, { token: key });
  return r.data?.currentSession ? "OK" : (errorCode(r) ?? "no error code");
}

async function appCount(): Promise<number> {
  return (await t.admin("GET", "/applications")).body.length;
}

describe("app create", () => {
  it("registers a PEM public key and prints one JSON object with --json", async () => {
    const pair = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const file = path.join(dir, "rsa-public.pem");
    await writeFile(file, pair.publicKey.export({ type: "spki", format: "pem" }));
    const out = json(await cli(["app", "create", "--name", "Acme Energy", "--public-key", file, "--json"]));
    expect(out).toEqual({ appId: expect.stringMatching(/^app_/), contractId: expect.stringMatching(/^ctr_/), name: "Acme Energy", kind: "WRITE", keyId: expect.any(String), alg: "PS512" });

    const shown = await t.admin("GET", `/applications/${out.appId}`);
    expect(shown.body.contracts[0].keys[0].keyId).toBe(out.keyId);
    const pem = pair.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    expect((await session(out.appId, out.contractId, "PS512", pem)).data?.createSession.key).toMatch(/^pbs_/);
  });

  it("prints only that JSON object through `npm run cli -- … --json`, as scripts run it", async () => {
    const pair = generateKeyPairSync("ed25519");
    const file = path.join(dir, "npm-public.pem");
    await writeFile(file, pair.publicKey.export({ type: "spki", format: "pem" }));
    const r = await new Promise<Run>((resolve) => {
      const env = { PATH: process.env.PATH, HOME: process.env.HOME, POSTBOX_URL: t.url, ADMIN_TOKEN: t.adminToken };
      execFile("npm", ["run", "cli", "--", "app", "create", "--name", "Via npm", "--public-key", file, "--json"], { cwd: root, env, timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
    const out = json(r);
    expect(out).toMatchObject({ appId: expect.stringMatching(/^app_/), contractId: expect.stringMatching(/^ctr_/), alg: "EdDSA" });
  });

  it("registers a JWK file with the algorithm and contract settings given", async () => {
    const pair = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    const file = path.join(dir, "ec-public.jwk");
    await writeFile(file, JSON.stringify(pair.publicKey.export({ format: "jwk" })));
    const out = json(
      await cli(["app", "create", "--name", "Reader", "--public-key", file, "--alg", "ES256", "--kind", "READ", "--mode", "ONGOING", "--ttl", "30d", "--callback-url", "http://localhost:3000/done", "--json"]),
    );
    expect(out).toMatchObject({ kind: "READ", alg: "ES256" });
    const c = (await t.admin("GET", `/applications/${out.appId}`)).body.contracts[0];
    expect(c).toMatchObject({ kind: "READ", postboxMode: "ONGOING", postboxTtlSeconds: 30 * 86_400, callbackUrls: ["http://localhost:3000/done"] });
  });

  it("generates a key pair, writes the private key (0600) and sends only the public key", async () => {
    const file = path.join(dir, "generated.pem");
    const out = json(await cli(["app", "create", "--name", "Generated", "--generate-key", file, "--json"]));
    expect(out).toMatchObject({ appId: expect.stringMatching(/^app_/), contractId: expect.stringMatching(/^ctr_/), alg: "PS512", privateKeyFile: file });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const pem = await readFile(file, "utf8");
    expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----/);

    const stored = JSON.stringify(await t.app.db.prisma.contractKey.findMany({ where: { contractId: out.contractId } }));
    expect(stored).not.toMatch(/"d":/);
    expect(stored).toContain(out.keyId);

    const s = await session(out.appId, out.contractId, "PS512", pem);
    expect(s.errors).toBeUndefined();
    const me = await t.gql<CurrentSessionQuery>(operation("CurrentSession"), {}, { token: s.data!.createSession.key });
    expect(me.data?.currentSession).toMatchObject({ appId: out.appId, contractId: out.contractId, contractKind: "WRITE" });
  });

  it.each(["ES256", "EdDSA"] as const)("generates a %s key pair that signs working sessions", async (alg) => {
    const file = path.join(dir, `generated-${alg}.pem`);
    const out = json(await cli(["app", "create", "--name", `Gen ${alg}`, "--generate-key", file, "--alg", alg, "--json"]));
    expect(out.alg).toBe(alg);
    expect((await session(out.appId, out.contractId, alg, await readFile(file, "utf8"))).data?.createSession.key).toMatch(/^pbs_/);
  });

  it("works with the README's example signer (examples/sign-assertion.mjs)", async () => {
    const file = path.join(dir, "readme.pem");
    const out = json(await cli(["app", "create", "--name", "Readme", "--generate-key", file, "--json"]));
    const assertion = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ["examples/sign-assertion.mjs", file, out.appId, out.contractId], { cwd: root }, (err, stdout) => (err ? reject(err) : resolve(stdout.trim()))),
    );
    const r = await t.gql<CreateSessionMutation>(operation("CreateSession"), { input: { appId: out.appId, contractId: out.contractId, assertion } });
    expect(r.data?.createSession.appId).toBe(out.appId);
  });

  it("prints a human summary without --json", async () => {
    const file = path.join(dir, "human.pem");
    const r = await cli(["app", "create", "--name", "Human", "--generate-key", file]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/appId\s+app_/);
    expect(r.stdout).toMatch(/contractId\s+ctr_/);
    expect(r.stdout).toContain(`Private key written to ${file} (mode 0600)`);
  });
});

describe("app create refusals (nothing registered)", () => {
  it("refuses to overwrite an existing key file", async () => {
    const file = path.join(dir, "existing.pem");
    await writeFile(file, "keep me");
    const before = await appCount();
    const r = await cli(["app", "create", "--name", "X", "--generate-key", file, "--json"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/already exists; refusing to overwrite/);
    expect(await readFile(file, "utf8")).toBe("keep me");
    expect(await appCount()).toBe(before);
  });

  it("refuses a private key given as --public-key without sending it", async () => {
    const pair = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const file = path.join(dir, "oops-private.pem");
    await writeFile(file, pair.privateKey.export({ type: "pkcs8", format: "pem" }));
    const before = await appCount();
    const r = await cli(["app", "create", "--name", "X", "--public-key", file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/holds a private key/);
    expect(await appCount()).toBe(before);
  });

  it("reports the server's refusal with its code, and removes the generated key file", async () => {
    const file = path.join(dir, "refused.pem");
    const before = await appCount();
    const r = await cli(["app", "create", "--name", "X", "--generate-key", file, "--alg", "EdDSA", "--kind", "READ", "--json"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/READ contract's key .* not Ed25519.*\[BAD_USER_INPUT, field publicKey\]/);
    expect(existsSync(file)).toBe(false);
    expect(await appCount()).toBe(before);
  });

  it("reports a weak key refused by the server", async () => {
    const file = path.join(dir, "weak.pem");
    await writeFile(file, generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ type: "spki", format: "pem" }));
    const r = await cli(["app", "create", "--name", "X", "--public-key", file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/at least 2048 bits/);
  });

  // The full table of usage errors is in test/unit/cli.test.ts (in-process); these
  // check that they reach a real process's stderr and exit status.
  it.each([
    [["app", "create", "--name", "X"], /A key is required/],
    [["app", "create", "--name", "X", "--frobnicate"], /Unknown option '--frobnicate'/],
    [["nonsense"], /Unknown command group "nonsense"/],
  ])("refuses bad usage %j with exit status 2", async (args, message) => {
    const r = await cli(args);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(message);
  });
});

describe("managing applications", () => {
  let app: { appId: string; contractId: string };
  let keyFile: string;

  beforeAll(async () => {
    keyFile = path.join(dir, "managed.pem");
    app = json(await cli(["app", "create", "--name", "Managed", "--generate-key", keyFile, "--json"]));
  });

  it("lists applications", async () => {
    const list = json<{ appId: string; name: string; contracts: { contractId: string }[] }[]>(await cli(["app", "list", "--json"]));
    const mine = list.find((a) => a.appId === app.appId);
    expect(mine).toMatchObject({ name: "Managed", contracts: [{ contractId: app.contractId }] });
    const human = await cli(["app", "list"]);
    expect(human.stdout).toMatch(new RegExp(`${app.appId}\\s+enabled\\s+${app.contractId} \\(WRITE\\)\\s+Managed`));
  });

  it("shows one application with its contracts and keys", async () => {
    const shown = json(await cli(["app", "show", app.appId, "--json"]));
    expect(shown).toMatchObject({ appId: app.appId, disabledAt: null, contracts: [{ contractId: app.contractId, kind: "WRITE", keys: [{ alg: "PS512", revokedAt: null }] }] });
    const r = await cli(["app", "show", "app_doesnotexist"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Application app_doesnotexist was not found\. \[NOT_FOUND\]/);
  });

  it("disables and enables an application; sessions from before stay ended", async () => {
    const pem = await readFile(keyFile, "utf8");
    const before = (await session(app.appId, app.contractId, "PS512", pem)).data!.createSession.key;
    expect(await sessionState(before)).toBe("OK");
    const disabled = json(await cli(["app", "disable", app.appId, "--json"]));
    expect(disabled.disabledAt).toEqual(expect.any(String));
    expect(errorCode(await session(app.appId, app.contractId, "PS512", pem))).toBe("FORBIDDEN");
    expect(await sessionState(before)).not.toBe("OK");
    const enabled = json(await cli(["app", "enable", app.appId, "--json"]));
    expect(enabled.disabledAt).toBeNull();
    // Disabling ended it: enabling the application does not bring it back.
    expect(await sessionState(before)).toBe("UNAUTHENTICATED");
    const after = (await session(app.appId, app.contractId, "PS512", pem)).data?.createSession.key;
    expect(after).toMatch(/^pbs_/);
    expect(await sessionState(after!)).toBe("OK");
  });

  it("rotates a contract's key: only the new key signs sessions afterwards, and the old key's sessions end", async () => {
    const oldPem = await readFile(keyFile, "utf8");
    const signedWithOld = (await session(app.appId, app.contractId, "PS512", oldPem)).data!.createSession.key;
    expect(await sessionState(signedWithOld)).toBe("OK");
    const next = path.join(dir, "rotated.pem");
    const out = json(await cli(["app", "rotate-key", app.contractId, "--generate-key", next, "--alg", "ES256", "--json"]));
    expect(out).toMatchObject({ contractId: app.contractId, alg: "ES256", privateKeyFile: next });
    expect(out.sessionsEnded).toBeGreaterThanOrEqual(1);
    expect(await sessionState(signedWithOld)).toBe("UNAUTHENTICATED");
    expect(errorCode(await session(app.appId, app.contractId, "PS512", oldPem))).toBe("UNAUTHENTICATED");
    expect((await session(app.appId, app.contractId, "ES256", await readFile(next, "utf8"))).data?.createSession.key).toMatch(/^pbs_/);
    const keys = json(await cli(["app", "show", app.appId, "--json"])).contracts[0].keys;
    expect(keys.filter((k: { revokedAt: string | null }) => k.revokedAt === null)).toHaveLength(1);
  });

  it("keeps a generated key file when the answer to a rotation is lost: the server did rotate, and the file is the only copy of the new key", async () => {
    const proxy = await answerDropper(Number(new URL(t.url).port), (req) => req.method === "POST" && /\/keys$/.test(req.url ?? ""));
    try {
      const next = path.join(dir, "rotated-lost.pem");
      const r = await cli(["app", "rotate-key", app.contractId, "--generate-key", next, "--alg", "ES256", "--json"], { POSTBOX_URL: proxy.url });
      expect(proxy.dropped()).toBe(1);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      expect(existsSync(next)).toBe(true);
      const pem = await readFile(next, "utf8");
      const kid = await calculateJwkThumbprint(await exportJWK(await importPKCS8(pem, "ES256", { extractable: true })), "sha256");
      expect(r.stderr).toContain(`Its private key stays in ${next}`);
      expect(r.stderr).toContain(`if key ${kid} is listed`);
      // The check the message names: the new key is the contract's only active one, and it signs sessions.
      const keys = json(await cli(["app", "show", app.appId, "--json"])).contracts[0].keys as { keyId: string; revokedAt: string | null }[];
      expect(keys.filter((k) => k.revokedAt === null).map((k) => k.keyId)).toEqual([kid]);
      expect((await session(app.appId, app.contractId, "ES256", pem)).data?.createSession.key).toMatch(/^pbs_/);
    } finally {
      await proxy.close();
    }
  });

  it("adds a READ contract and updates a contract's settings", async () => {
    const readKey = path.join(dir, "read.pem");
    const added = json(await cli(["contract", "add", app.appId, "--kind", "READ", "--generate-key", readKey, "--json"]));
    expect(added).toMatchObject({ appId: app.appId, kind: "READ", contractId: expect.stringMatching(/^ctr_/) });
    expect((await session(app.appId, added.contractId, "PS512", await readFile(readKey, "utf8"))).data?.createSession.contractId).toBe(added.contractId);

    const updated = json(await cli(["contract", "update", app.contractId, "--mode", "ONGOING", "--ttl", "2d", "--callback-url", "https://a.example/back", "--callback-url", "https://b.example/back", "--json"]));
    expect(updated).toEqual({ contractId: app.contractId, postboxMode: "ONGOING", postboxTtlSeconds: 172_800, callbackUrls: ["https://a.example/back", "https://b.example/back"] });
    const cleared = json(await cli(["contract", "update", app.contractId, "--clear-callback-urls", "--json"]));
    expect(cleared.callbackUrls).toEqual([]);

    const none = await cli(["contract", "update", app.contractId]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/Nothing to change/);
    const missing = await cli(["contract", "add", app.appId, "--generate-key", path.join(dir, "never.pem")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--kind is required/);
  });
});

describe("connection and credentials", () => {
  it("says when the server is not running", async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const r = await cli(["app", "list"], { POSTBOX_URL: `http://127.0.0.1:${port}` });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`is the server running at http://127.0.0.1:${port}?`);
  });

  it("reads the admin token from <DATA_DIR>/admin-token when ADMIN_TOKEN is unset", async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "postbox-cli-data-"));
    await writeFile(path.join(dataDir, "admin-token"), t.adminToken + "\n", { mode: 0o600 });
    const ok = await cli(["app", "list", "--json"], { ADMIN_TOKEN: undefined, DATA_DIR: dataDir });
    expect(Array.isArray(json(ok))).toBe(true);
    const missing = await cli(["app", "list"], { ADMIN_TOKEN: undefined, DATA_DIR: path.join(dataDir, "nope") });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/No admin token: ADMIN_TOKEN is not set and .*nope\/admin-token does not exist/);
    await rm(dataDir, { recursive: true, force: true });
  });

  it("says when the admin token is wrong", async () => {
    const r = await cli(["app", "list"], { ADMIN_TOKEN: "x".repeat(40) });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/refused the admin token.*\[UNAUTHENTICATED\]/);
  });
});

describe("the admin API over HTTP", () => {
  const big = JSON.stringify({ name: "x".repeat(2 * 1024 * 1024) });
  async function post(body: string, token?: string) {
    const res = await request(`${t.url}/admin/applications`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body,
    });
    return { status: res.statusCode, body: (await res.body.json()) as { error: { code: string; message: string } } };
  }
  const errorLines = (from: number) => t.logs.slice(from).filter((l) => JSON.parse(l).level >= 50);

  it.each([
    ["a 2 MB body", big],
    ["malformed JSON", "{not json"],
  ])("checks the token before reading the body: %s without a token gets 401", async (_what, body) => {
    const logged = t.logs.length;
    for (const token of [undefined, "x".repeat(40)]) {
      const r = await post(body, token);
      expect(r.status).toBe(401);
      expect(r.body.error.code).toBe("UNAUTHENTICATED");
    }
    expect(errorLines(logged)).toEqual([]);
  });

  it("answers a body it cannot take with a 4xx in its error shape, without an error log line", async () => {
    const logged = t.logs.length;
    const before = await appCount();
    const large = await post(big, t.adminToken);
    expect(large.status).toBe(413);
    expect(large.body.error).toEqual({ code: "PAYLOAD_TOO_LARGE", message: expect.stringMatching(/larger than the admin API accepts \(1048576 bytes\)/) });
    const malformed = await post("{not json", t.adminToken);
    expect(malformed.status).toBe(400);
    expect(malformed.body.error).toEqual({ code: "BAD_USER_INPUT", message: "The request body is not valid JSON." });
    const charset = await request(`${t.url}/admin/applications`, {
      method: "POST",
      headers: { "content-type": "application/json; charset=klingon", authorization: `Bearer ${t.adminToken}` },
      body: "{}",
    });
    expect(charset.statusCode).toBe(415);
    expect(((await charset.body.json()) as { error: { code: string } }).error.code).toBe("BAD_USER_INPUT");
    expect(errorLines(logged)).toEqual([]);
    expect(await appCount()).toBe(before);
  });
});

describe("help", () => {
  it("prints usage for the CLI and for a command", async () => {
    const top = await cli(["--help"]);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/Usage: npm run cli -- <group> <command> \[options\]/);
    expect(top.stdout).toMatch(/^\s+app\s+/m);
    const cmd = await cli(["app", "create", "--help"]);
    expect(cmd.code).toBe(0);
    expect(cmd.stdout).toContain("Usage: npm run cli -- app create --name <name> (--public-key <file> | --generate-key <out-file>)");
  });
});

describe("npm run db:migrate", () => {
  it(process.env.TEST_DB === "postgres" ? "reports an up-to-date PostgreSQL database" : "refuses the embedded database while the server holds it", async () => {
    const r = await run("src/cli/migrate.ts", [], { POSTBOX_URL: undefined, ADMIN_TOKEN: undefined, DATA_DIR: t.dataDir, DATABASE_URL: t.databaseUrl });
    if (process.env.TEST_DB === "postgres") {
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/PostgreSQL postgresql:\/\/.*: up to date \(\d+ migration\(s\) already applied, nothing to do\)/);
    } else {
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`in use by process ${process.pid}`);
      expect(r.stderr).toMatch(/is the Postbox server running\?/);
      expect((await readFile(path.join(t.dataDir, "db.lock"), "utf8")).trim()).toBe(String(process.pid));
    }
  });
});
