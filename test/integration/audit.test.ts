// The audit log as the application reads it (auditLog, scoped to its contract),
// what the push flow writes into it, retention (pruning keeps the chain
// verifiable; metadata of purged pushes goes), concurrent background runs, and
// `npm run cli -- audit verify` naming the first broken link, and its checkpoints
// catching a log cut back along with its head row.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { PUSH_DATA, createReadyPostboxForPush, createSession, dataInput, registerApp, type PushTarget, type TestApp } from "../helpers/factories.js";
import { errorCode, startTestServer, type TestServer } from "../helpers/server.js";
import { newId } from "../../src/infra/ids.js";
import { PushRepository } from "../../src/modules/push/push.repository.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const HOUR = 3600_000;

let t: TestServer;
let app: TestApp;
let session: string;
let target: PushTarget;

beforeAll(async () => {
  t = await startTestServer({ env: { AUDIT_RETENTION: "1h" } });
  app = await registerApp(t);
  session = await createSession(t, app);
  target = await createReadyPostboxForPush(t, session, "RSA");
});
afterAll(async () => t?.stop());

const AUDIT_LOG = `query($postboxId: ID, $first: Int, $after: String) {
  auditLog(postboxId: $postboxId, first: $first, after: $after) {
    edges { cursor node { id seq at actorType actorId action outcome reason postboxId targetId detail hash } }
    pageInfo { hasNextPage endCursor }
  }
}`;

