// The user's side of pushes, with the access token of one postbox: the app lists its
// files, fetches each as ciphertext (file and descriptor JWEs, never decrypted here),
// acknowledges receipt (the push becomes DELIVERED for the application, with a
// push.delivered webhook), and follows changes live (myFilesChanged). Every fetch and
// acknowledgement, and every refusal of one, is in the audit log. The application's
// side (pushData, pushes, retention) is PushService.
import type { Config } from "../../infra/config.js";
import { AppError, ErrorCode, notFound } from "../../infra/errors.js";
import type { UserPrincipal } from "../../infra/graphql/context.js";
import { pageRequest, toConnection, type Connection } from "../../infra/graphql/pagination.js";
import { endAtExpiry, sessionStream } from "../../infra/graphql/session-stream.js";
import type { Logger } from "../../infra/logger.js";
import type { AppPubSub } from "../../infra/pubsub.js";
import type { AuditInput, AuditService } from "../audit/audit.service.js";
import { CHANGE_ORDER, asUserEvent, currentChange, publishUserEvent, userTopic, type UserFileEvent } from "../user/user.events.js";
import type { WebhookService } from "../webhook/webhook.service.js";
import type { PushKeyset, PushRepository, PushRow } from "./push.repository.js";
import { clip, pushTopic, view, type PushStatusPayload, type PushView } from "./push.service.js";

const MAX_ACK = 100;
// Rows read per query when a user stream opens with the postbox's current files.
const CURRENT_PAGE = 500;
// myFilesChanged's changedSince reaches this far back (clock skew between instances,
// changes stamped before they committed).
const CATCH_UP_MARGIN_MS = 60_000;

export interface FileContent {
  id: string;
  /** A getter: the JWE is read only when the GraphQL field is selected. */
  readonly ciphertext: Promise<string>;
  /** GET it with the access token for the same JWE as a stream. */
  downloadUrl: string;
  descriptor: string;
  sha256: string;
  size: number;
}

/** A file's JWE as a stream of text, for GET /files/:id. */
export interface FileDownload {
  id: string;
  size: number;
  sha256: string;
  text: AsyncIterable<string>;
}

export class UserFilesService {
  private openStreams = 0;

  constructor(
    private readonly repo: PushRepository,
    private readonly audit: AuditService,
    private readonly webhooks: WebhookService,
    private readonly pubSub: AppPubSub,
    private readonly config: Config,
    private readonly log: Logger,
  ) {}

  /** myFilesChanged streams open on this instance (tests wait on it before acting). */
  get openSubscriptions(): number {
    return this.openStreams;
  }

  /**
   * myFilesChanged: changes to the files of the user's postbox. The stream ends when
   * the access token it was opened with expires, and when the postbox's credentials
   * change (a grant revoked, the postbox closed or expired) and `stillLive` says its
   * grant no longer works. With `includeCurrent` it opens with every file's current
   * state (currentFiles), for a device catching up on what it missed.
   */
  subscribeFiles(u: UserPrincipal, stillLive: () => Promise<boolean>, opts: { includeCurrent?: boolean; changedSince?: Date | null } = {}): AsyncIterable<UserFileEvent> {
    const { includeCurrent = false, changedSince = null } = opts;
    if (changedSince && !includeCurrent) {
      throw new AppError(ErrorCode.BAD_USER_INPUT, "changedSince only applies with includeCurrent: true.", { field: "changedSince" });
    }
    // A change's time is taken before it commits, on the clock of the instance that made
    // it: one committed after a later-stamped event was seen can carry an earlier time.
    const since = changedSince && new Date(changedSince.getTime() - CATCH_UP_MARGIN_MS);
    // With includeCurrent, how far the opening events took each file: a live event
    // they already reflect (published while they were read) is not sent again.
    const told = new Map<string, number>();
    return sessionStream({
      source: this.pubSub.subscribe(userTopic(u.postboxId)),
      ready: () => this.pubSub.ready(userTopic(u.postboxId)),
      until: (end) => endAtExpiry(u.expiresAt, end),
      // Authenticated before the listener: a close or revocation in between sent its event unheard.
      stillValid: stillLive,
      prelude: includeCurrent ? () => this.currentFiles(u.postboxId, told, since) : undefined,
      select: (raw, endStream) => {
        const e = asUserEvent(raw);
        if (!e || e.postboxId !== u.postboxId) return undefined;
        if (e.kind === "file") return (told.get(e.fileId) ?? -1) >= CHANGE_ORDER[e.change] ? undefined : e;
        stillLive().then(
          (live) => live || endStream(),
          (err) => this.log.warn({ err, postboxId: u.postboxId }, "could not check a user stream's credential; it stays open until its token expires"),
        );
        return undefined;
      },
      onOpen: () => void this.openStreams++,
      onClose: () => void this.openStreams--,
    });
  }

