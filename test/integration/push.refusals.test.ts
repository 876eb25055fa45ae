// Every kind of bad push the issue lists gets a clear error and writes nothing
// except one refusal in the audit log (with the error code and a short reason).
// Also: postbox states, idempotency, and the HTTP body limit.
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import net from "node:net";
import { randomBytes } from "node:crypto";
import { request } from "undici";
import {
  DESCRIPTOR,
  PUSH_DATA,
  createReadyPostboxForPush,
  createSession,
  dataInput,
  encryptForPostbox,
  makeUserKeyPair,
  registerApp,
  type PushTarget,
  type TestApp,
} from "../helpers/factories.js";
import { errorCode, startTestServer, type TestServer } from "../helpers/server.js";
import { collect, wsClient } from "../helpers/ws.js";

const MAX = 4096;

let t: TestServer;
let app: TestApp;
let session: string;
let rsa: PushTarget;
let ec: PushTarget;

beforeAll(async () => {
  t = await startTestServer({ env: { MAX_PUSH_BYTES: String(MAX) } });
  app = await registerApp(t);
  session = await createSession(t, app);
  rsa = await createReadyPostboxForPush(t, session, "RSA");
  ec = await createReadyPostboxForPush(t, session, "P-256");
});
afterAll(async () => t?.stop());

async function counts() {
  const p = t.app.db.prisma;
  return {
    pushes: await p.push.count(),
    contents: await p.pushContent.count(),
    webhooks: await p.webhookDelivery.count(),
    postboxes: await p.postbox.count(),
    audit: await p.auditEvent.count(),
  };
}

function jweWith(target: PushTarget, mutate: (parts: string[]) => void): Promise<string> {
  return encryptForPostbox(target, Buffer.from("content")).then((jwe) => {
    const parts = jwe.split(".");
    mutate(parts);
    return parts.join(".");
  });
}

const header = (h: Record<string, unknown>) => Buffer.from(JSON.stringify(h)).toString("base64url");

type Case = [name: string, make: () => Promise<{ input: Record<string, unknown>; token?: string | null }>, code: string, reason: string, message: RegExp];

const base = () => ({ postboxId: rsa.postboxId, fileName: "f.bin", fileDescriptor: DESCRIPTOR });

