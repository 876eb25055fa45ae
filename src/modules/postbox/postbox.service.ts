// Postbox lifecycle: creation by an application, consent by the user (the
// consent code is the user's only credential until acceptance), the status
// machine, expiry, and status events.
//
// Every status change goes through transition(): one conditional UPDATE … WHERE
// status = <expected> whose row count decides who won, so a postbox changes
// status once even with concurrent requests or several instances sweeping. The
// audit event, the webhook outbox row and grant revocation are written in that
// same transaction; the pub/sub event is published after it commits.
import { UNSAFE_DISPLAY_CHARS, UNSAFE_DISPLAY_CHARS_NOTE } from "../../infra/display-text.js";
import { randomBytes } from "node:crypto";
import { Repeater } from "@graphql-yoga/subscription";
import type { JWK } from "jose";
import type { Config } from "../../infra/config.js";
import { clipText } from "../../infra/text.js";
import { sha256Hex } from "../../infra/crypto.js";
import type { Tx } from "../../infra/db/database.js";
import { AppError, ErrorCode, badInput, conflict, forbidden, notFound } from "../../infra/errors.js";
import type { SessionPrincipal, UserPrincipal } from "../../infra/graphql/context.js";
import { pageRequest, toConnection, type Connection } from "../../infra/graphql/pagination.js";
import { newId } from "../../infra/ids.js";
import type { Logger } from "../../infra/logger.js";
import type { AppPubSub } from "../../infra/pubsub.js";
import { checkOutboundUrl } from "../../infra/url-policy.js";
import type { ActorType, AuditService, DetailValue } from "../audit/audit.service.js";
import type { SessionEnds } from "../session/session.events.js";
import type { IssuedCredential, UserService } from "../user/user.service.js";
import type { WebhookService } from "../webhook/webhook.service.js";
import { StatusHub, WEBHOOK_TYPE, contractTopic, isFinal, statusRank, type PostboxStatusPayload } from "./postbox.events.js";
import { CONTENT_ENCRYPTION, ENCRYPTION_ALGS, KeyRefusal, parseUserPublicKey } from "./postbox.keys.js";
import type { PostboxRepository, PostboxRow, PostboxWithContract } from "./postbox.repository.js";
import type { ConsentRequest, Postbox, PostboxMode, PostboxStatus } from "./postbox.types.js";
import { publishUserEvent } from "../user/user.events.js";

const CODE_BYTES = 32; // 256 bits
const CODE_RE = /^[A-Za-z0-9_-]{43}$/;

const MIN_TTL_SECONDS = 60;
const SWEEP_BATCH = 100;
const SWEEP_MAX_BATCHES = 50;

export interface CreatePostboxInput {
  reference?: string | null;
  callbackUrl?: string | null;
  expiresInSeconds?: number | null;
}

export interface PostboxDeps {
  repo: PostboxRepository;
  audit: AuditService;
  users: UserService;
  webhooks: Pick<WebhookService, "enqueue">;
  pubSub: AppPubSub;
  config: Config;
  log: Logger;
  sessionEnds: SessionEnds;
}

export interface AcceptResult {
  postboxId: string;
  status: PostboxStatus;
  publicKeyThumbprint: string;
  credential: IssuedCredential;
  redirectUrl: string | null;
}

export interface DeclineResult {
  postboxId: string;
  status: PostboxStatus;
  redirectUrl: string | null;
}

/** The user's view of their postbox (`myPostbox`). */
export interface UserPostboxView {
  id: string;
  status: PostboxStatus;
  expiresAt: Date;
  readyAt: Date | null;
  applicationName: string;
  contractId: string;
  publicKeyThumbprint: string | null;
  keyAlg: string | null;
}

interface Actor {
  type: ActorType;
  id: string | null;
}

interface Owner {
  id: string;
  contractId: string;
  applicationId: string;
  reference: string | null;
}