  /**
   * One event per file of the postbox (changed at or after `since`, when given), oldest
   * first, giving where it stands now (its latest change and when).
   */
  private async *currentFiles(postboxId: string, told: Map<string, number>, since: Date | null): AsyncGenerator<UserFileEvent> {
    let after: PushKeyset | undefined;
    for (;;) {
      const rows = await this.repo.listStates(postboxId, CURRENT_PAGE, after, since);
      for (const r of rows) {
        const { change, at } = currentChange(r);
        told.set(r.id, CHANGE_ORDER[change]);
        yield { kind: "file", postboxId, fileId: r.id, change, at: at.toISOString() };
      }
      if (rows.length < CURRENT_PAGE) return;
      const last = rows[rows.length - 1];
      after = { receivedAt: last.receivedAt, id: last.id };
    }
  }

  async listFiles(u: UserPrincipal, first?: number | null, after?: string | null): Promise<Connection<PushView>> {
    const page = pageRequest(first, after);
    const rows = await this.repo.listForPostbox(u.postboxId, page.take, page.after && { receivedAt: page.after.createdAt, id: page.after.id });
    return toConnection(rows.map((r) => ({ ...r, createdAt: r.receivedAt })), page, view);
  }

  async getFile(u: UserPrincipal, id: string): Promise<FileContent> {
    const row = await this.openForUser(u, id, "graphql");
    const read = () => collect(this.ciphertextOf(row)).then((parts) => parts.join(""));
    return {
      id: row.id,
      descriptor: row.descriptor,
      sha256: row.sha256,
      size: row.size,
      downloadUrl: `${this.config.PUBLIC_URL}/files/${encodeURIComponent(row.id)}`,
      get ciphertext() {
        return read();
      },
    };
  }

  /** The same as getFile, for the download route: the JWE streams out slice by slice, never whole in memory. */
  async download(u: UserPrincipal, id: string): Promise<FileDownload> {
    const row = await this.openForUser(u, id, "download");
    return { id: row.id, size: row.size, sha256: row.sha256, text: this.ciphertextOf(row) };
  }

  /** Finds the user's file with its content still there, recording the fetch (or its refusal). */
  private async openForUser(u: UserPrincipal, id: string, via: "graphql" | "download"): Promise<PushRow & { descriptor: string; chunked: boolean }> {
    const base: AuditInput = {
      actorType: "USER",
      actorId: u.grantId,
      action: "push.fetch",
      outcome: "SUCCESS",
      applicationId: u.applicationId,
      contractId: u.contractId,
      postboxId: u.postboxId,
    };
    const row = typeof id === "string" && id.length <= 64 ? await this.repo.findFile(id, u.postboxId) : null;
    if (!row) {
      await this.audit.record({ ...base, outcome: "REFUSED", reason: "NOT_FOUND:unknown_push", detail: { requestedPushId: clip(id), via } });
      throw notFound("File", clip(id));
    }
    if (row.descriptor === null) {
      await this.audit.record({ ...base, outcome: "REFUSED", reason: "NOT_FOUND:purged", targetId: row.id, detail: { via } });
      throw new AppError(ErrorCode.NOT_FOUND, `File ${id} was deleted at ${row.purgedAt?.toISOString() ?? "its expiry"} (retention); its content is gone.`);
    }
    // Past its expiry the content is as good as gone, though the sweeper may not have deleted it yet.
    if (row.expiresAt <= new Date()) {
      await this.audit.record({ ...base, outcome: "REFUSED", reason: "NOT_FOUND:expired", targetId: row.id, detail: { via } });
      throw new AppError(ErrorCode.NOT_FOUND, `File ${id} expired at ${row.expiresAt.toISOString()} (retention); its content is being deleted.`);
    }
    await this.audit.record({ ...base, targetId: row.id, detail: { size: row.size, via } });
    return { ...row, descriptor: row.descriptor };
  }

