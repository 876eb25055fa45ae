// The user's side of pushes from the command line, as a child process: `user
// accept` writes the key file; `user files`, `user fetch` (decrypting locally) and
// `user ack` read the postbox with it, renewing an expired access token; `user watch`
// follows it live and fetches new files as they arrive.
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it, jest } from "@jest/globals";
import { calculateJwkThumbprint } from "jose";
import { DESCRIPTOR, PUSH_DATA, createSession, dataInput, registerApp } from "../helpers/factories.js";
import { answerDropper, relay } from "../helpers/relay.js";
import { errorCode, startTestServer, type TestServer } from "../helpers/server.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

let t: TestServer;
let dir: string;
let session: string;
let keyFile: string;
let postboxId: string;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[]): Promise<Run> {
  const env = { PATH: process.env.PATH, HOME: process.env.HOME };
  return new Promise((resolve) => {
    execFile(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { cwd: root, env, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

function json<T = any>(r: Run): T {
  if (r.code !== 0) throw new Error(`CLI failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

async function pushFile(bytes: Buffer, fileName = "statement.csv") {
  const r = await t.gql(PUSH_DATA, { input: { ...dataInput({ postboxId }, bytes), fileName, fileDescriptor: { ...DESCRIPTOR, mimeType: "text/csv" } } }, { token: session });
  if (!r.data?.pushData) throw new Error(JSON.stringify(r.errors));
  return r.data.pushData.id as string;
}

/** `user watch` as a child process, with its JSON lines and a way to wait on them. */
function watch(args: string[]) {
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "user", "watch", ...args], { cwd: root, env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const lines = () => stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const waitFor = async (cond: () => boolean, what: string) => {
    const deadline = Date.now() + 20_000;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; stdout ${stdout}; stderr ${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { child, lines, waitFor, exited, output: () => ({ stdout, stderr }) };
}

/**
 * A new postbox accepted with `user accept`, its key file pointing at the server through
 * a relay that can cut the network, and an empty directory for `--out`.
 */
async function acceptBehindRelay(name: string) {
  const created = await t.gql(`mutation { createPostbox { id consentUrl } }`, {}, { token: session });
  const watchKey = path.join(dir, `${name}.key.json`);
  const accepted = json(await cli(["user", "accept", created.data!.createPostbox.consentUrl, "--key-out", watchKey, "--json"]));
  const link = await relay(Number(new URL(t.url).port));
  const key = JSON.parse(await readFile(watchKey, "utf8"));
  await writeFile(watchKey, JSON.stringify({ ...key, graphqlUrl: `${link.url}/graphql` }), { mode: 0o600 });
  return { accepted, watchKey, link, out: await mkdtemp(path.join(dir, `${name}-`)) };
}

const status = async (id: string) => (await t.gql(`query($id: ID!) { push(id: $id) { status } }`, { id }, { token: session })).data!.push.status;

beforeAll(async () => {
  t = await startTestServer();
  dir = await mkdtemp(path.join(os.tmpdir(), "postbox-user-cli-"));
  const app = await registerApp(t);
  session = await createSession(t, app);
  const created = await t.gql(`mutation { createPostbox { id consentUrl } }`, {}, { token: session });
  keyFile = path.join(dir, "me.key.json");
  const accepted = json(await cli(["user", "accept", created.data!.createPostbox.consentUrl, "--key-out", keyFile, "--json"]));
  expect(accepted.status).toBe("READY");
  postboxId = accepted.postboxId;
});
afterAll(async () => {
  await t?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("user files / fetch / ack", () => {
  it("lists, fetches, decrypts locally and acknowledges by default", async () => {
    const original = Buffer.concat([Buffer.from("date,amount\n2026-11-01,12.50\n"), randomBytes(500)]);
    const id = await pushFile(original);

    const listed = json(await cli(["user", "files", "--key-file", keyFile, "--json"]));
    expect(listed.postboxId).toBe(postboxId);
    expect(listed.files.map((f: any) => f.id)).toContain(id);
    expect(listed.files.find((f: any) => f.id === id).status).toBe("PENDING");

    const out = await mkdtemp(path.join(dir, "out-"));
    const fetched = json(await cli(["user", "fetch", id, "--key-file", keyFile, "--out", out, "--json"]));
    expect(fetched).toMatchObject({ pushId: id, out: path.join(out, "statement.csv"), bytes: original.length, acknowledged: true });
    expect(fetched.descriptor).toEqual({ fileName: "statement.csv", ...DESCRIPTOR, mimeType: "text/csv" });
    expect((await readFile(fetched.out)).equals(original)).toBe(true);
    expect((await stat(fetched.out)).mode & 0o777).toBe(0o600);
    expect(await status(id)).toBe("DELIVERED");

    // Never overwrites.
    const again = await cli(["user", "fetch", id, "--key-file", keyFile, "--out", fetched.out]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already exists/);
  });

  it("leaves the file PENDING with --no-ack, and `user ack` delivers several at once", async () => {
    const a = await pushFile(Buffer.from("first"), "a.txt");
    const b = await pushFile(Buffer.from("second"), "b.txt");
    const target = path.join(dir, "a-copy.txt");
    const human = await cli(["user", "fetch", a, "--key-file", keyFile, "--out", target, "--no-ack"]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/Wrote 5 bytes/);
    expect(human.stdout).toMatch(/fileName:\s+a\.txt/);
    expect(human.stdout).toMatch(/Not acknowledged/);
    expect(await readFile(target, "utf8")).toBe("first");
    expect(await status(a)).toBe("PENDING");

    const acked = json(await cli(["user", "ack", a, b, "--key-file", keyFile, "--json"]));
    expect(acked.files.map((f: any) => [f.id, f.status])).toEqual([
      [a, "DELIVERED"],
      [b, "DELIVERED"],
    ]);
    expect(await status(b)).toBe("DELIVERED");
  });

  it("renews an expired access token with the refresh token and saves the new pair", async () => {
    const before = JSON.parse(await readFile(keyFile, "utf8"));
    await writeFile(keyFile, JSON.stringify({ ...before, credential: { ...before.credential, accessTokenExpiresAt: new Date(Date.now() - 1000).toISOString() } }), { mode: 0o600 });
    const r = await cli(["user", "files", "--key-file", keyFile, "--json"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/renewed/);
    const after = JSON.parse(await readFile(keyFile, "utf8"));
    expect(after.credential.refreshToken).not.toBe(before.credential.refreshToken);
    expect(after.credential.accessToken).not.toBe(before.credential.accessToken);
    expect(after.privateKey).toEqual(before.privateKey);
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    // The old refresh token was used up: a second use revokes the credential (a copy is loose)…
    const reuse = await t.gql(`mutation($r: String!) { refreshUserToken(refreshToken: $r) { accessToken } }`, { r: before.credential.refreshToken });
    expect(errorCode(reuse)).toBe("UNAUTHENTICATED");
    expect(reuse.errors![0].extensions?.reissue).toBe(true);
    // …and the CLI gets a new one by proving it holds the postbox key.
    const again = await cli(["user", "files", "--key-file", keyFile, "--json"]);
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/new one was issued by proof of the postbox key/);
    const reissued = JSON.parse(await readFile(keyFile, "utf8"));
    expect(reissued.credential.accessToken).not.toBe(after.credential.accessToken);
    expect(await t.app.db.prisma.auditEvent.count({ where: { action: "user.reissue", outcome: "SUCCESS", postboxId } })).toBe(1);
  });

  it("user accept keeps the key file when the answer is lost; `user files` then gets a credential by proof of the key", async () => {
    const created = await t.gql(`mutation { createPostbox { id consentUrl } }`, {}, { token: session });
    const pbId = created.data!.createPostbox.id as string;
    // The acceptance reaches the server and is committed; its answer never comes back.
    const proxy = await answerDropper(Number(new URL(t.url).port), (_req, body) => body.includes("acceptPostbox"));
    try {
      const consentUrl = created.data!.createPostbox.consentUrl.replace(new URL(t.url).origin, proxy.url);
      const lostKey = path.join(dir, "lost-answer.key.json");
      const r = await cli(["user", "accept", consentUrl, "--key-out", lostKey, "--json"]);
      expect(proxy.dropped()).toBe(1);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(/UND_ERR_SOCKET/);
      expect(r.stderr).toContain(`The private key stays in ${lostKey}`);

      // The server holds the public key of the private key kept in the file.
      const row = await t.app.db.prisma.postbox.findUniqueOrThrow({ where: { id: pbId } });
      expect(row.status).toBe("READY");
      const kept = JSON.parse(await readFile(lostKey, "utf8"));
      expect(kept).toMatchObject({ postboxId: pbId, status: "UNCONFIRMED" });
      expect(row.publicKeyThumbprint).toBe(await calculateJwkThumbprint(kept.privateKey, "sha256"));
      expect((await stat(lostKey)).mode & 0o777).toBe(0o600);

      // The check the message suggests, then the recovery it suggests.
      expect(json(await cli(["user", "show", consentUrl, "--json"])).status).toBe("READY");
      const id = await (async () => {
        const bytes = Buffer.from("after a lost answer");
        const pushed = await t.gql(PUSH_DATA, { input: { ...dataInput({ postboxId: pbId }, bytes), fileName: "x.txt" } }, { token: session });
        return pushed.data!.pushData.id as string;
      })();
      const listed = await cli(["user", "files", "--key-file", lostKey, "--json"]);
      expect(listed.stderr).toMatch(/had no credential yet; one was issued by proof of the postbox key/);
      expect(json(listed).files.map((f: any) => f.id)).toEqual([id]);
      const recovered = JSON.parse(await readFile(lostKey, "utf8"));
      expect(recovered).toMatchObject({ postboxId: pbId, status: "READY", privateKey: kept.privateKey });
      expect(recovered.credential.accessToken).toMatch(/^pbu_/);
    } finally {
      await proxy.close();
    }
  });

  it("a key file with no credential for a postbox that was never accepted says so", async () => {
    const created = await t.gql(`mutation { createPostbox { id consentUrl } }`, {}, { token: session });
    const orphan = path.join(dir, "never-accepted.key.json");
    const mine = JSON.parse(await readFile(keyFile, "utf8"));
    await writeFile(orphan, JSON.stringify({ postboxId: created.data!.createPostbox.id, graphqlUrl: mine.graphqlUrl, privateKey: mine.privateKey, status: "UNCONFIRMED" }), { mode: 0o600 });
    const r = await cli(["user", "files", "--key-file", orphan]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/holds no credential .* is not READY: it was not accepted with this key/);
  });

  it("names a file that is not in this postbox", async () => {
    const r = await cli(["user", "fetch", "psh_unknown", "--key-file", keyFile, "--out", path.join(dir, "x")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/psh_unknown/);
    expect(r.stderr).toMatch(/NOT_FOUND/);
  });

  it("asks for the key file", async () => {
    const r = await cli(["user", "files"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--key-file is required/);
  });

  it("watch prints each change live, fetches new files into --out, and stops when the postbox is closed", async () => {
    const created = await t.gql(`mutation { createPostbox { id consentUrl } }`, {}, { token: session });
    const watchKey = path.join(dir, "watch.key.json");
    const accepted = json(await cli(["user", "accept", created.data!.createPostbox.consentUrl, "--key-out", watchKey, "--json"]));
    const out = await mkdtemp(path.join(dir, "watched-"));
    const { child, lines, waitFor, exited, output } = watch(["--key-file", watchKey, "--out", out, "--json"]);
    try {
      await waitFor(() => t.app.services.files.openSubscriptions > 0, "the watch stream");
      const bytes = randomBytes(2048);
      const r = await t.gql(PUSH_DATA, { input: { ...dataInput({ postboxId: accepted.postboxId }, bytes), fileName: "live.bin" } }, { token: session });
      const id = r.data!.pushData.id as string;
      // ADDED, then (the watcher acknowledged what it wrote) DELIVERED.
      await waitFor(() => lines().length >= 2, "two change lines");
      expect(lines().map((l) => [l.fileId, l.change])).toEqual([
        [id, "ADDED"],
        [id, "DELIVERED"],
      ]);
      expect(lines()[0].postboxId).toBe(accepted.postboxId);
      expect((await readFile(path.join(out, "live.bin"))).equals(bytes)).toBe(true);
      expect(await status(id)).toBe("DELIVERED");

      // Ctrl-C stops a second watcher cleanly; the first one goes on.
      const second = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "user", "watch", "--key-file", watchKey], { cwd: root, env: { PATH: process.env.PATH, HOME: process.env.HOME } });
      const secondExited = new Promise<number | null>((resolve) => second.on("exit", (code) => resolve(code)));
      await waitFor(() => t.app.services.files.openSubscriptions > 1, "the second watch stream");
      second.kill("SIGINT");
      expect(await secondExited).toBe(0);

      const closed = await t.gql(`mutation($id: ID!) { closePostbox(id: $id) { status } }`, { id: accepted.postboxId }, { token: session });
      expect(closed.data!.closePostbox.status).toBe("CLOSED");
      expect(await exited).toBe(0);
      expect(output().stderr).toMatch(/Stopped: .*CLOSED/);
    } finally {
      child.kill("SIGKILL");
    }
  }, 60_000);

  it("watch reconnects after the network drops and catches up on a file pushed meanwhile", async () => {
    const { accepted, watchKey, link, out } = await acceptBehindRelay("outage");
    const streams = t.app.services.files.openSubscriptions;
    const opened = jest.spyOn(t.app.services.files, "subscribeFiles");
    const { child, lines, waitFor, output } = watch(["--key-file", watchKey, "--out", out, "--json"]);
    const pushTo = async (name: string, bytes: Buffer) => {
      const r = await t.gql(PUSH_DATA, { input: { ...dataInput({ postboxId: accepted.postboxId }, bytes), fileName: name } }, { token: session });
      return r.data!.pushData.id as string;
    };
    try {
      await waitFor(() => t.app.services.files.openSubscriptions > streams, "the watch stream");
      const before = await pushTo("before.bin", randomBytes(300));
      await waitFor(() => lines().length >= 2, "the first file's two lines");

      link.down();
      await waitFor(() => t.app.services.files.openSubscriptions === streams, "the server to see the stream gone");
      // Pushed while the watcher cannot hear of it: only its catch-up can bring it.
      const bytes = randomBytes(700);
      const during = await pushTo("during.bin", bytes);
      await waitFor(() => /reconnecting in 2 s/.test(output().stderr), "a failed reconnect attempt");
      link.up();

      await waitFor(() => lines().length >= 4, "the missed file's lines");
      expect(lines().map((l) => [l.fileId, l.change])).toEqual([
        [before, "ADDED"],
        [before, "DELIVERED"],
        [during, "ADDED"],
        [during, "DELIVERED"],
      ]);
      expect((await readFile(path.join(out, "during.bin"))).equals(bytes)).toBe(true);
      expect(await status(during)).toBe("DELIVERED");
      expect(output().stderr).toMatch(/Connection lost/);
      // The reconnect asked only for what changed since the last change it had reported.
      const opts = opened.mock.calls.map((c) => c[2]);
      expect(opts[0]).toEqual({ includeCurrent: true, changedSince: null });
      expect(opts.at(-1)).toEqual({ includeCurrent: true, changedSince: new Date(lines()[1].at) });
    } finally {
      opened.mockRestore();
      child.kill("SIGKILL");
      await link.close();
    }
  }, 60_000);

  it("watch acknowledges again when the network cut off the answer to its acknowledgement", async () => {
    const { accepted, watchKey, link, out } = await acceptBehindRelay("ack-cut");
    const files = t.app.services.files;
    const streams = files.openSubscriptions;
    // The first acknowledgement is carried out, then the network drops before its answer
    // leaves: the watcher cannot know it worked, so it must keep the file to acknowledge.
    const acknowledge = files.acknowledge.bind(files);
    let cut = false;
    const acks = jest.spyOn(files, "acknowledge").mockImplementation(async (u, ids) => {
      const done = await acknowledge(u, ids);
      if (!cut) {
        cut = true;
        link.down();
      }
      return done;
    });
    const { child, lines, waitFor, output } = watch(["--key-file", watchKey, "--out", out, "--json"]);
    try {
      await waitFor(() => files.openSubscriptions > streams, "the watch stream");
      const bytes = randomBytes(400);
      const r = await t.gql(PUSH_DATA, { input: { ...dataInput({ postboxId: accepted.postboxId }, bytes), fileName: "cut.bin" } }, { token: session });
      const id = r.data!.pushData.id as string;
      await waitFor(() => cut, "the first acknowledgement");
      await waitFor(() => /reconnecting in 2 s/.test(output().stderr), "a retry that found the network still down");
      expect(acks).toHaveBeenCalledTimes(1); // the retry met the network down and never reached the server
      link.up();

      await waitFor(() => lines().length >= 2, "the file's two lines");
      expect(lines().map((l) => [l.fileId, l.change])).toEqual([
        [id, "ADDED"],
        [id, "DELIVERED"],
      ]);
      await waitFor(() => new RegExp(`Acknowledged ${id}`).test(output().stderr), "the acknowledgement to go through");
      expect(acks.mock.calls.length).toBeGreaterThanOrEqual(2);
      for (const call of acks.mock.calls) expect(call[1]).toEqual([id]);
      // Fetched and written once: the retry only acknowledges.
      expect(output().stderr.match(/Wrote \d+ bytes/g)).toHaveLength(1);
      expect(output().stderr).not.toMatch(/Could not acknowledge/);
      expect((await readFile(path.join(out, "cut.bin"))).equals(bytes)).toBe(true);
      expect(await status(id)).toBe("DELIVERED");
    } finally {
      acks.mockRestore();
      child.kill("SIGKILL");
      await link.close();
    }
  }, 60_000);
});
