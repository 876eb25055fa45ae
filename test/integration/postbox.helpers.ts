// Operations and small helpers shared by the postbox/consent integration tests.
import { expect } from "@jest/globals";
import type { TestServer } from "../helpers/server.js";

export const POSTBOX_FIELDS = "id status reference callbackUrl consentUrl consentExpiresAt expiresAt createdAt readyAt closedAt publicKey { kid alg enc kty crv jwk }";

export const CREATE = /* GraphQL */ `
  mutation CreatePostbox($input: CreatePostboxInput) { createPostbox(input: $input) { ${POSTBOX_FIELDS} } }
`;
export const GET = /* GraphQL */ `query Postbox($id: ID!) { postbox(id: $id) { ${POSTBOX_FIELDS} } }`;
export const LIST = /* GraphQL */ `
  query Postboxes($status: PostboxStatus, $first: Int, $after: String) {
    postboxes(status: $status, first: $first, after: $after) { edges { cursor node { id status createdAt } } pageInfo { hasNextPage endCursor } }
  }
`;
export const CLOSE = /* GraphQL */ `mutation ClosePostbox($id: ID!) { closePostbox(id: $id) { id status closedAt } }`;
export const CONSENT = /* GraphQL */ `
  query ConsentRequest($code: String!) {
    consentRequest(code: $code) {
      postboxId applicationName contractId contractKind postboxMode reference status canRespond consentExpiresAt expiresAt hasCallback acceptedAlgorithms
    }
  }
`;
export const ACCEPT = /* GraphQL */ `
  mutation AcceptPostbox($input: AcceptPostboxInput!) {
    acceptPostbox(input: $input) {
      postboxId status publicKeyThumbprint redirectUrl
      credential { postboxId accessToken accessTokenExpiresAt refreshToken refreshTokenExpiresAt tokenType }
    }
  }
`;
export const DECLINE = /* GraphQL */ `mutation DeclinePostbox($input: DeclinePostboxInput!) { declinePostbox(input: $input) { postboxId status redirectUrl } }`;
export const REFRESH = /* GraphQL */ `
  mutation Refresh($refreshToken: String!) { refreshUserToken(refreshToken: $refreshToken) { postboxId accessToken accessTokenExpiresAt refreshToken refreshTokenExpiresAt tokenType } }
`;
export const MY_POSTBOX = /* GraphQL */ `query { myPostbox { id status expiresAt readyAt applicationName contractId publicKeyThumbprint keyAlg } }`;
export const CLOSE_MINE = /* GraphQL */ `mutation { closeMyPostbox { id status } }`;
export const STATUS_CHANGED = /* GraphQL */ `
  subscription StatusChanged($postboxId: ID) { postboxStatusChanged(postboxId: $postboxId) { postboxId status previousStatus at } }
`;

export interface StatusEvent {
  postboxStatusChanged: { postboxId: string; status: string; previousStatus: string | null; at: string };
}

export const codeOf = (consentUrl: string) => consentUrl.split("/").pop()!;

export async function createPostbox(t: TestServer, session: string, input: Record<string, unknown> = {}) {
  const r = await t.gql(CREATE, { input }, { token: session });
  expect(r.errors).toBeUndefined();
  return r.data!.createPostbox as { id: string; status: string; consentUrl: string; consentExpiresAt: string; expiresAt: string; [k: string]: unknown };
}

export async function accept(t: TestServer, consentUrl: string, publicKey: Record<string, unknown>) {
  const r = await t.gql(ACCEPT, { input: { code: codeOf(consentUrl), publicKey } });
  expect(r.errors).toBeUndefined();
  return r.data!.acceptPostbox as {
    postboxId: string;
    status: string;
    publicKeyThumbprint: string;
    redirectUrl: string | null;
    credential: { accessToken: string; refreshToken: string; accessTokenExpiresAt: string; refreshTokenExpiresAt: string; tokenType: string; postboxId: string };
  };
}

/** Waits for a condition on the server (e.g. a subscription being registered); fails after `ms`. */
export async function waitUntil(cond: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Row counts that a refused request must leave unchanged. */
export async function stateCounts(t: TestServer) {
  const p = t.app.db.prisma;
  const byStatus = await p.postbox.groupBy({ by: ["status"], _count: { _all: true } });
  return {
    postboxes: Object.fromEntries(byStatus.map((r) => [r.status, r._count._all])),
    readyKeys: await p.postbox.count({ where: { publicKeyThumbprint: { not: null } } }),
    grants: await p.userGrant.count(),
    liveGrants: await p.userGrant.count({ where: { revokedAt: null } }),
    deliveries: await p.webhookDelivery.count(),
    successAudit: await p.auditEvent.count({ where: { outcome: "SUCCESS" } }),
  };
}

export function refusedAuditCount(t: TestServer, action?: string) {
  return t.app.db.prisma.auditEvent.count({ where: { outcome: "REFUSED", ...(action ? { action } : {}) } });
}
