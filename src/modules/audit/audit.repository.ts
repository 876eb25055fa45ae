import { Prisma } from "../../generated/prisma/client.js";
import type { PrismaClient, Tx } from "../../infra/db/database.js";

export type AuditRow = Prisma.AuditEventGetPayload<object>;

/** An event as appended: every column but seq (assigned by the database). */
export interface NewAuditRow {
  id: string;
  at: Date;
  actorType: string;
  actorId: string | null;
  action: string;
  outcome: string;
  reason: string | null;
  applicationId: string | null;
  contractId: string | null;
  postboxId: string | null;
  targetId: string | null;
  detail: Record<string, string | number | boolean | null> | undefined;
  prevHash: string;
  hash: string;
}

/** An event ready to be chained: its columns, and its canonical text (which the hash covers). */
export type PendingAuditRow = Omit<NewAuditRow, "prevHash" | "hash"> & { canonical: string };

export class AuditRepository {
  constructor(private readonly prisma: PrismaClient) {}

  /**
   * Locks the chain's head row until the transaction ends and returns its hash.
   * A row lock rather than an advisory one: an appender that waited for it reads
   * the head as the previous holder left it (READ COMMITTED re-reads a locked row).
   */
  async lockChainAndGetHead(tx: Tx): Promise<string> {
    const rows = await tx.$queryRaw<{ hash: string }[]>`SELECT hash FROM "AuditHead" WHERE id = 1 FOR UPDATE`;
    // Migration audit_head creates the row; without it appends would not move the head.
    if (!rows[0]) throw new Error('The audit chain\'s head row is missing ("AuditHead" id 1): run the migrations.');
    return rows[0].hash;
  }

  /** Appends one event and moves the head to it, inside the transaction that holds the head's lock. */
  async append(tx: Tx, r: NewAuditRow): Promise<void> {
    await tx.$executeRaw`
      WITH appended AS (
        INSERT INTO "AuditEvent" (id, at, "actorType", "actorId", action, outcome, reason, "applicationId", "contractId", "postboxId", "targetId", detail, "prevHash", hash)
        VALUES (${r.id}, ${r.at.toISOString()}::timestamp(3), ${r.actorType}, ${r.actorId}, ${r.action}, ${r.outcome}, ${r.reason}, ${r.applicationId},
                ${r.contractId}, ${r.postboxId}, ${r.targetId}, ${r.detail === undefined ? null : JSON.stringify(r.detail)}::jsonb, ${r.prevHash}, ${r.hash})
      )
      UPDATE "AuditHead" SET hash = ${r.hash} WHERE id = 1`;
  }

  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.prisma.$transaction(fn);
  }

  /** Events of one contract (optionally one postbox), newest first, keyset-paginated by seq. */
  list(filter: { contractId: string; postboxId?: string }, take: number, beforeSeq?: bigint): Promise<AuditRow[]> {
    return this.prisma.auditEvent.findMany({
      where: { contractId: filter.contractId, ...(filter.postboxId ? { postboxId: filter.postboxId } : {}), ...(beforeSeq ? { seq: { lt: beforeSeq } } : {}) },
      orderBy: { seq: "desc" },
      take,
    });
  }

  /** The seq of one of the contract's events (to continue a page after it), or null. */
  async seqOf(id: string, contractId: string): Promise<bigint | null> {
    const row = await this.prisma.auditEvent.findFirst({ where: { id, contractId }, select: { seq: true } });
    return row?.seq ?? null;
  }

  postboxExists(postboxId: string, contractId: string): Promise<boolean> {
    return this.prisma.postbox.count({ where: { id: postboxId, contractId } }).then((n) => n > 0);
  }

  /**
   * Deletes the oldest events, as a prefix of the chain: everything before the
   * first event at or after `cutoff` (so a clock that stepped back cannot leave a
   * hole in the middle), at most `limit` of them. Returns what was removed, or null if nothing was.
   * Must run inside the transaction that holds the chain lock.
   */
  async deletePrefixBefore(tx: Tx, cutoff: Date, limit: number): Promise<{ count: number; lastSeq: bigint; lastHash: string } | null> {
    const firstKept = await tx.auditEvent.findFirst({ where: { at: { gte: cutoff } }, orderBy: { seq: "asc" }, select: { seq: true } });
    const before = firstKept ? { seq: { lt: firstKept.seq } } : {};
    // The limit-th oldest, or the newest of fewer.
    const [nth] = await tx.auditEvent.findMany({ where: before, orderBy: { seq: "asc" }, skip: limit - 1, take: 1, select: { seq: true, hash: true } });
    const last = nth ?? (await tx.auditEvent.findFirst({ where: before, orderBy: { seq: "desc" }, select: { seq: true, hash: true } }));
    if (!last) return null;
    const { count } = await tx.auditEvent.deleteMany({ where: { seq: { lte: last.seq } } });
    return { count, lastSeq: last.seq, lastHash: last.hash };
  }

  /** The audit.prune events still in the chain (few: one per pruning run that removed something). */
  pruneEvents(): Promise<AuditRow[]> {
    return this.prisma.auditEvent.findMany({ where: { action: "audit.prune" }, orderBy: { seq: "asc" } });
  }

  /** The event is still in the log. */
  async exists(id: string): Promise<boolean> {
    return (await this.prisma.auditEvent.findUnique({ where: { id }, select: { seq: true } })) !== null;
  }

  /** The hash the head row records (no lock: verification only reads). */
  async headHash(): Promise<string | null> {
    const row = await this.prisma.auditHead.findUnique({ where: { id: 1 }, select: { hash: true } });
    return row?.hash ?? null;
  }

  /** The whole chain in order, a page at a time (for verification). */
  page(afterSeq: bigint | null, take: number): Promise<AuditRow[]> {
    return this.prisma.auditEvent.findMany({
      where: afterSeq === null ? {} : { seq: { gt: afterSeq } },
      orderBy: { seq: "asc" },
      take,
    });
  }
}
