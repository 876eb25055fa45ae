// `npm run cli -- user files|fetch|ack|watch`: the user's side of pushes, for a user
// without a browser. Everything runs with the key file `user accept --key-out`
// wrote: the server's address, the access/refresh tokens and the private key.
// Files are decrypted here, on the user's machine; the server only ever hands out
// ciphertext. An expired access token is renewed with the refresh token, and the
// key file is rewritten with the new pair (refresh tokens are single use).
import { createHash } from "node:crypto";
import { open, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { createClient } from "graphql-ws";
import { compactDecrypt, importJWK, type JWK } from "jose";
import { errors as undiciErrors, request } from "undici";
import WebSocket from "ws";
import type { FileDescriptor as Descriptor } from "../../modules/push/push.crypto.js";
import { credentialRefused } from "../../infra/graphql/credential-refused.js";
import { writeAtomically } from "../../infra/server-files.js";
import { CHANGE_ORDER, currentChange } from "../../modules/user/user.events.js";
import { ApiError, Backoff, CliError, UsageError, table, type Command, type CommandGroup, type Ctx } from "../lib.js";

interface Credential {
  accessToken: string;
  accessTokenExpiresAt: string;
  refreshToken: string;
  refreshTokenExpiresAt: string;
  tokenType?: string;
}

interface KeyFile {
  postboxId: string;
  graphqlUrl: string;
  privateKey: JWK;
  /** Absent when the `user accept` that wrote the file got no answer: see UserClient.ensureCredential. */
  credential?: Credential;
  [other: string]: unknown;
}

interface FileNode {
  id: string;
  status: string;
  size: number;
  sha256: string;
  receivedAt: string;
  expiresAt: string;
  deliveredAt: string | null;
  purgedAt: string | null;
}

const FILES = /* GraphQL */ `
  query PostboxFiles($first: Int, $after: String) {
    postboxFiles(first: $first, after: $after) {
      edges { node { id status size sha256 receivedAt expiresAt deliveredAt purgedAt } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;
const FILE = /* GraphQL */ `
  query PostboxFile($id: ID!) { postboxFile(id: $id) { id descriptor sha256 size downloadUrl } }
`;
const ACK = /* GraphQL */ `
  mutation AcknowledgeFiles($ids: [ID!]!) { acknowledgeFiles(ids: $ids) { id status deliveredAt expiresAt } }
`;
const CHALLENGE = /* GraphQL */ `
  mutation UserKeyChallenge($postboxId: ID!) { userKeyChallenge(postboxId: $postboxId) { challengeId jwe } }
`;
const REISSUE = /* GraphQL */ `
  mutation ReissueUserCredential($challengeId: ID!, $answer: String!) {
    reissueUserCredential(challengeId: $challengeId, answer: $answer) { accessToken accessTokenExpiresAt refreshToken refreshTokenExpiresAt tokenType }
  }
`;
const REFRESH = /* GraphQL */ `
  mutation RefreshUserToken($refreshToken: String!) {
    refreshUserToken(refreshToken: $refreshToken) { accessToken accessTokenExpiresAt refreshToken refreshTokenExpiresAt tokenType }
  }
`;

/** The server could not be reached (or did not answer in time): worth retrying later, unlike an answer. */
class Unreachable extends CliError {}

// Renew a little early, so that a token does not expire between the check and the request.
const EARLY_REFRESH_MS = 60_000;

/** The key file and a GraphQL client that renews the access token when it has expired. */
class UserClient {
  private constructor(
    private readonly file: string,
    private key: KeyFile,
  ) {}

  static async load(ctx: Ctx): Promise<UserClient> {
    const file = path.resolve(ctx.requireString("key-file"));
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new CliError(code === "ENOENT" ? `No key file ${file}. It is written by \`user accept <consentUrl> --key-out <file>\`.` : `Cannot read ${file}: ${(e as Error).message}`);
    }
    let key: KeyFile;
    try {
      key = JSON.parse(text) as KeyFile;
    } catch {
      throw new CliError(`${file} is not a key file (not JSON). Use the file \`user accept --key-out\` wrote.`);
    }
    if (!key?.graphqlUrl || !key.postboxId || !key.privateKey || (key.credential && (!key.credential.accessToken || !key.credential.refreshToken))) {
      throw new CliError(`${file} is not a key file written by \`user accept --key-out\` (graphqlUrl, postboxId, privateKey or credential missing).`);
    }
    return new UserClient(file, key);
  }

  get postboxId(): string {
    return this.key.postboxId;
  }

  /** The GraphQL WebSocket URL (same path, ws: or wss:). */
  get wsUrl(): string {
    const u = new URL(this.key.graphqlUrl);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    return u.href;
  }

  /** An access token that works now: renewed first when it is about to expire, or always with `force` (the server refused it). */
  async accessToken(note?: (m: string) => void, force = false): Promise<string> {
    const credential = await this.ensureCredential(note);
    if (force || Date.parse(credential.accessTokenExpiresAt) - Date.now() < EARLY_REFRESH_MS) await this.refresh(note);
    return this.credential.accessToken;
  }

  private get credential(): Credential {
    if (!this.key.credential) throw new Error("no credential yet: ensureCredential first");
    return this.key.credential;
  }

  /**
   * A key file without a credential was written by a `user accept` whose answer was
   * lost: if the server did accept that key, proof of it buys the credential.
   */
  private async ensureCredential(note?: (m: string) => void): Promise<Credential> {
    if (this.key.credential) return this.key.credential;
    try {
      await this.reestablish(note);
    } catch (e) {
      if (e instanceof ApiError && e.code === "NOT_FOUND") {
        throw new CliError(
          `${this.file} holds no credential (the \`user accept\` that wrote it got no answer), and postbox ${this.key.postboxId} is not READY: it was not accepted with this key, or it has ended since.`,
        );
      }
      throw e;
    }
    return this.credential;
  }

  async decrypt(jwe: string): Promise<Uint8Array> {
    const alg = this.key.privateKey.alg ?? (this.key.privateKey.kty === "RSA" ? "RSA-OAEP-256" : "ECDH-ES+A256KW");
    const key = await importJWK(this.key.privateKey, alg);
    try {
      return (await compactDecrypt(jwe, key)).plaintext;
    } catch (e) {
      throw new CliError(`Decryption failed (${(e as Error).message}): the file was not encrypted to this key file's key, or it was altered.`);
    }
  }

  async gql<T>(query: string, variables: Record<string, unknown> = {}, note?: (m: string) => void): Promise<T> {
    const credential = await this.ensureCredential(note);
    if (Date.parse(credential.accessTokenExpiresAt) - Date.now() < EARLY_REFRESH_MS) await this.refresh(note);
    try {
      return await this.post<T>(query, variables, this.credential.accessToken);
    } catch (e) {
      // The server may consider the token expired before our clock does.
      if (e instanceof ApiError && e.code === "UNAUTHENTICATED" && /expired/i.test(e.message) && !/postbox/i.test(e.message)) {
        await this.refresh(note);
        return this.post<T>(query, variables, this.credential.accessToken);
      }
      if (e instanceof ApiError && e.reissue) {
        await this.reestablish(note);
        return this.post<T>(query, variables, this.credential.accessToken);
      }
      throw e;
    }
  }

  private async refresh(note?: (m: string) => void): Promise<void> {
    if (Date.parse(this.credential.refreshTokenExpiresAt) <= Date.now()) {
      throw new CliError("Both tokens in the key file have expired (the refresh token lives as long as the postbox): the postbox is over.");
    }
    let renewed: Credential;
    try {
      renewed = (await this.post<{ refreshUserToken: Credential }>(REFRESH, { refreshToken: this.credential.refreshToken })).refreshUserToken;
    } catch (e) {
      if (e instanceof ApiError && e.reissue) return this.reestablish(note);
      throw e;
    }
    this.key = { ...this.key, credential: renewed };
    await this.save();
    note?.(`Access token renewed; ${this.file} updated with the new tokens.`);
  }

  /**
   * The credential is dead but the postbox is not (its refresh token was used twice,
   * or this key file's tokens are older than the last renewal): prove we hold the
   * postbox key by decrypting a challenge, and take the new credential it buys.
   */
  private async reestablish(note?: (m: string) => void): Promise<void> {
    const had = this.key.credential !== undefined;
    const { userKeyChallenge: ch } = await this.post<{ userKeyChallenge: { challengeId: string; jwe: string } }>(CHALLENGE, { postboxId: this.key.postboxId });
    const answer = Buffer.from(await this.decrypt(ch.jwe)).toString("base64url");
    const { reissueUserCredential } = await this.post<{ reissueUserCredential: Credential }>(REISSUE, { challengeId: ch.challengeId, answer });
    // A file from an unanswered accept said UNCONFIRMED: a reissue proves the postbox READY with this key.
    this.key = { ...this.key, credential: reissueUserCredential, ...(had ? {} : { status: "READY" }) };
    await this.save();
    note?.(
      had
        ? `The key file's credential no longer worked; a new one was issued by proof of the postbox key, and ${this.file} updated.`
        : `The key file had no credential yet; one was issued by proof of the postbox key, and ${this.file} updated.`,
    );
  }

  /** Rewrites the key file atomically (same directory, mode 0600), since the old refresh token no longer works. */
  private async save(): Promise<void> {
    try {
      await writeAtomically(this.file, JSON.stringify(this.key, null, 2) + "\n", false);
    } catch (e) {
      throw new CliError(`Got a new credential but could not update ${this.file}: ${(e as Error).message}. The new tokens were not saved.`);
    }
  }

  /** GETs a file's JWE from its downloadUrl with the current access token (fresh: a gql call just ran). */
  async download(url: string): Promise<string> {
    let res;
    try {
      res = await request(url, { headers: { authorization: `Bearer ${this.credential.accessToken}` }, headersTimeout: 60_000, bodyTimeout: 300_000 });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? (e as { cause?: NodeJS.ErrnoException }).cause?.code;
      throw new Unreachable(`Cannot download from ${url}${code ? ` (${code})` : ""}.`);
    }
    if (res.statusCode !== 200) {
      const body = (await res.body.json().catch(() => null)) as { errors?: { message: string; extensions?: { code?: string } }[] } | null;
      const err = body?.errors?.[0];
      throw new ApiError(res.statusCode, err?.extensions?.code ?? "ERROR", err?.message ?? `HTTP ${res.statusCode} from ${url}`);
    }
    try {
      return await res.body.text();
    } catch {
      throw new Unreachable(`The download from ${url} broke off.`);
    }
  }

  private async post<T>(query: string, variables: Record<string, unknown>, token?: string): Promise<T> {
    const url = this.key.graphqlUrl;
    let res;
    try {
      res = await request(url, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify({ query, variables }),
        headersTimeout: 60_000,
        bodyTimeout: 300_000,
      });
    } catch (e) {
      if (e instanceof undiciErrors.HeadersTimeoutError || e instanceof undiciErrors.BodyTimeoutError) throw new Unreachable(`The server at ${url} did not answer in time.`);
      const code = (e as NodeJS.ErrnoException).code ?? (e as { cause?: NodeJS.ErrnoException }).cause?.code;
      throw new Unreachable(`Cannot reach the Postbox server at ${url}${code ? ` (${code})` : ""}.`);
    }
    const text = await res.body.text().catch(() => {
      throw new Unreachable(`The answer from ${url} broke off.`);
    });
    let body: { data?: T | null; errors?: { message: string; extensions?: { code?: string; field?: string; reissue?: boolean } }[] };
    try {
      body = JSON.parse(text);
    } catch {
      throw new CliError(`The server at ${url} answered HTTP ${res.statusCode} with a body that is not JSON.`);
    }
    const err = body.errors?.[0];
    if (err) throw new ApiError(res.statusCode, err.extensions?.code ?? "ERROR", err.message, err.extensions?.field, err.extensions?.reissue === true);
    if (!body.data) throw new CliError(`The server at ${url} answered HTTP ${res.statusCode} without data.`);
    return body.data;
  }
}

