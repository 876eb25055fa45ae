// Group commit (PushWriter) and single-flight session lookups (coalesce), the two
// things that keep pushData's database work per request small, with fakes in
// place of the database.
import { describe, expect, it } from "@jest/globals";
import { coalesce } from "../../src/infra/coalesce.js";
import type { AuditInput, AuditService } from "../../src/modules/audit/audit.service.js";
import type { NewPush, PushRepository, PushRow } from "../../src/modules/push/push.repository.js";
import { PushWriter } from "../../src/modules/push/push.writer.js";

function push(id: string, postboxId = "pbx_ok"): NewPush {
  const now = new Date();
  return { id, postboxId, contractId: "ctr_1", size: 10, sha256: "0".repeat(64), idempotencyKey: null, requestHash: null, receivedAt: now, expiresAt: now, ciphertext: "c", descriptor: "d" };
}

const row = (p: NewPush): PushRow => ({ id: p.id, postboxId: p.postboxId, contractId: p.contractId, status: "PENDING", size: p.size, sha256: p.sha256, receivedAt: p.receivedAt, expiresAt: p.expiresAt, deliveredAt: null, purgedAt: null });

/**
 * A fake database: records every statement's pushes and the audit events it
 * chained (only for pushes stored); `failWhen` makes a statement throw, storing nothing.
 */
function fakes(failWhen: (ids: string[]) => boolean = () => false) {
  const transactions: { pushes: string[]; audited: string[] }[] = [];
  const repo = {
    async insertWithAudit(items: { push: NewPush; event: { targetId: string | null } }[]) {
      const pushes = items.map((i) => i.push.id);
      if (failWhen(pushes)) throw new Error("unique violation");
      // Only postbox "pbx_ok" is READY.
      const stored = items.filter((i) => i.push.postboxId === "pbx_ok");
      transactions.push({ pushes, audited: stored.map((i) => String(i.event.targetId)) });
      return stored.map((i) => row(i.push));
    },
  } as unknown as PushRepository;
  const audit = { pending: (input: AuditInput) => ({ ...input, canonical: "" }) } as unknown as AuditService;
  return { writer: new PushWriter(repo, audit), transactions };
}

const audited = (id: string): AuditInput => ({ actorType: "APP", action: "push.create", outcome: "SUCCESS", targetId: id });

describe("PushWriter", () => {
  it("writes pushes that arrive together in one statement, auditing only those stored", async () => {
    const { writer, transactions } = fakes();
    const ids = ["a", "b", "c", "d"];
    const results = await Promise.all(ids.map((id) => writer.write({ push: push(id, id === "c" ? "pbx_closed" : "pbx_ok"), audit: audited(id) })));
    expect(results.map((r) => r?.id ?? null)).toEqual(["a", "b", null, "d"]);
    expect(transactions).toEqual([{ pushes: ids, audited: ["a", "b", "d"] }]);
  });

  it("writes a lone push at once, in its own statement", async () => {
    const { writer, transactions } = fakes();
    expect((await writer.write({ push: push("solo"), audit: audited("solo") }))?.id).toBe("solo");
    expect((await writer.write({ push: push("next"), audit: audited("next") }))?.id).toBe("next");
    expect(transactions.map((t) => t.pushes)).toEqual([["solo"], ["next"]]);
  });

  it("writes what arrives after a statement has started together, in the next one", async () => {
    const { writer, transactions } = fakes();
    const first = writer.write({ push: push("1"), audit: audited("1") });
    await new Promise((r) => setImmediate(r)); // the first write has begun
    const later = ["2", "3", "4"].map((id) => writer.write({ push: push(id), audit: audited(id) }));
    await Promise.all([first, ...later]);
    expect(transactions.map((t) => t.pushes)).toEqual([["1"], ["2", "3", "4"]]);
  });

  it("retries a failed batch push by push, so only the bad one fails", async () => {
    const { writer, transactions } = fakes((ids) => ids.includes("bad"));
    const results = await Promise.allSettled(["x", "bad", "y"].map((id) => writer.write({ push: push(id), audit: audited(id) })));
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(transactions.map((t) => t.pushes)).toEqual([["x"], ["y"]]);
  });
});

describe("coalesce (session lookups)", () => {
  it("shares one call among concurrent callers with the same key, and caches nothing", async () => {
    let calls = 0;
    const lookup = coalesce(async (key: string) => {
      calls++;
      return `${key}#${calls}`;
    });
    const [a, b, c] = await Promise.all([lookup("k"), lookup("k"), lookup("other")]);
    expect([a, b, c]).toEqual(["k#1", "k#1", "other#2"]);
    expect(await lookup("k")).toBe("k#3");
  });

  it("gives every concurrent caller the same failure, then tries again", async () => {
    let calls = 0;
    const lookup = coalesce(async () => {
      calls++;
      throw new Error(`refused ${calls}`);
    });
    const results = await Promise.allSettled([lookup("k"), lookup("k")]);
    expect(results.map((r) => (r as PromiseRejectedResult).reason.message)).toEqual(["refused 1", "refused 1"]);
    await expect(lookup("k")).rejects.toThrow("refused 2");
  });
});