/** A refusal with its audit reason and whatever is known about the postbox. */
class Refusal extends Error {
  constructor(readonly error: AppError, readonly reason: string, readonly postbox?: Owner) {
    super(error.message);
  }
}

const expired = (msg: string) => new AppError(ErrorCode.POSTBOX_EXPIRED, msg);

/** True when `url` is on the allow-list: equal to an entry, or under an entry that ends in "/". */
export function callbackAllowed(url: string, allowList: readonly string[]): boolean {
  let target: string;
  try {
    target = new URL(url).toString();
  } catch {
    return false;
  }
  return allowList.some((entry) => {
    let e: string;
    try {
      e = new URL(entry).toString();
    } catch {
      return false;
    }
    return e.endsWith("/") ? target.startsWith(e) : target === e;
  });
}

/** callbackUrl with the outcome added (any postboxId/result already there is replaced). */
export function redirectUrl(callbackUrl: string | null, postboxId: string, result: "ACCEPTED" | "DECLINED"): string | null {
  if (!callbackUrl) return null;
  const u = new URL(callbackUrl);
  u.searchParams.set("postboxId", postboxId);
  u.searchParams.set("result", result);
  return u.toString();
}

export function toPostbox(row: PostboxRow, consentUrl: string | null = null): Postbox {
  const jwk = row.publicJwk as (JWK & Record<string, unknown>) | null;
  return {
    id: row.id,
    status: row.status,
    reference: row.reference,
    callbackUrl: row.callbackUrl,
    consentUrl,
    consentExpiresAt: row.consentExpiresAt,
    expiresAt: row.expiresAt,
    createdAt: row.createdAt,
    readyAt: row.readyAt,
    closedAt: row.closedAt,
    publicKey: jwk
      ? { kid: row.publicKeyThumbprint ?? String(jwk.kid), alg: row.keyAlg ?? String(jwk.alg), enc: CONTENT_ENCRYPTION, kty: String(jwk.kty), crv: typeof jwk.crv === "string" ? jwk.crv : null, jwk }
      : null,
  };
}

/** When the postbox entered its current status (the first event of a postboxId subscription). */
function statusSince(row: PostboxRow): Date {
  if (row.status === "PENDING") return row.createdAt;
  if (row.status === "READY") return row.readyAt ?? row.updatedAt;
  if (row.status === "CLOSED") return row.closedAt ?? row.updatedAt;
  return row.updatedAt;
}

export class PostboxService {
  private openStreams = 0;
  private readonly hub: StatusHub;

  constructor(private readonly d: PostboxDeps) {
    this.hub = new StatusHub(d.pubSub, (err) => d.log.error({ err }, "delivering a postbox status event failed"));
  }

  /** Status subscriptions currently open on this instance (tests wait on it to know a stream is live). */
  get openSubscriptions(): number {
    return this.openStreams;
  }

  // ---- application side -------------------------------------------------

  async create(session: SessionPrincipal, input: CreatePostboxInput): Promise<Postbox> {
    try {
      return await this.doCreate(session, input);
    } catch (e) {
      if (!(e instanceof Refusal)) throw e;
      await this.d.audit.record({
        actorType: "APP",
        actorId: session.applicationId,
        action: "postbox.create",
        outcome: "REFUSED",
        reason: `${e.error.code}:${e.reason}`,
        applicationId: session.applicationId,
        contractId: session.contractId,
      });
      throw e.error;
    }
  }