async function log(vars: Record<string, unknown> = {}, token = session) {
  return t.gql(AUDIT_LOG, vars, { token });
}

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, POSTBOX_URL: t.url, ADMIN_TOKEN: t.adminToken };
  return new Promise((resolve) => {
    execFile(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { cwd: root, env, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe("auditLog", () => {
  it("records every push attempt, fetch and delivery of a postbox, newest first", async () => {
    const ok = await t.gql(PUSH_DATA, { input: dataInput(target, Buffer.from("hello"), { idempotencyKey: "audit-1" }) }, { token: session });
    const id = ok.data!.pushData.id;
    await t.gql(PUSH_DATA, { input: dataInput(target, Buffer.from("hello"), { idempotencyKey: "audit-1" }) }, { token: session });
    await t.gql(PUSH_DATA, { input: { ...dataInput(target, Buffer.from("x")), data: "%%%" } }, { token: session });
    await t.gql(`query($id: ID!) { postboxFile(id: $id) { id } }`, { id }, { token: target.accessToken });
    await t.gql(`mutation($ids: [ID!]!) { acknowledgeFiles(ids: $ids) { id } }`, { ids: [id] }, { token: target.accessToken });

    const r = await log({ postboxId: target.postboxId, first: 10 });
    expect(r.errors).toBeUndefined();
    const events = r.data!.auditLog.edges.map((e: any) => e.node);
    const seqs = events.map((e: any) => BigInt(e.seq));
    expect([...seqs].sort((a, b) => (a > b ? -1 : a < b ? 1 : 0))).toEqual(seqs);
    const summary = events.slice(0, 5).map((e: any) => [e.action, e.outcome, e.reason, e.detail?.duplicate ?? null, e.actorType]);
    expect(summary).toEqual([
      ["push.deliver", "SUCCESS", null, null, "USER"],
      ["push.fetch", "SUCCESS", null, null, "USER"],
      ["push.create", "REFUSED", "BAD_USER_INPUT:malformed_base64", null, "APP"],
      ["push.create", "SUCCESS", null, true, "APP"],
      ["push.create", "SUCCESS", null, false, "APP"],
    ]);
    expect(events.slice(0, 5).every((e: any) => e.postboxId === target.postboxId)).toBe(true);
    expect(events[0].targetId).toBe(id);
    expect(events.some((e: any) => e.action === "postbox.accept")).toBe(true);
    // No tokens, keys or content.
    const text = JSON.stringify(events);
    for (const secret of [session, target.accessToken, target.refreshToken, Buffer.from("hello").toString("base64")]) expect(text).not.toContain(secret);
  });

  it("pages with cursors", async () => {
    const all = (await log({ first: 100 })).data!.auditLog.edges.map((e: any) => e.node.id);
    expect(all.length).toBeGreaterThan(6);
    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      const page: any = (await log({ first: 3, after })).data!.auditLog;
      seen.push(...page.edges.map((e: any) => e.node.id));
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor;
    }
    expect(seen).toEqual(all);
    expect(errorCode(await log({ after: "bogus" }))).toBe("BAD_USER_INPUT");
  });

  it("is scoped to the session's contract", async () => {
    const other = await registerApp(t);
    const otherSession = await createSession(t, other);
    const theirs = (await log({ first: 100 }, otherSession)).data!.auditLog.edges.map((e: any) => e.node);
    expect(theirs.length).toBeGreaterThan(0);
    expect(theirs.every((e: any) => e.postboxId === null)).toBe(true);
    const mine = new Set((await log({ first: 100 })).data!.auditLog.edges.map((e: any) => e.node.id));
    expect(theirs.some((e: any) => mine.has(e.id))).toBe(false);
    expect(errorCode(await log({ postboxId: target.postboxId }, otherSession))).toBe("NOT_FOUND");
    // A cursor from another contract's log is not accepted either.
    const myCursor = (await log({ first: 1 })).data!.auditLog.pageInfo.endCursor;
    expect(errorCode(await log({ after: myCursor }, otherSession))).toBe("BAD_USER_INPUT");
    expect(errorCode(await t.gql(AUDIT_LOG, {}))).toBe("UNAUTHENTICATED");
  });
});

describe("audit verify", () => {
  it("passes through the CLI and names the first broken link", async () => {
    const ok = await cli(["audit", "verify", "--json"]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true });
    const human = await cli(["audit", "verify"]);
    expect(human.stdout).toMatch(/verifies/);

    const p = t.app.db.prisma;
    const events = await p.auditEvent.findMany({ orderBy: { seq: "asc" } });
    const victim = events[Math.floor(events.length / 2)];
    await p.auditEvent.update({ where: { id: victim.id }, data: { outcome: victim.outcome === "SUCCESS" ? "REFUSED" : "SUCCESS" } });
    try {
      const broken = await cli(["audit", "verify", "--json"]);
      expect(broken.code).toBe(1);
      expect(JSON.parse(broken.stdout)).toMatchObject({ ok: false, firstBroken: { seq: victim.seq.toString(), id: victim.id } });
      expect(broken.stderr).toContain(`seq ${victim.seq}`);
      expect(broken.stderr).toContain(victim.id);
    } finally {
      await p.auditEvent.update({ where: { id: victim.id }, data: { outcome: victim.outcome } });
    }

    // Deleting an event is named at the event after the gap.
    const gone = events[events.length - 3];
    await p.auditEvent.delete({ where: { id: gone.id } });
    const gap = await cli(["audit", "verify"]);
    expect(gap.code).toBe(1);
    expect(gap.stderr).toContain(events[events.length - 2].id);
    expect(gap.stderr).toMatch(/deleted/);
    // Put it back as it was, so the rest of the file starts from a sound chain.
    await p.auditEvent.create({ data: { ...gone, detail: gone.detail ?? undefined } });
    expect((await t.admin("GET", "/audit/verify")).body.ok).toBe(true);
  });
});

describe("audit events of text a caller chose", () => {
  it("stay verifiable when an id is cut at 64 characters in the middle of a character", async () => {
    // Cut in half, the emoji would leave an unpaired surrogate, which the database stores
    // as U+FFFD: the stored event would no longer match its hash.
    const appId = `${"a".repeat(63)}\u{1F600}`;
    const r = await t.gql(`mutation($input: CreateSessionInput!) { createSession(input: $input) { key } }`, { input: { appId, contractId: app.contractId, assertion: "x.y" } });
    expect(errorCode(r)).toBe("BAD_USER_INPUT");
    const ev = await t.app.db.prisma.auditEvent.findFirst({ where: { action: "session.create", outcome: "REFUSED" }, orderBy: { seq: "desc" } });
    expect(ev?.actorId).toBe("a".repeat(63));
    expect((await t.admin("GET", "/audit/verify")).body).toMatchObject({ ok: true });
  });
});

describe("audit verify checkpoints", () => {
  it("prints a checkpoint; a later run given it catches the newest events cut off, head row and all", async () => {
    const p = t.app.db.prisma;
    const first = await cli(["audit", "verify"]);
    expect(first.code).toBe(0);
    const m = /Checkpoint: (\d+):([0-9a-f]{64})@(\S+Z)$/m.exec(first.stdout)!;
    expect(m).not.toBeNull();
    const checkpoint = `${m[1]}:${m[2]}@${m[3]}`;
    await t.gql(PUSH_DATA, { input: dataInput(target, Buffer.from("after the checkpoint")) }, { token: session });
    expect((await cli(["audit", "verify", "--checkpoint", checkpoint])).code).toBe(0);

    // Cut the log back to before the checkpoint.
    const cut = await p.auditEvent.findMany({ where: { seq: { gte: BigInt(m[1]) } }, orderBy: { seq: "asc" } });
    const left = (await p.auditEvent.findFirst({ where: { seq: { lt: BigInt(m[1]) } }, orderBy: { seq: "desc" } }))!;
    const head = await p.auditHead.findUniqueOrThrow({ where: { id: 1 } });
    await p.auditEvent.deleteMany({ where: { seq: { gte: BigInt(m[1]) } } });
    try {
      // The head row still names the newest event: the cut shows.
      const shown = await cli(["audit", "verify"]);
      expect(shown.code).toBe(1);
      expect(shown.stderr).toContain(`seq ${left.seq}`);
      expect(shown.stderr).toMatch(/newest events were deleted/);
      // Moved back too, the database alone cannot tell; the checkpoint kept elsewhere can.
      await p.auditHead.update({ where: { id: 1 }, data: { hash: left.hash } });
      expect((await cli(["audit", "verify"])).code).toBe(0);
      const caught = await cli(["audit", "verify", "--checkpoint", checkpoint, "--json"]);
      expect(caught.code).toBe(1);
      expect(JSON.parse(caught.stdout)).toMatchObject({ ok: false, firstBroken: { seq: left.seq.toString() } });
      expect(caught.stderr).toContain(`checkpoint ${m[1]} is not in the log`);
      const bad = await cli(["audit", "verify", "--checkpoint", "yesterday"]);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain("<seq>:<hash>");
    } finally {
      for (const e of cut) await p.auditEvent.create({ data: { ...e, detail: e.detail ?? undefined } });
      await p.auditHead.update({ where: { id: 1 }, data: { hash: head.hash } });
    }
    expect((await t.admin("GET", "/audit/verify")).body.ok).toBe(true);
  });
});

describe("a batch of pushes (postbox_store_pushes)", () => {
  it("stores and audits only the pushes whose postbox takes them, chained in batch order", async () => {
    const p = t.app.db.prisma;
    const repo = new PushRepository(p, t.app.db.sql);
    const closed = await createReadyPostboxForPush(t, session, "RSA");
    await p.postbox.update({ where: { id: closed.postboxId }, data: { status: "CLOSED" } });
    // Their expiry is the postbox's, as for any push (nothing here is due for purging in the tests below).
    const { contractId, expiresAt } = await p.postbox.findUniqueOrThrow({ where: { id: target.postboxId } });
    const now = new Date();
    const item = (postboxId: string, n: number) => {
      const id = newId("psh");
      return {
        push: { id, postboxId, contractId, size: n, sha256: String(n).repeat(64).slice(0, 64), idempotencyKey: null, requestHash: null, receivedAt: now, expiresAt, ciphertext: `ct-${n}`, descriptor: `d-${n}` },
        event: t.app.services.audit.pending({ actorType: "APP", action: "push.create", outcome: "SUCCESS", contractId, postboxId, targetId: id, detail: { n } }),
      };
    };
    const batch = [item(target.postboxId, 1), item(closed.postboxId, 2), item(target.postboxId, 3), item(target.postboxId, 4)];
    const ids = batch.map((b) => b.push.id);
    const taken = [ids[0], ids[2], ids[3]];

    const rows = await repo.insertWithAudit(batch);
    expect(rows.map((r) => r.id)).toEqual(taken);
    expect((await p.push.findMany({ where: { id: { in: ids } }, select: { id: true } })).map((r) => r.id).sort()).toEqual([...taken].sort());
    const content = await p.pushContent.findMany({ where: { pushId: { in: ids } } });
    expect(Object.fromEntries(content.map((c) => [c.pushId, c.ciphertext]))).toEqual({ [ids[0]]: "ct-1", [ids[2]]: "ct-3", [ids[3]]: "ct-4" });
    // One event per stored push, in batch order, each chained onto the one before and the last at the head.
    const events = await p.auditEvent.findMany({ where: { targetId: { in: ids } }, orderBy: { seq: "asc" } });
    expect(events.map((e) => e.targetId)).toEqual(taken);
    expect(events[1].prevHash).toBe(events[0].hash);
    expect(events[2].prevHash).toBe(events[1].hash);
    expect((await p.auditHead.findUniqueOrThrow({ where: { id: 1 } })).hash).toBe(events[2].hash);
    expect((await t.admin("GET", "/audit/verify")).body.ok).toBe(true);

    // A batch that no postbox takes writes nothing and leaves the head where it was.
    const refused = item(closed.postboxId, 5);
    expect(await repo.insertWithAudit([refused])).toEqual([]);
    expect(await p.auditEvent.count({ where: { targetId: refused.push.id } })).toBe(0);
    expect((await p.auditHead.findUniqueOrThrow({ where: { id: 1 } })).hash).toBe(events[2].hash);
  });
});

describe("retention", () => {
  it("prunes old events yet keeps the chain verifiable, and notices a deleted start", async () => {
    const p = t.app.db.prisma;
    const before = await p.auditEvent.count();
    // AUDIT_RETENTION is 1h here: two hours from now, everything so far is old.
    await t.app.scheduler.tick(new Date(Date.now() + 2 * HOUR));
    const kept = await p.auditEvent.findMany({ orderBy: { seq: "asc" } });
    const prune = kept.find((e) => e.action === "audit.prune");
    expect(prune).toBeTruthy();
    expect((prune!.detail as any).deleted).toBe(before);
    expect(kept.length).toBeLessThan(before);
    const verified = await t.admin("GET", "/audit/verify");
    expect(verified.body).toMatchObject({ ok: true, anchor: { id: kept[0].id, prunedBy: prune!.id } });

    // New events chain on, and it still verifies.
    await t.gql(PUSH_DATA, { input: dataInput(target, Buffer.from("after pruning")) }, { token: session });
    expect((await cli(["audit", "verify"])).code).toBe(0);

    // A checkpoint that retention pruned passes (it is older than AUDIT_RETENTION, 1h here)...
    const gone = kept[0].prevHash; // the last pruned event's hash
    const prunedSeq = (BigInt(kept[0].seq) - 1n).toString();
    const old = await cli(["audit", "verify", "--json", "--checkpoint", `${prunedSeq}:${gone}@${new Date(Date.now() - 2 * HOUR).toISOString()}`]);
    expect(old.code).toBe(0);
    expect(JSON.parse(old.stdout).prunedCheckpoints).toEqual([`${prunedSeq}:${gone}`]);
    // ...but not one younger than that, whatever audit.prune event claims its removal (this
    // pruning ran on a clock two hours ahead, as someone covering up a deletion could have).
    const young = await cli(["audit", "verify", "--json", "--checkpoint", `${prunedSeq}:${gone}@${new Date(Date.now() - 60_000).toISOString()}`]);
    expect(young.code).toBe(1);
    expect(young.stderr).toMatch(new RegExp(`checkpoint ${prunedSeq} \\(of .*\\) is not in the log, yet AUDIT_RETENTION would keep it until .*: the start of the log was deleted`));

    // Deleting the start of the log by hand is not pruning: verify says so.
    const first = (await p.auditEvent.findFirst({ orderBy: { seq: "asc" } }))!;
    const second = (await p.auditEvent.findFirst({ where: { seq: { gt: first.seq } }, orderBy: { seq: "asc" } }))!;
    await p.auditEvent.delete({ where: { id: first.id } });
    const r = await cli(["audit", "verify", "--json"]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).firstBroken).toMatchObject({ id: second.id, seq: second.seq.toString() });
    expect(r.stderr).toMatch(/start of the log was deleted/);
    await p.auditEvent.create({ data: { ...first, detail: first.detail ?? undefined } });
    expect((await t.admin("GET", "/audit/verify")).body.ok).toBe(true);
  });

  it("deletes a purged push's metadata AUDIT_RETENTION after its content", async () => {
    const p = t.app.db.prisma;
    const id = (await t.gql(PUSH_DATA, { input: dataInput(target, Buffer.from("old news")) }, { token: session })).data!.pushData.id;
    await p.push.update({ where: { id }, data: { expiresAt: new Date(Date.now() - 1000) } });
    await t.app.scheduler.tick();
    expect((await p.push.findUnique({ where: { id } }))?.purgedAt).toBeInstanceOf(Date);
    await t.app.scheduler.tick(new Date(Date.now() + 2 * HOUR));
    expect(await p.push.findUnique({ where: { id } })).toBeNull();
    expect((await t.admin("GET", "/audit/verify")).body.ok).toBe(true);
  });

  it("prunes a backlog in batches, each its own transaction with its audit.prune event, and the chain still verifies", async () => {
    const p = t.app.db.prisma;
    for (let i = 0; i < 8; i++) await t.gql(PUSH_DATA, { input: dataInput(target, Buffer.from(`backlog ${i}`)) }, { token: session });
    // Everything so far is old; the audit.prune events written now are not.
    const cutoff = new Date();
    const old = await p.auditEvent.count({ where: { at: { lt: cutoff } } });
    expect(old).toBeGreaterThan(6);
    const r = await t.app.services.audit.prune(new Date(cutoff.getTime() + HOUR), HOUR, 3);
    expect(r.deleted).toBe(old);
    const prunes = await p.auditEvent.findMany({ where: { action: "audit.prune", at: { gte: cutoff } }, orderBy: { seq: "asc" } });
    expect(prunes.map((e) => (e.detail as { deleted: number }).deleted)).toEqual([...Array(Math.floor(old / 3)).fill(3), ...(old % 3 ? [old % 3] : [])]);
    const kept = await p.auditEvent.findMany({ orderBy: { seq: "asc" } });
    expect(kept.map((e) => e.id)).toEqual(prunes.map((e) => e.id));
    const verified = await t.admin("GET", "/audit/verify");
    expect(verified.body).toMatchObject({ ok: true, anchor: { id: prunes[0].id } });
  });

  it("is safe when two runs overlap (as with several instances)", async () => {
    const p = t.app.db.prisma;
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await t.gql(PUSH_DATA, { input: dataInput(target, Buffer.from(`n${i}`)) }, { token: session })).data!.pushData.id);
    await p.push.updateMany({ where: { id: { in: ids } }, data: { expiresAt: new Date(Date.now() - 1000) } });
    const { pushes, audit } = t.app.services;
    const now = new Date();
    const [a, b] = await Promise.all([pushes.retention(now), pushes.retention(now)]);
    expect(a.purged + b.purged).toBe(5);
    expect(await p.auditEvent.count({ where: { action: "push.purge", targetId: { in: ids } } })).toBe(5);
    expect(await p.pushContent.count({ where: { pushId: { in: ids } } })).toBe(0);

    const later = new Date(Date.now() + 2 * HOUR);
    const before = await p.auditEvent.count();
    const [x, y] = await Promise.all([audit.prune(later, HOUR), audit.prune(later, HOUR)]);
    // The runs take turns under the chain lock: each event is deleted once, and each
    // run that deleted something wrote its own audit.prune event.
    const written = [x, y].filter((r) => r.deleted > 0).length;
    expect(written).toBeGreaterThan(0);
    expect(await p.auditEvent.count()).toBe(before - x.deleted - y.deleted + written);
    expect((await t.admin("GET", "/audit/verify")).body.ok).toBe(true);
  });
});
