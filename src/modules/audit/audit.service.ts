// The append-only, hash-chained audit log. Each event stores the hash of the one
// before it, so editing or deleting a row is detectable (verify()). Events carry
// ids, outcomes and reasons only: never payloads, keys or tokens.
import { sha256Hex } from "../../infra/crypto.js";
import { badInput, notFound } from "../../infra/errors.js";
import { pageRequest, toConnection, type Connection } from "../../infra/graphql/pagination.js";
import { newId } from "../../infra/ids.js";
import { storableText } from "../../infra/text.js";
import type { Tx } from "../../infra/db/database.js";
import type { AuditRepository, AuditRow, NewAuditRow, PendingAuditRow } from "./audit.repository.js";

export const GENESIS_HASH = "0".repeat(64);

export type ActorType = "APP" | "USER" | "ADMIN" | "SYSTEM";
export type Outcome = "SUCCESS" | "REFUSED";
export type DetailValue = string | number | boolean | null;

export interface AuditInput {
  actorType: ActorType;
  actorId?: string | null;
  action: string;
  outcome: Outcome;
  /** For refusals: the error code and a short machine-readable reason. */
  reason?: string | null;
  applicationId?: string | null;
  contractId?: string | null;
  postboxId?: string | null;
  targetId?: string | null;
  detail?: Record<string, DetailValue> | null;
}

interface HashedFields extends AuditInput {
  id: string;
  at: Date;
}

/** Canonical form: fixed key order, nulls explicit, ISO time. */
export function canonicalEvent(e: HashedFields): string {
  const detail = e.detail ? Object.fromEntries(Object.keys(e.detail).sort().map((k) => [k, e.detail![k]])) : null;
  return JSON.stringify([
    e.id,
    e.at.toISOString(),
    e.actorType,
    e.actorId ?? null,
    e.action,
    e.outcome,
    e.reason ?? null,
    e.applicationId ?? null,
    e.contractId ?? null,
    e.postboxId ?? null,
    e.targetId ?? null,
    detail,
  ]);
}

// Ids in events may be what a caller sent: hashed as they will be stored (infra/text.ts),
// or the stored row would not match its hash.
const text = (s: string | null | undefined): string | null => (s == null ? null : storableText(s));

function storableDetail(detail: Record<string, DetailValue>): Record<string, DetailValue> {
  let clean: Record<string, DetailValue> | undefined;
  for (const [k, v] of Object.entries(detail)) {
    const key = storableText(k);
    const value = typeof v === "string" ? storableText(v) : v;
    if (key === k && value === v) continue;
    clean ??= { ...detail };
    if (key !== k) delete clean[k];
    clean[key] = value;
  }
  return clean ?? detail;
}

export function chainHash(prevHash: string, e: HashedFields): string {
  return sha256Hex(`${prevHash}\n${canonicalEvent(e)}`);
}

export interface VerifyResult {
  ok: boolean;
  checked: number;
  /** Set when older events were pruned (AUDIT_RETENTION): the event the kept chain starts from. */
  anchor?: { seq: string; id: string; prunedBy: string };
  /**
   * The newest event checked. Kept outside the database (a log archive, a ticket) and
   * passed back later as a checkpoint, it shows that no event up to it was since
   * deleted or rewritten, even by someone able to rewrite the head row as well.
   */
  head?: { seq: string; id: string; hash: string; at: string };
  /** Checkpoints given that retention has since pruned (so they could not be checked). */
  prunedCheckpoints?: string[];
  /** seq and id are null when no event is left to name. */
  firstBroken?: { seq: string | null; id: string | null; problem: string };
}

/** An event's seq, hash and time as a verification reported it earlier ("head"). */
export interface Checkpoint {
  seq: bigint;
  hash: string;
  /**
   * The event's time. With it, a checkpoint missing from the log counts as pruned only
   * when it is older than AUDIT_RETENTION: a younger one was deleted, whatever audit.prune
   * event claims otherwise. (Checkpoints printed before times were added have none.)
   */
  at?: Date;
}

