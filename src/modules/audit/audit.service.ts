// The append-only, hash-chained audit log. Each event stores the hash of the one
// before it, so editing or deleting a row is detectable (verify()). Events carry
// ids, outcomes and reasons only: never payloads, keys or tokens.
import { sha256Hex } from "../../infra/crypto.js";
import { badInput, notFound } from "../../infra/errors.js";
import { pageRequest, toConnection, type Connection } from "../../infra/graphql/pagination.js";
import { newId } from "../../infra/ids.js";
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

export function chainHash(prevHash: string, e: HashedFields): string {
  return sha256Hex(`${prevHash}\n${canonicalEvent(e)}`);
}

export interface VerifyResult {
  ok: boolean;
  checked: number;
  /** Set when older events were pruned (AUDIT_RETENTION): the event the kept chain starts from. */
  anchor?: { seq: string; id: string; prunedBy: string };
  firstBroken?: { seq: string; id: string; problem: string };
}

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
    const { fields, columns } = this.columns(input);
    return { ...columns, canonical: canonicalEvent(fields) };
  }

  private row(prevHash: string, input: AuditInput): NewAuditRow {
    const { fields, columns } = this.columns(input);
    return { ...columns, prevHash, hash: chainHash(prevHash, fields) };
  }

  private columns(input: AuditInput): { fields: HashedFields; columns: Omit<NewAuditRow, "prevHash" | "hash"> } {
    const fields: HashedFields = { ...input, id: newId("evt"), at: new Date() };
    return {
      fields,
      columns: {
        id: fields.id,
        at: fields.at,
        actorType: input.actorType,
        actorId: input.actorId ?? null,
        action: input.action,
        outcome: input.outcome,
        reason: input.reason ?? null,
        applicationId: input.applicationId ?? null,
        contractId: input.contractId ?? null,
        postboxId: input.postboxId ?? null,
        targetId: input.targetId ?? null,
        detail: input.detail ?? undefined,
      },
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
  async prune(now: Date, retentionMs: number): Promise<PruneResult> {
    const cutoff = new Date(now.getTime() - retentionMs);
    return this.repo.transaction(async (tx) => {
      const prevHash = await this.repo.lockChainAndGetHead(tx);
      const removed = await this.repo.deletePrefixBefore(tx, cutoff);
      if (!removed) return { deleted: 0 };
      await this.append(tx, prevHash, {
        actorType: "SYSTEM",
        action: "audit.prune",
        outcome: "SUCCESS",
        detail: { deleted: removed.count, throughSeq: removed.lastSeq.toString(), lastHash: removed.lastHash, before: cutoff.toISOString() },
      });
      return { deleted: removed.count, throughSeq: removed.lastSeq.toString() };
    });
  }

  /** Walks the chain from the start; names the first event whose link or content does not check out. */
  async verify(): Promise<VerifyResult> {
    let prev: string | null = null;
    let afterSeq: bigint | null = null;
    let checked = 0;
    let anchor: VerifyResult["anchor"];
    for (;;) {
      const rows = await this.repo.page(afterSeq, 1000);
      if (rows.length === 0) return { ok: true, checked, ...(anchor ? { anchor } : {}) };
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
        prev = row.hash;
        checked++;
      }
      afterSeq = rows[rows.length - 1].seq;
    }
  }
}
