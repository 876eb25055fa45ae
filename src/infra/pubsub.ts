// Events for GraphQL subscriptions. In-process by default; with REDIS_URL they
// cross instances through Redis (payloads travel as JSON, so keep them plain:
// strings and numbers, ISO dates).
import { createPubSub, type PubSub } from "@graphql-yoga/subscription";
import { createRedisEventTarget } from "@graphql-yoga/redis-event-target";
import { Redis } from "ioredis";

/** Topic → payload. Every payload names the contract it belongs to, for scoping. */
export interface PubSubEvents {
  [topic: string]: [payload: Record<string, unknown>];
}

export type AppPubSub = PubSub<PubSubEvents>;

export interface PubSubHandle {
  pubSub: AppPubSub;
  close(): Promise<void>;
}

export function createAppPubSub(redisUrl?: string): PubSubHandle {
  if (!redisUrl) return { pubSub: createPubSub<PubSubEvents>(), close: async () => {} };
  const publishClient = new Redis(redisUrl, { maxRetriesPerRequest: 3, lazyConnect: false });
  const subscribeClient = new Redis(redisUrl, { maxRetriesPerRequest: 3, lazyConnect: false });
  const eventTarget = createRedisEventTarget({ publishClient, subscribeClient });
  return {
    pubSub: createPubSub<PubSubEvents>({ eventTarget }),
    close: async () => {
      publishClient.disconnect();
      subscribeClient.disconnect();
    },
  };
}
