// When an application's session stops being valid for its open subscriptions:
// at its expiry, when it is ended (endSession), when its application is disabled,
// or when its contract's key is rotated. All but expiry are announced on the bus, so
// that a subscription held by another instance ends too (with REDIS_URL).
import type { SessionPrincipal } from "../../infra/graphql/context.js";
import { endAtExpiry } from "../../infra/graphql/session-stream.js";
import type { Logger } from "../../infra/logger.js";
import type { AppPubSub } from "../../infra/pubsub.js";

export const SESSION_ENDED_TOPIC = "SESSION_ENDED";

/** One of the three: a session ended, every session of a contract, or of an application. */
export interface SessionEndedPayload {
  sessionId?: string;
  contractId?: string;
  applicationId?: string;
}

/** The watchers' key of an end: "s:<sessionId>", "c:<contractId>" or "a:<applicationId>". */
function keyOf(p: SessionEndedPayload): string | undefined {
  if (typeof p.sessionId === "string") return `s:${p.sessionId}`;
  if (typeof p.contractId === "string") return `c:${p.contractId}`;
  if (typeof p.applicationId === "string") return `a:${p.applicationId}`;
  return undefined;
}

export class SessionEnds {
  /** keyOf(an end) → the end callbacks of open streams. */
  private readonly watchers = new Map<string, Set<() => void>>();
  /** Told of every end, local or from the bus (the session cache forgets the session). */
  private readonly listeners: ((p: SessionEndedPayload) => void)[] = [];

  /**
   * `isLive` reads whether a session is still valid in the database (not ended, not
   * expired, its application and contract enabled); watch() asks it once the watcher is
   * registered, for an end that came before (see there).
   */
  constructor(
    private readonly pubSub: AppPubSub,
    private readonly log: Logger,
    private readonly isLive: (sessionId: string) => Promise<boolean>,
  ) {
    // At once, not with the first stream: with Redis, SUBSCRIBE takes a round trip, and
    // an end announced during it would be missed.
    this.listen();
  }

  /**
   * Calls `end` once, when the session expires, is ended or loses its application or key;
   * returns the cancel function. A stream authenticates, then reads (its postbox, its
   * prelude…) before it gets here: an end announced in between found no watcher, so once
   * this one is registered the session is read again, and ended streams end at once.
   */
  watch(s: Pick<SessionPrincipal, "sessionId" | "contractId" | "applicationId" | "expiresAt">, end: () => void): () => void {
    const keys = [keyOf({ sessionId: s.sessionId }), keyOf({ contractId: s.contractId }), keyOf({ applicationId: s.applicationId })] as string[];
    let done = false;
    let cancelExpiry = () => {};
    const cancel = () => {
      done = true;
      cancelExpiry();
      for (const k of keys) {
        const set = this.watchers.get(k);
        set?.delete(fire);
        if (set?.size === 0) this.watchers.delete(k);
      }
    };
    const fire = () => {
      if (done) return;
      cancel();
      end();
    };
    for (const k of keys) {
      const set = this.watchers.get(k) ?? new Set();
      set.add(fire);
      this.watchers.set(k, set);
    }
    // Last: a session already expired ends here, at once, through fire (which needs cancel).
    cancelExpiry = endAtExpiry(s.expiresAt, fire);
    if (!done) {
      this.isLive(s.sessionId).then(
        (live) => live || fire(),
        // Unknown: it still ends at its expiry, or with the next end announced.
        (err) => this.log.warn({ err, sessionId: s.sessionId }, "could not re-read a session for its stream"),
      );
    }
    return cancel;
  }

  /** Calls `listener` for every end announced, on this instance (at once) or on another (through the bus). */
  onEnded(listener: (p: SessionEndedPayload) => void): void {
    this.listeners.push(listener);
  }

  /** Ends the matching streams on every instance; call after the change has committed. */
  announce(p: SessionEndedPayload): void {
    // Here at once and without the bus: with Redis down a publish is lost, and this
    // instance's streams must not outlive the end for that. The bus brings it to the
    // others (and back here, where those streams have already ended: fire runs once).
    this.ended(p);
    const lost = (err: unknown) => this.log.warn({ err }, "could not announce an ended session");
    try {
      // The library's publish returns nothing; a bus whose publish is async may reject.
      const sent: unknown = this.pubSub.publish(SESSION_ENDED_TOPIC, { ...p });
      if (sent instanceof Promise) sent.catch(lost);
    } catch (err) {
      // The change is committed; streams elsewhere still end at the session's expiry.
      lost(err);
    }
  }

  /** An end, announced here or heard on the bus: the listeners, then the matching streams. */
  private ended(p: SessionEndedPayload): void {
    for (const l of this.listeners) l(p);
    const key = keyOf(p);
    for (const fire of [...(key ? (this.watchers.get(key) ?? []) : [])]) fire();
  }

  /** One bus subscription per instance, for its lifetime. */
  private listen(): void {
    // Lives as long as the process (with Redis, closing the pub/sub connection ends it).
    const it = this.pubSub.subscribe(SESSION_ENDED_TOPIC)[Symbol.asyncIterator]();
    void (async () => {
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        this.ended(r.value as SessionEndedPayload);
      }
    })().catch((err) => this.log.error({ err }, "session end listener failed"));
  }
}
