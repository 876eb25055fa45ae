// Data sent back by users ("once data is pushed to the user, you can also request
// data back from them"). An application asks through a READY postbox; the user's
// device encrypts the answer to the application's READ contract key, so the
// server stores ciphertext it cannot read, and only the READ contract's private
// key opens it. PENDING → FULFILLED | DECLINED | EXPIRED, audited, published on
// DATA_REQUEST_STATUS and webhooked (data_request.fulfilled / .declined).
import type { Config } from "../../infra/config.js";
import { clipText } from "../../infra/text.js";
import { sha256Hex } from "../../infra/crypto.js";
import type { Tx } from "../../infra/db/database.js";
import { AppError, ErrorCode, conflict, isAppError, notFound } from "../../infra/errors.js";
import type { SessionPrincipal, UserPrincipal } from "../../infra/graphql/context.js";
import { pageRequest, toConnection, type Connection } from "../../infra/graphql/pagination.js";
import { sessionStream } from "../../infra/graphql/session-stream.js";
import { newId } from "../../infra/ids.js";
import type { Logger } from "../../infra/logger.js";
import type { AppPubSub } from "../../infra/pubsub.js";
import type { ApplicationRepository } from "../application/application.repository.js";
import type { AuditInput, AuditService } from "../audit/audit.service.js";
import type { SessionEnds } from "../session/session.events.js";
import type { WebhookService } from "../webhook/webhook.service.js";
import { MAX_DESCRIPTOR_BYTES, ResponseRefusal, checkResponseJwe, normaliseMimeTypes, recipientKeyOf, type RecipientKey } from "./datarequest.crypto.js";
import { asDataRequestPayload, contractTopic, type DataRequestStatusPayload } from "./datarequest.events.js";
import type { DataRequestRepository, DataRequestRow, PostboxForRequest } from "./datarequest.repository.js";
import type { DataRequest, DataRequestStatus, DataResponseContent, UserDataRequest } from "./datarequest.types.js";

export interface RequestDataFields {
  title: string;
  description?: string | null;
  acceptedMimeTypes?: string[] | null;
  expiresInSeconds?: number | null;
}

const SWEEP_BATCH = 200;
const USER_LIST_LIMIT = 100;

const refuse = (code: ErrorCode, reason: string, message: string, field?: string) => new ResponseRefusal(new AppError(code, message, field ? { field } : {}), reason);
const clip = (s: unknown) => clipText(String(s ?? ""), 64);

/**
 * A PENDING request past its deadline reads as EXPIRED before the sweeper marks it (at
 * most SWEEP_INTERVAL later): it can no longer be answered, and its recipient key is
 * no longer handed out.
 */
export function effectiveStatus(r: Pick<DataRequestRow, "status" | "expiresAt">, now: Date): DataRequestStatus {
  return r.status === "PENDING" && r.expiresAt <= now ? "EXPIRED" : r.status;
}

export function toDataRequest(r: DataRequestRow, now = new Date()): DataRequest {
  return {
    id: r.id,
    postboxId: r.postboxId,
    contractId: r.contractId,
    readContractId: r.readContractId,
    readKeyKid: r.readKeyId,
    title: r.title,
    description: r.description,
    acceptedMimeTypes: r.acceptedMimeTypes,
    status: effectiveStatus(r, now),
    createdAt: r.createdAt,
    expiresAt: r.expiresAt,
    respondedAt: r.respondedAt,
    response: r.response ? { ...r.response } : null,
  };
}

export class DataRequestService {
  private openStreams = 0;

  constructor(
    private readonly repo: DataRequestRepository,
    private readonly apps: ApplicationRepository,
    private readonly audit: AuditService,
    private readonly webhooks: WebhookService,
    private readonly pubSub: AppPubSub,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly sessionEnds: SessionEnds,
  ) {}

  /** Subscriptions currently open on this instance (tests wait on it instead of sleeping). */
  get openSubscriptions(): number {
    return this.openStreams;
  }

  // -------------------------------------------------------------------------
  // Application side