const keyFileOption = { type: "string", value: "<file>", description: "The key file written by `user accept --key-out` (private key and tokens)." } as const;

/** A name safe to create inside a directory: the descriptor's fileName without any path, or a fallback. */
function safeFileName(name: string | undefined, id: string): string {
  const base = path.basename(String(name ?? "")).replace(/[\u0000-\u001f\u007f/\\:*?"<>|]/g, "_").trim();
  return base && base !== "." && base !== ".." ? base : `${id}.bin`;
}

async function writeNew(target: string, bytes: Uint8Array): Promise<void> {
  let fh;
  try {
    fh = await open(target, "wx", 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") throw new CliError(`${target} already exists; choose another --out (nothing was overwritten).`);
    throw new CliError(`Cannot create ${target}: ${(e as Error).message}`);
  }
  try {
    await fh.writeFile(bytes);
  } finally {
    await fh.close();
  }
}

/** Every file of the postbox, newest first (all pages). */
async function listFiles(client: UserClient, note: (m: string) => void): Promise<FileNode[]> {
  const all: FileNode[] = [];
  let after: string | null = null;
  for (;;) {
    const { postboxFiles }: { postboxFiles: { edges: { node: FileNode }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } } } = await client.gql(FILES, { first: 100, after }, note);
    all.push(...postboxFiles.edges.map((e) => e.node));
    if (!postboxFiles.pageInfo.hasNextPage) return all;
    after = postboxFiles.pageInfo.endCursor;
  }
}

const filesCmd: Command = {
  summary: "List the files in your postbox (newest first): id, status, size, times.",
  options: { "key-file": keyFileOption },
  async run(ctx) {
    const client = await UserClient.load(ctx);
    const all = await listFiles(client, ctx.note);
    ctx.print({ postboxId: client.postboxId, files: all }, (v) =>
      v.files.length === 0
        ? `No files in postbox ${v.postboxId}.`
        : table(
            ["ID", "STATUS", "SIZE", "RECEIVED", "DELETED AT"],
            v.files.map((f) => [f.id, f.status, String(f.size), f.receivedAt, f.purgedAt ? `${f.purgedAt} (gone)` : f.expiresAt]),
          ),
    );
  },
};

const fetchCmd: Command = {
  summary: "Download one file, decrypt it here with your private key, write it, print its descriptor, and acknowledge it.",
  args: ["pushId"],
  options: {
    "key-file": keyFileOption,
    out: { type: "string", value: "<path>", description: "Where to write the decrypted file (mode 0600, never overwritten). An existing directory: the file's own name inside it." },
    "no-ack": { type: "boolean", description: "Do not acknowledge: the file stays PENDING for the application (fetch it again later)." },
  },
  help: [
    "By default the file is acknowledged once it is written and decrypted: the application then sees it DELIVERED,",
    "and the server deletes it PUSH_RETENTION later. With --no-ack nothing changes on the server except the audit log;",
    "acknowledge later with `user ack <pushId> --key-file <file>`.",
  ].join("\n"),
  async run(ctx) {
    const client = await UserClient.load(ctx);
    const fetched = await fetchFile(client, ctx.args.pushId, path.resolve(ctx.requireString("out")), !ctx.flag("no-ack"), ctx.note);
    ctx.print(fetched, (v) =>
      [
        `Wrote ${v.bytes} bytes to ${v.out}.`,
        `fileName:  ${v.descriptor.fileName}`,
        `mimeType:  ${v.descriptor.mimeType}`,
        `accounts:  ${v.descriptor.accounts.map((a) => a.accountId).join(", ")}`,
        `reference: ${v.descriptor.reference.join(", ") || "-"}`,
        `tags:      ${v.descriptor.tags.join(", ") || "-"}`,
        v.acknowledged ? "Acknowledged: the application sees it DELIVERED." : "Not acknowledged (--no-ack): it stays PENDING.",
      ].join("\n"),
    );
  },
};

interface Fetched {
  pushId: string;
  out: string;
  bytes: number;
  descriptor: Descriptor;
  acknowledged: boolean;
}

/** Downloads a file, checks and decrypts it here, writes it to `outArg` (a directory: the file's own name inside it), and acknowledges it if asked. */
async function fetchFile(client: UserClient, id: string, outArg: string, ack: boolean, note: (m: string) => void): Promise<Fetched> {
  const { postboxFile: meta } = await client.gql<{ postboxFile: { id: string; descriptor: string; sha256: string; size: number; downloadUrl: string } }>(FILE, { id }, note);
  // The file itself from the download route (it streams; the GraphQL field would hold it whole).
  const ciphertext = await client.download(meta.downloadUrl);
  if (createHash("sha256").update(ciphertext).digest("hex") !== meta.sha256) {
    throw new CliError(`The ciphertext of ${id} does not match its sha256 ${meta.sha256}: it was corrupted on the way. Try again.`);
  }
  const descriptor = JSON.parse(Buffer.from(await client.decrypt(meta.descriptor)).toString("utf8")) as Descriptor;
  const bytes = await client.decrypt(ciphertext);
  const isDir = await stat(outArg).then((s) => s.isDirectory(), () => false);
  const target = isDir ? path.join(outArg, safeFileName(descriptor.fileName, id)) : outArg;
  await writeNew(target, bytes);
  if (ack) await client.gql(ACK, { ids: [id] }, note);
  return { pushId: id, out: target, bytes: bytes.length, descriptor, acknowledged: ack };
}

// includeCurrent: every (re)subscription opens with where each file stands, so what
// changed while no stream was open (a dropped connection, a token renewal) is not missed;
// changedSince (the latest server time seen) keeps that to the files changed since.
const CHANGED = /* GraphQL */ `subscription MyFilesChanged($since: DateTimeISO) { myFilesChanged(includeCurrent: true, changedSince: $since) { fileId change at } }`;

interface Change {
  fileId: string;
  change: "ADDED" | "DELIVERED" | "PURGED";
  at: string;
}

const watchCmd: Command = {
  summary: "Follow your postbox live: print each change (ADDED, DELIVERED, PURGED) as it happens; with --out, fetch, decrypt and write each new file.",
  options: {
    "key-file": keyFileOption,
    out: { type: "string", value: "<dir>", description: "An existing directory: each new file is fetched, decrypted here and written into it (as `user fetch` does)." },
    "no-ack": { type: "boolean", description: "With --out: do not acknowledge the files written (they stay PENDING)." },
  },
  help: [
    "Runs until interrupted (Ctrl-C) or until the postbox is closed or expires. With --json, one JSON object per line.",
    "The server ends the stream when the access token expires; the token is then renewed (the key file is updated) and",
    "the stream opened again. When the connection drops, it reconnects (waiting longer after each failure, up to 30 s)",
    "and reports what changed meanwhile. Files already there when the command started are listed by `user files`.",
  ].join("\n"),
  async run(ctx) {
    const client = await UserClient.load(ctx);
    const outArg = ctx.string("out");
    const outDir = outArg === undefined ? undefined : path.resolve(outArg);
    if (outDir && !(await stat(outDir).then((s) => s.isDirectory(), () => false))) throw new UsageError(`--out must be an existing directory (${outDir} is not).`);
    const ack = !ctx.flag("no-ack");

    // Where each file stands as far as this command has reported it. Files there at the
    // start are known without being reported; every stream then opens with the current
    // state of all files (includeCurrent), and only what is new to this map is reported.
    const listed = await listFiles(client, ctx.note);
    const known = new Map<string, number>(listed.map((f) => [f.id, CHANGE_ORDER[currentChange(f).change]]));
    // The latest change this command knows of, in the server's time (ISO strings of one
    // format compare like the times they name): each stream opens with what changed since.
    let since: string | null = null;
    const saw = (at: string) => {
      if (since === null || at > since) since = at;
    };
    for (const f of listed) saw(currentChange(f).at);
    // Files reported ADDED but not yet written to --out, and written but not yet
    // acknowledged: kept across reconnects, so a fetch or an acknowledgement cut off by
    // the network is done once it is back (and a written file is never fetched twice).
    const toFetch = new Set<string>();
    const toAck = new Set<string>();
    const settle = async () => {
      for (const id of [...toFetch]) {
        try {
          const f = await fetchFile(client, id, outDir!, false, ctx.note);
          ctx.note(`Wrote ${f.bytes} bytes to ${f.out}.`);
          if (ack) toAck.add(id);
        } catch (e) {
          // The server's answer about this one file (say, purged in the meantime): the others still come.
          if (!(e instanceof ApiError)) throw e;
          ctx.note(`Could not fetch ${id}: ${e.message}`);
        }
        toFetch.delete(id);
      }
      while (toAck.size) {
        const ids = [...toAck].slice(0, 100); // the server's limit per call
        try {
          await client.gql(ACK, { ids }, ctx.note);
          ctx.note(`Acknowledged ${ids.join(", ")}.`);
        } catch (e) {
          if (!(e instanceof ApiError)) throw e;
          ctx.note(`Could not acknowledge ${ids.join(", ")}: ${e.message}`);
        }
        for (const id of ids) toAck.delete(id);
      }
    };
    const report = async (c: Change) => {
      const before = known.get(c.fileId);
      if (before !== undefined && before >= CHANGE_ORDER[c.change]) return;
      known.set(c.fileId, CHANGE_ORDER[c.change]);
      ctx.printLine({ postboxId: client.postboxId, ...c }, (v) => `${v.at} ${v.change.padEnd(9)} ${v.fileId}`);
      // A file first seen already DELIVERED or PURGED was dealt with elsewhere (or is gone): nothing to fetch.
      if (outDir && c.change === "ADDED") toFetch.add(c.fileId);
      await settle();
    };

    let stopping = false;
    let current: { dispose(): void | Promise<void> } | undefined;
    const stop = () => {
      stopping = true;
      void current?.dispose();
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    const backoff = new Backoff();
    const pause = async (why: string) => {
      const wait = backoff.next();
      ctx.note(`${why.replace(/\.$/, "")}; reconnecting in ${wait / 1000} s.`);
      await new Promise((r) => setTimeout(r, wait));
    };
    let renew = false;
    try {
      ctx.note(`Watching postbox ${client.postboxId} (Ctrl-C to stop).`);
      while (!stopping) {
        let token: string;
        try {
          token = await client.accessToken(ctx.note, renew);
        } catch (e) {
          if (e instanceof Unreachable) {
            await pause(e.message);
            continue;
          }
          // The refresh token no longer works and no new credential can be had: the postbox is over.
          if (e instanceof ApiError && e.code === "UNAUTHENTICATED") {
            ctx.note(`Stopped: ${e.message}`);
            return;
          }
          throw e;
        }
        try {
          await settle(); // what the last connection left undone
        } catch (e) {
          if (!(e instanceof Unreachable)) throw e;
          await pause(e.message);
          continue;
        }
        const ws = createClient({ url: client.wsUrl, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` }, retryAttempts: 0, lazy: true });
        current = ws;
        renew = false;
        try {
          for await (const r of ws.iterate<{ myFilesChanged: Change }>({ query: CHANGED, variables: { since } })) {
            backoff.reset();
            if (r.data?.myFilesChanged) {
              await report(r.data.myFilesChanged);
              saw(r.data.myFilesChanged.at);
            }
          }
          // The server ended the stream: the access token expired, or the postbox is over (the next connect says which).
        } catch (e) {
          if (stopping) break;
          if (e instanceof Unreachable) await pause(e.message);
          else if (e instanceof CliError) throw e; // an answer, not a lost connection (say, --out already has the file)
          else if (!(renew = credentialRefused(e))) await pause(`Connection lost (${e instanceof Error ? e.message : "closed"})`);
        } finally {
          await ws.dispose();
        }
      }
    } finally {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
    }
  },
};

const ackCmd: Command = {
  summary: "Acknowledge files you have received: the application sees them DELIVERED. Repeating it changes nothing.",
  args: ["pushId..."],
  options: { "key-file": keyFileOption },
  async run(ctx) {
    const client = await UserClient.load(ctx);
    if (ctx.rest.length > 100) throw new UsageError("Acknowledge at most 100 files at once.");
    const { acknowledgeFiles } = await client.gql<{ acknowledgeFiles: { id: string; status: string; deliveredAt: string; expiresAt: string }[] }>(ACK, { ids: ctx.rest }, ctx.note);
    ctx.print({ files: acknowledgeFiles }, (v) => v.files.map((f) => `${f.id} ${f.status} (delivered ${f.deliveredAt}; deleted by ${f.expiresAt})`).join("\n"));
  },
};

/** The `user` group from user.ts, with these commands added. */
export function withFileCommands(group: CommandGroup): CommandGroup {
  return {
    summary: `${group.summary.replace(/\.$/, "")}; list, fetch (decrypting locally), acknowledge and watch pushed files.`,
    commands: { ...group.commands, files: filesCmd, fetch: fetchCmd, ack: ackCmd, watch: watchCmd },
  };
}
