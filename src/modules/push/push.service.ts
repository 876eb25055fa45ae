// Pushes, the application's side: the application sends a file to a READY postbox; it
// is stored only as a compact JWE to the user's key (the app's own, or one the server
// makes the moment `data` arrives), with its descriptor likewise encrypted. It follows
// delivery (pushes, pushStatusChanged); content is deleted at expiry (retention). Every
// attempt and purge is in the audit log. The user's side (list, fetch, acknowledge) is
// UserFilesService (push.files.service.ts).
import { UNSAFE_DISPLAY_CHARS, UNSAFE_DISPLAY_CHARS_NOTE } from "../../infra/display-text.js";
import { requireServerSecret, type Config } from "../../infra/config.js";
import { clipText } from "../../infra/text.js";
import { isUniqueViolation } from "../../infra/db/prisma-errors.js";
import { AppError, ErrorCode, isAppError, notFound } from "../../infra/errors.js";
import type { SessionPrincipal } from "../../infra/graphql/context.js";
import { pageRequest, toConnection, type Connection } from "../../infra/graphql/pagination.js";
import { sessionStream } from "../../infra/graphql/session-stream.js";
import { newId } from "../../infra/ids.js";
import type { Logger } from "../../infra/logger.js";
import type { AppPubSub } from "../../infra/pubsub.js";
import type { AuditInput, AuditService } from "../audit/audit.service.js";
import type { SessionEnds } from "../session/session.events.js";
import { publishUserEvent } from "../user/user.events.js";
import type { WebhookService } from "../webhook/webhook.service.js";
import { createHash, type Hmac } from "node:crypto";
import { MultipartError } from "../../infra/http/multipart.js";
import type { FileUpload, Upload } from "../../infra/graphql/upload.js";
import type { InlineValues } from "../../infra/http/large-json.js";
import {
  BASE64_SLICE_CHARS,
  base64Slices,
  jwePieces,
  JweTextChecker,
  PushRefusal,
  checkJweHeader,
  checkJweStructure,
  digestJwe,
  emptyFile,
  encryptPush,
  openEncryptor,
  fingerprinter,
  requestFingerprint,
  type FingerprintMeta,
  strictBase64BytesLength,
  strictBase64Length,
  tooLarge,
  type FileDescriptor as Descriptor,
  type RecipientKey,
} from "./push.crypto.js";
import type { PostboxForPush, PushRepository, PushRow } from "./push.repository.js";
import { PushWriter } from "./push.writer.js";
import type { PushStatus } from "./push.types.js";

export const PUSH_STATUS_TOPIC = "PUSH_STATUS";

/** Routed per contract ("PUSH_STATUS:<contractId>"), like postbox status events. */
export function pushTopic(contractId: string): string {
  return `${PUSH_STATUS_TOPIC}:${contractId}`;
}

/** Checks a payload that came off the bus (with Redis, from another instance, as JSON). */
function asPushPayload(raw: unknown): PushStatusPayload | undefined {
  const p = raw as Partial<PushStatusPayload> | null;
  if (!p || typeof p.contractId !== "string" || typeof p.postboxId !== "string" || typeof p.pushId !== "string" || (p.status !== "PENDING" && p.status !== "DELIVERED")) return undefined;
  return { contractId: p.contractId, postboxId: p.postboxId, pushId: p.pushId, status: p.status, at: typeof p.at === "string" ? p.at : new Date().toISOString() };
}

export interface PushStatusPayload {
  contractId: string;
  postboxId: string;
  pushId: string;
  status: PushStatus;
  /** ISO time of the change. */
  at: string;
}

export interface PushDataRequest {
  postboxId: string;
  fileName?: string | null;
  fileDescriptor?: {
    mimeType?: string | null;
    accounts?: ({ accountId?: string | null } | null)[] | null;
    reference?: (string | null)[] | null;
    tags?: (string | null)[] | null;
  } | null;
  data?: string | null;
  encryptedData?: string | null;
  /** Multipart uploads: plaintext (encrypted on arrival) or a compact JWE as bytes. */
  file?: Upload | null;
  encryptedFile?: Upload | null;
  idempotencyKey?: string | null;
}

