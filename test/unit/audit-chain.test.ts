// The audit log's hash chain: canonical form, chaining, and verify() noticing an
// edited event, a deleted one, the newest ones cut off, and a rewrite caught by a
// checkpoint (on a real embedded database).
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { openDatabase, type Database } from "../../src/infra/db/database.js";
import { AuditRepository } from "../../src/modules/audit/audit.repository.js";
import { AuditService, canonicalEvent, chainHash, GENESIS_HASH, parseCheckpoint } from "../../src/modules/audit/audit.service.js";

const base = {
  id: "evt_1",
  at: new Date("2026-11-28T12:00:00.000Z"),
  actorType: "APP" as const,
  actorId: "app_1",
  action: "session.create",
  outcome: "SUCCESS" as const,
  applicationId: "app_1",
  contractId: "ctr_1",
  detail: { b: 2, a: "x" },
};

describe("canonical form and chain hash", () => {
  it("is independent of detail key order and of undefined vs null", () => {
    const reordered = { ...base, detail: { a: "x", b: 2 }, reason: null, postboxId: undefined };
    expect(canonicalEvent(reordered)).toBe(canonicalEvent(base));
    expect(chainHash(GENESIS_HASH, reordered)).toBe(chainHash(GENESIS_HASH, base));
  });

  it("writes fields in a fixed order with explicit nulls and ISO time", () => {
    expect(JSON.parse(canonicalEvent(base))).toEqual(["evt_1", "2026-11-28T12:00:00.000Z", "APP", "app_1", "session.create", "SUCCESS", null, "app_1", "ctr_1", null, null, { a: "x", b: 2 }]);
  });

  it("is a sha256 hex digest that depends on the previous hash", () => {
    const h = chainHash(GENESIS_HASH, base);
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(chainHash("1".repeat(64), base)).not.toBe(h);
  });

  it.each([
    ["id", { id: "evt_2" }],
    ["time", { at: new Date("2026-11-28T12:00:00.001Z") }],
    ["actor", { actorId: "app_2" }],
    ["action", { action: "session.end" }],
    ["outcome", { outcome: "REFUSED" as const }],
    ["reason", { reason: "UNAUTHENTICATED:bad_signature" }],
    ["contract", { contractId: "ctr_2" }],
    ["postbox", { postboxId: "pbx_1" }],
    ["target", { targetId: "psh_1" }],
    ["detail", { detail: { a: "x", b: 3 } }],
  ])("changes when the %s changes", (_n, change) => {
    expect(chainHash(GENESIS_HASH, { ...base, ...change })).not.toBe(chainHash(GENESIS_HASH, base));
  });
});