/** Parses "<seq>:<hash>@<time>" (as the CLI's --checkpoint takes it), or "<seq>:<hash>". */
export function parseCheckpoint(text: string): Checkpoint {
  const m = /^(\d{1,19}):([0-9a-f]{64})(?:@(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,3})?Z))?$/.exec(text.trim());
  const at = m?.[3] ? new Date(m[3]) : undefined;
  if (!m || (at && Number.isNaN(at.getTime()))) {
    throw badInput(`"${text.slice(0, 100)}" is not a checkpoint: give <seq>:<hash>@<time> as \`audit verify\` printed it (hash: 64 hex digits; time: UTC, ISO 8601).`, "checkpoint");
  }
  return { seq: BigInt(m[1]), hash: m[2], ...(at ? { at } : {}) };
}

/**
 * Events prune() deletes per transaction. Measured on 50,000 old events: a batch of 5,000
 * held the chain lock 24 ms on PostgreSQL and 86 ms on the embedded database; 1,000 cost
 * about 25 ms a batch whatever its size (5 times the total); all 50,000 at once, 150–160 ms.
 */
export const PRUNE_BATCH = 5000;

export interface PruneResult {
  deleted: number;
  throughSeq?: string;
}

export class AuditService {
  constructor(private readonly repo: AuditRepository) {}

  /** Appends an event; inside `tx` when given (so it commits or rolls back with the change it records). */
  async record(input: AuditInput, tx?: Tx): Promise<void> {
    if (!tx) return this.repo.transaction((t) => this.record(input, t));
    const prevHash = await this.repo.lockChainAndGetHead(tx);
    await this.append(tx, prevHash, input);
  }

  private async append(tx: Tx, prevHash: string, input: AuditInput): Promise<void> {
    await this.repo.append(tx, this.row(prevHash, input));
  }

  /**
   * An event to be chained by the database in the same statement as the change it
   * records (postbox_store_pushes, see PushRepository.insertWithAudit): its columns
   * and canonical text.
   */
  pending(input: AuditInput): PendingAuditRow {
    const c = this.columns(input);
    return Object.assign(c, { canonical: canonicalEvent(c) });
  }

  private row(prevHash: string, input: AuditInput): NewAuditRow {
    const c = this.columns(input);
    return Object.assign(c, { prevHash, hash: chainHash(prevHash, c) });
  }

  /**
   * The event's columns, which are also the fields its hash covers: one literal with
   * every column, which the callers extend. Not `{ ...input, id, at }`: on Node 20 an
   * object made by a spread and then extended gets a hidden class of its own, and every
   * event cost new maps and missed caches (docs/design.md, "Object shapes on Node 20").
   */
  private columns(input: AuditInput): Omit<NewAuditRow, "prevHash" | "hash"> & HashedFields {
    return {
      id: newId("evt"),
      at: new Date(),
      actorType: input.actorType,
      actorId: text(input.actorId),
      action: input.action,
      outcome: input.outcome,
      reason: text(input.reason),
      applicationId: text(input.applicationId),
      contractId: text(input.contractId),
      postboxId: text(input.postboxId),
      targetId: text(input.targetId),
      detail: input.detail ? storableDetail(input.detail) : undefined,
    };
  }

  list(filter: { contractId: string; postboxId?: string }, take: number, beforeSeq?: bigint): Promise<AuditRow[]> {
    return this.repo.list(filter, take, beforeSeq);
  }

