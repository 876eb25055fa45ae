// Only the user can read what is pushed. A file whose plaintext (and descriptor)
// carries a unique marker is pushed as `data`, as `encryptedData` and as a
// multipart `file` upload; then every row of every table, every log line and every
// file in the data directory is searched for the marker (raw, and as the
// base64/base64url/hex it travelled in): it is nowhere. The user's private key decrypts the original bytes; one flipped
// byte of stored ciphertext makes decryption fail.
//
// On the pglite project the server's embedded database lives in its data
// directory, so the file scan covers the database files. On the postgres project
// the database's files are the PostgreSQL server's, out of reach; there the same
// scenario also runs on a server with a file-backed embedded database.
import { afterAll, describe, expect, it } from "@jest/globals";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { compactDecrypt } from "jose";
import { PUSH_DATA, createReadyPostboxForPush, createSession, encryptForPostbox, registerApp } from "../helpers/factories.js";
import { errorCode, startTestServer, type TestServer } from "../helpers/server.js";
import { multipartGql } from "../helpers/upload.js";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** The marker, plus the forms it takes inside base64/base64url/hex encodings of `whole`. */
function needles(marker: string, whole: Buffer): string[] {
  const at = whole.indexOf(marker);
  const b64 = whole.toString("base64");
  // Base64 characters that encode only marker bytes: from the first whole 3-byte group inside it.
  const from = Math.ceil(at / 3) * 4;
  const to = Math.floor((at + marker.length) / 3) * 4;
  const inner = b64.slice(from, to);
  return [marker, inner, inner.replace(/\+/g, "-").replace(/\//g, "_"), Buffer.from(marker).toString("hex"), Buffer.from(marker).toString("base64")];
}

async function* walk(dir: string): AsyncGenerator<string> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(p);
    else if (entry.isFile()) yield p;
  }
}

const FILE = `query($id: ID!) { postboxFile(id: $id) { id ciphertext descriptor } }`;