describe("verify() on a real database", () => {
  let db: Database;
  let audit: AuditService;

  beforeAll(async () => {
    db = await openDatabase({ dataDir: "memory://" });
    await db.migrate();
    audit = new AuditService(new AuditRepository(db.prisma));
  });
  afterAll(async () => db?.close());

  async function rows() {
    return db.prisma.auditEvent.findMany({ orderBy: { seq: "asc" } });
  }

  async function resetWith(n: number) {
    // A fresh log: no events, and the head back at the genesis hash.
    await db.prisma.auditEvent.deleteMany({});
    await db.prisma.auditHead.update({ where: { id: 1 }, data: { hash: GENESIS_HASH } });
    for (let i = 0; i < n; i++) {
      await audit.record({ actorType: "ADMIN", action: "application.create", outcome: "SUCCESS", applicationId: `app_${i}`, detail: { i } });
    }
    return rows();
  }

  it("links each event to the one before it, starting from the genesis hash", async () => {
    const events = await resetWith(4);
    expect(events[0].prevHash).toBe(GENESIS_HASH);
    for (let i = 1; i < events.length; i++) expect(events[i].prevHash).toBe(events[i - 1].hash);
    expect(await audit.verify()).toMatchObject({ ok: true, checked: 4 });
  });

  it("keeps the head row on the newest event's hash", async () => {
    const events = await resetWith(3);
    expect((await db.prisma.auditHead.findUniqueOrThrow({ where: { id: 1 } })).hash).toBe(events[2].hash);
  });

  it("detects an edited event and names it", async () => {
    const events = await resetWith(4);
    await db.prisma.auditEvent.update({ where: { id: events[2].id }, data: { outcome: "REFUSED" } });
    const r = await audit.verify();
    expect(r.ok).toBe(false);
    expect(r.firstBroken).toMatchObject({ id: events[2].id, seq: events[2].seq.toString() });
    expect(r.firstBroken!.problem).toMatch(/edited/);
  });

  it("detects an edited detail", async () => {
    const events = await resetWith(3);
    await db.prisma.auditEvent.update({ where: { id: events[0].id }, data: { detail: { i: 99 } } });
    const r = await audit.verify();
    expect(r.ok).toBe(false);
    expect(r.firstBroken?.id).toBe(events[0].id);
  });

  it("detects an event deleted from the middle, at the event after the gap", async () => {
    const events = await resetWith(5);
    await db.prisma.auditEvent.delete({ where: { id: events[2].id } });
    const r = await audit.verify();
    expect(r.ok).toBe(false);
    expect(r.firstBroken?.id).toBe(events[3].id);
    expect(r.firstBroken!.problem).toMatch(/deleted/);
  });

  it("detects the first events deleted", async () => {
    const events = await resetWith(3);
    await db.prisma.auditEvent.delete({ where: { id: events[0].id } });
    const r = await audit.verify();
    expect(r.ok).toBe(false);
    expect(r.firstBroken?.id).toBe(events[1].id);
  });

  it("detects the newest events deleted: the chain no longer reaches the head row's hash", async () => {
    const events = await resetWith(4);
    await db.prisma.auditEvent.deleteMany({ where: { seq: { gte: events[2].seq } } });
    const r = await audit.verify();
    expect(r.ok).toBe(false);
    expect(r.firstBroken).toMatchObject({ seq: events[1].seq.toString(), id: events[1].id });
    expect(r.firstBroken!.problem).toMatch(/newest events were deleted/);
    // Every event gone, the head row still remembering them:
    await db.prisma.auditEvent.deleteMany({});
    expect(await audit.verify()).toMatchObject({ ok: false, firstBroken: { seq: null, id: null, problem: expect.stringMatching(/no event is left/) } });
  });

  it("detects the newest events deleted together with the head row", async () => {
    const events = await resetWith(5);
    const head = await db.prisma.auditHead.findUniqueOrThrow({ where: { id: 1 } });
    await db.prisma.auditEvent.deleteMany({ where: { seq: { gte: events[2].seq } } });
    await db.prisma.auditHead.deleteMany({});
    try {
      expect(await audit.verify()).toMatchObject({ ok: false, checked: 0, firstBroken: { problem: expect.stringMatching(/head row .* is missing/) } });
    } finally {
      await db.prisma.auditHead.create({ data: head });
    }
  });

  it("starts again when pruning removes events ahead of the walk (retention on a busy server), and passes", async () => {
    await resetWith(3);
    await new Promise((r) => setTimeout(r, 5));
    for (let i = 3; i < 6; i++) await audit.record({ actorType: "ADMIN", action: "application.create", outcome: "SUCCESS", applicationId: `app_${i}`, detail: { i } });
    const events = await rows();
    const cutoff = events[3].at; // the first three are older
    expect(events[2].at.getTime()).toBeLessThan(cutoff.getTime());
    // Pages of two; retention runs right after the first page was read.
    const repo = new AuditRepository(db.prisma);
    let pages = 0;
    const walking = Object.assign(Object.create(repo) as AuditRepository, {
      page: async (after: bigint | null) => {
        const page = await repo.page(after, 2);
        if (pages++ === 0) expect((await audit.prune(new Date(cutoff.getTime() + 1000), 1000)).deleted).toBe(3);
        return page;
      },
    });
    const r = await new AuditService(walking).verify();
    expect(r).toMatchObject({ ok: true, anchor: { id: events[3].id } });
    // But a gap that no pruning explains is still one, however often the walk starts again.
    const now = await rows();
    await db.prisma.auditEvent.delete({ where: { id: now[1].id } });
    const broken = await new AuditService(walking).verify();
    expect(broken).toMatchObject({ ok: false, firstBroken: { id: now[2].id } });
  });

  it("reports the newest event as a checkpoint, which a later run checks", async () => {
    const events = await resetWith(3);
    const first = await audit.verify();
    expect(first.head).toEqual({ seq: events[2].seq.toString(), id: events[2].id, hash: events[2].hash, at: events[2].at.toISOString() });
    await audit.record({ actorType: "ADMIN", action: "application.create", outcome: "SUCCESS", detail: { i: 3 } });
    const cp = parseCheckpoint(`${first.head!.seq}:${first.head!.hash}@${first.head!.at}`);
    expect(await audit.verify([cp])).toMatchObject({ ok: true, checked: 4 });
  });

  it("a checkpoint catches the newest events deleted with the head row moved back", async () => {
    const events = await resetWith(4);
    const cp = { seq: events[3].seq, hash: events[3].hash };
    await db.prisma.auditEvent.deleteMany({ where: { seq: { gte: events[2].seq } } });
    await db.prisma.auditHead.update({ where: { id: 1 }, data: { hash: events[1].hash } });
    expect(await audit.verify()).toMatchObject({ ok: true }); // undetectable from the database alone
    const r = await audit.verify([cp]);
    expect(r.ok).toBe(false);
    expect(r.firstBroken).toMatchObject({ seq: events[1].seq.toString() });
    expect(r.firstBroken!.problem).toMatch(new RegExp(`checkpoint ${events[3].seq} is not in the log`));
  });

  it("a checkpoint catches a log rewritten consistently (every hash and the head recomputed)", async () => {
    const events = await resetWith(3);
    const cp = { seq: events[2].seq, hash: events[2].hash };
    // Rewrite event 1 and re-chain everything after it, head included.
    let prev = events[0].hash;
    for (const e of events.slice(1)) {
      const outcome = e.id === events[1].id ? "REFUSED" : e.outcome;
      const hash = chainHash(prev, { ...e, outcome, detail: e.detail } as never);
      await db.prisma.auditEvent.update({ where: { id: e.id }, data: { outcome, prevHash: prev, hash } });
      prev = hash;
    }
    await db.prisma.auditHead.update({ where: { id: 1 }, data: { hash: prev } });
    expect(await audit.verify()).toMatchObject({ ok: true });
    const r = await audit.verify([cp]);
    expect(r.ok).toBe(false);
    expect(r.firstBroken).toMatchObject({ seq: events[2].seq.toString(), id: events[2].id });
    expect(r.firstBroken!.problem).toMatch(/rewritten/);
  });

  it("refuses a malformed checkpoint with a message naming the form", () => {
    expect(() => parseCheckpoint("12")).toThrow(/<seq>:<hash>@<time>/);
    expect(parseCheckpoint(`12:${"a".repeat(64)}@2026-12-02T10:55:09.123Z`)).toEqual({ seq: 12n, hash: "a".repeat(64), at: new Date("2026-12-02T10:55:09.123Z") });
    expect(parseCheckpoint(`12:${"a".repeat(64)}`)).toEqual({ seq: 12n, hash: "a".repeat(64) });
    expect(() => parseCheckpoint(`12:${"a".repeat(64)}@2026-13-45T10:55:09Z`)).toThrow(/not a checkpoint/);
    expect(() => parseCheckpoint(`12:${"a".repeat(64)}@yesterday`)).toThrow(/not a checkpoint/);
    expect(() => parseCheckpoint(`x:${"a".repeat(64)}`)).toThrow(/not a checkpoint/);
    expect(parseCheckpoint(` 7:${"ab".repeat(32)} `)).toEqual({ seq: 7n, hash: "ab".repeat(32) });
  });

  it("detects a rewritten hash (an event replaced along with its own hash)", async () => {
    const events = await resetWith(3);
    const forged = chainHash(events[1].prevHash, { ...events[1], actorType: "ADMIN", outcome: "REFUSED", detail: { i: 1 } } as never);
    await db.prisma.auditEvent.update({ where: { id: events[1].id }, data: { outcome: "REFUSED", hash: forged } });
    const r = await audit.verify();
    expect(r.ok).toBe(false);
    expect(r.firstBroken?.id).toBe(events[2].id);
  });
});