  /** `authenticate` resolves the session here, so that a refused session is audited too. */
  async requestData(authenticate: () => Promise<SessionPrincipal>, postboxId: string, input: RequestDataFields): Promise<DataRequest> {
    let s: SessionPrincipal;
    try {
      s = await authenticate();
    } catch (e) {
      if (isAppError(e)) {
        await this.audit.record({ actorType: "APP", action: "data_request.create", outcome: "REFUSED", reason: `${e.code}:session_refused`, detail: { requestedPostboxId: clip(postboxId) } });
      }
      throw e;
    }
    const base: AuditInput = { actorType: "APP", actorId: s.applicationId, action: "data_request.create", outcome: "SUCCESS", applicationId: s.applicationId, contractId: s.contractId };
    const known = { postboxId: null as string | null };
    try {
      return await this.create(s, postboxId, input, base, known);
    } catch (e) {
      if (!(e instanceof ResponseRefusal)) throw e;
      await this.audit.record({
        ...base,
        outcome: "REFUSED",
        reason: `${e.error.code}:${e.reason}`,
        // Only a postbox of the caller's contract is filed under its id; any other id goes in detail.
        postboxId: known.postboxId,
        detail: known.postboxId ? null : { requestedPostboxId: clip(postboxId) },
      });
      throw e.error;
    }
  }

  private async create(s: SessionPrincipal, postboxId: string, input: RequestDataFields, base: AuditInput, known: { postboxId: string | null }): Promise<DataRequest> {
    // 1. The input, before touching the database.
    const title = input.title.trim();
    if (!title) throw refuse(ErrorCode.BAD_USER_INPUT, "empty_title", "title must not be blank: say what you are asking the user for.", "title");
    const description = input.description?.trim() || null;
    let acceptedMimeTypes: string[];
    try {
      acceptedMimeTypes = normaliseMimeTypes(input.acceptedMimeTypes);
    } catch (e) {
      throw refuse(ErrorCode.BAD_USER_INPUT, "bad_mime_type", `acceptedMimeTypes: ${(e as Error).message}`, "acceptedMimeTypes");
    }
    const maxTtl = Math.floor(this.config.DATA_REQUEST_TTL / 1000);
    const ttl = input.expiresInSeconds ?? maxTtl;
    if (!Number.isInteger(ttl) || ttl < 60 || ttl > maxTtl) {
      throw refuse(ErrorCode.BAD_USER_INPUT, "bad_expiry", `expiresInSeconds must be a whole number from 60 to ${maxTtl} (DATA_REQUEST_TTL).`, "expiresInSeconds");
    }

    // 2. The postbox, scoped to the session's contract.
    const postbox = await this.repo.findPostbox(postboxId);
    if (!postbox || postbox.contractId !== s.contractId) {
      const hint = s.contractKind === "READ" ? " Ask with a session of the WRITE contract that created the postbox." : "";
      throw new ResponseRefusal(new AppError(ErrorCode.NOT_FOUND, `Postbox ${postboxId} was not found.${hint}`), "unknown_postbox");
    }
    known.postboxId = postbox.id;
    const now = new Date();
    if (postbox.status === "EXPIRED" || postbox.expiresAt <= now) {
      throw refuse(ErrorCode.POSTBOX_EXPIRED, "postbox_expired", `Postbox ${postbox.id} has expired; create a new one to ask this user for data.`);
    }
    if (postbox.status !== "READY") {
      throw refuse(
        ErrorCode.POSTBOX_NOT_READY,
        "postbox_not_ready",
        postbox.status === "PENDING"
          ? `Postbox ${postbox.id} is PENDING: the user has not accepted it yet. Wait for postboxStatusChanged to report READY.`
          : `Postbox ${postbox.id} is ${postbox.status}; data can be requested only through a READY postbox.`,
      );
    }

    // 3. The application's READ contract: the answer is encrypted to its key.
    const read = await this.apps.findReadContract(s.applicationId);
    if (!read) {
      throw refuse(
        ErrorCode.BAD_USER_INPUT,
        "no_read_contract",
        `Application ${s.applicationId} has no READ contract, so there is no key to encrypt the user's answer to. Register one: npm run cli -- contract add ${s.applicationId} --kind READ --generate-key read-private.pem (or --public-key <your public key file>).`,
      );
    }
    const key = this.currentKey(read.keys);
    if (!key) {
      throw refuse(ErrorCode.BAD_USER_INPUT, "no_read_key", `READ contract ${read.id} has no active RSA or P-256 key to encrypt answers to. Register one with npm run cli -- app rotate-key ${read.id} --generate-key read-private.pem (RSA or P-256: --alg PS512, PS256 or ES256).`);
    }

    const expiresAt = new Date(Math.min(now.getTime() + ttl * 1000, postbox.expiresAt.getTime()));
    const id = newId("drq");
    const row = await this.repo.transaction(async (tx) => {
      const created = await this.repo.create(tx, {
        id,
        postboxId: postbox.id,
        contractId: s.contractId,
        readContractId: read.id,
        readKeyId: key.kid,
        title,
        description,
        acceptedMimeTypes,
        expiresAt,
        createdAt: now,
      });
      await this.audit.record({ ...base, postboxId: postbox.id, targetId: id, detail: { readContractId: read.id, kid: key.kid, mimeTypes: acceptedMimeTypes.length } }, tx);
      return created;
    });
    await this.publish(row, now);
    return toDataRequest(row);
  }