async function scenario(opts: { env?: Record<string, string> } = {}) {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "postbox-confidential-"));
  dirs.push(dataDir);
  const t: TestServer = await startTestServer({ dataDir, env: { LOG_LEVEL: "trace", ...opts.env } });
  let stopped = false;
  try {
    const marker = `SECRET-MARKER-${randomBytes(12).toString("hex")}`;
    const app = await registerApp(t);
    const session = await createSession(t, app);
    const rsa = await createReadyPostboxForPush(t, session, "RSA");
    const x = await createReadyPostboxForPush(t, session, "X25519");
    // Markers in the file at an unaligned offset, and in every descriptor field.
    const plain = (n: number) => Buffer.concat([randomBytes(1000 + n), Buffer.from(marker), randomBytes(2000)]);
    const descriptor = { mimeType: "text/plain", accounts: [{ accountId: `${marker}-account` }], reference: [`${marker}-ref`], tags: [`${marker}-tag`] };
    const fileA = plain(1);
    const fileB = plain(2);
    const fileC = plain(0);
    const pushed: { id: string; target: typeof rsa; bytes: Buffer }[] = [];

    const viaData = await t.gql(PUSH_DATA, { input: { postboxId: rsa.postboxId, fileName: `${marker}.txt`, fileDescriptor: descriptor, data: fileA.toString("base64"), idempotencyKey: "confidential-1" } }, { token: session });
    expect(viaData.errors).toBeUndefined();
    pushed.push({ id: viaData.data!.pushData.id, target: rsa, bytes: fileA });
    // The retry (answered from the fingerprint) must not leave the content behind either.
    const retry = await t.gql(PUSH_DATA, { input: { postboxId: rsa.postboxId, fileName: `${marker}.txt`, fileDescriptor: descriptor, data: fileA.toString("base64"), idempotencyKey: "confidential-1" } }, { token: session });
    expect(retry.data!.pushData.duplicate).toBe(true);

    const jwe = await encryptForPostbox(x, fileB);
    const viaJwe = await t.gql(PUSH_DATA, { input: { postboxId: x.postboxId, fileName: `${marker}.bin`, fileDescriptor: descriptor, encryptedData: jwe } }, { token: session });
    expect(viaJwe.errors).toBeUndefined();
    pushed.push({ id: viaJwe.data!.pushData.id, target: x, bytes: fileB });

    const viaDataX = await t.gql(PUSH_DATA, { input: { postboxId: x.postboxId, fileName: `${marker}.csv`, fileDescriptor: descriptor, data: fileC.toString("base64") } }, { token: session });
    pushed.push({ id: viaDataX.data!.pushData.id, target: x, bytes: fileC });

    // A multipart upload, stored in slices: large enough for several of them, the marker in the middle one.
    const fileD = Buffer.concat([randomBytes(1_000_003), Buffer.from(marker), randomBytes(1_000_000)]);
    const viaUpload = await multipartGql(t.url, PUSH_DATA, { input: { postboxId: rsa.postboxId, fileName: `${marker}.big`, fileDescriptor: descriptor, file: null } }, "variables.input.file", fileD, { token: session });
    expect(viaUpload.errors).toBeUndefined();
    pushed.push({ id: viaUpload.data!.pushData.id, target: rsa, bytes: fileD });
    expect(await t.app.db.prisma.pushChunk.count({ where: { pushId: viaUpload.data!.pushData.id } })).toBeGreaterThan(1);

    // A refused push carrying the marker leaves nothing either.
    const pending = await t.gql(`mutation { createPostbox { id } }`, {}, { token: session });
    const refused = await t.gql(PUSH_DATA, { input: { postboxId: pending.data!.createPostbox.id, fileName: `${marker}.txt`, fileDescriptor: descriptor, data: fileA.toString("base64") } }, { token: session });
    expect(errorCode(refused)).toBe("POSTBOX_NOT_READY");

    // The user decrypts the original bytes and descriptor, and acknowledges one.
    for (const p of pushed) {
      const f = await t.gql(FILE, { id: p.id }, { token: p.target.accessToken });
      expect(Buffer.from((await compactDecrypt(f.data!.postboxFile.ciphertext, p.target.privateKey)).plaintext).equals(p.bytes)).toBe(true);
      const d = JSON.parse(Buffer.from((await compactDecrypt(f.data!.postboxFile.descriptor, p.target.privateKey)).plaintext).toString());
      expect(d.accounts[0].accountId).toBe(`${marker}-account`);
    }
    await t.gql(`mutation($ids: [ID!]!) { acknowledgeFiles(ids: $ids) { id } }`, { ids: [pushed[0].id] }, { token: rsa.accessToken });

    const search = [...new Set([...needles(marker, fileA), ...needles(marker, fileB), ...needles(marker, fileC), ...needles(marker, fileD)])];
    expect(search.every((n) => n.length >= 20)).toBe(true);
    // The needles do match the forms the content travelled in (so a leak of those would be caught).
    expect(fileA.toString("base64")).toContain(needles(marker, fileA)[1]);
    expect(Buffer.from(JSON.stringify(descriptor)).toString()).toContain(marker);
    const found: string[] = [];

    // 1. Every row of every table (JSON columns included), as the database returns it.
    const tables = await t.app.db.prisma.$queryRawUnsafe<{ table_name: string }[]>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`,
    );
    expect(tables.map((r) => r.table_name)).toEqual(expect.arrayContaining(["Push", "PushContent", "PushChunk", "AuditEvent", "WebhookDelivery", "Postbox"]));
    let rows = 0;
    for (const { table_name } of tables) {
      const dump = await t.app.db.prisma.$queryRawUnsafe<{ j: string }[]>(`SELECT row_to_json(x)::text AS j FROM "${table_name}" x`);
      rows += dump.length;
      for (const { j } of dump) for (const n of search) if (j.includes(n)) found.push(`table ${table_name}: ${n}`);
    }
    expect(rows).toBeGreaterThan(20);

    // 2. Every log line (at trace level).
    expect(t.logs.length).toBeGreaterThan(10);
    const logText = t.logs.join("\n");
    for (const n of search) if (logText.includes(n)) found.push(`logs: ${n}`);

    // 3. Flipping one byte of each stored ciphertext makes decryption fail.
    for (const p of pushed) {
      const row = await t.app.db.prisma.pushContent.findUniqueOrThrow({ where: { pushId: p.id } });
      // An upload's JWE is in slices: flip the byte in the joined text and store it back as one slice.
      const chunks = row.ciphertext === null ? await t.app.db.prisma.pushChunk.findMany({ where: { pushId: p.id }, orderBy: { seq: "asc" } }) : [];
      const parts = (row.ciphertext ?? chunks.map((c) => c.data).join("")).split(".");
      const ct = Buffer.from(parts[3], "base64url");
      ct[Math.floor(ct.length / 2)] ^= 0x01;
      parts[3] = ct.toString("base64url");
      if (row.ciphertext === null) {
        await t.app.db.prisma.pushChunk.deleteMany({ where: { pushId: p.id } });
        await t.app.db.prisma.pushChunk.create({ data: { pushId: p.id, seq: 0, data: parts.join(".") } });
      } else {
        await t.app.db.prisma.pushContent.update({ where: { pushId: p.id }, data: { ciphertext: parts.join(".") } });
      }
      const f = await t.gql(FILE, { id: p.id }, { token: p.target.accessToken });
      await expect(compactDecrypt(f.data!.postboxFile.ciphertext, p.target.privateKey)).rejects.toThrow();
    }

    // 4. Every file in the data directory, once the server has stopped and flushed everything.
    const kind = t.app.db.kind;
    await t.stop();
    stopped = true;
    let files = 0;
    let witnessed = 0;
    const bufs = search.map((n) => Buffer.from(n));
    // Ids the database does hold in clear: finding them proves the scan reads where rows are stored.
    const witness = Buffer.from(pushed[1].id);
    for await (const file of walk(dataDir)) {
      files++;
      const content = await readFile(file);
      if (content.includes(witness)) witnessed++;
      bufs.forEach((b, i) => {
        if (content.includes(b)) found.push(`file ${path.relative(dataDir, file)}: ${search[i]}`);
      });
    }
    expect(files).toBeGreaterThan(kind === "pglite" ? 100 : 0);
    if (kind === "pglite") expect(witnessed).toBeGreaterThan(0);
    expect(found).toEqual([]);
    return { kind, files };
  } finally {
    if (!stopped) await t.stop();
  }
}

describe("confidentiality", () => {
  it("leaves the plaintext nowhere: database, logs, data directory", async () => {
    await scenario();
  });

  if (process.env.TEST_DB === "postgres") {
    it("leaves the plaintext nowhere in a file-backed embedded database either", async () => {
      // An empty DATABASE_URL selects the embedded database, kept in the data directory.
      const { kind } = await scenario({ env: { DATABASE_URL: "" } });
      expect(kind).toBe("pglite");
    });
  }
});
