// Test factories: a registered application with its key pair, signed assertions
// and sessions, built through the public interfaces (admin API, GraphQL).
import { randomBytes } from "node:crypto";
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWTPayload } from "jose";
import type { TestServer } from "./server";

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