type ContentKind = "data" | "encryptedData" | "file" | "encryptedFile";
type UploadKind = "file" | "encryptedFile";

export interface PushResultDto extends PushView {
  duplicate: boolean;
}

export interface PushView {
  id: string;
  postboxId: string;
  status: PushStatus;
  size: number;
  sha256: string;
  receivedAt: Date;
  expiresAt: Date;
  deliveredAt: Date | null;
  purgedAt: Date | null;
}


const MAX_LIST = 100;
const MAX_TEXT = 256;
const MIME_RE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}(\s*;.{0,200})?$/;
const IDEMPOTENCY_RE = /^[\x21-\x7e]{1,255}$/;
// Characters of JWE text per PushChunk row of an upload.
const CHUNK_CHARS = 1024 * 1024;
// Slices with no push and no write for this long belong to an upload that ended
// without one (a crash mid-upload); HTTP requests time out long before (5 min).
const ABANDONED_UPLOAD_MS = 60 * 60 * 1000;
const PURGE_BATCH = 200;

export const view = (r: PushRow): PushView => ({
  id: r.id,
  postboxId: r.postboxId,
  status: r.status,
  size: r.size,
  sha256: r.sha256,
  receivedAt: r.receivedAt,
  expiresAt: r.expiresAt,
  deliveredAt: r.deliveredAt,
  purgedAt: r.purgedAt,
});

const input = (code: ErrorCode, reason: string, message: string, field?: string) =>
  new PushRefusal(new AppError(code, message, field ? { field } : {}), reason);

/** A READY postbox as pushes need it; cached because none of it changes while it is READY. */
interface PushTargetEntry {
  contractId: string;
  key: RecipientKey;
  expiresAt: Date;
}

export class PushService {
  private openStreams = 0;
  private readonly targets = new Map<string, PushTargetEntry>();
  private readonly writer: PushWriter;

  constructor(
    private readonly repo: PushRepository,
    private readonly audit: AuditService,
    private readonly webhooks: WebhookService,
    private readonly pubSub: AppPubSub,
    private readonly config: Config,
    /** Key of the idempotency fingerprints (SERVER_SECRET); unset only where no request is served (schema printing). */
    private readonly serverSecret: string | undefined,
    private readonly log: Logger,
    private readonly sessionEnds: SessionEnds,
  ) {
    this.writer = new PushWriter(repo, audit);
  }

  /** pushStatusChanged streams open on this instance (tests wait on it before acting). */
  get openSubscriptions(): number {
    return this.openStreams;
  }

  /**
   * pushData. `authenticate` resolves the session, so that a refusal of the session itself is audited too.
   * `inlineValues`: content of a large request body left in its buffer (infra/http/large-json.ts); `data` or
   * `encryptedData` is then the token it is filed under.
   */
  async push(authenticate: () => Promise<SessionPrincipal>, req: PushDataRequest, inlineValues?: InlineValues): Promise<PushResultDto> {
    let s: SessionPrincipal;
    try {
      s = await authenticate();
    } catch (e) {
      if (isAppError(e)) {
        await this.audit.record({
          actorType: "APP",
          action: "push.create",
          outcome: "REFUSED",
          reason: `${e.code}:session_refused`,
          detail: { requestedPostboxId: clip(req.postboxId) },
        });
      }
      throw e;
    }
    const base: AuditInput = {
      actorType: "APP",
      actorId: s.applicationId,
      action: "push.create",
      outcome: "SUCCESS",
      applicationId: s.applicationId,
      contractId: s.contractId,
    };
    const known = { postboxId: null as string | null };
    try {
      return await this.accept(s, req, base, known, inlineValues);
    } catch (e) {
      if (!(e instanceof PushRefusal)) throw e;
      // File the refusal under the postbox when it is the caller's (also for input refused
      // before the postbox was read), so the app finds it in auditLog(postboxId); any other id goes in detail.
      const postboxId = known.postboxId ?? (e.reason !== "unknown_postbox" && (await this.repo.postboxExists(req.postboxId, s.contractId)) ? req.postboxId : null);
      await this.audit.record({
        ...base,
        outcome: "REFUSED",
        reason: `${e.error.code}:${e.reason}`,
        postboxId,
        detail: { kind: kindOf(req), ...(postboxId ? {} : { requestedPostboxId: clip(req.postboxId) }) },
      });
      throw e.error;
    }
  }

