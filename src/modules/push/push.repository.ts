import { Prisma } from "../../generated/prisma/client.js";
import type { PrepareAs, PrismaClient, RawSql, Tx } from "../../infra/db/database.js";
import type { PendingAuditRow } from "../audit/audit.repository.js";

const pushFields = {
  id: true,
  postboxId: true,
  contractId: true,
  status: true,
  size: true,
  sha256: true,
  receivedAt: true,
  expiresAt: true,
  deliveredAt: true,
  purgedAt: true,
} as const;
export type PushRow = Prisma.PushGetPayload<{ select: typeof pushFields }>;

export type PostboxForPush = Prisma.PostboxGetPayload<{
  select: { id: true; contractId: true; status: true; expiresAt: true; consentExpiresAt: true; publicJwk: true; publicKeyThumbprint: true };
}>;

/** insertWithAudit's statement, prepared once per connection; its parameters' types in order. */
const STORE_PUSHES: PrepareAs = {
  name: "postbox_store_pushes",
  types: [
    "text[]", "text[]", "text[]", "int4[]", "text[]", "text[]", "text[]", "timestamp[]", "timestamp[]",
    "text[]", "text[]", "text[]", "timestamp[]", "text[]", "text[]", "text[]", "text[]", "text[]",
    "text[]", "text[]", "text[]", "text[]", "text[]", "text[]",
  ],
};

const INSERT_CHUNK: PrepareAs = { name: "postbox_insert_chunk", types: ["text", "int4", "text", "timestamp"] };

export interface PushKeyset {
  receivedAt: Date;
  id: string;
}

export interface NewPush {
  id: string;
  postboxId: string;
  contractId: string;
  size: number;
  sha256: string;
  idempotencyKey: string | null;
  requestHash: string | null;
  receivedAt: Date;
  expiresAt: Date;
  /** null: the file's JWE is in PushChunk rows (a streamed upload). */
  ciphertext: string | null;
  descriptor: string;
}

