// Test factories: a registered application with its key pair, signed assertions
// and sessions, built through the public interfaces (admin API, GraphQL).
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { CompactEncrypt, SignJWT, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK, type JWTPayload } from "jose";
import type { TestServer } from "./server.js";

export type Alg = "PS512" | "PS256" | "ES256" | "EdDSA";

export interface TestApp {
  appId: string;
  contractId: string;
  alg: Alg;
  privateKey: CryptoKey;
  publicJwk: Record<string, unknown>;
}

export async function makeKeyPair(alg: Alg = "PS512") {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg.startsWith("PS") ? { modulusLength: 2048 } : {}) });
  return { privateKey, publicJwk: (await exportJWK(publicKey)) as Record<string, unknown> };
}

export async function registerApp(t: TestServer, opts: { alg?: Alg; name?: string; kind?: "WRITE" | "READ"; callbackUrls?: string[]; postboxMode?: "ONE_OFF" | "ONGOING" } = {}): Promise<TestApp> {
  const alg = opts.alg ?? "PS512";
  const { privateKey, publicJwk } = await makeKeyPair(alg);
  const res = await t.admin("POST", "/applications", {
    name: opts.name ?? "Test app",
    kind: opts.kind,
    publicKey: publicJwk,
    alg,
    callbackUrls: opts.callbackUrls,
    postboxMode: opts.postboxMode,
  });
  if (res.status !== 201) throw new Error(`registerApp failed: ${res.status} ${JSON.stringify(res.body)}`);
  return { appId: res.body.appId, contractId: res.body.contractId, alg, privateKey, publicJwk };
}

/** Adds a contract (e.g. READ) to an existing app. */
export async function addContract(t: TestServer, appId: string, opts: { kind: "WRITE" | "READ"; alg?: Alg }): Promise<TestApp> {
  const alg = opts.alg ?? "PS512";
  const { privateKey, publicJwk } = await makeKeyPair(alg);
  const res = await t.admin("POST", `/applications/${appId}/contracts`, { kind: opts.kind, publicKey: publicJwk, alg });
  if (res.status !== 201) throw new Error(`addContract failed: ${res.status} ${JSON.stringify(res.body)}`);
  return { appId, contractId: res.body.contractId, alg, privateKey, publicJwk };
}

export function newNonce(): string {
  return randomBytes(24).toString("base64url");
}

export async function signAssertion(
  app: Pick<TestApp, "appId" | "contractId" | "alg" | "privateKey">,
  overrides: { claims?: JWTPayload; header?: Record<string, unknown>; omit?: string[] } = {},
): Promise<string> {
  const claims: JWTPayload = { client_id: `${app.appId}_${app.contractId}`, nonce: newNonce(), timestamp: Date.now(), ...overrides.claims };
  for (const k of overrides.omit ?? []) delete claims[k];
  return new SignJWT(claims).setProtectedHeader({ alg: app.alg, typ: "JWT", ...overrides.header }).sign(app.privateKey);
}

export const CREATE_SESSION = /* GraphQL */ `
  mutation CreateSession($input: CreateSessionInput!) {
    createSession(input: $input) { key expiresAt appId contractId }
  }
`;

export async function createSession(t: TestServer, app: TestApp): Promise<string> {
  const assertion = await signAssertion(app);
  const r = await t.gql(CREATE_SESSION, { input: { appId: app.appId, contractId: app.contractId, assertion } });
  if (!r.data?.createSession) throw new Error(`createSession failed: ${JSON.stringify(r.errors)}`);
  return r.data.createSession.key;
}

// ---------------------------------------------------------------- webhooks

export interface ReceivedWebhook {
  id: string;
  timestamp: string;
  signature: string;
  contentType?: string;
  userAgent?: string;
  /** The raw body, exactly as received (what the signature covers). */
  body: string;
}

export interface WebhookReceiver {
  url: string;
  received: ReceivedWebhook[];
  /** HTTP statuses for the next requests, in order; afterwards 204. */
  respondWith(...statuses: number[]): void;
  /** Holds every answer until `release` resolves (e.g. to keep requests in flight together). */
  hold(release: Promise<void>): void;
  /** Resolves once `n` requests in total have arrived (guarded by the test's timeout). */
  waitFor(n: number): Promise<ReceivedWebhook[]>;
  close(): Promise<void>;
}

