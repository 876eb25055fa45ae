// Webhooks: one endpoint per contract, and a transactional outbox of deliveries
// that WebhookDispatcher sends. Signed per Standard Webhooks (webhook.signature.ts).
import type { Config } from "../../infra/config.js";
import type { Tx } from "../../infra/db/database.js";
import { AppError, conflict, ErrorCode, notFound } from "../../infra/errors.js";
import { pageRequest, toConnection, type Connection } from "../../infra/graphql/pagination.js";
import { newId } from "../../infra/ids.js";
import { checkOutboundUrl } from "../../infra/url-policy.js";
import type { ActorType, AuditService } from "../audit/audit.service.js";
import type { WebhookEvent } from "./webhook.events.js";
import type { DeliveryWithAttempts, EndpointRow, WebhookRepository } from "./webhook.repository.js";
import { liveRetiredSecrets, newWebhookSecret } from "./webhook.signature.js";
import type { WebhookDispatcher } from "./webhook.worker.js";

export type { WebhookEvent, WebhookEventType } from "./webhook.events.js";

/** Who manages a contract's endpoint: the app through its session, or the operator through the admin API. */
export interface WebhookActor {
  actorType: Extract<ActorType, "APP" | "ADMIN">;
  actorId: string | null;
  contractId: string;
  applicationId: string;
}

export interface WebhookRegistration {
  url: string;
  /** whsec_…: returned here only, never again. */
  secret: string;
  createdAt: Date;
  /** After a rotation: until when deliveries are also signed with the secret it replaced. */
  previousSecretValidUntil?: Date | null;
}

export interface WebhookEndpointView {
  url: string;
  createdAt: Date;
  disabledAt: Date | null;
  disabledReason: string | null;
}

export type DeliveryStatus = "PENDING" | "SUCCEEDED" | "FAILED";
export const MAX_URL_LENGTH = 2048;
/** Finished deliveries deleted per statement (and at most ten statements a run). */
const PRUNE_BATCH = 1000;
/** Replaced secrets that may sign at once (each for WEBHOOK_SECRET_OVERLAP); one more rotation waits or starts over. */
const MAX_RETIRED_SECRETS = 5;

export class WebhookService {
  constructor(
    private readonly repo: WebhookRepository,
    private readonly audit: AuditService,
    private readonly dispatcher: WebhookDispatcher,
    private readonly config: Pick<Config, "ALLOW_PRIVATE_URLS" | "WEBHOOK_SECRET_OVERLAP" | "WEBHOOK_RETENTION">,
  ) {}

  /**
   * Writes a delivery for `event` in the caller's transaction, so it exists exactly
   * when the state change it reports commits. No endpoint, or a disabled one: nothing.
   * It is sent as soon as the transaction commits (and retried from the outbox).
   */
  async enqueue(tx: Tx, event: WebhookEvent): Promise<void> {
    const endpoint = await this.repo.activeEndpoint(tx, event.contractId);
    if (!endpoint) return;
    const now = new Date();
    const id = newId("msg");
    // The exact bytes that are signed and sent, fixed now so every retry is identical.
    const payload = JSON.stringify({ type: event.type, timestamp: now.toISOString(), data: event.data });
    await this.repo.insertDelivery(tx, { id, endpointId: endpoint.id, contractId: event.contractId, eventType: event.type, payload, nextAttemptAt: now, createdAt: now });
    this.dispatcher.watch(id);
  }

  /** Sends what is due now (e.g. after a transaction that enqueued several deliveries). */
  notify(): void {
    this.dispatcher.notify();
  }

  /**
   * Deletes deliveries (and their attempts) WEBHOOK_RETENTION after they finished, in
   * batches (the rest on the next run), so the history does not grow for ever.
   */
  async prune(now: Date): Promise<number> {
    const before = new Date(now.getTime() - this.config.WEBHOOK_RETENTION);
    let deleted = 0;
    for (let i = 0; i < 10; i++) {
      const n = await this.repo.pruneFinished(before, PRUNE_BATCH);
      deleted += n;
      if (n < PRUNE_BATCH) break;
    }
    return deleted;
  }

  /** The delivery worker: sends everything due; resolves when nothing due is left. */
  deliverDue(): Promise<number> {
    return this.dispatcher.run();
  }

  stop(): Promise<void> {
    return this.dispatcher.stop();
  }

  async get(contractId: string): Promise<WebhookEndpointView | null> {
    const row = await this.repo.findEndpoint(contractId);
    return row ? view(row) : null;
  }

  /** The admin API's actor for a contract, or NOT_FOUND. */
  async adminActor(contractId: string): Promise<WebhookActor> {
    const c = await this.repo.findContract(contractId);
    if (!c) throw notFound("Contract", contractId);
    return { actorType: "ADMIN", actorId: null, contractId: c.id, applicationId: c.applicationId };
  }

