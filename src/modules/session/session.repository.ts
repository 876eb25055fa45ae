import type { PrismaClient, Tx } from "../../infra/db/database.js";
import type { ContractKind } from "../../generated/prisma/client.js";

export class SessionRepository {
  constructor(private readonly prisma: PrismaClient) {}

  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.prisma.$transaction(fn);
  }

  /**
   * Locks (FOR SHARE) a signing key with its contract and application until the
   * transaction ends, if the key is still active and neither is disabled; false otherwise.
   * Rotating the key or disabling either updates one of these rows, so it waits for the lock.
   */
  async lockSigningKey(tx: Tx, keyId: string): Promise<boolean> {
    const rows = await tx.$queryRaw<unknown[]>`
      SELECT 1 FROM "ContractKey" AS k
      JOIN "Contract" AS c ON c."id" = k."contractId"
      JOIN "Application" AS a ON a."id" = c."applicationId"
      WHERE k."id" = ${keyId} AND k."revokedAt" IS NULL AND c."disabledAt" IS NULL AND a."disabledAt" IS NULL
      FOR SHARE OF k, c, a`;
    return rows.length === 1;
  }

  insertNonce(tx: Tx, contractId: string, nonce: string, expiresAt: Date) {
    return tx.usedNonce.create({ data: { contractId, nonce, expiresAt } });
  }

  create(tx: Tx, data: { id: string; keyHash: string; contractId: string; expiresAt: Date }) {
    return tx.session.create({ data });
  }

  /**
   * The session with what authentication checks of its contract and application. One
   * joined statement: every authenticated request runs it (Prisma's include took three).
   */
  async findByKeyHash(keyHash: string): Promise<SessionWithContract | null> {
    const rows = await this.prisma.$queryRaw<SessionRow[]>`
      SELECT s.id, s."expiresAt", s."revokedAt", c.id AS "contractId", c.kind::text AS kind, c."disabledAt" AS "contractDisabledAt",
             c."applicationId", a."disabledAt" AS "applicationDisabledAt"
      FROM "Session" s JOIN "Contract" c ON c.id = s."contractId" JOIN "Application" a ON a.id = c."applicationId"
      WHERE s."keyHash" = ${keyHash}`;
    const r = rows[0];
    if (!r) return null;
    return {
      id: r.id,
      expiresAt: r.expiresAt,
      revokedAt: r.revokedAt,
      contract: { id: r.contractId, kind: r.kind, disabledAt: r.contractDisabledAt, applicationId: r.applicationId, application: { disabledAt: r.applicationDisabledAt } },
    };
  }

  /** The session by id, in findByKeyHash's shape (for a stream's re-check: not a hot path). */
  async findById(id: string): Promise<SessionWithContract | null> {
    return this.prisma.session.findUnique({
      where: { id },
      select: { id: true, expiresAt: true, revokedAt: true, contract: { select: { id: true, kind: true, disabledAt: true, applicationId: true, application: { select: { disabledAt: true } } } } },
    });
  }

  revoke(tx: Tx, id: string) {
    return tx.session.updateMany({ where: { id, revokedAt: null }, data: { revokedAt: new Date() } });
  }

  /** Ends every live session of a contract or of an application; returns how many. */
  async revokeAll(tx: Tx, scope: { contractId: string } | { applicationId: string }): Promise<number> {
    const whose = "contractId" in scope ? { contractId: scope.contractId } : { contract: { applicationId: scope.applicationId } };
    const { count } = await tx.session.updateMany({ where: { ...whose, revokedAt: null, expiresAt: { gt: new Date() } }, data: { revokedAt: new Date() } });
    return count;
  }

  /** Housekeeping: nonces past their replay window, sessions long expired. */
  async deleteExpired(now: Date): Promise<number> {
    const nonces = await this.prisma.usedNonce.deleteMany({ where: { expiresAt: { lt: now } } });
    const sessions = await this.prisma.session.deleteMany({ where: { expiresAt: { lt: new Date(now.getTime() - 86_400_000) } } });
    return nonces.count + sessions.count;
  }
}

interface SessionRow {
  id: string;
  expiresAt: Date;
  revokedAt: Date | null;
  contractId: string;
  kind: ContractKind;
  contractDisabledAt: Date | null;
  applicationId: string;
  applicationDisabledAt: Date | null;
}

export interface SessionWithContract {
  id: string;
  expiresAt: Date;
  revokedAt: Date | null;
  contract: { id: string; kind: ContractKind; disabledAt: Date | null; applicationId: string; application: { disabledAt: Date | null } };
}