  /** The newest active key that can receive encrypted data. */
  private currentKey(keys: { kid: string; publicJwk: unknown; createdAt: Date }[]): RecipientKey | undefined {
    for (const k of [...keys].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime())) {
      const r = recipientKeyOf(k);
      if (r) return r;
    }
    return undefined;
  }

  /** The postbox if this session may see its data requests: its WRITE contract, or the same application's READ contract. */
  private async visiblePostbox(s: SessionPrincipal, postboxId: string): Promise<PostboxForRequest> {
    const p = await this.repo.findPostbox(postboxId);
    if (!p) throw notFound("Postbox", postboxId);
    const own = p.contractId === s.contractId;
    const readOfSameApp = s.contractKind === "READ" && p.contract.applicationId === s.applicationId;
    if (!own && !readOfSameApp) throw notFound("Postbox", postboxId);
    return p;
  }

  async list(s: SessionPrincipal, postboxId: string, status: DataRequestStatus | undefined, first: number | null | undefined, after: string | null | undefined): Promise<Connection<DataRequest>> {
    const page = pageRequest(first, after);
    await this.visiblePostbox(s, postboxId);
    const now = new Date();
    const rows = await this.repo.list(postboxId, s.contractId, status, now, page.take, page.after);
    return toConnection(rows, page, (r) => toDataRequest(r, now));
  }

  async get(s: SessionPrincipal, id: string): Promise<DataRequest> {
    const row = await this.repo.findVisible(id, s.contractId);
    if (!row) throw notFound("Data request", id);
    return toDataRequest(row);
  }

  /** The user's encrypted answer. Every fetch (and refusal) is audited: it is the user's data leaving the server. */
  async fetchResponse(s: SessionPrincipal, requestId: string): Promise<DataResponseContent> {
    const base: AuditInput = { actorType: "APP", actorId: s.applicationId, action: "data_request.fetch", outcome: "SUCCESS", applicationId: s.applicationId, contractId: s.contractId };
    const row = await this.repo.findVisible(requestId, s.contractId);
    const refused = async (error: AppError, reason: string) => {
      await this.audit.record({ ...base, outcome: "REFUSED", reason: `${error.code}:${reason}`, postboxId: row?.postboxId ?? null, targetId: row?.id ?? null, detail: row ? null : { requestedId: clip(requestId) } });
      return error;
    };
    if (!row) throw await refused(notFound("Data request", requestId), "unknown_request");
    if (row.status !== "FULFILLED") throw await refused(conflict(`Data request ${row.id} is ${row.status}; only a FULFILLED request has an answer to fetch.`), "not_fulfilled");
    const content = await this.repo.findResponseContent(row.id);
    if (!content || content.purgedAt || content.ciphertext === null || content.descriptor === null) {
      const when = content?.purgedAt ? ` on ${content.purgedAt.toISOString()}` : "";
      throw await refused(new AppError(ErrorCode.NOT_FOUND, `The answer to data request ${row.id} was deleted${when} (kept for DATA_RESPONSE_RETENTION); its size and sha256 remain in dataRequest.response.`), "purged");
    }
    await this.audit.record({ ...base, postboxId: row.postboxId, targetId: row.id, detail: { size: content.size } });
    return { requestId: row.id, ciphertext: content.ciphertext, descriptor: content.descriptor, kid: row.readKeyId, size: content.size, sha256: content.sha256, createdAt: content.createdAt };
  }

  /**
   * dataRequestStatusChanged: status changes of the data requests this session
   * may see (asked by its WRITE contract, or answered to its READ contract),
   * optionally of one postbox. The stream ends when the session does.
   */
  async subscribe(s: SessionPrincipal, postboxId?: string | null): Promise<AsyncIterable<DataRequestStatusPayload>> {
    if (postboxId != null) await this.visiblePostbox(s, postboxId);
    const source = this.pubSub.subscribe(contractTopic(s.contractId));
    const contractId = s.contractId;
    return sessionStream({
      source,
      ready: () => this.pubSub.ready(contractTopic(contractId)),
      until: (end) => this.sessionEnds.watch(s, end),
      select: (raw) => {
        const p = asDataRequestPayload(raw);
        // The topic is per contract already; checking again guards against a misrouted event.
        return p && (p.contractId === contractId || p.readContractId === contractId) && (postboxId == null || p.postboxId === postboxId) ? p : undefined;
      },
      onOpen: () => void this.openStreams++,
      onClose: () => void this.openStreams--,
    });
  }

  // -------------------------------------------------------------------------
  // User side (access token scoped to one postbox)

  async listForUser(u: UserPrincipal, status: DataRequestStatus | undefined): Promise<UserDataRequest[]> {
    const now = new Date();
    const [postbox, rows] = await Promise.all([this.repo.findPostbox(u.postboxId), this.repo.listForUser(u.postboxId, status, now, USER_LIST_LIMIT)]);
    const applicationName = postbox?.contract.application.name ?? "";
    const keys = new Map<string, RecipientKey | undefined>();
    const open = (r: DataRequestRow) => effectiveStatus(r, now) === "PENDING";
    for (const r of rows) {
      if (open(r) && !keys.has(r.readContractId)) keys.set(r.readContractId, await this.readKey(r.readContractId));
    }
    return rows.map((r) => this.toUserRequest(r, applicationName, open(r) ? keys.get(r.readContractId) : undefined, now));
  }

  private toUserRequest(r: DataRequestRow, applicationName: string, key: RecipientKey | undefined, now = new Date()): UserDataRequest {
    return {
      id: r.id,
      postboxId: r.postboxId,
      applicationName,
      title: r.title,
      description: r.description,
      acceptedMimeTypes: r.acceptedMimeTypes,
      status: effectiveStatus(r, now),
      createdAt: r.createdAt,
      expiresAt: r.expiresAt,
      respondedAt: r.respondedAt,
      recipientKey: key ? { kid: key.kid, alg: key.alg, enc: "A256GCM", jwk: key.jwk } : null,
      maxBytes: this.config.MAX_PUSH_BYTES,
    };
  }

  /** The READ contract's current key, or undefined if it is disabled or has none usable. */
  private async readKey(readContractId: string): Promise<RecipientKey | undefined> {
    const c = await this.apps.findContract(readContractId);
    if (!c || c.disabledAt || c.application.disabledAt) return undefined;
    return this.currentKey(c.keys);
  }

  async respond(u: UserPrincipal, id: string, answer: { ciphertext: string; descriptor: string }): Promise<UserDataRequest> {
    return this.userAction(u, id, "data_request.fulfill", async (row, base) => {
      const key = await this.readKey(row.readContractId);
      if (!key) throw refuse(ErrorCode.CONFLICT, "no_read_key", "The application can no longer receive answers (its READ contract is disabled or has no key). Nothing was sent.");
      const size = checkResponseJwe(answer.ciphertext, key, "ciphertext", this.config.MAX_PUSH_BYTES);
      checkResponseJwe(answer.descriptor, key, "descriptor", MAX_DESCRIPTOR_BYTES);
      const now = new Date();
      const stored = { size: answer.ciphertext.length, sha256: sha256Hex(answer.ciphertext) };
      return this.repo.transaction(async (tx) => {
        const n = await this.repo.settle(tx, row.id, u.postboxId, now, { status: "FULFILLED", respondedAt: now, readKeyId: key.kid });
        if (n !== 1) throw refuse(ErrorCode.CONFLICT, "changed_meanwhile", "This request was answered, declined or expired a moment ago; reload to see it.");
        await this.repo.createResponse(tx, { id: newId("drs"), requestId: row.id, size: stored.size, sha256: stored.sha256, ciphertext: answer.ciphertext, descriptor: answer.descriptor, createdAt: now });
        await this.audit.record({ ...base, detail: { size: stored.size, contentBytes: size, kid: key.kid } }, tx);
        await this.enqueueWebhooks(tx, row, "data_request.fulfilled", "FULFILLED", now);
        return { status: "FULFILLED" as const, at: now, readKeyId: key.kid };
      });
    });
  }

  async decline(u: UserPrincipal, id: string): Promise<UserDataRequest> {
    return this.userAction(u, id, "data_request.decline", async (row, base) => {
      const now = new Date();
      return this.repo.transaction(async (tx) => {
        const n = await this.repo.settle(tx, row.id, u.postboxId, now, { status: "DECLINED", respondedAt: now });
        if (n !== 1) throw refuse(ErrorCode.CONFLICT, "changed_meanwhile", "This request was answered, declined or expired a moment ago; reload to see it.");
        await this.audit.record(base, tx);
        await this.enqueueWebhooks(tx, row, "data_request.declined", "DECLINED", now);
        return { status: "DECLINED" as const, at: now, readKeyId: row.readKeyId };
      });
    });
  }

  /** Shared by respond and decline: scoping, state checks, refusal audit, event after commit. */
  private async userAction(
    u: UserPrincipal,
    id: string,
    action: string,
    change: (row: DataRequestRow, base: AuditInput) => Promise<{ status: DataRequestStatus; at: Date; readKeyId: string }>,
  ): Promise<UserDataRequest> {
    const base: AuditInput = { actorType: "USER", actorId: u.grantId, action, outcome: "SUCCESS", applicationId: u.applicationId, contractId: u.contractId, postboxId: u.postboxId };
    let row: DataRequestRow | null = null;
    try {
      row = await this.repo.findForPostbox(id, u.postboxId);
      if (!row) throw new ResponseRefusal(notFound("Data request", id), "unknown_request");
      if (row.status !== "PENDING") throw refuse(ErrorCode.CONFLICT, "not_pending", `This request is already ${row.status}; nothing was changed.`);
      if (row.expiresAt <= new Date()) throw refuse(ErrorCode.CONFLICT, "expired", `This request expired at ${row.expiresAt.toISOString()}; the application has to ask again.`);
      const done = await change(row, { ...base, targetId: row.id });
      const updated: DataRequestRow = { ...row, status: done.status, respondedAt: done.at, readKeyId: done.readKeyId };
      await this.publish(updated, done.at);
      const postbox = await this.repo.findPostbox(u.postboxId);
      return this.toUserRequest(updated, postbox?.contract.application.name ?? "", undefined);
    } catch (e) {
      if (!(e instanceof ResponseRefusal)) throw e;
      await this.audit.record({ ...base, outcome: "REFUSED", reason: `${e.error.code}:${e.reason}`, targetId: row?.id ?? null, detail: row ? null : { requestedId: clip(id) } });
      throw e.error;
    }
  }

  private async enqueueWebhooks(tx: Tx, row: DataRequestRow, type: "data_request.fulfilled" | "data_request.declined", status: DataRequestStatus, at: Date) {
    const data = { dataRequestId: row.id, postboxId: row.postboxId, status, at: at.toISOString() };
    // The asking contract, and the READ contract if it has its own endpoint.
    for (const contractId of new Set([row.contractId, row.readContractId])) await this.webhooks.enqueue(tx, { contractId, type, data });
  }

  private async publish(row: Pick<DataRequestRow, "id" | "postboxId" | "contractId" | "readContractId" | "status">, at: Date) {
    const payload: DataRequestStatusPayload = { contractId: row.contractId, readContractId: row.readContractId, postboxId: row.postboxId, dataRequestId: row.id, status: row.status, at: at.toISOString() };
    try {
      for (const c of new Set([row.contractId, row.readContractId])) this.pubSub.publish(contractTopic(c), payload as unknown as Record<string, unknown>);
    } catch (err) {
      // The change is committed; a lost event must not turn it into an error for the caller.
      this.log.warn({ err, dataRequestId: row.id }, "could not publish data request status");
    }
  }

  // -------------------------------------------------------------------------
  // Background work

  /** Expires unanswered requests (deadline passed, or postbox no longer READY) and purges old answers. */
  async sweep(now = new Date()): Promise<number> {
    let changed = 0;
    for (const r of await this.repo.findDue(now, SWEEP_BATCH)) {
      const done = await this.repo.transaction(async (tx) => {
        const n = await this.repo.transition(tx, r.id, {}, { status: "EXPIRED" });
        if (n !== 1) return false;
        await this.audit.record({ actorType: "SYSTEM", action: "data_request.expire", outcome: "SUCCESS", applicationId: r.postbox.contract.applicationId, contractId: r.contractId, postboxId: r.postboxId, targetId: r.id }, tx);
        return true;
      });
      if (done) {
        changed++;
        await this.publish({ ...r, status: "EXPIRED" }, now);
      }
    }
    const before = new Date(now.getTime() - this.config.DATA_RESPONSE_RETENTION);
    for (const r of await this.repo.findPurgeable(before, SWEEP_BATCH)) {
      await this.repo.transaction(async (tx) => {
        if ((await this.repo.purgeResponse(tx, r.id, now)) !== 1) return;
        changed++;
        await this.audit.record({ actorType: "SYSTEM", action: "data_request.purge", outcome: "SUCCESS", applicationId: r.request.postbox.contract.applicationId, contractId: r.request.contractId, postboxId: r.request.postboxId, targetId: r.requestId }, tx);
      });
    }
    return changed;
  }
}
