// Pushes as multipart uploads (`file`, `encryptedFile`): the file streams through
// the server, which encrypts (or checks) it and writes its JWE in PushChunk slices
// as it arrives. What the user fetches decrypts to the original; refused and broken
// uploads leave no slice behind; retention deletes slices with the content. Large
// inline values (JSON bodies over 1 MiB) take the same path from the body's buffer.
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import net from "node:net";
import { compactDecrypt } from "jose";
import { DESCRIPTOR, PUSH_DATA, createReadyPostboxForPush, createSession, encryptForPostbox, registerApp, type PushTarget } from "../helpers/factories.js";
import { errorCode, startTestServer, type TestServer } from "../helpers/server.js";
import { waitUntil } from "./postbox.helpers.js";
import { multipartGql } from "../helpers/upload.js";
import { request } from "undici";

const MiB = 1024 * 1024;
let t: TestServer;
let session: string;
let rsa: PushTarget;
let x25519: PushTarget;

beforeAll(async () => {
  t = await startTestServer({ env: { MAX_PUSH_BYTES: "3MiB" } });
  const app = await registerApp(t);
  session = await createSession(t, app);
  rsa = await createReadyPostboxForPush(t, session, "RSA");
  x25519 = await createReadyPostboxForPush(t, session, "X25519");
});
afterAll(async () => t?.stop());

const FILE = `query($id: ID!) { postboxFile(id: $id) { id ciphertext descriptor sha256 size downloadUrl } }`;

function input(target: PushTarget, extra: Record<string, unknown> = {}) {
  return { postboxId: target.postboxId, fileName: "upload.bin", fileDescriptor: DESCRIPTOR, ...extra };
}

function upload(target: PushTarget, field: "file" | "encryptedFile", bytes: Uint8Array, extra: Record<string, unknown> = {}, o: Parameters<typeof multipartGql>[5] = {}) {
  return multipartGql(t.url, PUSH_DATA, { input: input(target, { [field]: null, ...extra }) }, `variables.input.${field}`, bytes, { token: session, ...o });
}

const prisma = () => t.app.db.prisma;
const counts = async () => ({ pushes: await prisma().push.count(), chunks: await prisma().pushChunk.count() });

async function fetchFile(target: PushTarget, id: string) {
  const r = await t.gql(FILE, { id }, { token: target.accessToken });
  expect(r.errors).toBeUndefined();
  return r.data!.postboxFile as { id: string; ciphertext: string; descriptor: string; sha256: string; size: number };
}

