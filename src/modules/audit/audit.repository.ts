import type { Prisma } from "../../generated/prisma/client.js";
import type { PrismaClient, Tx } from "../../infra/db/database.js";

export type AuditRow = Prisma.AuditEventGetPayload<object>;

// A transaction-scoped advisory lock serialises appends, so each event sees the
// true previous hash even with several instances writing.
const CHAIN_LOCK = 727275;

export class AuditRepository {
  constructor(private readonly prisma: PrismaClient) {}

  /** Must run inside a transaction: the lock is released at commit. */
  async lockChainAndGetHead(tx: Tx): Promise<string | null> {
    await tx.$executeRawUnsafe(`SELECT pg_advisory_xact_lock(${CHAIN_LOCK})`);
    const last = await tx.auditEvent.findFirst({ orderBy: { seq: "desc" }, select: { hash: true } });
    return last?.hash ?? null;
  }

  insert(tx: Tx, data: Prisma.AuditEventCreateInput): Promise<AuditRow> {
    return tx.auditEvent.create({ data });
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

  /** The whole chain in order, a page at a time (for verification). */
  page(afterSeq: bigint | null, take: number): Promise<AuditRow[]> {
    return this.prisma.auditEvent.findMany({
      where: afterSeq === null ? {} : { seq: { gt: afterSeq } },
      orderBy: { seq: "asc" },
      take,
    });
  }
}
