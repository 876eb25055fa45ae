import type { Prisma } from "../../generated/prisma/client.js";
import type { PrismaClient, Tx } from "../../infra/db/database.js";

const withPostbox = { postbox: { select: { id: true, status: true, expiresAt: true, contractId: true, contract: { select: { applicationId: true } } } } } as const;
export type GrantWithPostbox = Prisma.UserGrantGetPayload<{ include: typeof withPostbox }>;

export class UserRepository {
  constructor(private readonly prisma: PrismaClient) {}

  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.prisma.$transaction(fn);
  }

  createGrant(tx: Tx, data: Prisma.UserGrantUncheckedCreateInput) {
    return tx.userGrant.create({ data });
  }

  findByAccessHash(accessTokenHash: string): Promise<GrantWithPostbox | null> {
    return this.prisma.userGrant.findUnique({ where: { accessTokenHash }, include: withPostbox });
  }

  findByRefreshHash(refreshTokenHash: string): Promise<GrantWithPostbox | null> {
    return this.prisma.userGrant.findUnique({ where: { refreshTokenHash }, include: withPostbox });
  }

  /** Rotation: succeeds only for the refresh token presented, once (a concurrent second use finds 0 rows). */
  async rotate(tx: Tx, id: string, refreshTokenHash: string, data: Pick<Prisma.UserGrantUncheckedUpdateManyInput, "accessTokenHash" | "accessExpiresAt" | "refreshTokenHash">): Promise<number> {
    const { count } = await tx.userGrant.updateMany({ where: { id, refreshTokenHash, revokedAt: null }, data });
    return count;
  }

  async revokeForPostbox(tx: Tx, postboxId: string, at: Date): Promise<number> {
    const { count } = await tx.userGrant.updateMany({ where: { postboxId, revokedAt: null }, data: { revokedAt: at } });
    return count;
  }

  /** Grants still live on postboxes that are no longer READY (safety net behind the transitions). */
  async revokeOnInactivePostboxes(at: Date): Promise<number> {
    const { count } = await this.prisma.userGrant.updateMany({
      where: { revokedAt: null, postbox: { status: { in: ["CLOSED", "EXPIRED", "DECLINED"] } } },
      data: { revokedAt: at },
    });
    return count;
  }
}