const cases: Case[] = [
  ["malformed base64", async () => ({ input: { ...base(), data: "not base64!" } }), "BAD_USER_INPUT", "malformed_base64", /standard base64/],
  ["base64 with a line break", async () => ({ input: { ...base(), data: "QUJD\nQUJD" } }), "BAD_USER_INPUT", "malformed_base64", /base64/],
  ["base64url instead of base64", async () => ({ input: { ...base(), data: "-_-_" } }), "BAD_USER_INPUT", "malformed_base64", /base64/],
  ["both data and encryptedData", async () => ({ input: { ...base(), data: "QUJD", encryptedData: await encryptForPostbox(rsa, Buffer.from("x")) } }), "BAD_USER_INPUT", "content_choice", /exactly one/],
  ["neither data nor encryptedData", async () => ({ input: base() }), "BAD_USER_INPUT", "content_choice", /exactly one/],
  ["an empty file (data)", async () => ({ input: { ...base(), data: "" } }), "BAD_USER_INPUT", "empty_file", /empty/],
  ["an empty file (encryptedData)", async () => ({ input: { ...base(), encryptedData: await encryptForPostbox(rsa, new Uint8Array(0)) } }), "BAD_USER_INPUT", "empty_file", /empty/],
  ["an oversized file (data)", async () => ({ input: dataInput(rsa, randomBytes(MAX + 1)) }), "PAYLOAD_TOO_LARGE", "too_large", /MAX_PUSH_BYTES/],
  ["an oversized file (encryptedData)", async () => ({ input: { ...base(), encryptedData: await encryptForPostbox(rsa, randomBytes(MAX + 1)) } }), "PAYLOAD_TOO_LARGE", "too_large", /MAX_PUSH_BYTES/],
  ["a JWE with four parts", async () => ({ input: { ...base(), encryptedData: (await encryptForPostbox(rsa, Buffer.from("x"))).split(".").slice(0, 4).join(".") } }), "BAD_USER_INPUT", "malformed_jwe", /compact serialization/],
  ["a JWE that is not base64url", async () => ({ input: { ...base(), encryptedData: await jweWith(rsa, (p) => (p[3] = "a+b/")) } }), "BAD_USER_INPUT", "malformed_jwe", /base64url/],
  ["a JWE header that is not JSON", async () => ({ input: { ...base(), encryptedData: await jweWith(rsa, (p) => (p[0] = Buffer.from("nope").toString("base64url"))) } }), "BAD_USER_INPUT", "malformed_jwe_header", /JSON object/],
  ["enc other than A256GCM", async () => ({ input: { ...base(), encryptedData: await encryptForPostbox(rsa, Buffer.from("x"), { enc: "A128GCM" }) } }), "BAD_USER_INPUT", "bad_jwe_enc", /A256GCM/],
  ["alg RSA-OAEP (SHA-1)", async () => ({ input: { ...base(), encryptedData: await jweWith(rsa, (p) => (p[0] = header({ alg: "RSA-OAEP", enc: "A256GCM", kid: rsa.kid }))) } }), "BAD_USER_INPUT", "bad_jwe_alg", /RSA-OAEP-256/],
  ["an EC algorithm for an RSA key", async () => ({ input: { ...base(), encryptedData: await jweWith(rsa, (p) => (p[0] = header({ alg: "ECDH-ES+A256KW", enc: "A256GCM", kid: rsa.kid }))) } }), "BAD_USER_INPUT", "bad_jwe_alg", /RSA-OAEP-256/],
  ["RSA-OAEP-256 for an EC key", async () => ({ input: { ...base(), postboxId: ec.postboxId, encryptedData: await jweWith(ec, (p) => (p[0] = header({ alg: "RSA-OAEP-256", enc: "A256GCM", kid: ec.kid }))) } }), "BAD_USER_INPUT", "bad_jwe_alg", /ECDH-ES/],
  ["a wrong kid", async () => ({ input: { ...base(), encryptedData: await encryptForPostbox(rsa, Buffer.from("x"), { kid: "not-the-thumbprint" }) } }), "BAD_USER_INPUT", "wrong_kid", /thumbprint/],
  ["a JWE to another postbox's key", async () => ({ input: { ...base(), encryptedData: await encryptForPostbox(ec, Buffer.from("x")) } }), "BAD_USER_INPUT", "bad_jwe_alg", /RSA-OAEP-256/],
  ["a missing epk", async () => ({ input: { ...base(), postboxId: ec.postboxId, encryptedData: await jweWith(ec, (p) => (p[0] = header({ alg: "ECDH-ES+A256KW", enc: "A256GCM", kid: ec.kid }))) } }), "BAD_USER_INPUT", "bad_jwe_epk", /epk/],
  ["a missing fileName", async () => ({ input: { ...dataInput(rsa, Buffer.from("x")), fileName: null } }), "BAD_USER_INPUT", "missing_descriptor_field", /fileName is required/],
  ["a missing fileDescriptor", async () => ({ input: { ...dataInput(rsa, Buffer.from("x")), fileDescriptor: null } }), "BAD_USER_INPUT", "missing_descriptor_field", /fileDescriptor is required/],
  ["a missing mimeType", async () => ({ input: { ...dataInput(rsa, Buffer.from("x")), fileDescriptor: { accounts: [{ accountId: "a" }] } } }), "BAD_USER_INPUT", "missing_descriptor_field", /mimeType is required/],
  ["missing accounts", async () => ({ input: { ...dataInput(rsa, Buffer.from("x")), fileDescriptor: { mimeType: "text/plain", accounts: [] } } }), "BAD_USER_INPUT", "missing_descriptor_field", /accounts is required/],
  ["a missing accountId", async () => ({ input: { ...dataInput(rsa, Buffer.from("x")), fileDescriptor: { mimeType: "text/plain", accounts: [{}] } } }), "BAD_USER_INPUT", "missing_descriptor_field", /accountId is required/],
  ["a fileName with a right-to-left override", async () => ({ input: { ...dataInput(rsa, Buffer.from("x")), fileName: "invoice\u202efdp.exe" } }), "BAD_USER_INPUT", "bad_descriptor_field", /fileName must not contain control characters or bidirectional overrides/],
  ["a tag with a C1 control", async () => ({ input: { ...dataInput(rsa, Buffer.from("x")), fileDescriptor: { ...DESCRIPTOR, tags: ["a\u0085b"] } } }), "BAD_USER_INPUT", "bad_descriptor_field", /tags\[0\] must not contain control characters/],
  ["a malformed mimeType", async () => ({ input: { ...dataInput(rsa, Buffer.from("x")), fileDescriptor: { ...DESCRIPTOR, mimeType: "pdf" } } }), "BAD_USER_INPUT", "bad_descriptor_field", /media type/],
  ["a bad idempotencyKey", async () => ({ input: { ...dataInput(rsa, Buffer.from("x")), idempotencyKey: "has spaces" } }), "BAD_USER_INPUT", "bad_idempotency_key", /idempotencyKey/],
  ["no session", async () => ({ input: dataInput(rsa, Buffer.from("x")), token: null }), "UNAUTHENTICATED", "session_refused", /needs a session/],
  ["an unknown session key", async () => ({ input: dataInput(rsa, Buffer.from("x")), token: "pbs_" + "A".repeat(43) }), "UNAUTHENTICATED", "session_refused", /Unknown session key/],
  ["an unknown postbox", async () => ({ input: { ...dataInput(rsa, Buffer.from("x")), postboxId: "pbx_doesnotexist" } }), "NOT_FOUND", "unknown_postbox", /not found/],
  ["another contract's postbox", async () => {
    const other = await registerApp(t);
    const target = await createReadyPostboxForPush(t, await createSession(t, other), "RSA");
    return { input: dataInput(target, Buffer.from("x")) };
  }, "NOT_FOUND", "unknown_postbox", /not found/],
];