  private async doCreate(session: SessionPrincipal, input: CreatePostboxInput): Promise<Postbox> {
    if (session.contractKind !== "WRITE") {
      throw new Refusal(forbidden("Postboxes are created with a session of a WRITE contract; this session belongs to a READ contract."), "not_write_contract");
    }
    const contract = await this.d.repo.findContract(session.contractId);
    if (!contract) throw new Refusal(notFound("Contract", session.contractId), "unknown_contract");

    const reference = input.reference ?? null;
    // Shown to the user on the consent page ("Your account"): it must read as what it is.
    if (reference !== null && (reference.length < 1 || reference.length > 200 || UNSAFE_DISPLAY_CHARS.test(reference))) {
      throw new Refusal(badInput(`reference must be 1–200 characters without ${UNSAFE_DISPLAY_CHARS_NOTE}.`, "reference"), "bad_reference");
    }

    let callbackUrl: string | null = null;
    if (input.callbackUrl != null) {
      if (input.callbackUrl.length > 2048) throw new Refusal(badInput("callbackUrl is too long (2048 characters at most).", "callbackUrl"), "bad_callback_url");
      try {
        callbackUrl = checkOutboundUrl(input.callbackUrl, "callbackUrl", this.d.config.ALLOW_PRIVATE_URLS);
      } catch (e) {
        if (e instanceof AppError) throw new Refusal(e, "bad_callback_url");
        throw e;
      }
      if (contract.callbackUrls.length === 0) {
        throw new Refusal(
          badInput("This contract has no callback URLs registered, so callbackUrl cannot be used. Leave it out, or ask the operator to register one (contract callbackUrls).", "callbackUrl"),
          "callback_not_allowed",
        );
      }
      if (!callbackAllowed(callbackUrl, contract.callbackUrls)) {
        throw new Refusal(
          badInput(`callbackUrl is not on this contract's allow-list (${contract.callbackUrls.join(", ")}); entries ending in "/" allow any URL under them.`, "callbackUrl"),
          "callback_not_allowed",
        );
      }
    }

    const maxSeconds = Math.floor(this.d.config.POSTBOX_MAX_TTL / 1000);
    let ttlSeconds = contract.postboxTtlSeconds;
    if (input.expiresInSeconds != null) {
      const s = input.expiresInSeconds;
      if (!Number.isInteger(s) || s < MIN_TTL_SECONDS || s > maxSeconds) {
        throw new Refusal(badInput(`expiresInSeconds must be a whole number from ${MIN_TTL_SECONDS} to ${maxSeconds} (POSTBOX_MAX_TTL).`, "expiresInSeconds"), "bad_ttl");
      }
      ttlSeconds = s;
    }
    ttlSeconds = Math.min(ttlSeconds, maxSeconds);

    const now = new Date();
    const expiresAt = new Date(now.getTime() + ttlSeconds * 1000);
    const consentExpiresAt = new Date(Math.min(now.getTime() + this.d.config.CONSENT_TTL, expiresAt.getTime()));
    const code = randomBytes(CODE_BYTES).toString("base64url");
    const id = newId("pbx");
    const row = await this.d.repo.transaction(async (tx) => {
      const created = await this.d.repo.create(tx, {
        id,
        contractId: session.contractId,
        status: "PENDING",
        reference,
        callbackUrl,
        consentCodeHash: sha256Hex(code),
        consentExpiresAt,
        expiresAt,
        createdAt: now,
      });
      await this.d.audit.record(
        {
          actorType: "APP",
          actorId: session.applicationId,
          action: "postbox.create",
          outcome: "SUCCESS",
          applicationId: session.applicationId,
          contractId: session.contractId,
          postboxId: id,
          detail: { ttlSeconds, hasCallback: callbackUrl !== null, hasReference: reference !== null },
        },
        tx,
      );
      return created;
    });
    return toPostbox(row, `${this.d.config.PUBLIC_URL}/consent/${code}`);
  }

  async get(session: SessionPrincipal, id: string): Promise<Postbox> {
    const row = await this.d.repo.findForContract(id, session.contractId);
    if (!row) throw notFound("Postbox", id);
    return toPostbox(row);
  }

  async list(session: SessionPrincipal, status: PostboxStatus | undefined, first?: number | null, after?: string | null): Promise<Connection<Postbox>> {
    const page = pageRequest(first, after);
    const rows = await this.d.repo.list(session.contractId, status, page.take, page.after);
    return toConnection(rows, page, (r) => toPostbox(r));
  }