  /**
   * A pushData request that GraphQL refused before the resolver ran (unparsable,
   * invalid against the schema, variables of the wrong shape, over a limit): still a
   * push attempt, so it is audited, without any of its content.
   */
  async recordRejectedRequest(authenticate: () => Promise<SessionPrincipal>, stage: string, code: string): Promise<void> {
    const s = await authenticate().catch(() => null);
    await this.audit.record({
      actorType: "APP",
      actorId: s?.applicationId ?? null,
      action: "push.create",
      outcome: "REFUSED",
      reason: `${code}:invalid_request`,
      applicationId: s?.applicationId ?? null,
      contractId: s?.contractId ?? null,
      detail: { stage, session: s ? "valid" : "none" },
    });
  }

  private async accept(s: SessionPrincipal, req: PushDataRequest, base: AuditInput, known: { postboxId: string | null }, inlineValues?: InlineValues): Promise<PushResultDto> {
    if (s.contractKind !== "WRITE") {
      throw input(ErrorCode.FORBIDDEN, "read_contract", "Only a WRITE contract's session can push data; this session belongs to a READ contract.");
    }
    // 1. Everything that needs no database: shape, size, encoding.
    const descriptor = validateDescriptor(req);
    const idempotencyKey = req.idempotencyKey ?? null;
    if (idempotencyKey !== null && !IDEMPOTENCY_RE.test(idempotencyKey)) {
      throw input(ErrorCode.BAD_USER_INPUT, "bad_idempotency_key", "idempotencyKey must be 1–255 printable ASCII characters without spaces.", "idempotencyKey");
    }
    const kinds = contentKinds(req);
    if (kinds.length !== 1) {
      throw input(
        ErrorCode.BAD_USER_INPUT,
        "content_choice",
        "Give exactly one of data (base64 plaintext), encryptedData (a compact JWE to the postbox key), file or encryptedFile (the same two as a multipart upload).",
        kinds[1] ?? "data",
      );
    }
    const kind = kinds[0];
    const max = this.config.MAX_PUSH_BYTES;
    // A large inline value stays in the request body's buffer and is read from there in slices.
    const inline = kind === "data" || kind === "encryptedData" ? inlineValues?.get(req[kind]!) : undefined;
    let jweParts: string[] | undefined;
    if (kind === "data") {
      const chars = inline ? inline.length : req.data!.length;
      // Refuse by length before decoding anything: base64 is 4 characters per 3 bytes.
      if ((chars / 4) * 3 - 2 > max) throw tooLarge(Math.floor((chars / 4) * 3), max);
      const bytes = inline ? strictBase64BytesLength(inline) : strictBase64Length(req.data!);
      if (bytes === 0) throw emptyFile("data");
      if (bytes > max) throw tooLarge(bytes, max);
    } else if (kind === "encryptedData") {
      if (inline) {
        const checker = new JweTextChecker(max, "encryptedData");
        // Small slices: the strings the check makes are short-lived young-generation garbage.
        for (let i = 0; i < inline.length; i += BASE64_SLICE_CHARS) checker.feed(inline.subarray(i, i + BASE64_SLICE_CHARS));
        jweParts = checker.end();
      } else {
        jweParts = checkJweStructure(req.encryptedData!, max).parts;
      }
    }

    // 2. The postbox's key, scoped to the session's contract. A READY postbox's key and
    // expiry never change, so they are cached; its status is checked again, atomically, by the insert.
    let target = this.targets.get(req.postboxId);
    if (target && target.contractId !== s.contractId) target = undefined;
    const postbox = target ? null : await this.repo.findPostbox(req.postboxId, s.contractId);
    if (!target && !postbox) throw new PushRefusal(notFound("Postbox", req.postboxId), "unknown_postbox");
    known.postboxId = req.postboxId;

    // 3. A retry is answered from the original, whatever has happened to the postbox since.
    const meta: FingerprintMeta = {
      postboxId: req.postboxId,
      fileName: descriptor.fileName,
      mimeType: descriptor.mimeType,
      accounts: descriptor.accounts.map((a) => a.accountId),
      reference: descriptor.reference,
      tags: descriptor.tags,
      kind,
    };
    const upload = kind === "file" ? req.file! : kind === "encryptedFile" ? req.encryptedFile! : null;
    let requestHash: string | null = null;
    if (idempotencyKey && !upload) {
      requestHash = requestFingerprint(this.secret(), { ...meta, content: inline ?? (kind === "data" ? req.data! : req.encryptedData!) });
      const dup = await this.replay(s, idempotencyKey, requestHash, base);
      if (dup) return dup;
    } else if (idempotencyKey && (await this.repo.findByIdempotencyKey(s.contractId, idempotencyKey))) {
      // An upload's fingerprint needs its content: read it (storing nothing) and compare.
      const mac = fingerprinter(this.secret(), meta);
      await this.receive(upload!, kind as UploadKind, { mac });
      const dup = await this.replay(s, idempotencyKey, mac.digest("hex"), base);
      if (dup) return dup;
      throw new Error("idempotency key vanished during a retry"); // keys live as long as their push
    }

    // 4. Only a READY, unexpired postbox takes pushes (checked before an upload is read).
    const now = new Date();
    if (postbox) {
      checkAccepting(postbox, now);
      target = { contractId: postbox.contractId, key: recipientKey(postbox), expiresAt: postbox.expiresAt };
      if (this.targets.size >= 10_000) this.targets.clear();
      this.targets.set(postbox.id, target);
    } else if (target!.expiresAt.getTime() <= now.getTime()) {
      throw input(ErrorCode.POSTBOX_EXPIRED, "postbox_expired", `Postbox ${req.postboxId} expired at ${target!.expiresAt.toISOString()}; create a new one.`);
    }
    const { key, expiresAt } = target!;

    // 5. Encrypt (or check the app's encryption) outside the transaction: CPU, no locks held.
    // An upload is encrypted and written in slices as it arrives (see receive()).
    const id = newId("psh");
    let file: { jwe: string | null; size: number; sha256: string };
    let stored = false;
    try {
      // The descriptor is encrypted while the file is (in the encryption thread); small
      // `data` together with it, under one key agreement.
      const sealed = encryptPush(key, Buffer.from(JSON.stringify(descriptor), "utf8"), kind === "data" && !inline ? req.data! : undefined);
      sealed.descriptor.catch(() => {}); // awaited below, unless the file is refused first
      if (upload) {
        const mac = idempotencyKey ? fingerprinter(this.secret(), meta) : undefined;
        file = { jwe: null, ...(await this.receive(upload, kind as UploadKind, { mac, key, pushId: id })) };
        requestHash = mac ? mac.digest("hex") : null;
      } else if (inline) {
        file = { jwe: null, ...(await this.storeInline(inline, kind as "data" | "encryptedData", key, id, jweParts)) };
      } else if (jweParts) {
        checkJweHeader(jweParts, key);
        file = { jwe: req.encryptedData!, ...digestJwe(req.encryptedData!) };
      } else {
        file = await sealed.file!;
      }
      const descriptorJwe = (await sealed.descriptor).jwe;
      // A push is received once its content is in: an upload that ends after its postbox's
      // expiry is too late (the insert checks expiresAt against this time, with the status).
      const receivedAt = upload || inline ? new Date() : now;
      if (expiresAt.getTime() <= receivedAt.getTime()) {
        throw input(ErrorCode.POSTBOX_EXPIRED, "postbox_expired", `Postbox ${req.postboxId} expired at ${expiresAt.toISOString()}, before the upload ended; create a new one.`);
      }

      const postboxId = req.postboxId;
      try {
        // Metadata, content and the audit event commit together (possibly with other pushes: see PushWriter).
        const row = await this.writer.write({
          push: {
            id,
            postboxId,
            contractId: s.contractId,
            size: file.size,
            sha256: file.sha256,
            idempotencyKey,
            requestHash,
            receivedAt,
            expiresAt,
            ciphertext: file.jwe,
            descriptor: descriptorJwe,
          },
          audit: { ...base, postboxId, targetId: id, detail: { kind, size: file.size, duplicate: false } },
        });
        if (!row) {
          // The postbox changed since it was cached (closed, expired): refuse with its current state.
          this.targets.delete(postboxId);
          const current = await this.repo.findPostbox(postboxId, s.contractId);
          if (!current) throw new PushRefusal(notFound("Postbox", postboxId), "unknown_postbox");
          checkAccepting(current, new Date());
          throw input(ErrorCode.CONFLICT, "postbox_changed", `Postbox ${postboxId} changed while the push was in flight; retry it.`);
        }
        stored = true;
        publishUserEvent(this.pubSub, this.log, { kind: "file", postboxId, fileId: id, change: "ADDED", at: receivedAt.toISOString() });
        return Object.assign(view(row), { duplicate: false });
      } catch (e) {
        // Two concurrent requests with one idempotency key: the loser answers from the winner.
        if (idempotencyKey && isUniqueViolation(e)) {
          const dup = await this.replay(s, idempotencyKey, requestHash!, base);
          if (dup) return dup;
        }
        throw e;
      }
    } finally {
      // An upload's (or large inline value's) slices are written before its push: without the push they must go.
      if ((upload || inline) && !stored) await this.repo.deleteChunks([id]).catch((err) => this.log.warn({ err, pushId: id }, "could not delete an unstored upload's slices; retention will"));
    }
  }