describe("refused pushes write nothing but their audit event", () => {
  it.each(cases)("refuses %s", async (_name, make, code, reason, message) => {
    const { input, token } = await make();
    const before = await counts();
    const r = await t.gql(PUSH_DATA, { input }, { token: token === null ? undefined : (token ?? session) });
    expect(r.data).toBeNull();
    expect(errorCode(r)).toBe(code);
    expect(r.errors![0].message).toMatch(message);
    expect(await counts()).toEqual({ ...before, audit: before.audit + 1 });
    const ev = await t.app.db.prisma.auditEvent.findFirst({ orderBy: { seq: "desc" } });
    expect(ev).toMatchObject({ action: "push.create", outcome: "REFUSED", reason: `${code}:${reason}` });
    // The refusal names no content, key or token.
    const text = JSON.stringify({ ...ev, seq: String(ev!.seq) });
    for (const v of [input.data, input.encryptedData, token].filter((v): v is string => typeof v === "string" && v.length > 8)) expect(text).not.toContain(v);
  });

  it("files a refusal under the caller's contract, and another contract's postbox id only in detail", async () => {
    const ev = await t.app.db.prisma.auditEvent.findFirst({ where: { reason: "NOT_FOUND:unknown_postbox" }, orderBy: { seq: "desc" } });
    expect(ev?.contractId).toBe(app.contractId);
    expect(ev?.postboxId).toBeNull();
    expect((ev?.detail as Record<string, unknown>).requestedPostboxId).toMatch(/^pbx_/);
  });

  it("refuses a field the schema requires before running anything, and still audits the attempt (without its content)", async () => {
    const before = await counts();
    const marker = `QUJD${randomBytes(6).toString("hex")}`;
    const r = await t.gql(PUSH_DATA, { input: { fileName: "x", data: marker } }, { token: session });
    expect(errorCode(r)).toBe("BAD_USER_INPUT");
    expect(r.errors![0].message).toMatch(/postboxId/);
    expect(await counts()).toEqual({ ...before, audit: before.audit + 1 });
    const ev = await t.app.db.prisma.auditEvent.findFirstOrThrow({ where: { action: "push.create" }, orderBy: { seq: "desc" } });
    expect(ev).toMatchObject({ outcome: "REFUSED", reason: "BAD_USER_INPUT:invalid_request", contractId: app.contractId, actorId: app.appId });
    expect(ev.detail).toEqual({ stage: "variables", session: "valid" });
    expect(JSON.stringify(ev, (_k, v) => (typeof v === "bigint" ? String(v) : v))).not.toContain(marker);
  });

  it("refuses the large-body parser's placeholder sent as postboxId like any other NUL, and audits the attempt, over HTTP and WebSocket", async () => {
    const input = { ...dataInput(rsa, Buffer.from("x")), postboxId: "\u0000inline-value:0" };
    const lastPush = () => t.app.db.prisma.auditEvent.findFirstOrThrow({ where: { action: "push.create" }, orderBy: { seq: "desc" } });
    const before = await counts();
    const r = await t.gql(PUSH_DATA, { input }, { token: session });
    expect(r.status).toBe(400);
    expect(errorCode(r)).toBe("BAD_USER_INPUT");
    expect(r.errors![0].message).toMatch(/\$input\.postboxId contains a NUL character/);
    expect(await counts()).toEqual({ ...before, audit: before.audit + 1 });
    expect(await lastPush()).toMatchObject({ outcome: "REFUSED", reason: "BAD_USER_INPUT:invalid_request", contractId: app.contractId, detail: { stage: "variables" } });
    const client = wsClient(t.wsUrl, `Bearer ${session}`);
    try {
      const ws = collect(client, PUSH_DATA, { input });
      await expect(ws.next(1, 5000)).rejects.toEqual([expect.objectContaining({ extensions: { code: "BAD_USER_INPUT" } })]);
    } finally {
      await client.dispose();
    }
    expect(await counts()).toEqual({ ...before, audit: before.audit + 2 });
    expect(await lastPush()).toMatchObject({ outcome: "REFUSED", reason: "BAD_USER_INPUT:invalid_request", detail: { stage: "variables" } });
  });

  it("audits pushData documents that do not parse or validate, with or without a session; other bad requests are not push attempts", async () => {
    const lastPush = () => t.app.db.prisma.auditEvent.findFirstOrThrow({ where: { action: "push.create" }, orderBy: { seq: "desc" } });
    const unparsable = await t.gql(`mutation { pushData(input: { postboxId: "x" } `, {}, { token: session });
    expect(unparsable.errors![0].message).toMatch(/Syntax Error/);
    expect(await lastPush()).toMatchObject({ reason: "GRAPHQL_PARSE_FAILED:invalid_request", contractId: app.contractId, detail: { stage: "parse", session: "valid" } });

    const invalid = await t.gql(`mutation { pushData(input: { postboxId: "x", bogus: 1 }) { id } }`);
    expect(errorCode(invalid)).toBe("GRAPHQL_VALIDATION_FAILED");
    expect(await lastPush()).toMatchObject({ reason: "GRAPHQL_VALIDATION_FAILED:invalid_request", contractId: null, actorId: null, detail: { stage: "validation", session: "none" } });

    const before = await counts();
    expect(errorCode(await t.gql(`{ nope }`, {}, { token: session }))).toBe("GRAPHQL_VALIDATION_FAILED");
    expect(await counts()).toEqual(before);
  });

  it("audits pushData selected through an inline or a named fragment like any other", async () => {
    const audited = () => t.app.db.prisma.auditEvent.count({ where: { action: "push.create", outcome: "REFUSED", contractId: app.contractId } });
    for (const [query, variables] of [
      [`mutation { ... on Mutation { pushData(input: { postboxId: "x", bogus: 1 }) { id } } }`, {}],
      [`mutation M { ...F } fragment F on Mutation { pushData(input: { postboxId: "x", bogus: 1 }) { id } }`, {}],
      [`mutation($i: PushDataInput!) { ... on Mutation { pushData(input: $i) { id } } }`, { i: { fileName: "x", data: "QUJD" } }],
    ] as const) {
      const before = await audited();
      const r = await t.gql(query, variables, { token: session });
      expect(r.errors).toBeDefined();
      expect([query, await audited()]).toEqual([query, before + 1]);
    }
  });

  it("audits the same refusals over WebSocket", async () => {
    const client = wsClient(t.wsUrl, `Bearer ${session}`);
    const audited = () => t.app.db.prisma.auditEvent.findMany({ where: { action: "push.create", contractId: app.contractId, reason: { endsWith: ":invalid_request" } }, orderBy: { seq: "asc" } });
    const before = (await audited()).length;
    try {
      const variables = collect(client, PUSH_DATA, { input: { fileName: "x" } });
      await expect(variables.next(1, 5000)).rejects.toBeTruthy();
      const unparsable = collect(client, `mutation { pushData(input: { postboxId: "x" } `);
      // The client sees the code the audit event records (and HTTP answers).
      await expect(unparsable.next(1, 5000)).rejects.toEqual([expect.objectContaining({ extensions: { code: "GRAPHQL_PARSE_FAILED" } })]);
      const invalid = collect(client, `mutation { pushData(input: { postboxId: "x", bogus: 1 }) { id } }`);
      await expect(invalid.next(1, 5000)).rejects.toBeTruthy();
      const events = (await audited()).slice(before);
      expect(events.map((e) => (e.detail as { stage: string }).stage)).toEqual(["variables", "parse", "validation"]);
      expect(events.map((e) => e.reason)).toEqual(["BAD_USER_INPUT:invalid_request", "GRAPHQL_PARSE_FAILED:invalid_request", "GRAPHQL_VALIDATION_FAILED:invalid_request"]);
      expect(events.every((e) => e.actorId === app.appId && e.outcome === "REFUSED")).toBe(true);
    } finally {
      await client.dispose();
    }
  });
});

