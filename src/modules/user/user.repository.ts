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

  findGrant(id: string): Promise<GrantWithPostbox | null> {
    return this.prisma.userGrant.findUnique({ where: { id }, include: withPostbox });
  }

  findByRefreshHash(refreshTokenHash: string): Promise<GrantWithPostbox | null> {
    return this.prisma.userGrant.findUnique({ where: { refreshTokenHash }, include: withPostbox });
  }

  /** Rotation: succeeds only for the refresh token presented, once (a concurrent second use finds 0 rows). */
  async rotate(tx: Tx, id: string, refreshTokenHash: string, data: Pick<Prisma.UserGrantUncheckedUpdateManyInput, "accessTokenHash" | "accessExpiresAt" | "refreshTokenHash">): Promise<number> {
    const { count } = await tx.userGrant.updateMany({ where: { id, refreshTokenHash, revokedAt: null }, data });
    return count;
  }

  /** The grant a used (already exchanged) refresh token belonged to. */
  findByUsedRefreshHash(hash: string): Promise<GrantWithPostbox | null> {
    return this.prisma.userGrant.findFirst({ where: { usedRefreshTokens: { some: { hash } } }, include: withPostbox });
  }

  /** Records an exchanged refresh token and keeps only the grant's `keep` newest. */
  async recordUsedRefresh(tx: Tx, grantId: string, hash: string, keep: number): Promise<void> {
    await tx.usedRefreshToken.create({ data: { hash, grantId } });
    await tx.$executeRaw`
      DELETE FROM "UsedRefreshToken" WHERE "grantId" = ${grantId} AND hash IN (
        SELECT hash FROM "UsedRefreshToken" WHERE "grantId" = ${grantId} ORDER BY "usedAt" DESC, hash OFFSET ${keep})`;
  }

  /** Revokes one grant; 0 when it already was. */
  async revokeGrant(tx: Tx, id: string, at: Date): Promise<number> {
    const { count } = await tx.userGrant.updateMany({ where: { id, revokedAt: null }, data: { revokedAt: at } });
    return count;
  }

  /** Revokes the postbox's live grants beyond the newest `keep`. */
  async revokeAllButNewest(tx: Tx, postboxId: string, keep: number, at: Date): Promise<number> {
    const live = await tx.userGrant.findMany({ where: { postboxId, revokedAt: null }, orderBy: { createdAt: "desc" }, select: { id: true }, skip: keep });
    if (!live.length) return 0;
    const { count } = await tx.userGrant.updateMany({ where: { id: { in: live.map((g) => g.id) } }, data: { revokedAt: at } });
    return count;
  }

  /** What a key challenge needs of a postbox: its state, key and owner. */
  findPostboxKey(postboxId: string) {
    return this.prisma.postbox.findUnique({
      where: { id: postboxId },
      select: { id: true, status: true, expiresAt: true, publicJwk: true, publicKeyThumbprint: true, contractId: true, contract: { select: { applicationId: true } } },
    });
  }

  /** Locks (FOR SHARE) a postbox that is READY and unexpired until the transaction ends; false if it is not. */
  async lockReadyPostbox(tx: Tx, postboxId: string, now: Date): Promise<boolean> {
    const rows = await tx.$queryRaw<unknown[]>`
      SELECT 1 FROM "Postbox" WHERE "id" = ${postboxId} AND "status" = 'READY' AND "expiresAt" > ${now} FOR SHARE`;
    return rows.length === 1;
  }

  /** Records a key challenge as answered: false if it already was (each takes one answer). */
  async useChallenge(nonce: string, expiresAt: Date): Promise<boolean> {
    const n = await this.prisma.$executeRaw`
      INSERT INTO "UsedKeyChallenge" (id, "expiresAt") VALUES (${nonce}, ${expiresAt}) ON CONFLICT (id) DO NOTHING`;
    return n === 1;
  }

  /** Reuse detection matters only while a grant can still refresh. */
  async deleteUsedRefreshOfDeadGrants(now: Date): Promise<number> {
    const { count } = await this.prisma.usedRefreshToken.deleteMany({ where: { grant: { OR: [{ revokedAt: { not: null } }, { refreshExpiresAt: { lte: now } }] } } });
    return count;
  }

  /** An expired challenge is refused anyway: its record is no longer needed. */
  async deleteExpiredChallenges(now: Date): Promise<number> {
    const { count } = await this.prisma.usedKeyChallenge.deleteMany({ where: { expiresAt: { lte: now } } });
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