  /**
   * Reads an upload to its end: checks it, feeds the fingerprint and, with a key,
   * encrypts a plaintext `file` (or takes an `encryptedFile` as is) and writes the
   * JWE text in PushChunk slices under `pushId` as it arrives. At no point is more
   * than about one slice of it in memory.
   */
  private async receive(upload: Upload, kind: UploadKind, to: { mac?: Hmac; key?: RecipientKey; pushId?: string }): Promise<{ size: number; sha256: string }> {
    let f: FileUpload;
    try {
      f = await upload.file;
    } catch (e) {
      throw input(ErrorCode.BAD_USER_INPUT, "upload_missing", e instanceof Error ? e.message : "The file part is missing.", kind);
    }
    const max = this.config.MAX_PUSH_BYTES;
    const sink = new ChunkSink(this.repo, to.pushId);
    const emit = (text: string) => sink.emit(text);
    const encryptor = kind === "file" && to.key ? await openEncryptor(to.key) : undefined;
    const checker = kind === "encryptedFile" ? new JweTextChecker(max) : undefined;
    let bytes = 0;
    // Not destroyed on an early exit: the rest of the body is then drained (see infra/http/multipart.ts).
    const chunks = f.stream.iterator({ destroyOnReturn: false });
    try {
      if (encryptor) await emit(encryptor.head);
      for await (const chunk of chunks as AsyncIterable<Buffer>) {
        bytes += chunk.length;
        to.mac?.update(chunk);
        if (checker) {
          checker.feed(chunk);
          await emit(chunk.toString("latin1"));
        } else {
          if (bytes > max) throw tooLarge(bytes, max);
          if (encryptor) await emit(encryptor.update(chunk));
          chunk.fill(0); // plaintext does not outlive its slice
        }
      }
      if (checker) {
        const parts = checker.end();
        if (to.key) checkJweHeader(parts, to.key, "encryptedFile");
      } else if (bytes === 0) {
        throw emptyFile(kind);
      }
      if (encryptor) await emit(encryptor.final());
      await sink.flush();
    } catch (e) {
      f.stream.resume();
      if (e instanceof PushRefusal) throw e;
      if (e instanceof MultipartError && e.code === ErrorCode.PAYLOAD_TOO_LARGE) throw tooLarge(bytes, max);
      if (f.stream.destroyed || e instanceof MultipartError) {
        throw input(ErrorCode.BAD_USER_INPUT, "upload_interrupted", `The upload did not complete: ${e instanceof Error ? e.message : String(e)}`, kind);
      }
      throw e;
    }
    return sink.result();
  }