  /** Registers (or replaces) the contract's endpoint with a fresh secret, enabled. */
  async setEndpoint(actor: WebhookActor, rawUrl: unknown): Promise<WebhookRegistration> {
    let url: string;
    try {
      if (typeof rawUrl !== "string" || rawUrl.length === 0) throw new AppError(ErrorCode.BAD_USER_INPUT, "url is required: the http(s) address that will receive webhook POSTs.", { field: "url" });
      if (rawUrl.length > MAX_URL_LENGTH) throw new AppError(ErrorCode.BAD_USER_INPUT, `url is too long (${MAX_URL_LENGTH} characters at most).`, { field: "url" });
      url = checkOutboundUrl(rawUrl, "url", this.config.ALLOW_PRIVATE_URLS);
    } catch (e) {
      if (e instanceof AppError) await this.refused(actor, "webhook.set", e);
      throw e;
    }
    const secret = newWebhookSecret();
    const row = await this.repo.transaction(async (tx) => {
      const r = await this.repo.upsertEndpoint(tx, { id: newId("whe"), contractId: actor.contractId, url, secret, at: new Date() });
      await this.audit.record({ ...this.auditBase(actor, "webhook.set"), targetId: r.id, detail: { origin: origin(r.url) } }, tx);
      return r;
    });
    return { url: row.url, secret, createdAt: row.createdAt };
  }

  /**
   * A new secret for the existing endpoint, signing every attempt from now on; the
   * previous one signs too (a second signature) for WEBHOOK_SECRET_OVERLAP.
   */
  async rotateSecret(actor: WebhookActor): Promise<WebhookRegistration> {
    const secret = newWebhookSecret();
    const now = new Date();
    const until = new Date(now.getTime() + this.config.WEBHOOK_SECRET_OVERLAP);
    const out = await this.repo.transaction(async (tx) => {
      const row = await this.repo.lockEndpoint(tx, actor.contractId);
      if (!row) return noEndpoint();
      // Every secret still in its overlap keeps signing: the receiver may be on any of them
      // (say the response that showed the last one was lost, and the call was repeated).
      const live = liveRetiredSecrets(row.retiredSecrets, now);
      if (live.length >= MAX_RETIRED_SECRETS) {
        return conflict(
          `${MAX_RETIRED_SECRETS} secrets replaced within WEBHOOK_SECRET_OVERLAP still sign every delivery; the oldest stops on ${live[0].until}. Rotate after that, or call setWebhook to start over with one new secret.`,
        );
      }
      const r = await this.repo.setSecrets(tx, row.id, secret, [...live, { secret: row.secret, until: until.toISOString() }]);
      await this.audit.record({ ...this.auditBase(actor, "webhook.rotate_secret"), targetId: r.id }, tx);
      return r;
    });
    if (out instanceof AppError) {
      await this.refused(actor, "webhook.rotate_secret", out);
      throw out;
    }
    return { url: out.url, secret, createdAt: out.createdAt, previousSecretValidUntil: until };
  }

  /** Removes the endpoint together with its delivery history. */
  async deleteEndpoint(actor: WebhookActor): Promise<boolean> {
    const row = await this.repo.transaction(async (tx) => {
      const r = await this.repo.deleteEndpoint(tx, actor.contractId);
      if (r) await this.audit.record({ ...this.auditBase(actor, "webhook.delete"), targetId: r.id, detail: { origin: origin(r.url) } }, tx);
      return r;
    });
    if (!row) {
      const e = noEndpoint();
      await this.refused(actor, "webhook.delete", e);
      throw e;
    }
    return true;
  }

  async deliveries(contractId: string, args: { first?: number | null; after?: string | null; status?: DeliveryStatus | null }): Promise<Connection<DeliveryWithAttempts>> {
    const page = pageRequest(args.first, args.after);
    const rows = await this.repo.listDeliveries(contractId, { status: args.status ?? undefined, take: page.take, after: page.after });
    return toConnection(rows, page, (r) => r);
  }

  private auditBase(actor: WebhookActor, action: string) {
    return { actorType: actor.actorType, actorId: actor.actorId, action, outcome: "SUCCESS" as const, applicationId: actor.applicationId, contractId: actor.contractId };
  }

  private refused(actor: WebhookActor, action: string, e: AppError) {
    return this.audit.record({ ...this.auditBase(actor, action), outcome: "REFUSED", reason: `${e.code}:${REFUSAL_REASONS[e.code] ?? "invalid_url"}` });
  }
}

const REFUSAL_REASONS: Partial<Record<string, string>> = { [ErrorCode.NOT_FOUND]: "no_endpoint", [ErrorCode.CONFLICT]: "too_many_secrets" };

function noEndpoint() {
  return new AppError(ErrorCode.NOT_FOUND, "No webhook is registered for this contract; register one with setWebhook(url).");
}

/** Only scheme, host and port go into the audit log: a URL's path or query may carry the receiver's own token. */
function origin(url: string): string {
  return new URL(url).origin;
}

function view(row: EndpointRow): WebhookEndpointView {
  return { url: row.url, createdAt: row.createdAt, disabledAt: row.disabledAt, disabledReason: row.disabledReason };
}
