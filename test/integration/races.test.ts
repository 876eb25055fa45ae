// Races on PostgreSQL, made to happen: another transaction holds a change uncommitted
// while a request runs into it, and commits once the request waits for it.
// - A push racing its postbox's close must see the close (refused, nothing stored),
//   never be taken by a postbox that is already CLOSED.
// - A state change whose webhook endpoint is deleted meanwhile must still commit
//   (without the delivery), not fail on the delivery's foreign key.
// - A session signed with a key that is rotated meanwhile must not outlive the rotation.
// - A credential reissued while the postbox closes must not outlive the close.
// PostgreSQL only: the embedded database runs one transaction at a time.
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { compactDecrypt } from "jose";
import pg from "pg";
import { CREATE_SESSION, PUSH_DATA, makeKeyPair, createReadyPostboxForPush, createSession, dataInput, registerApp, signAssertion } from "../helpers/factories.js";
import { errorCode, startTestServer, type TestServer } from "../helpers/server.js";
import { CLOSE, waitUntil } from "./postbox.helpers.js";

let t: TestServer;
/** The other transaction's connection. */
let other: pg.Client;
beforeAll(async () => {
  t = await startTestServer();
  other = new pg.Client({ connectionString: t.databaseUrl });
  await other.connect();
});
afterAll(async () => {
  await other?.end();
  await t?.stop();
});

const waitingForLock = (other: pg.Client) => async () =>
  Number((await other.query(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rows[0].n) > 0;

describe("a push racing its postbox's close", () => {
  it("is refused when the close commits while the push waits for the audit log", async () => {
    const app = await registerApp(t);
    const session = await createSession(t, app);
    const target = await createReadyPostboxForPush(t, session);
    // Another transaction closes the postbox as closePostbox does: the status, then the
    // audit log's head, held until it commits.
    await other.query("BEGIN");
    await other.query(`UPDATE "Postbox" SET "status" = 'CLOSED', "closedAt" = now() WHERE "id" = $1`, [target.postboxId]);
    await other.query(`SELECT "hash" FROM "AuditHead" WHERE "id" = 1 FOR UPDATE`);
    const push = t.gql(PUSH_DATA, { input: dataInput(target, Buffer.from("racing the close")) }, { token: session });
    await waitUntil(waitingForLock(other), "the push waits for the audit log's head");
    await other.query("COMMIT");
    const r = await push;
    expect(r.data?.pushData ?? null).toBeNull();
    expect(errorCode(r)).toBe("CONFLICT");
    expect(await t.app.db.prisma.push.count({ where: { postboxId: target.postboxId } })).toBe(0);
  });
});

describe("a state change racing the deletion of its webhook endpoint", () => {
  it("commits without the delivery when the endpoint's deletion commits while it runs", async () => {
    const app = await registerApp(t);
    const session = await createSession(t, app);
    const target = await createReadyPostboxForPush(t, session);
    // Registered once the postbox is READY: no earlier delivery is in flight to wait on the deletion too.
    const set = await t.gql(`mutation { setWebhook(url: "http://127.0.0.1:9/hook") { url } }`, {}, { token: session });
    expect(set.errors).toBeUndefined();
    await other.query("BEGIN");
    await other.query(`DELETE FROM "WebhookEndpoint" WHERE "contractId" = $1`, [app.contractId]);
    const closing = t.gql(CLOSE, { id: target.postboxId }, { token: session });
    await waitUntil(waitingForLock(other), "the close waits for the endpoint's deletion");
    await other.query("COMMIT");
    const r = await closing;
    expect(r.errors).toBeUndefined();
    expect(r.data?.closePostbox.status).toBe("CLOSED");
    expect(await t.app.db.prisma.webhookDelivery.count({ where: { contractId: app.contractId, eventType: "postbox.closed" } })).toBe(0);
  });
});

describe("a session created while its contract's key is rotated", () => {
  const CURRENT = `{ currentSession { contractId } }`;

  it("is refused when the rotation commits while the session waits for its key", async () => {
    const app = await registerApp(t);
    // Signed and checked against the key before the rotation commits.
    const assertion = await signAssertion(app);
    await other.query("BEGIN");
    await other.query(`UPDATE "ContractKey" SET "revokedAt" = now() WHERE "contractId" = $1`, [app.contractId]);
    const creating = t.gql(CREATE_SESSION, { input: { appId: app.appId, contractId: app.contractId, assertion } });
    await waitUntil(waitingForLock(other), "createSession waits for the key");
    await other.query("COMMIT");
    const r = await creating;
    expect(errorCode(r)).toBe("UNAUTHENTICATED");
    expect(r.errors![0].message).toMatch(/rotated/);
    expect(await t.app.db.prisma.session.count({ where: { contractId: app.contractId } })).toBe(0);
  });

  it("is ended by a rotation that runs into it: of 40 sessions created around a rotation, none signed with the old key stays valid", async () => {
    const app = await registerApp(t);
    const fresh = await makeKeyPair(app.alg);
    const attempts = Array.from({ length: 40 }, async () => {
      const r = await t.gql(CREATE_SESSION, { input: { appId: app.appId, contractId: app.contractId, assertion: await signAssertion(app) } });
      return r.data?.createSession?.key as string | undefined;
    });
    await new Promise((r) => setTimeout(r, 5));
    const rotated = await t.admin("POST", `/contracts/${app.contractId}/keys`, { publicKey: fresh.publicJwk, alg: app.alg });
    expect(rotated.status).toBeLessThan(300);
    const keys = (await Promise.all(attempts)).filter((k): k is string => !!k);
    for (const key of keys) expect(errorCode(await t.gql(CURRENT, {}, { token: key }))).toBe("UNAUTHENTICATED");
  });
});

describe("a credential reissued while its postbox closes", () => {
  it("is refused when the close commits while the reissue waits for the postbox", async () => {
    const session = await createSession(t, await registerApp(t));
    const target = await createReadyPostboxForPush(t, session, "RSA");
    const ch = (await t.gql(`mutation($id: ID!) { userKeyChallenge(postboxId: $id) { challengeId jwe } }`, { id: target.postboxId })).data!.userKeyChallenge;
    const answer = Buffer.from((await compactDecrypt(ch.jwe, target.privateKey)).plaintext).toString("base64url");
    // Another transaction closes the postbox and revokes its grants, as closePostbox does, held open.
    await other.query("BEGIN");
    await other.query(`UPDATE "Postbox" SET "status" = 'CLOSED', "closedAt" = now() WHERE "id" = $1`, [target.postboxId]);
    await other.query(`UPDATE "UserGrant" SET "revokedAt" = now() WHERE "postboxId" = $1 AND "revokedAt" IS NULL`, [target.postboxId]);
    const reissue = t.gql(`mutation($c: ID!, $a: String!) { reissueUserCredential(challengeId: $c, answer: $a) { accessToken } }`, { c: ch.challengeId, a: answer });
    await waitUntil(waitingForLock(other), "the reissue waits for the postbox");
    await other.query("COMMIT");
    const r = await reissue;
    expect(errorCode(r)).toBe("UNAUTHENTICATED");
    expect(await t.app.db.prisma.userGrant.count({ where: { postboxId: target.postboxId, revokedAt: null } })).toBe(0);
  });
});