  /**
   * A large inline value (see infra/http/large-json.ts): encrypts base64 `data` a slice
   * at a time, or takes an `encryptedData` JWE as is, writing the JWE text in PushChunk
   * slices as an upload's.
   */
  private async storeInline(text: Buffer, kind: "data" | "encryptedData", key: RecipientKey, pushId: string, jweParts?: string[]): Promise<{ size: number; sha256: string }> {
    const sink = new ChunkSink(this.repo, pushId);
    if (kind === "encryptedData") {
      checkJweHeader(jweParts!, key);
      for (let i = 0; i < text.length; i += CHUNK_CHARS) await sink.emit(text.toString("latin1", i, i + CHUNK_CHARS));
    } else {
      // The body buffer is not overwritten: one request may push the same variable twice (aliases).
      for (const piece of jwePieces(await openEncryptor(key), base64Slices(text))) await sink.emit(piece);
    }
    await sink.flush();
    return sink.result();
  }

  private secret(): string {
    return requireServerSecret(this.serverSecret);
  }

  private async replay(s: SessionPrincipal, idempotencyKey: string, requestHash: string, base: AuditInput): Promise<PushResultDto | undefined> {
    const existing = await this.repo.findByIdempotencyKey(s.contractId, idempotencyKey);
    if (!existing) return undefined;
    if (existing.requestHash !== requestHash) {
      throw input(
        ErrorCode.CONFLICT,
        "idempotency_conflict",
        `idempotencyKey "${idempotencyKey}" was already used for a different push (${existing.id}). Use a new key for new content.`,
        "idempotencyKey",
      );
    }
    await this.audit.record({ ...base, postboxId: existing.postboxId, targetId: existing.id, detail: { duplicate: true } });
    return Object.assign(view(existing), { duplicate: true });
  }