describe("multipart uploads", () => {
  it("encrypts a streamed file to the user's key in slices; the user decrypts the original bytes", async () => {
    const bytes = randomBytes(2 * MiB + 12345);
    const r = await upload(rsa, "file", bytes);
    expect(r.errors).toBeUndefined();
    const p = r.data!.pushData;
    expect(p).toMatchObject({ status: "PENDING", duplicate: false, postboxId: rsa.postboxId });

    // Stored as slices of the JWE (2 MiB of plaintext is about 2.8 M characters of JWE: three slices), not as one value.
    const content = await prisma().pushContent.findUniqueOrThrow({ where: { pushId: p.id } });
    expect(content.ciphertext).toBeNull();
    const slices = await prisma().pushChunk.findMany({ where: { pushId: p.id }, orderBy: { seq: "asc" } });
    expect(slices.map((c) => c.seq)).toEqual([0, 1, 2]);
    // Written with the time they were written (abandoned slices are found by it).
    for (const c of slices) expect(Math.abs(c.createdAt.getTime() - Date.now())).toBeLessThan(60_000);

    const f = await fetchFile(rsa, p.id);
    expect(f.ciphertext).toBe(slices.map((c) => c.data).join(""));
    expect(f.ciphertext.length).toBe(p.size);
    expect(createHash("sha256").update(f.ciphertext).digest("hex")).toBe(p.sha256);
    const { plaintext, protectedHeader } = await compactDecrypt(f.ciphertext, rsa.privateKey);
    expect(Buffer.from(plaintext).equals(bytes)).toBe(true);
    expect(protectedHeader).toMatchObject({ alg: "RSA-OAEP-256", enc: "A256GCM", kid: rsa.kid });
    const descriptor = JSON.parse(Buffer.from((await compactDecrypt(f.descriptor, rsa.privateKey)).plaintext).toString());
    expect(descriptor).toEqual({ fileName: "upload.bin", ...DESCRIPTOR });

    const events = await prisma().auditEvent.findMany({ where: { targetId: p.id, action: "push.create" } });
    expect(events.map((e) => (e.detail as { kind: string }).kind)).toEqual(["file"]);
  });

  it("stores an app-encrypted JWE upload as is", async () => {
    const bytes = randomBytes(300_000);
    const jwe = await encryptForPostbox(x25519, bytes);
    const r = await upload(x25519, "encryptedFile", Buffer.from(jwe));
    expect(r.errors).toBeUndefined();
    const f = await fetchFile(x25519, r.data!.pushData.id);
    expect(f.ciphertext).toBe(jwe);
    expect(Buffer.from((await compactDecrypt(f.ciphertext, x25519.privateKey)).plaintext).equals(bytes)).toBe(true);
  });

  it("answers a retry with the same idempotency key from the original and refuses other content under it", async () => {
    const bytes = randomBytes(50_000);
    const first = await upload(rsa, "file", bytes, { idempotencyKey: "upload-retry-1" });
    expect(first.errors).toBeUndefined();
    const before = await counts();
    const again = await upload(rsa, "file", bytes, { idempotencyKey: "upload-retry-1" });
    expect(again.data!.pushData).toMatchObject({ id: first.data!.pushData.id, duplicate: true });
    expect(await counts()).toEqual(before);
    const other = await upload(rsa, "file", randomBytes(50_000), { idempotencyKey: "upload-retry-1" });
    expect(errorCode(other)).toBe("CONFLICT");
    expect(await counts()).toEqual(before);
  });
});

