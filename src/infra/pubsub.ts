// Events for GraphQL subscriptions. In-process by default; with REDIS_URL they
// cross instances through Redis (payloads travel as JSON, so keep them plain:
// strings and numbers, ISO dates).
import { createPubSub, type PubSub } from "@graphql-yoga/subscription";
import { createRedisEventTarget } from "@graphql-yoga/redis-event-target";
import { Redis } from "ioredis";
import { setMaxListeners } from "node:events";
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

export function createAppPubSub(redisUrl?: string, log?: Logger): PubSubHandle {
  if (!redisUrl) {
    // One listener per open subscription: thousands are normal, not a leak.
    const eventTarget = new EventTarget();
    setMaxListeners(0, eventTarget);
    // Listeners are called synchronously by publish(): registered is ready.
    return { pubSub: Object.assign(createPubSub<PubSubEvents>({ eventTarget: eventTarget as never }), { ready: async () => {} }), close: async () => {} };
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
    pubSub: Object.assign(createPubSub<PubSubEvents>({ eventTarget }), {
      // The event target SUBSCRIBEs (without waiting) when a topic's first listener
      // registers. Redis answers one connection's commands in order, so once a second
      // SUBSCRIBE to the same channel is answered the first is in force. (A repeat is
      // harmless: Redis and ioredis keep one subscription per channel.)
      ready: async (topic: string) => {
        await subscribeClient.subscribe(topic);
      },
    }),
    commands: publishClient,
    close: async () => {
      publishClient.disconnect();
      subscribeClient.disconnect();
    },
  };
}