  async listPushes(s: SessionPrincipal, postboxId: string, first?: number | null, after?: string | null): Promise<Connection<PushView>> {
    const page = pageRequest(first, after);
    if (!(await this.repo.postboxExists(postboxId, s.contractId))) throw notFound("Postbox", postboxId);
    const rows = await this.repo.listForPostbox(postboxId, page.take, page.after && { receivedAt: page.after.createdAt, id: page.after.id });
    return toConnection(rows.map((r) => ({ ...r, createdAt: r.receivedAt })), page, view);
  }

  async getPush(s: SessionPrincipal, id: string): Promise<PushView> {
    const row = await this.repo.find(id, { contractId: s.contractId });
    if (!row) throw notFound("Push", id);
    return view(row);
  }

  /**
   * pushStatusChanged: status changes of the contract's pushes (of one postbox when
   * given; another contract's postbox is NOT_FOUND before any event flows). The
   * stream ends when the session does (expiry, endSession, application disabled).
   */
  async subscribe(s: SessionPrincipal, postboxId?: string | null): Promise<AsyncIterable<PushStatusPayload>> {
    if (postboxId != null && !(await this.repo.postboxExists(postboxId, s.contractId))) throw notFound("Postbox", postboxId);
    const source = this.pubSub.subscribe(pushTopic(s.contractId));
    const contractId = s.contractId;
    return sessionStream({
      source,
      ready: () => this.pubSub.ready(pushTopic(contractId)),
      until: (end) => this.sessionEnds.watch(s, end),
      select: (raw) => {
        const p = asPushPayload(raw);
        // The topic is per contract already; checking again costs nothing and guards against a misrouted event.
        return p && p.contractId === contractId && (postboxId == null || p.postboxId === postboxId) ? p : undefined;
      },
      onOpen: () => void this.openStreams++,
      onClose: () => void this.openStreams--,
    });
  }