  async closeByApp(session: SessionPrincipal, id: string): Promise<Postbox> {
    const actor: Actor = { type: "APP", id: session.applicationId };
    try {
      const row = await this.d.repo.findForContract(id, session.contractId);
      if (!row) throw new Refusal(notFound("Postbox", id), "not_found");
      return await this.close(row, { id: row.id, contractId: row.contractId, applicationId: session.applicationId, reference: row.reference }, actor, "closed_by_application");
    } catch (e) {
      throw await this.audited(e, actor, "postbox.close", { applicationId: session.applicationId, contractId: session.contractId, targetId: clipText(id, 64) });
    }
  }

  // ---- user side ----------------------------------------------------------

  async consentRequest(code: string): Promise<ConsentRequest> {
    const pb = await this.findByCode(code);
    if (!pb) throw unknownCode();
    const now = Date.now();
    return {
      postboxId: pb.id,
      applicationName: pb.contract.application.name,
      contractId: pb.contract.id,
      contractKind: pb.contract.kind,
      postboxMode: pb.contract.postboxMode as PostboxMode,
      reference: pb.reference,
      status: pb.status,
      canRespond: pb.status === "PENDING" && pb.consentExpiresAt.getTime() > now && pb.expiresAt.getTime() > now && !pb.contract.disabledAt && !pb.contract.application.disabledAt,
      consentExpiresAt: pb.consentExpiresAt,
      expiresAt: pb.expiresAt,
      hasCallback: pb.callbackUrl !== null,
      acceptedAlgorithms: [...ENCRYPTION_ALGS],
    };
  }

  async accept(input: { code: string; publicKey: unknown }): Promise<AcceptResult> {
    const actor: Actor = { type: "USER", id: null };
    try {
      const pb = await this.findByCode(input.code);
      if (!pb) throw new Refusal(unknownCode(), "unknown_code");
      const owner = ownerOf(pb);
      const now = new Date();
      this.assertRespondable(pb, now, owner);
      let key;
      try {
        key = await parseUserPublicKey(input.publicKey);
      } catch (e) {
        if (e instanceof KeyRefusal) throw new Refusal(badInput(e.message, "publicKey"), e.reason, owner);
        throw e;
      }
      const done = await this.transition(owner, {
        from: "PENDING",
        to: "READY",
        now,
        where: { consentExpiresAt: { gt: now }, expiresAt: { gt: now } },
        data: { publicJwk: key.publicJwk as object, publicKeyThumbprint: key.kid, keyAlg: key.alg, readyAt: now },
        actor,
        action: "postbox.accept",
        detail: { keyAlg: key.alg, kid: key.kid },
        webhookData: { keyId: key.kid },
        inTx: (tx) => this.d.users.issueGrant(tx, pb.id, pb.expiresAt, now),
      });
      if (!done) throw await this.lostRace(pb.id, now, owner);
      const { grantId: _grantId, ...credential } = done.result;
      return { postboxId: pb.id, status: "READY", publicKeyThumbprint: key.kid, credential, redirectUrl: redirectUrl(pb.callbackUrl, pb.id, "ACCEPTED") };
    } catch (e) {
      throw await this.audited(e, actor, "postbox.accept");
    }
  }

  async decline(input: { code: string }): Promise<DeclineResult> {
    const actor: Actor = { type: "USER", id: null };
    try {
      const pb = await this.findByCode(input.code);
      if (!pb) throw new Refusal(unknownCode(), "unknown_code");
      const owner = ownerOf(pb);
      const now = new Date();
      this.assertRespondable(pb, now, owner);
      const done = await this.transition(owner, {
        from: "PENDING",
        to: "DECLINED",
        now,
        where: { consentExpiresAt: { gt: now }, expiresAt: { gt: now } },
        actor,
        action: "postbox.decline",
      });
      if (!done) throw await this.lostRace(pb.id, now, owner);
      return { postboxId: pb.id, status: "DECLINED", redirectUrl: redirectUrl(pb.callbackUrl, pb.id, "DECLINED") };
    } catch (e) {
      throw await this.audited(e, actor, "postbox.decline");
    }
  }

