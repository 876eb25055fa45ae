import type { PrismaClient, Tx } from "../../infra/db/database.js";

export class SessionRepository {
  constructor(private readonly prisma: PrismaClient) {}

  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.prisma.$transaction(fn);
  }

  insertNonce(tx: Tx, contractId: string, nonce: string, expiresAt: Date) {
    return tx.usedNonce.create({ data: { contractId, nonce, expiresAt } });
  }

  create(tx: Tx, data: { id: string; keyHash: string; contractId: string; expiresAt: Date }) {
    return tx.session.create({ data });
  }

  findByKeyHash(keyHash: string) {
    return this.prisma.session.findUnique({
      where: { keyHash },
      include: { contract: { select: { id: true, kind: true, disabledAt: true, applicationId: true, application: { select: { disabledAt: true } } } } },
    });
  }

  revoke(tx: Tx, id: string) {
    return tx.session.updateMany({ where: { id, revokedAt: null }, data: { revokedAt: new Date() } });
  }

  /** Housekeeping: nonces past their replay window, sessions long expired. */
  async deleteExpired(now: Date): Promise<number> {
    const nonces = await this.prisma.usedNonce.deleteMany({ where: { expiresAt: { lt: now } } });
    const sessions = await this.prisma.session.deleteMany({ where: { expiresAt: { lt: new Date(now.getTime() - 86_400_000) } } });
    return nonces.count + sessions.count;
  }
}