  // -------------------------------------------------------------------------
  // Retention

  /**
   * Deletes content at its expiry (postbox expiry, or PUSH_RETENTION after
   * delivery) or when its postbox is closed, and metadata AUDIT_RETENTION after
   * that. Safe on several instances.
   */
  async retention(now = new Date()): Promise<{ purged: number; deleted: number }> {
    let purged = 0;
    for (;;) {
      const due = await this.repo.transaction(async (tx) => {
        const due = await this.repo.claimDueContent(tx, now, PURGE_BATCH);
        if (due.length === 0) return due;
        await this.repo.purgeContent(tx, due.map((d) => d.id), now);
        for (const d of due) {
          await this.audit.record({ actorType: "SYSTEM", action: "push.purge", outcome: "SUCCESS", contractId: d.contractId, postboxId: d.postboxId, targetId: d.id, detail: { reason: d.reason } }, tx);
          await this.webhooks.enqueue(tx, { contractId: d.contractId, type: "push.purged", data: { pushId: d.id, postboxId: d.postboxId, purgedAt: now.toISOString(), reason: d.reason } });
        }
        return due;
      });
      for (const d of due) publishUserEvent(this.pubSub, this.log, { kind: "file", postboxId: d.postboxId, fileId: d.id, change: "PURGED", at: now.toISOString() });
      purged += due.length;
      if (due.length < PURGE_BATCH) break;
    }
    const deleted = await this.repo.deletePurgedBefore(new Date(now.getTime() - this.config.AUDIT_RETENTION));
    const abandoned = await this.repo.deleteAbandonedChunks(new Date(now.getTime() - ABANDONED_UPLOAD_MS));
    if (purged || deleted || abandoned) this.log.info({ purged, deleted, abandonedSlices: abandoned }, "push retention");
    return { purged, deleted };
  }
}

/** An id as the caller sent it, short enough for an audit event (never half a character). */
export const clip = (s: unknown): string => clipText(String(s), 64);

/** JWE text written in PushChunk slices (CHUNK_CHARS each) as it is produced, and hashed; without a pushId it is only hashed. */
class ChunkSink {
  private readonly hash = createHash("sha256");
  private size = 0;
  private seq = 0;
  private pending: string[] = [];
  private pendingChars = 0;

  constructor(
    private readonly repo: PushRepository,
    private readonly pushId?: string,
  ) {}

  async emit(text: string): Promise<void> {
    if (!text) return;
    this.hash.update(text, "latin1");
    this.size += text.length;
    if (!this.pushId) return;
    this.pending.push(text);
    this.pendingChars += text.length;
    if (this.pendingChars >= CHUNK_CHARS) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.pendingChars === 0 || !this.pushId) return;
    const text = this.pending.join("");
    this.pending = [];
    this.pendingChars = 0;
    await this.repo.insertChunk(this.pushId, this.seq++, text);
  }

  result(): { size: number; sha256: string } {
    return { size: this.size, sha256: this.hash.digest("hex") };
  }
}

function contentKinds(req: PushDataRequest): ContentKind[] {
  return (["data", "encryptedData", "file", "encryptedFile"] as const).filter((k) => req[k] !== null && req[k] !== undefined);
}

function kindOf(req: PushDataRequest): string | null {
  const kinds = contentKinds(req);
  return kinds.length > 1 ? "several" : (kinds[0] ?? null);
}