  /** auditLog: the contract's events (optionally one postbox's), newest first, cursor-paginated. */
  async page(contractId: string, postboxId: string | null | undefined, first?: number | null, after?: string | null): Promise<Connection<AuditRow>> {
    const page = pageRequest(first, after);
    if (postboxId && !(await this.repo.postboxExists(postboxId, contractId))) throw notFound("Postbox", postboxId);
    let beforeSeq: bigint | undefined;
    if (page.after) {
      const seq = await this.repo.seqOf(page.after.id, contractId);
      if (seq === null) throw badInput("after is not a cursor of this audit log (or its event was pruned); start again without it.", "after");
      beforeSeq = seq;
    }
    const rows = await this.repo.list({ contractId, ...(postboxId ? { postboxId } : {}) }, page.take, beforeSeq);
    return toConnection(rows.map((r) => ({ ...r, createdAt: r.at })), page, (r) => r);
  }

  /**
   * Deletes events older than `retentionMs` as a prefix of the chain and records
   * an audit.prune event naming the hash of the last deleted event, so verify()
   * can tell this pruning from someone deleting the start of the log. Runs under
   * the chain lock: safe with several instances (the second finds nothing).
   */
  async prune(now: Date, retentionMs: number, batch = PRUNE_BATCH): Promise<PruneResult> {
    const cutoff = new Date(now.getTime() - retentionMs);
    let deleted = 0;
    let throughSeq: string | undefined;
    // A batch per transaction, each with its audit.prune event: the chain lock (which every
    // audited write waits for) is held for one batch at a time, and a long backlog (the
    // first run of retention on a busy server) gets through, where one transaction for it
    // all could outlast the transaction timeout, roll back, and do so again every run.
    for (;;) {
      const removed = await this.repo.transaction(async (tx) => {
        const prevHash = await this.repo.lockChainAndGetHead(tx);
        const removed = await this.repo.deletePrefixBefore(tx, cutoff, batch);
        if (!removed) return null;
        await this.append(tx, prevHash, {
          actorType: "SYSTEM",
          action: "audit.prune",
          outcome: "SUCCESS",
          detail: { deleted: removed.count, throughSeq: removed.lastSeq.toString(), lastHash: removed.lastHash, before: cutoff.toISOString() },
        });
        return removed;
      });
      if (!removed) break;
      deleted += removed.count;
      throughSeq = removed.lastSeq.toString();
      if (removed.count < batch) break;
    }
    return throughSeq ? { deleted, throughSeq } : { deleted: 0 };
  }

