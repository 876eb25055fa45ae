// Events for GraphQL subscriptions. In-process by default; with REDIS_URL they
// cross instances through Redis (payloads travel as JSON, so keep them plain:
// strings and numbers, ISO dates).
import { createPubSub, Repeater, type PubSub } from "@graphql-yoga/subscription";
import { createRedisEventTarget } from "@graphql-yoga/redis-event-target";
import { Redis } from "ioredis";
import { setMaxListeners } from "node:events";
import { ErrorCode, AppError } from "./errors.js";
import type { Logger } from "./logger.js";

/** Topic → payload. Every payload names the contract it belongs to, for scoping. */
export interface PubSubEvents {
  [topic: string]: [payload: Record<string, unknown>];
}

export type AppPubSub = PubSub<PubSubEvents> & {
  /**
   * Resolves once a listener registered on `topic` (by a subscribe() iterator's first
   * next()) hears every event published from then on, on any instance. Await it before
   * reading the state that events will update, or an event in between is lost.
   */
  ready(topic: string): Promise<void>;
};

export interface PubSubHandle {
  pubSub: AppPubSub;
  /** With REDIS_URL: a connection for ordinary commands (the publishing one), e.g. shared rate limits. */
  commands?: Redis;
  close(): Promise<void>;
}

/** Events a subscription holds for a reader that has not taken them (the queue's own limit). */
export const MAX_UNREAD_EVENTS = 1024;

/**
 * The library's subscribe, except that a reader too slow to keep up ends its own
 * subscription. Its queue throws on the 1,025th unread event, and it throws inside the
 * publisher's dispatch: an uncaught exception, which ended the process (a client that
 * stops reading its WebSocket while events for it keep coming). Here that subscription
 * ends instead, with RATE_LIMITED once the events it holds have been read.
 */
function subscribeOn(target: EventTarget): AppPubSub["subscribe"] {
  return ((topic: string) =>
    new Repeater<Record<string, unknown>>((push, stop) => {
      const listener = (event: Event) => {
        try {
          void push((event as CustomEvent<Record<string, unknown>>).detail).catch(() => {});
        } catch {
          stop(
            new AppError(
              ErrorCode.RATE_LIMITED,
              `This stream ended: over ${MAX_UNREAD_EVENTS} events waited for this client to read them. Subscribe again, and read events as they come.`,
            ),
          );
        }
      };
      target.addEventListener(topic, listener);
      void stop.then(() => target.removeEventListener(topic, listener));
    })) as AppPubSub["subscribe"];
}

function appPubSub(target: EventTarget, ready: AppPubSub["ready"]): AppPubSub {
  return { publish: createPubSub<PubSubEvents>({ eventTarget: target as never }).publish, subscribe: subscribeOn(target), ready };
}

export function createAppPubSub(redisUrl?: string, log?: Logger): PubSubHandle {
  if (!redisUrl) {
    // One listener per open subscription: thousands are normal, not a leak.
    const eventTarget = new EventTarget();
    setMaxListeners(0, eventTarget);
    // Listeners are called synchronously by publish(): registered is ready.
    return { pubSub: appPubSub(eventTarget, async () => {}), close: async () => {} };
  }
  const publishClient = new Redis(redisUrl, { maxRetriesPerRequest: 3, lazyConnect: false });
  const subscribeClient = new Redis(redisUrl, { maxRetriesPerRequest: 3, lazyConnect: false });
  // ioredis reconnects by itself; without listeners its errors would be printed unstructured.
  for (const c of [publishClient, subscribeClient]) c.on("error", (err) => log?.warn({ err: err.message }, "redis connection error"));
  // The adapter does not catch a failed PUBLISH; an unhandled rejection would end the
  // process. A lost event is logged: the state change itself is already committed.
  const publish = publishClient.publish.bind(publishClient);
  publishClient.publish = ((...args: Parameters<typeof publish>) =>
    publish(...args).catch((err: Error) => {
      log?.error({ err: err.message, channel: String(args[0]) }, "redis publish failed; subscribers on other instances missed an event");
      return 0;
    })) as typeof publishClient.publish;
  // Nor does it catch a failed SUBSCRIBE or UNSUBSCRIBE (sent without waiting, when a
  // topic's first listener comes or its last goes). A failed SUBSCRIBE also fails ready(),
  // which every subscription awaits, so that subscription ends with an error; a failed
  // UNSUBSCRIBE leaves Redis sending messages nobody listens to until the connection drops.
  const quietly = (command: "subscribe" | "unsubscribe") => (topic: string) =>
    subscribeClient[command](topic).catch((err: Error) => {
      log?.error({ err: err.message, channel: topic }, `redis ${command} failed`);
      return 0;
    });
  // After a reconnect ioredis subscribes again only to what Redis had confirmed. A topic
  // whose SUBSCRIBE failed while Redis was down (the session-end listener, when the
  // instance started then) is subscribed again on every (re)connection, so that its
  // listeners hear events once Redis is back. A repeat is harmless (see ready below).
  const topics = new Set<string>();
  const subscribe = quietly("subscribe");
  const unsubscribe = quietly("unsubscribe");
  subscribeClient.on("ready", () => {
    for (const topic of topics) void subscribe(topic);
  });
  const adapterClient = {
    on: subscribeClient.on.bind(subscribeClient),
    subscribe: (topic: string) => (topics.add(topic), subscribe(topic)),
    unsubscribe: (topic: string) => (topics.delete(topic), unsubscribe(topic)),
  };
  const eventTarget = createRedisEventTarget({ publishClient, subscribeClient: adapterClient as unknown as Redis });
  return {
    // The event target SUBSCRIBEs (without waiting) when a topic's first listener
    // registers. Redis answers one connection's commands in order, so once a second
    // SUBSCRIBE to the same channel is answered the first is in force. (A repeat is
    // harmless: Redis and ioredis keep one subscription per channel.)
    pubSub: appPubSub(eventTarget as unknown as EventTarget, async (topic: string) => {
      await subscribeClient.subscribe(topic);
    }),
    commands: publishClient,
    close: async () => {
      publishClient.disconnect();
      subscribeClient.disconnect();
    },
  };
}