/** A local HTTP server standing in for an application's webhook endpoint (needs ALLOW_PRIVATE_URLS). */
export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const received: ReceivedWebhook[] = [];
  const queue: number[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  let gate: Promise<void> | undefined;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      received.push({
        id: String(req.headers["webhook-id"] ?? ""),
        timestamp: String(req.headers["webhook-timestamp"] ?? ""),
        signature: String(req.headers["webhook-signature"] ?? ""),
        contentType: req.headers["content-type"],
        userAgent: req.headers["user-agent"],
        body: Buffer.concat(chunks).toString("utf8"),
      });
      for (const w of waiters.filter((w) => received.length >= w.n)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
      const status = queue.shift() ?? 204;
      if (gate) await gate;
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks/postbox`,
    received,
    respondWith: (...s) => void queue.push(...s),
    hold: (release) => {
      gate = release;
    },
    waitFor: (n) =>
      received.length >= n ? Promise.resolve(received) : new Promise((resolve) => waiters.push({ n, resolve: () => resolve(received) })),
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * Verifies a delivery the way a receiver following the Standard Webhooks spec
 * does, computed here independently of the server's code.
 */
export function verifyWebhookSignature(secret: string, w: Pick<ReceivedWebhook, "id" | "timestamp" | "signature" | "body">): boolean {
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const expected = createHmac("sha256", key).update(`${w.id}.${w.timestamp}.${w.body}`).digest();
  return w.signature.split(" ").some((part) => {
    const [version, sig] = part.split(",");
    const given = Buffer.from(sig ?? "", "base64");
    return version === "v1" && given.length === expected.length && timingSafeEqual(given, expected);
  });
}

// ---------------------------------------------------------------- pushes

export type UserKeyKind = "RSA" | "P-256" | "X25519";

export interface PushTarget {
  /** Session key of the application that created the postbox. */
  session: string;
  postboxId: string;
  /** The postbox key's thumbprint (Postbox.publicKey.kid). */
  kid: string;
  keyAlg: "RSA-OAEP-256" | "ECDH-ES+A256KW";
  /** The user's key pair (generated here, as the user's device would). */
  publicJwk: Record<string, unknown>;
  privateKey: CryptoKey;
  accessToken: string;
  refreshToken: string;
}

/** A user key pair of the given kind, as a user's device makes it. */
export async function makeUserKeyPair(kind: UserKeyKind = "RSA") {
  const { publicKey, privateKey } =
    kind === "RSA"
      ? await generateKeyPair("RSA-OAEP-256", { extractable: true, modulusLength: 2048 })
      : await generateKeyPair("ECDH-ES+A256KW", { extractable: true, crv: kind });
  return { publicKey, privateKey, publicJwk: (await exportJWK(publicKey)) as Record<string, unknown> };
}

/** createPostbox with `session`, then acceptPostbox with a fresh user key: a READY postbox to push to. */
export async function createReadyPostboxForPush(t: TestServer, session: string, kind: UserKeyKind = "RSA"): Promise<PushTarget> {
  const created = await t.gql(`mutation { createPostbox { id consentUrl } }`, {}, { token: session });
  if (!created.data?.createPostbox) throw new Error(`createPostbox failed: ${JSON.stringify(created.errors)}`);
  const code = String(created.data.createPostbox.consentUrl).split("/").pop();
  const { privateKey, publicJwk } = await makeUserKeyPair(kind);
  const accepted = await t.gql(
    `mutation($input: AcceptPostboxInput!) { acceptPostbox(input: $input) { postboxId status publicKeyThumbprint credential { accessToken refreshToken } } }`,
    { input: { code, publicKey: publicJwk } },
  );
  const a = accepted.data?.acceptPostbox;
  if (!a || a.status !== "READY") throw new Error(`acceptPostbox failed: ${JSON.stringify(accepted.errors)}`);
  return {
    session,
    postboxId: a.postboxId,
    kid: a.publicKeyThumbprint,
    keyAlg: kind === "RSA" ? "RSA-OAEP-256" : "ECDH-ES+A256KW",
    publicJwk,
    privateKey,
    accessToken: a.credential.accessToken,
    refreshToken: a.credential.refreshToken,
  };
}

export const PUSH_DATA = /* GraphQL */ `
  mutation PushData($input: PushDataInput!) {
    pushData(input: $input) { id postboxId status size sha256 receivedAt expiresAt duplicate }
  }
`;

export const DESCRIPTOR = { mimeType: "application/octet-stream", accounts: [{ accountId: "acc-1" }], reference: ["ref-1"], tags: ["tag-1"] };

/** The pushData input for `bytes` sent as base64 `data`. */
export function dataInput(target: Pick<PushTarget, "postboxId">, bytes: Uint8Array, extra: Record<string, unknown> = {}) {
  return { postboxId: target.postboxId, fileName: "file.bin", fileDescriptor: DESCRIPTOR, data: Buffer.from(bytes).toString("base64"), ...extra };
}

/** A compact JWE of `bytes` to the postbox key, made as an application would with jose. */
export async function encryptForPostbox(target: Pick<PushTarget, "publicJwk" | "kid" | "keyAlg">, bytes: Uint8Array, header: Record<string, unknown> = {}): Promise<string> {
  const key = await importJWK(target.publicJwk as JWK, target.keyAlg);
  return new CompactEncrypt(bytes).setProtectedHeader({ alg: target.keyAlg, enc: "A256GCM", kid: target.kid, ...header } as never).encrypt(key);
}
