// The append-only, hash-chained audit log. Each event stores the hash of the one
// before it, so editing or deleting a row is detectable (verify()). Events carry
// ids, outcomes and reasons only: never payloads, keys or tokens.
import { sha256Hex } from "../../infra/crypto.js";
import { newId } from "../../infra/ids.js";
import type { Tx } from "../../infra/db/database.js";
import type { AuditRepository, AuditRow } from "./audit.repository.js";

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
  firstBroken?: { seq: string; id: string; problem: string };
}

export class AuditService {
  constructor(private readonly repo: AuditRepository) {}

  /** Appends an event; inside `tx` when given (so it commits or rolls back with the change it records). */
  async record(input: AuditInput, tx?: Tx): Promise<void> {
    if (!tx) return this.repo.transaction((t) => this.record(input, t));
    const prevHash = (await this.repo.lockChainAndGetHead(tx)) ?? GENESIS_HASH;
    const fields: HashedFields = { ...input, id: newId("evt"), at: new Date() };
    await this.repo.insert(tx, {
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
      prevHash,
      hash: chainHash(prevHash, fields),
    });
  }

  list(filter: { contractId: string; postboxId?: string }, take: number, beforeSeq?: bigint): Promise<AuditRow[]> {
    return this.repo.list(filter, take, beforeSeq);
  }

  /** Walks the chain from the start; names the first event whose link or content does not check out. */
  async verify(): Promise<VerifyResult> {
    let prev: string | null = null;
    let afterSeq: bigint | null = null;
    let checked = 0;
    for (;;) {
      const rows = await this.repo.page(afterSeq, 1000);
      if (rows.length === 0) return { ok: true, checked };
      for (const row of rows) {
        // The oldest kept event anchors the chain (older ones may have been pruned by retention).
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