describe("postbox states", () => {
  async function refusedFor(status: string, expiresAt?: Date) {
    const target = await createReadyPostboxForPush(t, session, "RSA");
    await t.app.db.prisma.postbox.update({ where: { id: target.postboxId }, data: { status: status as never, ...(expiresAt ? { expiresAt } : {}) } });
    const before = await counts();
    const r = await t.gql(PUSH_DATA, { input: dataInput(target, Buffer.from("x")) }, { token: session });
    expect(await counts()).toEqual({ ...before, audit: before.audit + 1 });
    const ev = await t.app.db.prisma.auditEvent.findFirst({ orderBy: { seq: "desc" } });
    expect(ev).toMatchObject({ action: "push.create", outcome: "REFUSED", postboxId: target.postboxId });
    return r;
  }

  it("refuses a PENDING postbox with POSTBOX_NOT_READY", async () => {
    const created = await t.gql(`mutation { createPostbox { id } }`, {}, { token: session });
    const before = await counts();
    const r = await t.gql(PUSH_DATA, { input: dataInput({ postboxId: created.data!.createPostbox.id }, Buffer.from("x")) }, { token: session });
    expect(errorCode(r)).toBe("POSTBOX_NOT_READY");
    expect(r.errors![0].message).toMatch(/consent/);
    expect(await counts()).toEqual({ ...before, audit: before.audit + 1 });
  });

  it("refuses a PENDING postbox past its consent deadline or its expiry with POSTBOX_EXPIRED, before the sweeper marks it", async () => {
    for (const past of ["consentExpiresAt", "expiresAt"] as const) {
      const id = (await t.gql(`mutation { createPostbox { id } }`, {}, { token: session })).data!.createPostbox.id;
      await t.app.db.prisma.postbox.update({ where: { id }, data: { [past]: new Date(Date.now() - 1000) } });
      const r = await t.gql(PUSH_DATA, { input: dataInput({ postboxId: id }, Buffer.from("x")) }, { token: session });
      expect([past, errorCode(r)]).toEqual([past, "POSTBOX_EXPIRED"]);
      expect(r.errors![0].message).toMatch(/was not accepted by .* and has expired/);
    }
  });

  it("refuses an EXPIRED postbox with POSTBOX_EXPIRED", async () => {
    expect(errorCode(await refusedFor("EXPIRED"))).toBe("POSTBOX_EXPIRED");
  });

  it("refuses a READY postbox past its expiry with POSTBOX_EXPIRED, before the sweeper has run", async () => {
    expect(errorCode(await refusedFor("READY", new Date(Date.now() - 1000)))).toBe("POSTBOX_EXPIRED");
  });

  it.each(["CLOSED", "DECLINED"])("refuses a %s postbox with CONFLICT", async (status) => {
    const r = await refusedFor(status);
    expect(errorCode(r)).toBe("CONFLICT");
    expect(r.errors![0].message).toContain(status);
  });

  it("refuses a postbox the application closed", async () => {
    const target = await createReadyPostboxForPush(t, session, "X25519");
    const closed = await t.gql(`mutation($id: ID!) { closePostbox(id: $id) { status } }`, { id: target.postboxId }, { token: session });
    expect(closed.data?.closePostbox.status).toBe("CLOSED");
    expect(errorCode(await t.gql(PUSH_DATA, { input: dataInput(target, Buffer.from("x")) }, { token: session }))).toBe("CONFLICT");
  });
});

