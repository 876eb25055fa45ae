import type { Prisma } from "../../generated/prisma/client.js";
import type { PrismaClient, Tx } from "../../infra/db/database.js";
import type { Keyset } from "../../infra/graphql/pagination.js";
import type { PostboxStatus } from "./postbox.types.js";

export type PostboxRow = Prisma.PostboxGetPayload<object>;

const withContract = {
  contract: {
    select: { id: true, kind: true, postboxMode: true, applicationId: true, disabledAt: true, application: { select: { name: true, disabledAt: true } } },
  },
} as const;
export type PostboxWithContract = Prisma.PostboxGetPayload<{ include: typeof withContract }>;

export type ContractForPostbox = Prisma.ContractGetPayload<{
  select: { id: true; kind: true; applicationId: true; postboxTtlSeconds: true; callbackUrls: true; disabledAt: true };
}>;

export class PostboxRepository {
  constructor(private readonly prisma: PrismaClient) {}

  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.prisma.$transaction(fn);
  }

  findContract(id: string): Promise<ContractForPostbox | null> {
    return this.prisma.contract.findUnique({
      where: { id },
      select: { id: true, kind: true, applicationId: true, postboxTtlSeconds: true, callbackUrls: true, disabledAt: true },
    });
  }

  create(tx: Tx, data: Prisma.PostboxUncheckedCreateInput): Promise<PostboxRow> {
    return tx.postbox.create({ data });
  }

  /** Scoped to a contract: another contract's postbox is simply not found. */
  findForContract(id: string, contractId: string): Promise<PostboxRow | null> {
    return this.prisma.postbox.findFirst({ where: { id, contractId } });
  }

  findWithContract(id: string): Promise<PostboxWithContract | null> {
    return this.prisma.postbox.findUnique({ where: { id }, include: withContract });
  }

  findByCodeHash(consentCodeHash: string): Promise<PostboxWithContract | null> {
    return this.prisma.postbox.findUnique({ where: { consentCodeHash }, include: withContract });
  }

  /** Newest first by (createdAt, id), after the keyset position when given. */
  list(contractId: string, status: PostboxStatus | undefined, take: number, after?: Keyset): Promise<PostboxRow[]> {
    return this.prisma.postbox.findMany({
      where: {
        contractId,
        ...(status ? { status } : {}),
        ...(after ? { OR: [{ createdAt: { lt: after.createdAt } }, { createdAt: after.createdAt, id: { lt: after.id } }] } : {}),
      },
      orderBy: [{ createdAt: "desc" }, { id: "desc" }],
      take,
    });
  }

  /**
   * The atomic state change: updates the row only if it is still in `from` (and
   * matches `where`). Returns the number of rows changed: 0 means another request
   * or instance changed it first, or the condition no longer holds.
   */
  async transition(tx: Tx, id: string, from: PostboxStatus, where: Prisma.PostboxWhereInput, data: Prisma.PostboxUncheckedUpdateManyInput): Promise<number> {
    const { count } = await tx.postbox.updateMany({ where: { ...where, id, status: from }, data });
    return count;
  }

  /** Postboxes whose consent link or lifetime has run out, oldest deadline first. */
  findDue(now: Date, take: number) {
    return this.prisma.postbox.findMany({
      where: {
        OR: [
          { status: "PENDING", consentExpiresAt: { lte: now } },
          { status: "PENDING", expiresAt: { lte: now } },
          { status: "READY", expiresAt: { lte: now } },
        ],
      },
      select: { id: true, contractId: true, status: true, consentExpiresAt: true, expiresAt: true, reference: true, contract: { select: { applicationId: true } } },
      orderBy: { expiresAt: "asc" },
      take,
    });
  }
}
