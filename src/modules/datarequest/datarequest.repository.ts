import type { Prisma } from "../../generated/prisma/client.js";
import type { PrismaClient, Tx } from "../../infra/db/database.js";
import type { Keyset } from "../../infra/graphql/pagination.js";
import type { DataRequestStatus } from "./datarequest.types.js";

// Metadata of the answer only: the ciphertext is read by findResponseContent alone.
const responseMeta = { response: { select: { id: true, size: true, sha256: true, createdAt: true, purgedAt: true } } } as const;
export type DataRequestRow = Prisma.DataRequestGetPayload<{ include: typeof responseMeta }>;

export type PostboxForRequest = Prisma.PostboxGetPayload<{
  select: { id: true; contractId: true; status: true; expiresAt: true; contract: { select: { applicationId: true; application: { select: { name: true } } } } };
}>;

/**
 * A status as readers see it: a PENDING request past its deadline is EXPIRED already,
 * though the sweeper has yet to mark it (see effectiveStatus in the service).
 */
function statusIs(status: DataRequestStatus, now: Date): Prisma.DataRequestWhereInput {
  if (status === "PENDING") return { status, expiresAt: { gt: now } };
  if (status === "EXPIRED") return { OR: [{ status }, { status: "PENDING", expiresAt: { lte: now } }] };
  return { status };
}

/** Who may read a request: the WRITE contract that asked, or the READ contract the answer is encrypted for. */
const visibleTo = (contractId: string): Prisma.DataRequestWhereInput => ({ OR: [{ contractId }, { readContractId: contractId }] });

export class DataRequestRepository {
  constructor(private readonly prisma: PrismaClient) {}

  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.prisma.$transaction(fn);
  }

  findPostbox(id: string): Promise<PostboxForRequest | null> {
    return this.prisma.postbox.findUnique({
      where: { id },
      select: { id: true, contractId: true, status: true, expiresAt: true, contract: { select: { applicationId: true, application: { select: { name: true } } } } },
    });
  }

  create(tx: Tx, data: Prisma.DataRequestUncheckedCreateInput): Promise<DataRequestRow> {
    return tx.dataRequest.create({ data, include: responseMeta });
  }

  findVisible(id: string, contractId: string): Promise<DataRequestRow | null> {
    return this.prisma.dataRequest.findFirst({ where: { id, ...visibleTo(contractId) }, include: responseMeta });
  }

  /** Scoped to the postbox of a user's token. */
  findForPostbox(id: string, postboxId: string): Promise<DataRequestRow | null> {
    return this.prisma.dataRequest.findFirst({ where: { id, postboxId }, include: responseMeta });
  }

  /** Newest first by (createdAt, id), after the keyset position when given. */
  list(postboxId: string, contractId: string, status: DataRequestStatus | undefined, now: Date, take: number, after?: Keyset): Promise<DataRequestRow[]> {
    return this.prisma.dataRequest.findMany({
      where: {
        postboxId,
        AND: [
          visibleTo(contractId),
          ...(after ? [{ OR: [{ createdAt: { lt: after.createdAt } }, { createdAt: after.createdAt, id: { lt: after.id } }] }] : []),
          ...(status ? [statusIs(status, now)] : []),
        ],
      },
      include: responseMeta,
      orderBy: [{ createdAt: "desc" }, { id: "desc" }],
      take,
    });
  }

  /** The user's side: the postbox's requests, newest first; PENDING ones only while still answerable. */
  listForUser(postboxId: string, status: DataRequestStatus | undefined, now: Date, take: number): Promise<DataRequestRow[]> {
    return this.prisma.dataRequest.findMany({
      where: { postboxId, ...(status ? statusIs(status, now) : {}) },
      include: responseMeta,
      orderBy: [{ createdAt: "desc" }, { id: "desc" }],
      take,
    });
  }

  findResponseContent(requestId: string) {
    return this.prisma.dataResponse.findUnique({ where: { requestId } });
  }

  /**
   * The atomic state change: only a request still PENDING (and matching `where`)
   * changes. 0 means another request or the sweeper got there first.
   */
  async transition(tx: Tx, id: string, where: Prisma.DataRequestWhereInput, data: Prisma.DataRequestUncheckedUpdateManyInput): Promise<number> {
    const { count } = await tx.dataRequest.updateMany({ where: { ...where, id, status: "PENDING" }, data });
    return count;
  }

  /**
   * The user's answer or refusal: a transition that also needs, when it commits and not
   * only when it was checked, the deadline not passed and the postbox still READY (closed
   * or expired meanwhile, the sweeper expires the request instead).
   */
  settle(tx: Tx, id: string, postboxId: string, now: Date, data: Prisma.DataRequestUncheckedUpdateManyInput): Promise<number> {
    return this.transition(tx, id, { postboxId, expiresAt: { gt: now }, postbox: { is: { status: "READY" } } }, data);
  }

  createResponse(tx: Tx, data: Prisma.DataResponseUncheckedCreateInput) {
    return tx.dataResponse.create({ data });
  }

  /** PENDING requests past their deadline, or whose postbox is no longer READY. */
  findDue(now: Date, take: number) {
    return this.prisma.dataRequest.findMany({
      where: { status: "PENDING", OR: [{ expiresAt: { lte: now } }, { postbox: { status: { not: "READY" } } }] },
      select: { id: true, postboxId: true, contractId: true, readContractId: true, postbox: { select: { contract: { select: { applicationId: true } } } } },
      orderBy: { expiresAt: "asc" },
      take,
    });
  }

  /** Answers whose ciphertext has been kept for the retention period. */
  findPurgeable(before: Date, take: number) {
    return this.prisma.dataResponse.findMany({
      where: { purgedAt: null, createdAt: { lte: before } },
      select: { id: true, requestId: true, request: { select: { postboxId: true, contractId: true, postbox: { select: { contract: { select: { applicationId: true } } } } } } },
      orderBy: { createdAt: "asc" },
      take,
    });
  }

  async purgeResponse(tx: Tx, id: string, at: Date): Promise<number> {
    const { count } = await tx.dataResponse.updateMany({ where: { id, purgedAt: null }, data: { ciphertext: null, descriptor: null, purgedAt: at } });
    return count;
  }
}