describe("idempotency", () => {
  it("answers a retry with the original result and stores nothing new", async () => {
    const input = dataInput(rsa, randomBytes(100), { idempotencyKey: `retry-${randomBytes(4).toString("hex")}` });
    const first = await t.gql(PUSH_DATA, { input }, { token: session });
    expect(first.data!.pushData.duplicate).toBe(false);
    const before = await counts();
    const second = await t.gql(PUSH_DATA, { input }, { token: session });
    expect(second.errors).toBeUndefined();
    expect(second.data!.pushData).toEqual({ ...first.data!.pushData, duplicate: true });
    expect(await counts()).toEqual({ ...before, audit: before.audit + 1 });
    const ev = await t.app.db.prisma.auditEvent.findFirst({ orderBy: { seq: "desc" } });
    expect(ev).toMatchObject({ action: "push.create", outcome: "SUCCESS", targetId: first.data!.pushData.id, detail: { duplicate: true } });
  });

  it("treats the same key with different content as a CONFLICT", async () => {
    const key = `conflict-${randomBytes(4).toString("hex")}`;
    const first = await t.gql(PUSH_DATA, { input: dataInput(rsa, Buffer.from("one"), { idempotencyKey: key }) }, { token: session });
    expect(first.errors).toBeUndefined();
    for (const change of [{ data: Buffer.from("two").toString("base64") }, { fileName: "other.bin" }, { fileDescriptor: { ...DESCRIPTOR, tags: ["x"] } }, { postboxId: ec.postboxId }]) {
      const before = await counts();
      const r = await t.gql(PUSH_DATA, { input: { ...dataInput(rsa, Buffer.from("one"), { idempotencyKey: key }), ...change } }, { token: session });
      expect(errorCode(r)).toBe("CONFLICT");
      expect(r.errors![0].message).toContain(first.data!.pushData.id);
      expect(await counts()).toEqual({ ...before, audit: before.audit + 1 });
      const ev = await t.app.db.prisma.auditEvent.findFirst({ orderBy: { seq: "desc" } });
      expect(ev).toMatchObject({ outcome: "REFUSED", reason: "CONFLICT:idempotency_conflict" });
    }
  });

  it("scopes keys to the contract", async () => {
    const key = `shared-${randomBytes(4).toString("hex")}`;
    const other = await registerApp(t);
    const otherSession = await createSession(t, other);
    const target = await createReadyPostboxForPush(t, otherSession, "RSA");
    const a = await t.gql(PUSH_DATA, { input: dataInput(rsa, Buffer.from("a"), { idempotencyKey: key }) }, { token: session });
    const b = await t.gql(PUSH_DATA, { input: dataInput(target, Buffer.from("b"), { idempotencyKey: key }) }, { token: otherSession });
    expect(a.data!.pushData.duplicate).toBe(false);
    expect(b.data!.pushData.duplicate).toBe(false);
    expect(b.data!.pushData.id).not.toBe(a.data!.pushData.id);
  });

  it("stores one push when retries race each other", async () => {
    const idempotencyKey = `race-${randomBytes(4).toString("hex")}`;
    const input = dataInput(rsa, randomBytes(50), { idempotencyKey });
    const results = await Promise.all(Array.from({ length: 6 }, () => t.gql(PUSH_DATA, { input }, { token: session })));
    for (const r of results) expect(r.errors).toBeUndefined();
    const ids = new Set(results.map((r) => r.data!.pushData.id));
    expect(ids.size).toBe(1);
    expect(results.filter((r) => !r.data!.pushData.duplicate)).toHaveLength(1);
    expect(await t.app.db.prisma.push.count({ where: { idempotencyKey } })).toBe(1);
  });

  it("keeps concurrent pushes apart: each gets its own result, and only the closed postbox's push is refused", async () => {
    const open1 = await createReadyPostboxForPush(t, session, "RSA");
    const open2 = await createReadyPostboxForPush(t, session, "X25519");
    const closing = await createReadyPostboxForPush(t, session, "P-256");
    // A first push caches the postbox's key on the server; then the postbox closes behind it.
    expect((await t.gql(PUSH_DATA, { input: dataInput(closing, Buffer.from("before")) }, { token: session })).errors).toBeUndefined();
    await t.gql(`mutation($id: ID!) { closePostbox(id: $id) { status } }`, { id: closing.postboxId }, { token: session });
    const targets = [open1, open2, closing, open1, open2, open1];
    const results = await Promise.all(targets.map((tg, i) => t.gql(PUSH_DATA, { input: dataInput(tg, Buffer.from(`concurrent ${i}`)) }, { token: session })));
    results.forEach((r, i) => {
      if (targets[i] === closing) expect(errorCode(r)).toBe("CONFLICT");
      else expect(r.data!.pushData).toMatchObject({ postboxId: targets[i].postboxId, status: "PENDING", duplicate: false });
    });
    expect(new Set(results.filter((r) => r.data).map((r) => r.data!.pushData.id)).size).toBe(5);
    for (const tg of [open1, open2]) {
      const files = await t.gql(`{ postboxFiles(first: 10) { edges { node { id } } } }`, {}, { token: tg.accessToken });
      const mine = results.filter((_r, i) => targets[i] === tg).map((r) => r.data!.pushData.id);
      expect(files.data!.postboxFiles.edges.map((e: any) => e.node.id)).toEqual(expect.arrayContaining(mine));
    }
    expect((await t.admin("GET", "/audit/verify")).body.ok).toBe(true);
  });

  it("keeps the key secret-keyed: the stored fingerprint is not a hash anyone can recompute", async () => {
    const input = dataInput(rsa, Buffer.from("fingerprint"), { idempotencyKey: `fp-${randomBytes(4).toString("hex")}` });
    const r = await t.gql(PUSH_DATA, { input }, { token: session });
    const row = await t.app.db.prisma.push.findUnique({ where: { id: r.data!.pushData.id } });
    expect(row?.requestHash).toMatch(/^[0-9a-f]{64}$/);
    const { createHash } = await import("node:crypto");
    expect(row?.requestHash).not.toBe(createHash("sha256").update(input.data).digest("hex"));
    expect(row?.requestHash).not.toBe(createHash("sha256").update(Buffer.from("fingerprint")).digest("hex"));
  });
});

