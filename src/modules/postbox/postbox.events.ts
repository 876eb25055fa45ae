// The POSTBOX_STATUS pub/sub topic (docs/design.md "Events") and the webhook
// event type of each transition. Payloads are JSON-safe because with REDIS_URL
// they travel as JSON between instances.
import type { AppPubSub } from "../../infra/pubsub.js";
import type { WebhookEventType } from "../webhook/webhook.service.js";
import type { PostboxStatus } from "./postbox.types.js";

export const POSTBOX_STATUS_TOPIC = "POSTBOX_STATUS";

/**
 * Events are routed per contract ("POSTBOX_STATUS:<contractId>", one Redis
 * channel each), so a subscriber only wakes for its own contract's changes.
 */
export function contractTopic(contractId: string): string {
  return `${POSTBOX_STATUS_TOPIC}:${contractId}`;
}

export interface PostboxStatusPayload {
  contractId: string;
  postboxId: string;
  status: PostboxStatus;
  previousStatus: PostboxStatus | null;
  /** ISO time of the transition. */
  at: string;
}

export const WEBHOOK_TYPE: Partial<Record<PostboxStatus, WebhookEventType>> = {
  READY: "postbox.ready",
  DECLINED: "postbox.declined",
  EXPIRED: "postbox.expired",
  CLOSED: "postbox.closed",
};

// Each transition moves a postbox forward (PENDING → READY → a final status), so
// within one postbox a later event always has a higher rank.
const RANK: Record<PostboxStatus, number> = { PENDING: 0, READY: 1, DECLINED: 2, EXPIRED: 2, CLOSED: 2 };

export function statusRank(s: PostboxStatus): number {
  return RANK[s];
}

export function isFinal(s: PostboxStatus): boolean {
  return RANK[s] === 2;
}

/** Checks a payload that came off the bus (possibly from another instance). */
export function asStatusPayload(raw: unknown): PostboxStatusPayload | undefined {
  const p = raw as Partial<PostboxStatusPayload> | null;
  if (!p || typeof p !== "object" || typeof p.contractId !== "string" || typeof p.postboxId !== "string" || typeof p.status !== "string" || !(p.status in RANK)) return undefined;
  return {
    contractId: p.contractId,
    postboxId: p.postboxId,
    status: p.status,
    previousStatus: p.previousStatus ?? null,
    at: typeof p.at === "string" ? p.at : new Date(p.at as unknown as number).toISOString(),
  };
}

export type StatusListener = (payload: PostboxStatusPayload) => void;

interface ContractChannel {
  all: Set<StatusListener>;
  byPostbox: Map<string, Set<StatusListener>>;
  close(): void;
}

/**
 * Local fan-out of status events: one pub/sub subscription per contract per
 * instance, shared by all of this instance's subscribers of that contract, and
 * an index by postbox. An event then costs only the subscribers it concerns,
 * however many other subscriptions are open.
 */
export class StatusHub {
  private channels = new Map<string, ContractChannel>();

  constructor(
    private readonly pubSub: AppPubSub,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Registers `listener` for the contract's events (one postbox's, or all); returns the function that removes it. */
  listen(contractId: string, postboxId: string | null, listener: StatusListener): () => void {
    const ch = this.channels.get(contractId) ?? this.open(contractId);
    let set: Set<StatusListener>;
    if (postboxId === null) set = ch.all;
    else {
      set = ch.byPostbox.get(postboxId) ?? new Set();
      ch.byPostbox.set(postboxId, set);
    }
    set.add(listener);
    let removed = false;
    return () => {
      if (removed) return;
      removed = true;
      set.delete(listener);
      if (postboxId !== null && set.size === 0) ch.byPostbox.delete(postboxId);
      if (ch.all.size === 0 && ch.byPostbox.size === 0 && this.channels.get(contractId) === ch) {
        this.channels.delete(contractId);
        ch.close();
      }
    };
  }

  /** Resolves once the contract's listeners hear every event published from now on, on any instance (see AppPubSub.ready). */
  ready(contractId: string): Promise<void> {
    return this.pubSub.ready(contractTopic(contractId));
  }

  private open(contractId: string): ContractChannel {
    const it = this.pubSub.subscribe(contractTopic(contractId))[Symbol.asyncIterator]();
    // The first next() registers the underlying listener now, so nothing published after listen() returns is missed.
    let pending = it.next();
    const ch: ContractChannel = { all: new Set(), byPostbox: new Map(), close: () => void it.return?.() };
    this.channels.set(contractId, ch);
    void (async () => {
      for (;;) {
        const r = await pending;
        if (r.done) return;
        const p = asStatusPayload(r.value);
        if (p && p.contractId === contractId) {
          for (const l of [...(ch.byPostbox.get(p.postboxId) ?? []), ...ch.all]) {
            try {
              l(p);
            } catch (err) {
              this.onError(err);
            }
          }
        }
        pending = it.next();
      }
    })().catch(this.onError);
    return ch;
  }
}