function checkAccepting(p: PostboxForPush, now: Date): void {
  switch (p.status) {
    case "READY":
      if (p.expiresAt.getTime() <= now.getTime()) {
        throw input(ErrorCode.POSTBOX_EXPIRED, "postbox_expired", `Postbox ${p.id} expired at ${p.expiresAt.toISOString()}; create a new one.`);
      }
      return;
    case "PENDING": {
      // Past either deadline it can never become READY; the sweeper is about to mark it EXPIRED.
      const deadline = Math.min(p.expiresAt.getTime(), p.consentExpiresAt.getTime());
      if (deadline <= now.getTime()) {
        throw input(ErrorCode.POSTBOX_EXPIRED, "postbox_expired", `Postbox ${p.id} was not accepted by ${new Date(deadline).toISOString()} and has expired; create a new one.`);
      }
      throw input(ErrorCode.POSTBOX_NOT_READY, "postbox_not_ready", `Postbox ${p.id} is still waiting for the user's consent; push once it is READY (see postboxStatusChanged).`);
    }
    case "EXPIRED":
      throw input(ErrorCode.POSTBOX_EXPIRED, "postbox_expired", `Postbox ${p.id} has expired; create a new one.`);
    default:
      throw input(ErrorCode.CONFLICT, `postbox_${p.status.toLowerCase()}`, `Postbox ${p.id} is ${p.status} and takes no more pushes.`);
  }
}

function recipientKey(p: PostboxForPush): RecipientKey {
  if (!p.publicJwk || !p.publicKeyThumbprint) throw new Error(`READY postbox ${p.id} has no public key`);
  return { jwk: p.publicJwk as Record<string, unknown>, kid: p.publicKeyThumbprint };
}

function validateDescriptor(req: PushDataRequest): Descriptor {
  const bad = (reason: string, message: string, field: string) => input(ErrorCode.BAD_USER_INPUT, reason, message, field);
  const text = (v: unknown, field: string, max = MAX_TEXT): string => {
    if (typeof v !== "string" || v.length === 0) throw bad("missing_descriptor_field", `${field} is required.`, field);
    if (v.length > max) throw bad("bad_descriptor_field", `${field} is too long (${max} characters at most).`, field);
    if (UNSAFE_DISPLAY_CHARS.test(v)) throw bad("bad_descriptor_field", `${field} must not contain ${UNSAFE_DISPLAY_CHARS_NOTE}.`, field);
    return v;
  };
  const list = (v: (string | null)[] | null | undefined, field: string): string[] => {
    if (v === null || v === undefined) return [];
    if (v.length > MAX_LIST) throw bad("bad_descriptor_field", `${field} may have at most ${MAX_LIST} entries.`, field);
    return v.map((x, i) => text(x, `${field}[${i}]`));
  };
  const fileName = text(req.fileName, "fileName", 255);
  const d = req.fileDescriptor;
  if (!d) throw bad("missing_descriptor_field", "fileDescriptor is required: { mimeType, accounts: [{ accountId }], reference, tags }.", "fileDescriptor");
  const mimeType = text(d.mimeType, "fileDescriptor.mimeType");
  if (!MIME_RE.test(mimeType)) throw bad("bad_descriptor_field", `fileDescriptor.mimeType must be a media type such as application/json (got "${mimeType.slice(0, 40)}").`, "fileDescriptor.mimeType");
  if (!d.accounts || d.accounts.length === 0) {
    throw bad("missing_descriptor_field", "fileDescriptor.accounts is required: at least one { accountId } of the user in your system.", "fileDescriptor.accounts");
  }
  if (d.accounts.length > MAX_LIST) throw bad("bad_descriptor_field", `fileDescriptor.accounts may have at most ${MAX_LIST} entries.`, "fileDescriptor.accounts");
  const accounts = d.accounts.map((a, i) => ({ accountId: text(a?.accountId, `fileDescriptor.accounts[${i}].accountId`) }));
  return { fileName, mimeType, accounts, reference: list(d.reference, "fileDescriptor.reference"), tags: list(d.tags, "fileDescriptor.tags") };
}