  async getForUser(user: UserPrincipal): Promise<UserPostboxView> {
    const pb = await this.d.repo.findWithContract(user.postboxId);
    if (!pb) throw notFound("Postbox", user.postboxId);
    return {
      id: pb.id,
      status: pb.status,
      expiresAt: pb.expiresAt,
      readyAt: pb.readyAt,
      applicationName: pb.contract.application.name,
      contractId: pb.contractId,
      publicKeyThumbprint: pb.publicKeyThumbprint,
      keyAlg: pb.keyAlg,
    };
  }

  async closeByUser(user: UserPrincipal): Promise<UserPostboxView> {
    const actor: Actor = { type: "USER", id: user.grantId };
    try {
      const row = await this.d.repo.findForContract(user.postboxId, user.contractId);
      if (!row) throw new Refusal(notFound("Postbox", user.postboxId), "not_found");
      await this.close(row, { id: row.id, contractId: row.contractId, applicationId: user.applicationId, reference: row.reference }, actor, "closed_by_user");
      return await this.getForUser(user);
    } catch (e) {
      throw await this.audited(e, actor, "postbox.close", { applicationId: user.applicationId, contractId: user.contractId, postboxId: user.postboxId });
    }
  }

  // ---- background -------------------------------------------------------

  /**
   * Expires postboxes whose consent link or lifetime has run out. Safe with
   * several instances: each row's conditional update succeeds on one of them.
   */
  async sweep(now = new Date()): Promise<number> {
    let count = 0;
    for (let batch = 0; batch < SWEEP_MAX_BATCHES; batch++) {
      const due = await this.d.repo.findDue(now, SWEEP_BATCH);
      for (const pb of due) {
        const consentOnly = pb.status === "PENDING" && pb.expiresAt > now;
        const done = await this.transition(
          { id: pb.id, contractId: pb.contractId, applicationId: pb.contract.applicationId, reference: pb.reference },
          {
            from: pb.status,
            to: "EXPIRED",
            now,
            where: pb.status === "PENDING" ? { OR: [{ consentExpiresAt: { lte: now } }, { expiresAt: { lte: now } }] } : { expiresAt: { lte: now } },
            actor: { type: "SYSTEM", id: null },
            action: "postbox.expire",
            detail: { reason: consentOnly ? "consent_expired" : "lifetime_ended" },
            webhookData: { reason: consentOnly ? "consent_expired" : "lifetime_ended" },
          },
        );
        if (done) count++;
      }
      if (due.length < SWEEP_BATCH) break;
    }
    if (count) this.d.log.info({ expired: count }, "postboxes expired");
    return count;
  }

  // ---- subscriptions ----------------------------------------------------