export class PushRepository {
  constructor(
    private readonly prisma: PrismaClient,
    /** The driver itself, for insertWithAudit only (see RawSql). */
    private readonly sql: RawSql,
  ) {}

  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    // Every audited write queues on the audit chain's lock: under load, waiting for a
    // connection or the lock can take longer than Prisma's 2 s default.
    return this.prisma.$transaction(fn, { maxWait: 15_000, timeout: 30_000 });
  }

  /** Scoped to the contract: another contract's postbox is simply not found. */
  findPostbox(id: string, contractId: string): Promise<PostboxForPush | null> {
    return this.prisma.postbox.findFirst({
      where: { id, contractId },
      select: { id: true, contractId: true, status: true, expiresAt: true, consentExpiresAt: true, publicJwk: true, publicKeyThumbprint: true },
    });
  }

  postboxExists(id: string, contractId: string): Promise<boolean> {
    return this.prisma.postbox.count({ where: { id, contractId } }).then((n) => n > 0);
  }

  findByIdempotencyKey(contractId: string, idempotencyKey: string): Promise<(PushRow & { requestHash: string | null }) | null> {
    return this.prisma.push.findUnique({
      where: { contractId_idempotencyKey: { contractId, idempotencyKey } },
      select: { ...pushFields, requestHash: true },
    });
  }

  /**
   * Stores pushes (metadata and content) with their push.create audit events in
   * one statement, each only if its postbox is (still) READY, unexpired and of its
   * contract: the check and the write are atomic, so a postbox closed or expired a
   * moment ago takes nothing. One statement is one commit and, on the embedded
   * database, one message to its thread. Returns the rows inserted; a push
   * missing from them was refused by its postbox's state (and has no event).
   */
  async insertWithAudit(pushes: { push: NewPush; event: PendingAuditRow }[]): Promise<PushRow[]> {
    // The statement lives in the database (migration store_pushes_function), where its
    // plan is kept: sent from here, it was parsed and planned again for every batch.
    // One array per column, in batch order. Sent through the driver rather than
    // $queryRaw, which would copy every ciphertext into JSON and back first, and
    // prepared on the connection (on the embedded database, with binary arrays).
    const col = <T>(f: (x: { push: NewPush; event: PendingAuditRow }) => T) => pushes.map(f);
    const iso = (d: Date) => d.toISOString();
    const stored = await this.sql<{ id: string }>(
      `SELECT id FROM postbox_store_pushes(
        $1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[], $8::timestamp(3)[], $9::timestamp(3)[],
        $10::text[], $11::text[], $12::text[], $13::timestamp(3)[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[],
        $19::text[], $20::text[], $21::text[], $22::text[], $23::text[], $24::text[])`,
      [
        col((x) => x.push.id), col((x) => x.push.postboxId), col((x) => x.push.contractId), col((x) => x.push.size),
        col((x) => x.push.sha256), col((x) => x.push.idempotencyKey), col((x) => x.push.requestHash),
        col((x) => iso(x.push.receivedAt)), col((x) => iso(x.push.expiresAt)),
        col((x) => x.push.ciphertext), col((x) => x.push.descriptor),
        col((x) => x.event.id), col((x) => iso(x.event.at)), col((x) => x.event.actorType), col((x) => x.event.actorId),
        col((x) => x.event.action), col((x) => x.event.outcome), col((x) => x.event.reason), col((x) => x.event.applicationId),
        col((x) => x.event.contractId), col((x) => x.event.postboxId), col((x) => x.event.targetId),
        col((x) => (x.event.detail === undefined ? null : JSON.stringify(x.event.detail))), col((x) => x.event.canonical),
      ],
      STORE_PUSHES,
    );
    // A stored push is exactly what was given (new, so PENDING, never delivered or purged).
    const ids = new Set(stored.map((r) => r.id));
    return pushes
      .filter((x) => ids.has(x.push.id))
      .map(({ push: p }) => ({ id: p.id, postboxId: p.postboxId, contractId: p.contractId, status: "PENDING", size: p.size, sha256: p.sha256, receivedAt: p.receivedAt, expiresAt: p.expiresAt, deliveredAt: null, purgedAt: null }));
  }

  /** One slice of a streamed upload's JWE, written (and committed) before its push is. */
  async insertChunk(pushId: string, seq: number, data: string): Promise<void> {
    // Through the driver, prepared: Prisma would copy each megabyte slice several times over.
    await this.sql(`INSERT INTO "PushChunk" ("pushId", "seq", "data", "createdAt") VALUES ($1, $2, $3, $4::timestamp(3))`, [pushId, seq, data, new Date().toISOString()], INSERT_CHUNK);
  }

  /** A streamed upload's JWE, slice by slice in order. */
  async readChunks(pushId: string): Promise<string[]> {
    const rows = await this.prisma.pushChunk.findMany({ where: { pushId }, orderBy: { seq: "asc" }, select: { data: true } });
    return rows.map((r) => r.data);
  }

  async deleteChunks(pushIds: string[], tx: Tx = this.prisma): Promise<void> {
    await tx.pushChunk.deleteMany({ where: { pushId: { in: pushIds } } });
  }

  /**
   * Slices of uploads that never became a push (refused after they were written,
   * or cut off by a crash): no Push row, and nothing written to them since `before`.
   */
  async deleteAbandonedChunks(before: Date): Promise<number> {
    return this.prisma.$executeRaw`
      DELETE FROM "PushChunk" c
      WHERE c."pushId" IN (SELECT "pushId" FROM "PushChunk" GROUP BY "pushId" HAVING max("createdAt") < ${before})
        AND NOT EXISTS (SELECT 1 FROM "Push" p WHERE p.id = c."pushId")`;
  }

  find(id: string, where: { contractId?: string; postboxId?: string }): Promise<PushRow | null> {
    return this.prisma.push.findFirst({ where: { id, ...where }, select: pushFields });
  }

  /** A push of the postbox with its descriptor, and whether (and how) its content is stored; not the ciphertext itself. */
  async findFile(id: string, postboxId: string): Promise<(PushRow & { descriptor: string | null; chunked: boolean }) | null> {
    const rows = await this.prisma.$queryRaw<(PushRow & { descriptor: string | null; chunked: boolean })[]>`
      SELECT p.id, p."postboxId", p."contractId", p.status::text AS status, p.size, p.sha256, p."receivedAt", p."expiresAt", p."deliveredAt", p."purgedAt",
             c.descriptor, (c."pushId" IS NOT NULL AND c.ciphertext IS NULL) AS chunked
      FROM "Push" p LEFT JOIN "PushContent" c ON c."pushId" = p.id
      WHERE p.id = ${id} AND p."postboxId" = ${postboxId}`;
    return rows[0] ?? null;
  }

  /** The ciphertext of a push stored in one piece (not an upload), or null once purged. */
  async readCiphertext(pushId: string): Promise<string | null> {
    const row = await this.prisma.pushContent.findUnique({ where: { pushId }, select: { ciphertext: true } });
    return row?.ciphertext ?? null;
  }

  /** One slice of an upload's JWE, or null past the last (or once purged). */
  async readChunk(pushId: string, seq: number): Promise<string | null> {
    const row = await this.prisma.pushChunk.findUnique({ where: { pushId_seq: { pushId, seq } }, select: { data: true } });
    return row?.data ?? null;
  }

  /** Newest first by (receivedAt, id), after the keyset position when given. */
  listForPostbox(postboxId: string, take: number, after?: PushKeyset): Promise<PushRow[]> {
    return this.prisma.push.findMany({
      where: {
        postboxId,
        ...(after ? { OR: [{ receivedAt: { lt: after.receivedAt } }, { receivedAt: after.receivedAt, id: { lt: after.id } }] } : {}),
      },
      orderBy: [{ receivedAt: "desc" }, { id: "desc" }],
      select: pushFields,
      take,
    });
  }

  /**
   * The states of a postbox's pushes, oldest first, a page at a time (myFilesChanged's
   * includeCurrent); with `since`, only those whose latest change is at or after it.
   */
  listStates(postboxId: string, take: number, after?: PushKeyset, since?: Date | null): Promise<Pick<PushRow, "id" | "status" | "receivedAt" | "deliveredAt" | "purgedAt">[]> {
    return this.prisma.push.findMany({
      where: {
        postboxId,
        AND: [
          after ? { OR: [{ receivedAt: { gt: after.receivedAt } }, { receivedAt: after.receivedAt, id: { gt: after.id } }] } : {},
          // Each change is later than the ones before it, so "latest change ≥ since" is "any change ≥ since".
          since ? { OR: [{ receivedAt: { gte: since } }, { deliveredAt: { gte: since } }, { purgedAt: { gte: since } }] } : {},
        ],
      },
      orderBy: [{ receivedAt: "asc" }, { id: "asc" }],
      select: { id: true, status: true, receivedAt: true, deliveredAt: true, purgedAt: true },
      take,
    });
  }

  /** The pushes of one postbox among `ids`, locked for the delivery transaction. */
  async lockForDelivery(tx: Tx, postboxId: string, ids: string[]): Promise<PushRow[]> {
    const locked = await tx.$queryRaw<{ id: string }[]>`SELECT id FROM "Push" WHERE "postboxId" = ${postboxId} AND id = ANY(${ids}::text[]) FOR UPDATE`;
    if (locked.length === 0) return [];
    return tx.push.findMany({ where: { id: { in: locked.map((r) => r.id) } }, select: pushFields });
  }

  /** PENDING → DELIVERED; 0 when it was no longer PENDING. */
  async markDelivered(tx: Tx, id: string, deliveredAt: Date, expiresAt: Date): Promise<number> {
    const { count } = await tx.push.updateMany({ where: { id, status: "PENDING" }, data: { status: "DELIVERED", deliveredAt, expiresAt } });
    return count;
  }

  /**
   * Claims pushes whose content is due for deletion. SKIP LOCKED lets several
   * instances purge at once without waiting on, or double-purging, each other's rows.
   */
  async claimDueContent(tx: Tx, now: Date, limit: number): Promise<{ id: string; postboxId: string; contractId: string; reason: "expired" | "postbox_closed" }[]> {
    const expired = await tx.$queryRaw<{ id: string; postboxId: string; contractId: string }[]>`
      SELECT p.id, p."postboxId", p."contractId" FROM "Push" p
      WHERE p."expiresAt" <= ${now} AND p."purgedAt" IS NULL
      ORDER BY p."expiresAt" LIMIT ${limit}
      FOR UPDATE OF p SKIP LOCKED`;
    if (expired.length >= limit) return expired.map((r) => ({ ...r, reason: "expired" as const }));
    // A closed postbox's content can never be fetched again (its user credential is revoked).
    const closed = await tx.$queryRaw<{ id: string; postboxId: string; contractId: string }[]>`
      SELECT p.id, p."postboxId", p."contractId" FROM "Push" p JOIN "Postbox" b ON b.id = p."postboxId"
      WHERE b.status = 'CLOSED' AND p."purgedAt" IS NULL AND p."expiresAt" > ${now}
      LIMIT ${limit - expired.length}
      FOR UPDATE OF p SKIP LOCKED`;
    return [...expired.map((r) => ({ ...r, reason: "expired" as const })), ...closed.map((r) => ({ ...r, reason: "postbox_closed" as const }))];
  }

  /** Deletes the ciphertext rows outright (not a flag) and marks their pushes purged. */
  async purgeContent(tx: Tx, ids: string[], purgedAt: Date): Promise<void> {
    await tx.pushContent.deleteMany({ where: { pushId: { in: ids } } });
    await this.deleteChunks(ids, tx);
    await tx.push.updateMany({ where: { id: { in: ids }, purgedAt: null }, data: { purgedAt } });
  }

  /** Metadata past its retention (content long gone). */
  async deletePurgedBefore(cutoff: Date): Promise<number> {
    const { count } = await this.prisma.push.deleteMany({ where: { purgedAt: { lt: cutoff } } });
    return count;
  }
}