describe("large inline pushes (base64 or JWE text in a JSON body over 1 MiB)", () => {
  it("encrypts `data` from the body buffer in slices and stores the JWE as slices; the user decrypts the original", async () => {
    const bytes = randomBytes(2 * MiB + 5);
    const r = await t.gql(PUSH_DATA, { input: input(rsa, { data: bytes.toString("base64") }) }, { token: session });
    expect(r.errors).toBeUndefined();
    const p = r.data!.pushData;
    expect((await prisma().pushContent.findUniqueOrThrow({ where: { pushId: p.id } })).ciphertext).toBeNull();
    expect(await prisma().pushChunk.count({ where: { pushId: p.id } })).toBe(3);
    const f = await fetchFile(rsa, p.id);
    expect(createHash("sha256").update(f.ciphertext).digest("hex")).toBe(p.sha256);
    expect(Buffer.from((await compactDecrypt(f.ciphertext, rsa.privateKey)).plaintext).equals(bytes)).toBe(true);
    expect(JSON.parse(Buffer.from((await compactDecrypt(f.descriptor, rsa.privateKey)).plaintext).toString())).toEqual({ fileName: "upload.bin", ...DESCRIPTOR });
    const events = await prisma().auditEvent.findMany({ where: { targetId: p.id, action: "push.create" } });
    expect(events.map((e) => (e.detail as { kind: string }).kind)).toEqual(["data"]);
  });

  it("stores a large `encryptedData` JWE as is, in slices", async () => {
    const jwe = await encryptForPostbox(x25519, randomBytes(2 * MiB));
    const r = await t.gql(PUSH_DATA, { input: input(x25519, { encryptedData: jwe }) }, { token: session });
    expect(r.errors).toBeUndefined();
    expect((await prisma().pushContent.findUniqueOrThrow({ where: { pushId: r.data!.pushData.id } })).ciphertext).toBeNull();
    expect((await fetchFile(x25519, r.data!.pushData.id)).ciphertext).toBe(jwe);
  });

  it("answers a retry from the original and refuses other content under the same idempotency key", async () => {
    const data = randomBytes(MiB + 100).toString("base64");
    const first = await t.gql(PUSH_DATA, { input: input(rsa, { data, idempotencyKey: "large-inline-1" }) }, { token: session });
    expect(first.errors).toBeUndefined();
    const before = await counts();
    const again = await t.gql(PUSH_DATA, { input: input(rsa, { data, idempotencyKey: "large-inline-1" }) }, { token: session });
    expect(again.data!.pushData).toMatchObject({ id: first.data!.pushData.id, duplicate: true });
    const other = await t.gql(PUSH_DATA, { input: input(rsa, { data: randomBytes(MiB + 100).toString("base64"), idempotencyKey: "large-inline-1" }) }, { token: session });
    expect(errorCode(other)).toBe("CONFLICT");
    expect(await counts()).toEqual(before);
  });

  it("pushes one large variable twice in one request (aliases)", async () => {
    const bytes = randomBytes(MiB + 1);
    const r = await t.gql(
      `mutation($i: PushDataInput!) { a: pushData(input: $i) { id } b: pushData(input: $i) { id } }`,
      { i: input(rsa, { data: bytes.toString("base64") }) },
      { token: session },
    );
    expect(r.errors).toBeUndefined();
    for (const id of [r.data!.a.id, r.data!.b.id]) {
      expect(Buffer.from((await compactDecrypt((await fetchFile(rsa, id)).ciphertext, rsa.privateKey)).plaintext).equals(bytes)).toBe(true);
    }
  });

  it("refuses a placeholder the client wrote itself, even one that names content this body left in the buffer", async () => {
    const before = await counts();
    // The parser files the first large value it keeps under a token; the client writes what that token once was (an escaped NUL, so parsed as text).
    const r = await t.gql(PUSH_DATA, { input: input(rsa, { data: randomBytes(MiB + 1).toString("base64"), postboxId: "\u0000inline-value:0" }) }, { token: session });
    expect(r.status).toBe(400);
    expect(errorCode(r)).toBe("BAD_USER_INPUT");
    expect(r.errors![0].message).toMatch(/\$input\.postboxId contains a NUL character/);
    expect(await counts()).toEqual(before);
  });

  it("refuses a large top-level $data used anywhere but as a push's content, and takes it there", async () => {
    const before = await counts();
    const big = randomBytes(MiB + 1).toString("base64");
    const { fileDescriptor } = input(rsa, {});
    const misused = `mutation($data: String!, $d: FileDescriptorInput!, $p: ID!) { pushData(input: { postboxId: $p, fileName: $data, fileDescriptor: $d, data: $data }) { id } }`;
    const r = await t.gql(misused, { data: big, d: fileDescriptor, p: rsa.postboxId }, { token: session });
    expect(r.status).toBe(400);
    expect(errorCode(r)).toBe("BAD_USER_INPUT");
    expect(r.errors![0].message).toMatch(/\$data holds a file's content/);
    expect(await counts()).toEqual(before);
    const proper = `mutation($data: String!, $d: FileDescriptorInput!, $p: ID!) { pushData(input: { postboxId: $p, fileName: "a.bin", fileDescriptor: $d, data: $data }) { id size } }`;
    const ok = await t.gql(proper, { data: big, d: fileDescriptor, p: rsa.postboxId }, { token: session });
    expect(ok.errors).toBeUndefined();
    expect(ok.data!.pushData.id).toMatch(/^psh_/);
  });

  it("refuses bad large content with the same errors as small content, storing nothing", async () => {
    const before = await counts();
    const push = (extra: Record<string, unknown>, target = rsa) => t.gql(PUSH_DATA, { input: input(target, extra) }, { token: session });
    const b64 = randomBytes(2 * MiB).toString("base64");
    const broken = await push({ data: `${b64.slice(0, 1_500_000)}!${b64.slice(1_500_001)}` });
    expect(errorCode(broken)).toBe("BAD_USER_INPUT");
    expect(broken.errors![0].extensions).toMatchObject({ field: "data" });
    expect(broken.errors![0].message).toMatch(/standard base64/);
    expect(errorCode(await push({ data: `${b64.slice(0, 1_000_000)}=${b64.slice(1_000_001)}` }))).toBe("BAD_USER_INPUT");
    expect(errorCode(await push({ data: randomBytes(3 * MiB + 3).toString("base64") }))).toBe("PAYLOAD_TOO_LARGE");
    const jwe = await encryptForPostbox(x25519, randomBytes(2 * MiB));
    const fourParts = await push({ encryptedData: jwe.split(".").slice(0, 4).join(".") }, x25519);
    expect(fourParts.errors![0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "encryptedData" });
    expect(fourParts.errors![0].message).toMatch(/found 4 parts/);
    const wrongKey = await push({ encryptedData: await encryptForPostbox(rsa, randomBytes(2 * MiB)) }, x25519);
    expect(wrongKey.errors![0].extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "encryptedData" });
    expect(await counts()).toEqual(before);
    // A large body of many small values (no push has them) is parsed the usual way.
    const many = await t.gql(`{ __typename }`, { junk: Array.from({ length: 600_000 }, (_, i) => i % 10) });
    expect(many.status).toBe(200);
    expect(many.data).toEqual({ __typename: "Query" });
    // A large body that is not JSON is refused like a small one.
    const res = await request(`${t.url}/graphql`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${session}` }, body: `{"query":"x","variables":{"data":"${b64}"` });
    expect(res.statusCode).toBe(400);
    expect(((await res.body.json()) as { errors: { message: string }[] }).errors[0].message).toBe("The request body is not valid JSON.");
  });
});

describe("downloads", () => {
  it("streams a file's JWE from downloadUrl with the user's token, scoped and audited like postboxFile", async () => {
    const bytes = randomBytes(2 * MiB + 7);
    const pushed = await upload(rsa, "file", bytes);
    const id = pushed.data!.pushData.id;
    const meta = await t.gql(`query($id: ID!) { postboxFile(id: $id) { downloadUrl sha256 size } }`, { id }, { token: rsa.accessToken });
    const { downloadUrl, sha256, size } = meta.data!.postboxFile;
    expect(downloadUrl).toBe(`${t.url}/files/${id}`);

    const res = await request(downloadUrl, { headers: { authorization: `Bearer ${rsa.accessToken}` } });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toBe("application/jose");
    expect(res.headers["content-length"]).toBe(String(size));
    expect(res.headers.etag).toBe(`"${sha256}"`);
    const jwe = await res.body.text();
    expect(createHash("sha256").update(jwe).digest("hex")).toBe(sha256);
    expect(Buffer.from((await compactDecrypt(jwe, rsa.privateKey)).plaintext).equals(bytes)).toBe(true);
    const fetches = await prisma().auditEvent.findMany({ where: { action: "push.fetch", targetId: id }, orderBy: { seq: "asc" } });
    expect(fetches.map((e) => (e.detail as { via: string }).via)).toEqual(["graphql", "download"]);

    // An inline push downloads the same way.
    const inline = await t.gql(PUSH_DATA, { input: input(x25519, { data: Buffer.from("small file").toString("base64") }) }, { token: session });
    const small = await request(`${t.url}/files/${inline.data!.pushData.id}`, { headers: { authorization: `Bearer ${x25519.accessToken}` } });
    expect(Buffer.from((await compactDecrypt(await small.body.text(), x25519.privateKey)).plaintext).toString()).toBe("small file");
  });

  it("refuses without the user's token, and for another postbox's file", async () => {
    const id = (await upload(rsa, "file", randomBytes(100))).data!.pushData.id;
    const none = await request(`${t.url}/files/${id}`);
    expect(none.statusCode).toBe(401);
    expect(((await none.body.json()) as { errors: { extensions: { code: string } }[] }).errors[0].extensions.code).toBe("UNAUTHENTICATED");
    const session_ = await request(`${t.url}/files/${id}`, { headers: { authorization: `Bearer ${session}` } });
    expect(session_.statusCode).toBe(401);
    await session_.body.dump();
    const other = await request(`${t.url}/files/${id}`, { headers: { authorization: `Bearer ${x25519.accessToken}` } });
    expect(other.statusCode).toBe(404);
    await other.body.dump();
  });
});

describe("downloads cut short", () => {
  it("lets go of a download whose client left halfway", async () => {
    // Larger than what the socket buffers between server and client take (the server's
    // send buffer grows to 4 MiB here): a file that fits in them is sent whole, however
    // soon the client leaves, and the handler ends as a completed download.
    const big = await startTestServer({ env: { MAX_PUSH_BYTES: "12MiB" } });
    try {
      const s = await createSession(big, await registerApp(big));
      const target = await createReadyPostboxForPush(big, s, "RSA");
      const up = await multipartGql(big.url, PUSH_DATA, { input: input(target, { file: null }) }, "variables.input.file", randomBytes(12 * MiB), { token: s });
      expect(up.errors).toBeUndefined();
      const id = up.data!.pushData.id;
      const { hostname, port } = new URL(big.url);
      await new Promise<void>((resolve, reject) => {
        const req = http.get({ hostname, port, path: `/files/${id}`, headers: { authorization: `Bearer ${target.accessToken}` } }, (res) => {
          expect(res.statusCode).toBe(200);
          res.pause(); // reads nothing more, then leaves: the server's writes back up, then fail
          setTimeout(() => {
            req.destroy();
            resolve();
          }, 200);
        });
        req.on("error", () => {});
        req.on("timeout", reject);
      });
      await waitUntil(() => big.logs.some((l) => l.includes(id) && l.includes("file download ended by the client")), "the download's handler ended");
    } finally {
      await big.stop();
    }
  });

  it("refuses a file whose slices were purged while it was read, rather than sending it short", async () => {
    const bytes = randomBytes(2 * MiB + 3);
    const id = (await upload(rsa, "file", bytes)).data!.pushData.id;
    // As if retention deleted the content between the first slice's read and the next.
    await prisma().pushChunk.deleteMany({ where: { pushId: id, seq: { gte: 1 } } });
    const r = await t.gql(FILE, { id }, { token: rsa.accessToken });
    expect(errorCode(r)).toBe("NOT_FOUND");
    expect(r.errors![0].message).toMatch(/deleted while it was being read/);
    const res = await request(`${t.url}/files/${id}`, { headers: { authorization: `Bearer ${rsa.accessToken}` } });
    expect(res.statusCode).toBe(200); // the headers went before the loss was found
    await expect(res.body.text()).rejects.toThrow();
  });
});

describe("refused uploads leave nothing behind", () => {
  it("refuses a file over MAX_PUSH_BYTES while it streams, with a refusal in the audit log", async () => {
    const before = await counts();
    const r = await upload(rsa, "file", randomBytes(3 * MiB + 1));
    expect(errorCode(r)).toBe("PAYLOAD_TOO_LARGE");
    expect(r.errors![0].message).toMatch(/at most 3145728 bytes/);
    expect(await counts()).toEqual(before);
    const refusal = await prisma().auditEvent.findFirst({ where: { action: "push.create", outcome: "REFUSED", reason: "PAYLOAD_TOO_LARGE:too_large" }, orderBy: { seq: "desc" } });
    expect((refusal?.detail as { kind?: string } | undefined)?.kind).toBe("file");
  });

  it("refuses an encrypted upload whose ciphertext is too long, malformed, or addressed to another key", async () => {
    const before = await counts();
    const big = await encryptForPostbox(x25519, randomBytes(3 * MiB + 1));
    expect(errorCode(await upload(x25519, "encryptedFile", Buffer.from(big)))).toBe("PAYLOAD_TOO_LARGE");
    const jwe = await encryptForPostbox(x25519, randomBytes(2000));
    const fourParts = jwe.split(".").slice(0, 4).join(".");
    const malformed = await upload(x25519, "encryptedFile", Buffer.from(fourParts));
    expect(errorCode(malformed)).toBe("BAD_USER_INPUT");
    expect(malformed.errors![0].extensions).toMatchObject({ field: "encryptedFile" });
    expect(malformed.errors![0].message).toMatch(/found 4 parts/);
    // A JWE to the RSA postbox, uploaded to the X25519 one: its header names the other key.
    const wrongKey = await upload(x25519, "encryptedFile", Buffer.from(await encryptForPostbox(rsa, randomBytes(2000))));
    expect(errorCode(wrongKey)).toBe("BAD_USER_INPUT");
    expect(await counts()).toEqual(before);
  });

  it("refuses an empty file and a push to a postbox that is not ready, and the connection still serves the next request", async () => {
    const before = await counts();
    expect(errorCode(await upload(rsa, "file", Buffer.alloc(0)))).toBe("BAD_USER_INPUT");
    const pending = await t.gql(`mutation { createPostbox { id } }`, {}, { token: session });
    const r = await multipartGql(t.url, PUSH_DATA, { input: { postboxId: pending.data!.createPostbox.id, fileName: "a.bin", fileDescriptor: DESCRIPTOR, file: null } }, "variables.input.file", randomBytes(MiB), { token: session });
    expect(errorCode(r)).toBe("POSTBOX_NOT_READY");
    expect((await t.gql(`{ __typename }`)).status).toBe(200);
    expect(await counts()).toEqual(before);
  });

  it("reads and discards a file part that arrives after the push was refused, so the client can finish sending", async () => {
    // Its own server: the 16 MiB body must fit the body limit, and be larger than the
    // loopback socket buffers (4 MiB here), which would otherwise swallow it unread.
    const big = await startTestServer({ env: { MAX_PUSH_BYTES: "20MiB" } });
    const socket = net.connect(Number(new URL(big.url).port), "127.0.0.1");
    try {
      const key = await createSession(big, await registerApp(big));
      const boundary = "----postbox-test-boundary";
      const ops = JSON.stringify({ query: PUSH_DATA, variables: { input: { postboxId: "pbx_nosuchthing", fileName: "a.bin", fileDescriptor: DESCRIPTOR, file: null } } });
      const head = `--${boundary}\r\nContent-Disposition: form-data; name="operations"\r\n\r\n${ops}\r\n--${boundary}\r\nContent-Disposition: form-data; name="map"\r\n\r\n{"0":["variables.input.file"]}\r\n--${boundary}\r\n`;
      const fileHead = `Content-Disposition: form-data; name="0"; filename="a.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`;
      const tail = `\r\n--${boundary}--\r\n`;
      const FILE = 16 * MiB;
      const length = Buffer.byteLength(head) + Buffer.byteLength(fileHead) + FILE + Buffer.byteLength(tail);
      let answer = "";
      socket.on("data", (d: Buffer) => (answer += d.toString()));
      socket.on("error", () => {});
      socket.write(
        `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nApollo-Require-Preflight: true\r\nAuthorization: Bearer ${key}\r\nContent-Length: ${length}\r\n\r\n${head}`,
      );
      // The refusal is answered before the file part has even begun.
      await waitUntil(() => answer.includes("NOT_FOUND"), "the refusal");
      socket.write(fileHead);
      const chunk = Buffer.alloc(256 * 1024, 0x41);
      let written = 0;
      while (written < FILE) {
        written += chunk.length;
        if (!socket.write(chunk)) {
          const drained = await Promise.race([new Promise((r) => socket.once("drain", () => r(true))), new Promise((r) => setTimeout(() => r(false), 10_000))]);
          // Before, the unread file part stopped the body after about 4 MiB, for Node's 300 s request timeout.
          expect({ written, drained }).toEqual({ written, drained: true });
        }
      }
      socket.write(tail);
      expect(written).toBe(FILE);
    } finally {
      socket.destroy();
      await big.stop();
    }
  });

  it("refuses an upload that ends after its postbox's expiry with POSTBOX_EXPIRED, keeping nothing", async () => {
    const target = await createReadyPostboxForPush(t, session, "RSA");
    const expiresAt = new Date(Date.now() + 1500);
    await prisma().postbox.update({ where: { id: target.postboxId }, data: { expiresAt } });
    const before = await counts();
    async function* slow() {
      for (let i = 0; i < 6; i++) {
        yield randomBytes(1024);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    const r = await upload(target, "file", Buffer.alloc(0), {}, { body: slow() });
    expect(Date.now()).toBeGreaterThan(expiresAt.getTime());
    expect(errorCode(r)).toBe("POSTBOX_EXPIRED");
    expect(r.errors![0].message).toMatch(/before the upload ended/);
    expect(await counts()).toEqual(before);
  });

  it("deletes the slices already written when the client goes away mid-upload", async () => {
    const before = await counts();
    async function* cutOff() {
      for (let i = 0; i < 20; i++) {
        yield randomBytes(128 * 1024);
        await new Promise((r) => setTimeout(r, 5));
      }
      throw new Error("client gave up");
    }
    await expect(upload(rsa, "file", Buffer.alloc(0), {}, { body: cutOff() })).rejects.toThrow();
    // The server notices the closed connection and cleans up after itself.
    for (let i = 0; i < 100 && (await prisma().pushChunk.count()) !== before.chunks; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await counts()).toEqual(before);
  });

  it("takes uploads only from multipart requests that carry the CSRF preflight header", async () => {
    const noPreflight = await upload(rsa, "file", randomBytes(100), {}, { headers: {} });
    expect(noPreflight.status).toBe(400);
    expect(noPreflight.errors![0].message).toMatch(/Apollo-Require-Preflight/);
    const inline = await t.gql(PUSH_DATA, { input: input(rsa, { file: "aGVsbG8=" }) }, { token: session });
    expect(inline.errors![0].message).toMatch(/multipart/);
    const fileFirst = await upload(rsa, "file", randomBytes(100), {}, { parts: ["file", "operations", "map"] });
    expect(fileFirst.status).toBe(400);
    const twoTargets = await upload(rsa, "file", randomBytes(100), {}, { map: { 0: ["variables.input.file"], 1: ["variables.input.encryptedFile"] } });
    expect(twoTargets.errors![0].message).toMatch(/one file per request/);
    const badPath = await upload(rsa, "file", randomBytes(100), {}, { map: { 0: ["query"] } });
    expect(badPath.status).toBe(400);
    expect(badPath.errors![0].message).toMatch(/variables/);
    const both = await upload(rsa, "file", randomBytes(100), { data: "aGVsbG8=" });
    expect(errorCode(both)).toBe("BAD_USER_INPUT");
  });
});

describe("retention", () => {
  it("deletes an upload's slices with its content, and abandoned slices of uploads that never became a push", async () => {
    const r = await upload(rsa, "file", randomBytes(1000));
    const id = r.data!.pushData.id;
    expect(await prisma().pushChunk.count({ where: { pushId: id } })).toBe(1);
    const hourAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await prisma().pushChunk.create({ data: { pushId: "psh_abandoned", seq: 0, data: "x", createdAt: hourAgo } });
    await prisma().pushChunk.create({ data: { pushId: "psh_in_flight", seq: 0, data: "x" } });

    await t.app.services.pushes.retention(new Date());
    expect(await prisma().pushChunk.count({ where: { pushId: "psh_abandoned" } })).toBe(0);
    expect(await prisma().pushChunk.count({ where: { pushId: "psh_in_flight" } })).toBe(1);
    expect(await prisma().pushChunk.count({ where: { pushId: id } })).toBe(1);

    // Past the postbox's expiry the content goes, slices included.
    await t.app.services.pushes.retention(new Date(Date.now() + 400 * 24 * 60 * 60 * 1000));
    expect(await prisma().pushChunk.count({ where: { pushId: id } })).toBe(0);
    expect(await prisma().pushContent.count({ where: { pushId: id } })).toBe(0);
    await prisma().pushChunk.deleteMany({ where: { pushId: "psh_in_flight" } });
  });
});