  /**
   * Status events of the session's contract, optionally of one postbox. With a
   * postboxId the first event is the postbox's current status, so a client that
   * subscribes late still learns it; the stream then ends after a final status.
   * Every stream ends when the session does (expiry, endSession, application disabled).
   */
  async subscribe(session: SessionPrincipal, postboxId?: string | null): Promise<AsyncIterable<PostboxStatusPayload>> {
    if (postboxId != null && !(await this.d.repo.findForContract(postboxId, session.contractId))) throw notFound("Postbox", postboxId);
    const contractId = session.contractId;
    return new Repeater<PostboxStatusPayload>(async (push, stop) => {
      let lastRank = -1;
      const deliver = (p: PostboxStatusPayload) => {
        if (postboxId != null) {
          // Statuses only move forward: anything the snapshot (or an earlier event) already covered is dropped.
          if (statusRank(p.status) <= lastRank) return;
          lastRank = statusRank(p.status);
        }
        try {
          push(p).catch(() => {});
        } catch {
          // The client stopped reading (over a thousand events queued): end the stream rather than grow without bound.
          return void stop();
        }
        if (postboxId != null && isFinal(p.status)) stop();
      };
      // Listen before reading the snapshot, holding events until it has been sent, so no change falls in between.
      let held: PostboxStatusPayload[] | null = postboxId != null ? [] : null;
      const unlisten = this.hub.listen(contractId, postboxId ?? null, (p) => (held ? held.push(p) : deliver(p)));
      this.openStreams++;
      const cancelEnd = this.d.sessionEnds.watch(session, () => void stop());
      void stop.then(() => {
        cancelEnd();
        unlisten();
        this.openStreams--;
      });

      // With Redis: a READY from another instance cannot fall before the snapshot; and a
      // stream opened while Redis is unreachable ends with an error rather than staying deaf.
      await this.hub.ready(contractId);
      if (postboxId != null) {
        const row = await this.d.repo.findForContract(postboxId, contractId);
        if (!row) return void stop();
        deliver({ contractId, postboxId: row.id, status: row.status, previousStatus: null, at: statusSince(row).toISOString() });
        const queued = held ?? [];
        held = null;
        for (const p of queued) deliver(p);
      }
      await stop;
    });
  }

  // ---- internals --------------------------------------------------------

  private async findByCode(code: string): Promise<PostboxWithContract | null> {
    if (typeof code !== "string" || !CODE_RE.test(code)) return null;
    return this.d.repo.findByCodeHash(sha256Hex(code));
  }

  private assertRespondable(pb: PostboxWithContract, now: Date, owner: Owner) {
    if (pb.status === "EXPIRED") throw new Refusal(expired("This consent link has expired. Ask the application for a new one."), "expired", owner);
    if (pb.status !== "PENDING") throw new Refusal(conflict(`This consent link was already used: the postbox is ${pb.status}.`), "code_used", owner);
    if (pb.contract.disabledAt || pb.contract.application.disabledAt) {
      throw new Refusal(forbidden(`${pb.contract.application.name} is disabled on this server; the postbox cannot be accepted or declined.`), "application_disabled", owner);
    }
    if (pb.consentExpiresAt <= now || pb.expiresAt <= now) {
      throw new Refusal(expired(`This consent link expired at ${pb.consentExpiresAt.toISOString()}. Ask ${pb.contract.application.name} for a new one.`), "code_expired", owner);
    }
  }

  /** The conditional update found nothing to change: say why, from the row as it is now. */
  private async lostRace(id: string, now: Date, owner: Owner): Promise<Refusal> {
    const fresh = await this.d.repo.findWithContract(id);
    if (fresh) {
      try {
        this.assertRespondable(fresh, now, owner);
      } catch (e) {
        if (e instanceof Refusal) return e;
        throw e;
      }
    }
    return new Refusal(conflict("The postbox changed while this request ran; reload it and retry."), "concurrent_change", owner);
  }

  private async close(row: PostboxRow, owner: Owner, actor: Actor, reason: string): Promise<Postbox> {
    if (row.status !== "READY") {
      throw new Refusal(conflict(`Postbox ${row.id} is ${row.status}; only a READY postbox can be closed.`), "illegal_transition", owner);
    }
    const now = new Date();
    // Past its expiry (the sweeper has not got to it yet) it is over already, and its end is the expiry's.
    const over = () => new Refusal(expired(`Postbox ${row.id} expired at ${row.expiresAt.toISOString()}; there is nothing left to close.`), "expired", owner);
    if (row.expiresAt <= now) throw over();
    const done = await this.transition(owner, {
      from: "READY",
      to: "CLOSED",
      now,
      where: { expiresAt: { gt: now } },
      data: { closedAt: now },
      actor,
      action: "postbox.close",
      detail: { reason },
      webhookData: { reason },
    });
    const fresh = await this.d.repo.findForContract(row.id, row.contractId);
    if (!done && fresh?.status === "READY" && fresh.expiresAt <= now) throw over();
    if (!done) {
      throw new Refusal(conflict(`Postbox ${row.id} is ${fresh?.status ?? "gone"}; only a READY postbox can be closed.`), "illegal_transition", owner);
    }
    return toPostbox(fresh!);
  }