describe("the HTTP body limit", () => {
  /** Sends a raw HTTP request whose body is `size` bytes of "x" (not JSON), streamed in chunks; returns the raw response. */
  function rawPost(size: number, chunked: boolean): Promise<string> {
    const { port, hostname } = new URL(t.url);
    return new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(port), hostname);
      let text = "";
      socket.on("data", (d) => (text += d.toString()));
      socket.on("error", reject);
      socket.on("close", () => resolve(text));
      socket.on("end", () => resolve(text));
      const lengthHeader = chunked ? "Transfer-Encoding: chunked" : `Content-Length: ${size}`;
      socket.write(`POST /graphql HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\nConnection: close\r\n${lengthHeader}\r\n\r\n`);
      const chunk = Buffer.alloc(64 * 1024, "x");
      let left = size;
      const pump = () => {
        while (left > 0) {
          const part = chunk.subarray(0, Math.min(chunk.length, left));
          left -= part.length;
          if (chunked) socket.write(`${part.length.toString(16)}\r\n`);
          let ok = socket.write(part);
          if (chunked) ok = socket.write("\r\n");
          if (!ok) return void socket.once("drain", pump);
        }
        if (chunked) socket.write("0\r\n\r\n");
      };
      pump();
    });
  }

  it.each([
    ["with Content-Length", false],
    ["chunked", true],
  ] as const)("refuses a body over the limit %s as too large without parsing it", async (_n, chunked) => {
    const limit = t.app.config.BODY_LIMIT_BYTES;
    const before = await counts();
    // The body is not JSON: a 413 (not a 400 "not valid JSON") shows the limit was applied before any parsing.
    const response = await rawPost(limit + 1, chunked);
    expect(response).toMatch(/^HTTP\/1\.1 413/);
    expect(response).toContain("PAYLOAD_TOO_LARGE");
    expect(await counts()).toEqual(before);
    // The same non-JSON body within the limit is parsed, and refused as such.
    expect(await rawPost(1000, chunked)).toMatch(/^HTTP\/1\.1 400/);
  });

  it("derives the limit from MAX_PUSH_BYTES so that a largest push fits", async () => {
    const limit = t.app.config.BODY_LIMIT_BYTES;
    expect(limit).toBeGreaterThan(Math.ceil((MAX * 4) / 3));
    const r = await t.gql(PUSH_DATA, { input: dataInput(rsa, randomBytes(MAX)) }, { token: session });
    expect(r.errors).toBeUndefined();
    expect(r.data!.pushData.size).toBeGreaterThan(MAX);
  });

  it("fits a largest push with a largest descriptor, written with \\u escapes as some JSON encoders do", async () => {
    // Every descriptor field at its longest, every character outside ASCII: 6 bytes each once escaped.
    const long = "é".repeat(256);
    const list = Array(100).fill(long);
    const input = {
      ...dataInput(rsa, randomBytes(MAX)),
      fileName: "é".repeat(255),
      fileDescriptor: { mimeType: "application/json", accounts: list.map((accountId) => ({ accountId })), reference: list, tags: list },
    };
    const body = JSON.stringify({ query: PUSH_DATA, variables: { input } }).replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
    expect(body.length).toBeGreaterThan(256 * 1024 + Math.ceil((MAX * 4) / 3)); // over the margin this limit once had
    const res = await request(`${t.url}/graphql`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${session}` }, body });
    const json = (await res.body.json()) as { data?: { pushData: { size: number } }; errors?: unknown };
    expect(json.errors).toBeUndefined();
    expect(res.statusCode).toBe(200);
    expect(json.data!.pushData.size).toBeGreaterThan(MAX);
  });
});

describe("user keys", () => {
  it("encrypts to the key the user registered, not to any other", async () => {
    const stranger = await makeUserKeyPair("RSA");
    const { compactDecrypt } = await import("jose");
    const r = await t.gql(PUSH_DATA, { input: dataInput(rsa, Buffer.from("only the user")) }, { token: session });
    const f = await t.gql(`query($id: ID!) { postboxFile(id: $id) { ciphertext } }`, { id: r.data!.pushData.id }, { token: rsa.accessToken });
    await expect(compactDecrypt(f.data!.postboxFile.ciphertext, stranger.privateKey)).rejects.toThrow();
    expect(Buffer.from((await compactDecrypt(f.data!.postboxFile.ciphertext, rsa.privateKey)).plaintext).toString()).toBe("only the user");
  });
});
