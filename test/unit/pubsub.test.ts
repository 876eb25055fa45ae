// The subscription bus with Redis: ready(topic) resolves only once Redis has the
// subscription, so an event published (from any connection) after it is heard.
import { afterAll, describe, expect, it } from "@jest/globals";
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { createAppPubSub } from "../../src/infra/pubsub.js";

const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

describe("createAppPubSub with Redis", () => {
  const handle = createAppPubSub(REDIS_URL);
  const other = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  afterAll(async () => {
    other.disconnect();
    await handle.close();
  });

  it("ready(topic) waits until Redis has the listener's subscription", async () => {
    for (let i = 0; i < 20; i++) {
      const topic = `TEST_READY:${randomBytes(6).toString("hex")}`;
      const it = handle.pubSub.subscribe(topic)[Symbol.asyncIterator]();
      const first = it.next(); // registers the listener (and sends SUBSCRIBE)
      await handle.pubSub.ready(topic);
      // Redis itself reports the subscriber: nothing published from now on can be missed.
      const [channel, subscribers] = (await other.pubsub("NUMSUB", topic)) as [string, number];
      expect([channel, subscribers]).toEqual([topic, 1]);
      await other.publish(topic, JSON.stringify({ n: i }));
      expect((await first).value).toEqual({ n: i });
      await it.return?.();
    }
  });
});