  private async transition<T = undefined>(
    owner: Owner,
    t: {
      from: PostboxStatus;
      to: PostboxStatus;
      now: Date;
      where?: Parameters<PostboxRepository["transition"]>[3];
      data?: Parameters<PostboxRepository["transition"]>[4];
      actor: Actor;
      action: string;
      detail?: Record<string, DetailValue>;
      webhookData?: Record<string, unknown>;
      inTx?: (tx: Tx) => Promise<T>;
    },
  ): Promise<{ result: T } | undefined> {
    const done = await this.d.repo.transaction(async (tx) => {
      const n = await this.d.repo.transition(tx, owner.id, t.from, t.where ?? {}, { ...t.data, status: t.to });
      if (n !== 1) return undefined;
      if (t.to === "CLOSED" || t.to === "EXPIRED") await this.d.users.revokeForPostbox(tx, owner.id, t.now);
      const result = (t.inTx ? await t.inTx(tx) : undefined) as T;
      await this.d.audit.record(
        {
          actorType: t.actor.type,
          actorId: t.actor.id,
          action: t.action,
          outcome: "SUCCESS",
          applicationId: owner.applicationId,
          contractId: owner.contractId,
          postboxId: owner.id,
          detail: { from: t.from, to: t.to, ...t.detail },
        },
        tx,
      );
      const type = WEBHOOK_TYPE[t.to];
      if (type) {
        await this.d.webhooks.enqueue(tx, {
          contractId: owner.contractId,
          type,
          data: { postboxId: owner.id, reference: owner.reference, status: t.to, previousStatus: t.from, ...t.webhookData },
        });
      }
      return { result };
    });
    if (done) {
      this.publish({ contractId: owner.contractId, postboxId: owner.id, status: t.to, previousStatus: t.from, at: t.now.toISOString() });
      // Its grants were revoked with it: the user's live streams end.
      if (t.to === "CLOSED" || t.to === "EXPIRED") publishUserEvent(this.d.pubSub, this.d.log, { kind: "access", postboxId: owner.id });
    }
    return done;
  }

  private publish(payload: PostboxStatusPayload) {
    try {
      this.d.pubSub.publish(contractTopic(payload.contractId), payload as unknown as Record<string, unknown>);
    } catch (err) {
      // The change is committed (and its webhook queued); a lost live event must not fail the request.
      this.d.log.error({ err, postboxId: payload.postboxId }, "publishing a postbox status event failed");
    }
  }

  /** Records a refusal's audit event and returns the error to throw; other errors pass through. */
  private async audited(e: unknown, actor: Actor, action: string, ids: { applicationId?: string; contractId?: string; postboxId?: string; targetId?: string } = {}): Promise<unknown> {
    if (!(e instanceof Refusal)) return e;
    await this.d.audit.record({
      actorType: actor.type,
      actorId: actor.id,
      action,
      outcome: "REFUSED",
      reason: `${e.error.code}:${e.reason}`,
      applicationId: e.postbox?.applicationId ?? ids.applicationId ?? null,
      contractId: e.postbox?.contractId ?? ids.contractId ?? null,
      postboxId: e.postbox?.id ?? ids.postboxId ?? null,
      targetId: ids.targetId ?? null,
    });
    return e.error;
  }
}

function unknownCode() {
  return new AppError(ErrorCode.NOT_FOUND, "This consent link is not valid: its code is unknown. Check that the whole link was copied.");
}

function ownerOf(pb: PostboxWithContract): Owner {
  return { id: pb.id, contractId: pb.contractId, applicationId: pb.contract.applicationId, reference: pb.reference };
}