  /**
   * Walks the chain from the start; names the first event whose link or content does
   * not check out. The chain must reach the hash the head row recorded when the walk
   * began (else its newest events were deleted), and each checkpoint must still be
   * there with its hash (else the log was cut or rewritten back to before it).
   */
  async verify(checkpoints: Checkpoint[] = [], retention?: { now: Date; retentionMs: number }, restarts = 3): Promise<VerifyResult> {
    // Read first: events appended during the walk come after it, so the walk must meet it.
    const recorded = await this.repo.headHash();
    // The migrations create the head row and every append keeps it: without it, nothing
    // would show that the newest events (or all of them) were deleted.
    if (recorded === null) {
      return { ok: false, checked: 0, firstBroken: { seq: null, id: null, problem: 'the audit head row ("AuditHead" id 1) is missing: it was deleted, so the log\'s newest events cannot be checked' } };
    }
    const headHash = recorded;
    const pending = new Map(checkpoints.map((c) => [c.seq, c]));
    let prev: string | null = null;
    let afterSeq: bigint | null = null;
    let checked = 0;
    let anchor: VerifyResult["anchor"];
    let reachedHead = headHash === GENESIS_HASH;
    let last: VerifyResult["head"];
    for (;;) {
      const rows = await this.repo.page(afterSeq, 1000);
      if (rows.length === 0) {
        const broken = (problem: string): VerifyResult => ({ ok: false, checked, firstBroken: { seq: last?.seq ?? null, id: last?.id ?? null, problem } });
        if (!reachedHead) {
          return broken(`the head row records hash ${headHash.slice(0, 16)}…, which no event has: the newest events were deleted${last ? " (this is the newest left)" : " (no event is left)"}`);
        }
        const pruned: string[] = [];
        for (const [seq, cp] of pending) {
          // Older than the kept log's first event, which retention anchored: pruned, not checkable,
          // unless its time says retention could not have pruned it yet.
          const due = !cp.at || !retention || cp.at.getTime() < retention.now.getTime() - retention.retentionMs;
          if (anchor && seq < BigInt(anchor.seq) && due) {
            pruned.push(`${seq}:${cp.hash}`);
            continue;
          }
          if (anchor && seq < BigInt(anchor.seq)) {
            return broken(
              `checkpoint ${seq} (of ${cp.at!.toISOString()}) is not in the log, yet AUDIT_RETENTION would keep it until ${new Date(cp.at!.getTime() + retention!.retentionMs).toISOString()}: the start of the log was deleted, and ${anchor.prunedBy} claims a pruning that retention did not do`,
            );
          }
          return broken(`checkpoint ${seq} is not in the log: events up to it were deleted${last ? ` (the newest event left is ${last.seq})` : ""}, the head row moved back with them`);
        }
        return { ok: true, checked, ...(anchor ? { anchor } : {}), ...(last ? { head: last } : {}), ...(pruned.length ? { prunedCheckpoints: pruned } : {}) };
      }
      for (const row of rows) {
        if (prev === null && row.prevHash !== GENESIS_HASH) {
          // The oldest kept event anchors the chain, but only where retention pruned
          // what came before it: an audit.prune event must name the hash it follows.
          const pruned = (await this.repo.pruneEvents()).find((p) => (p.detail as Record<string, unknown> | null)?.lastHash === row.prevHash);
          if (!pruned) {
            return {
              ok: false,
              checked,
              firstBroken: { seq: row.seq.toString(), id: row.id, problem: "the events before it are missing and no audit.prune event records their removal (the start of the log was deleted)" },
            };
          }
          anchor = { seq: row.seq.toString(), id: row.id, prunedBy: pruned.id };
        }
        const expectedPrev = prev ?? row.prevHash;
        if (row.prevHash !== expectedPrev) {
          // Pruning (retention, every SWEEP_INTERVAL) removed events ahead of the walk, and with
          // them every one before, the walk's last included: not a break. Start again from the
          // new start; the walk outruns pruning from there (it prunes a few seconds' events a run).
          if (restarts > 0 && last && !(await this.repo.exists(last.id))) return this.verify(checkpoints, retention, restarts - 1);
          return { ok: false, checked, firstBroken: { seq: row.seq.toString(), id: row.id, problem: "prevHash does not match the previous event's hash (an event before it was deleted or altered)" } };
        }
        const recomputed = chainHash(row.prevHash, {
          id: row.id,
          at: row.at,
          actorType: row.actorType as ActorType,
          actorId: row.actorId,
          action: row.action,
          outcome: row.outcome as Outcome,
          reason: row.reason,
          applicationId: row.applicationId,
          contractId: row.contractId,
          postboxId: row.postboxId,
          targetId: row.targetId,
          detail: (row.detail as Record<string, DetailValue> | null) ?? null,
        });
        if (recomputed !== row.hash) {
          return { ok: false, checked, firstBroken: { seq: row.seq.toString(), id: row.id, problem: "content does not match its hash (the event was edited)" } };
        }
        const expected = pending.get(row.seq)?.hash;
        if (expected !== undefined) {
          if (expected !== row.hash) {
            return { ok: false, checked, firstBroken: { seq: row.seq.toString(), id: row.id, problem: "its hash is not the one its checkpoint recorded (the log was rewritten from here on, or before)" } };
          }
          pending.delete(row.seq);
        }
        // Retention may have pruned the head's event since it was read: then the kept chain starts right after it.
        if (row.hash === headHash || (checked === 0 && anchor && row.prevHash === headHash)) reachedHead = true;
        prev = row.hash;
        last = { seq: row.seq.toString(), id: row.id, hash: row.hash, at: row.at.toISOString() };
        checked++;
      }
      afterSeq = rows[rows.length - 1].seq;
    }
  }
}
