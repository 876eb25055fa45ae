import type { Prisma, WebhookDeliveryStatus } from "../../generated/prisma/client.js";
import type { PrismaClient, Tx } from "../../infra/db/database.js";
import type { RetiredSecret } from "./webhook.signature.js";

export type EndpointRow = Prisma.WebhookEndpointGetPayload<object>;
export type DeliveryWithAttempts = Prisma.WebhookDeliveryGetPayload<{ include: { attempts: true } }>;

/** A delivery claimed for one attempt, with what is needed to send it. */
export interface ClaimedDelivery {
  id: string;
  endpointId: string;
  contractId: string;
  eventType: string;
  payload: string;
  attemptCount: number;
  /** The claim's expiry; also its fencing token: only the holder of this claim may record the outcome. */
  lockedUntil: Date;
  url: string;
  /** When the endpoint was registered (setWebhook): tells this registration from a later one. */
  registeredAt: Date;
  secret: string;
  /** Secrets replaced by rotations, as stored (see liveRetiredSecrets): they sign too until their overlap ends. */
  retiredSecrets: unknown;
}

export interface AttemptRow {
  id: string;
  number: number;
  at: Date;
  statusCode: number | null;
  error: string | null;
  durationMs: number;
}

export class WebhookRepository {
  constructor(private readonly prisma: PrismaClient) {}

  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.prisma.$transaction(fn);
  }

  findContract(contractId: string) {
    return this.prisma.contract.findUnique({ where: { id: contractId }, select: { id: true, applicationId: true } });
  }

  findEndpoint(contractId: string): Promise<EndpointRow | null> {
    return this.prisma.webhookEndpoint.findUnique({ where: { contractId } });
  }

  /** Registers or replaces the contract's one endpoint: new URL and secret, enabled again. */
  upsertEndpoint(tx: Tx, data: { id: string; contractId: string; url: string; secret: string; at: Date }): Promise<EndpointRow> {
    return tx.webhookEndpoint.upsert({
      where: { contractId: data.contractId },
      create: { id: data.id, contractId: data.contractId, url: data.url, secret: data.secret, createdAt: data.at },
      update: { url: data.url, secret: data.secret, retiredSecrets: [], createdAt: data.at, disabledAt: null, disabledReason: null },
    });
  }

  /** The contract's endpoint, locked until the transaction ends (a rotation reads and rewrites its secrets). */
  async lockEndpoint(tx: Tx, contractId: string): Promise<EndpointRow | null> {
    const rows = await tx.$queryRaw<{ id: string }[]>`SELECT "id" FROM "WebhookEndpoint" WHERE "contractId" = ${contractId} FOR UPDATE`;
    return rows.length ? tx.webhookEndpoint.findUnique({ where: { id: rows[0].id } }) : null;
  }

  setSecrets(tx: Tx, id: string, secret: string, retired: RetiredSecret[]): Promise<EndpointRow> {
    return tx.webhookEndpoint.update({ where: { id }, data: { secret, retiredSecrets: retired as unknown as Prisma.InputJsonValue } });
  }

  /** Deletes the endpoint and (by cascade) its deliveries and attempts. */
  async deleteEndpoint(tx: Tx, contractId: string): Promise<EndpointRow | null> {
    const row = await tx.webhookEndpoint.findUnique({ where: { contractId } });
    if (row) await tx.webhookEndpoint.delete({ where: { id: row.id } });
    return row;
  }

  /**
   * The contract's endpoint if it can receive deliveries (registered and not disabled),
   * share-locked until the transaction ends: an endpoint deleted or disabled meanwhile
   * waits for it (and then takes its delivery along), where without the lock the
   * delivery's insert failed its foreign key and the caller's whole transaction with it.
   */
  async activeEndpoint(tx: Tx, contractId: string): Promise<{ id: string } | null> {
    const rows = await tx.$queryRaw<{ id: string }[]>`
      SELECT "id" FROM "WebhookEndpoint" WHERE "contractId" = ${contractId} AND "disabledAt" IS NULL FOR SHARE`;
    return rows[0] ?? null;
  }

  insertDelivery(tx: Tx, data: { id: string; endpointId: string; contractId: string; eventType: string; payload: string; nextAttemptAt: Date; createdAt: Date }) {
    return tx.webhookDelivery.create({ data, select: { id: true } });
  }

  /**
   * Claims up to `limit` due deliveries of enabled endpoints until `lockUntil`.
   * One statement; FOR UPDATE SKIP LOCKED makes concurrent claimers (other
   * instances) take disjoint rows, and the lockedUntil filter keeps a claim
   * exclusive after commit. A claim whose holder died expires at lockUntil.
   */
  claimDue(now: Date, lockUntil: Date, limit: number, perEndpoint: number): Promise<ClaimedDelivery[]> {
    // At most `perEndpoint` deliveries of one endpoint in flight (claimed and not yet
    // recorded, on any instance), so a receiver that hangs holds up its own events,
    // not everyone's. Candidates are ranked per endpoint first; the lock comes after,
    // since FOR UPDATE cannot sit beside a window function. Two instances claiming in
    // the same instant may each take an endpoint's quota: a bound of perEndpoint per instance.
    // Each endpoint's count in flight is taken once (busy), not once per due delivery: that
    // cost due × pending row visits, 3.9 s a claim for an endpoint with 8,000 pending (4,000
    // due) on the embedded database, whose one thread every request waits on; now 31 ms.
    return this.prisma.$queryRaw<ClaimedDelivery[]>`
      WITH busy AS (
        SELECT f."endpointId", count(*) AS n FROM "WebhookDelivery" AS f
        WHERE f."status" = 'PENDING' AND f."lockedUntil" >= ${now}
        GROUP BY f."endpointId"
      ), candidates AS (
        SELECT d2."id", ROW_NUMBER() OVER (PARTITION BY d2."endpointId" ORDER BY d2."nextAttemptAt") + COALESCE(b.n, 0) AS place
        FROM "WebhookDelivery" AS d2
        JOIN "WebhookEndpoint" AS e2 ON e2."id" = d2."endpointId"
        LEFT JOIN busy AS b ON b."endpointId" = d2."endpointId"
        WHERE d2."status" = 'PENDING' AND d2."nextAttemptAt" <= ${now}
          AND (d2."lockedUntil" IS NULL OR d2."lockedUntil" < ${now})
          AND e2."disabledAt" IS NULL
      )
      UPDATE "WebhookDelivery" AS d SET "lockedUntil" = ${lockUntil}
      FROM "WebhookEndpoint" AS e
      WHERE e."id" = d."endpointId" AND d."id" IN (
        SELECT d3."id" FROM "WebhookDelivery" AS d3
        WHERE d3."id" IN (SELECT c."id" FROM candidates AS c WHERE c.place <= ${perEndpoint})
          AND d3."status" = 'PENDING' AND (d3."lockedUntil" IS NULL OR d3."lockedUntil" < ${now})
        ORDER BY d3."nextAttemptAt"
        LIMIT ${limit}
        FOR UPDATE OF d3 SKIP LOCKED)
      RETURNING d."id", d."endpointId", d."contractId", d."eventType", d."payload", d."attemptCount", d."lockedUntil", e."url", e."createdAt" AS "registeredAt", e."secret", e."retiredSecrets"`;
  }

  /** Deletes up to `limit` deliveries (their attempts with them) that finished before `before`; how many. */
  pruneFinished(before: Date, limit: number): Promise<number> {
    return this.prisma.$executeRaw`
      DELETE FROM "WebhookDelivery" WHERE "id" IN (
        SELECT "id" FROM "WebhookDelivery"
        WHERE "status" IN ('SUCCEEDED', 'FAILED') AND "completedAt" < ${before}
        LIMIT ${limit})`;
  }

  /** Which of `ids` are visible (committed) now. */
  async existing(ids: string[]): Promise<string[]> {
    const rows = await this.prisma.webhookDelivery.findMany({ where: { id: { in: ids } }, select: { id: true } });
    return rows.map((r) => r.id);
  }

  /**
   * Records an attempt's outcome if the claim is still ours (same lockedUntil);
   * returns false when it is not (the claim expired and someone else took it).
   */
  async finishAttempt(
    tx: Tx,
    claim: Pick<ClaimedDelivery, "id" | "lockedUntil">,
    outcome: { status: WebhookDeliveryStatus; attemptCount: number; nextAttemptAt?: Date; completedAt?: Date },
    attempt: Omit<AttemptRow, "number"> & { number: number },
  ): Promise<boolean> {
    const { count } = await tx.webhookDelivery.updateMany({
      where: { id: claim.id, status: "PENDING", lockedUntil: claim.lockedUntil },
      data: {
        status: outcome.status,
        attemptCount: outcome.attemptCount,
        lockedUntil: null,
        ...(outcome.nextAttemptAt ? { nextAttemptAt: outcome.nextAttemptAt } : {}),
        ...(outcome.completedAt ? { completedAt: outcome.completedAt } : {}),
      },
    });
    if (!count) return false;
    await tx.webhookAttempt.create({ data: { ...attempt, deliveryId: claim.id } });
    return true;
  }

  /** A delivery's attempts that ended with `error` (e.g. sends interrupted by a shutdown). */
  countAttempts(deliveryId: string, error: string): Promise<number> {
    return this.prisma.webhookAttempt.count({ where: { deliveryId, error } });
  }

  /**
   * True if the endpoint is still the registration made at `registeredAt`, and then locks
   * it until the transaction ends, so that setWebhook cannot replace it meanwhile.
   */
  async lockRegistration(tx: Tx, endpointId: string, registeredAt: Date): Promise<boolean> {
    const rows = await tx.$queryRaw<unknown[]>`
      SELECT 1 FROM "WebhookEndpoint" WHERE "id" = ${endpointId} AND "createdAt" = ${registeredAt} FOR UPDATE`;
    return rows.length === 1;
  }

  /** Disables an endpoint (once) and fails its other pending deliveries; true if this call disabled it. */
  async disableEndpoint(tx: Tx, endpointId: string, reason: string, at: Date): Promise<boolean> {
    const { count } = await tx.webhookEndpoint.updateMany({ where: { id: endpointId, disabledAt: null }, data: { disabledAt: at, disabledReason: reason } });
    if (!count) return false;
    await tx.webhookDelivery.updateMany({ where: { endpointId, status: "PENDING" }, data: { status: "FAILED", completedAt: at, lockedUntil: null } });
    return true;
  }

  /** One contract's deliveries, newest first, keyset-paginated on (createdAt, id). */
  listDeliveries(contractId: string, opts: { status?: WebhookDeliveryStatus; take: number; after?: { createdAt: Date; id: string } }): Promise<DeliveryWithAttempts[]> {
    const after = opts.after;
    return this.prisma.webhookDelivery.findMany({
      where: {
        contractId,
        ...(opts.status ? { status: opts.status } : {}),
        ...(after ? { OR: [{ createdAt: { lt: after.createdAt } }, { createdAt: after.createdAt, id: { lt: after.id } }] } : {}),
      },
      orderBy: [{ createdAt: "desc" }, { id: "desc" }],
      take: opts.take,
      include: { attempts: { orderBy: { number: "asc" } } },
    });
  }
}