  /** The JWE text: one piece, or an upload's slices read one at a time. */
  private async *ciphertextOf(row: { id: string; chunked: boolean; size: number }): AsyncGenerator<string> {
    if (!row.chunked) {
      const text = await this.repo.readCiphertext(row.id);
      if (text === null) throw new AppError(ErrorCode.NOT_FOUND, `File ${row.id} was deleted while it was being read.`);
      yield text;
      return;
    }
    // The slices end where their lengths reach the file's size; one missing before that
    // was purged meanwhile, and a short body must not pass for the whole file.
    let sent = 0;
    for (let seq = 0; sent < row.size; seq++) {
      const slice = await this.repo.readChunk(row.id, seq);
      if (slice === null) throw new AppError(ErrorCode.NOT_FOUND, `File ${row.id} was deleted while it was being read.`);
      sent += slice.length;
      yield slice;
    }
  }

  /** Marks files DELIVERED. Idempotent: already delivered files are returned unchanged. */
  async acknowledge(u: UserPrincipal, ids: string[]): Promise<PushView[]> {
    const base: AuditInput = {
      actorType: "USER",
      actorId: u.grantId,
      action: "push.deliver",
      outcome: "SUCCESS",
      applicationId: u.applicationId,
      contractId: u.contractId,
      postboxId: u.postboxId,
    };
    const unique = [...new Set(ids)];
    if (unique.length === 0 || unique.length > MAX_ACK || unique.some((id) => typeof id !== "string" || id.length === 0 || id.length > 64)) {
      await this.audit.record({ ...base, outcome: "REFUSED", reason: "BAD_USER_INPUT:bad_ids", detail: { count: ids.length } });
      throw new AppError(ErrorCode.BAD_USER_INPUT, `ids must list 1 to ${MAX_ACK} file ids.`, { field: "ids" });
    }
    const changed: PushStatusPayload[] = [];
    let missing: string | undefined;
    const rows = await this.repo.transaction(async (tx) => {
      const found = await this.repo.lockForDelivery(tx, u.postboxId, unique);
      missing = unique.find((id) => !found.some((r) => r.id === id));
      if (missing) return [];
      const now = new Date();
      const result: PushRow[] = [];
      for (const id of unique) {
        const r = found.find((x) => x.id === id)!;
        if (r.status !== "PENDING") {
          result.push(r);
          continue;
        }
        // Delivered content is kept PUSH_RETENTION longer at most, never past the postbox's expiry.
        const expiresAt = new Date(Math.min(r.expiresAt.getTime(), now.getTime() + this.config.PUSH_RETENTION));
        if ((await this.repo.markDelivered(tx, id, now, expiresAt)) === 0) {
          result.push(r);
          continue;
        }
        await this.audit.record({ ...base, targetId: id }, tx);
        await this.webhooks.enqueue(tx, {
          contractId: r.contractId,
          type: "push.delivered",
          data: { pushId: id, postboxId: r.postboxId, status: "DELIVERED", deliveredAt: now.toISOString(), expiresAt: expiresAt.toISOString() },
        });
        changed.push({ contractId: r.contractId, postboxId: r.postboxId, pushId: id, status: "DELIVERED", at: now.toISOString() });
        result.push({ ...r, status: "DELIVERED", deliveredAt: now, expiresAt });
      }
      return result;
    });
    if (missing) {
      await this.audit.record({ ...base, outcome: "REFUSED", reason: "NOT_FOUND:unknown_push", detail: { requestedPushId: clip(missing), count: unique.length } });
      throw notFound("File", missing);
    }
    for (const p of changed) {
      this.publish(p);
      publishUserEvent(this.pubSub, this.log, { kind: "file", postboxId: p.postboxId, fileId: p.pushId, change: "DELIVERED", at: p.at });
    }
    return rows.map(view);
  }

  private publish(p: PushStatusPayload) {
    try {
      this.pubSub.publish(pushTopic(p.contractId), p as unknown as Record<string, unknown>);
    } catch (err) {
      // The state change is committed; a lost live event is recoverable with the pushes query.
      this.log.warn({ err, pushId: p.pushId }, "could not publish push status");
    }
  }
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
