// The subscription bus with Redis: ready(topic) resolves only once Redis has the
// subscription, so an event published (from any connection) after it is heard.
import { afterAll, describe, expect, it } from "@jest/globals";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { Redis } from "ioredis";
import { createAppPubSub, MAX_UNREAD_EVENTS } from "../../src/infra/pubsub.js";

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

describe("createAppPubSub while Redis is unreachable", () => {
  it("a subscription's SUBSCRIBE and UNSUBSCRIBE fail without an unhandled rejection (which would end the process), and ready() reports the failure", async () => {
    const logged: string[] = [];
    const log = { warn: () => {}, error: (_o: unknown, msg: string) => logged.push(msg) } as never;
    // Nothing listens on port 1: every command fails once ioredis gives up retrying it.
    const handle = createAppPubSub("redis://127.0.0.1:1", log);
    try {
      const topic = `TEST_DOWN:${randomBytes(6).toString("hex")}`;
      const it = handle.pubSub.subscribe(topic)[Symbol.asyncIterator]();
      void it.next(); // registers the listener: the adapter sends SUBSCRIBE and does not wait
      await expect(handle.pubSub.ready(topic)).rejects.toThrow();
      await it.return?.(); // the last listener leaves: UNSUBSCRIBE, which fails as well
      await new Promise((r) => setTimeout(r, 1500)); // past the retries of both commands
      // Both failures were caught and logged (jest's vm hides process-level unhandled
      // rejections from a test, so the log is the evidence that nothing escaped).
      expect(logged.filter((m) => /redis (un)?subscribe failed/.test(m)).length).toBe(2);
    } finally {
      await handle.close();
    }
  });
});

describe("createAppPubSub when Redis comes back", () => {
  it("a listener registered while Redis was down hears events once it is up", async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, "127.0.0.1", () => {
        const p = (probe.address() as net.AddressInfo).port;
        probe.close(() => resolve(p));
      });
    });
    const url = `redis://127.0.0.1:${port}`;
    const log = { warn: () => {}, error: () => {} } as never;
    const handle = createAppPubSub(url, log);
    let server: ChildProcess | undefined;
    const other = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true });
    try {
      const topic = `TEST_BACK:${randomBytes(6).toString("hex")}`;
      const it = handle.pubSub.subscribe(topic)[Symbol.asyncIterator]();
      const first = it.next(); // registers the listener; its SUBSCRIBE fails: nothing listens yet
      await expect(handle.pubSub.ready(topic)).rejects.toThrow();
      server = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
      await other.connect().catch(async () => {
        for (let i = 0; i < 50 && other.status !== "ready"; i++) await new Promise((r) => setTimeout(r, 100));
      });
      // Once the bus has reconnected and subscribed again, Redis counts one subscriber.
      for (let i = 0; i < 100; i++) {
        const [, n] = (await other.pubsub("NUMSUB", topic)) as [string, number];
        if (n === 1) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      await other.publish(topic, JSON.stringify({ back: true }));
      const timeout = new Promise((r) => setTimeout(() => r({ value: "nothing heard within 10 s" }), 10_000).unref());
      expect(((await Promise.race([first, timeout])) as { value: unknown }).value).toEqual({ back: true });
      await it.return?.();
    } finally {
      other.disconnect();
      await handle.close();
      server?.kill();
    }
  });
});

describe.each([
  ["in process", () => createAppPubSub()],
  ["through Redis", () => createAppPubSub(REDIS_URL)],
])("a reader that falls behind (%s)", (_n, make) => {
  it(`ends its own subscription with RATE_LIMITED after ${MAX_UNREAD_EVENTS} unread events, instead of the publisher throwing`, async () => {
    const handle = make();
    try {
      const topic = `TEST_SLOW:${randomBytes(6).toString("hex")}`;
      const slow = handle.pubSub.subscribe(topic)[Symbol.asyncIterator]();
      const fast = handle.pubSub.subscribe(topic)[Symbol.asyncIterator]();
      const firstSlow = slow.next(); // registers the listener; then this reader stops reading
      let fastSeen = 0;
      const fastDone = (async () => {
        for (;;) {
          const r = await fast.next();
          if (r.done || ++fastSeen === MAX_UNREAD_EVENTS + 50) return;
        }
      })();
      await handle.pubSub.ready(topic);
      for (let i = 0; i < MAX_UNREAD_EVENTS + 50; i++) {
        expect(() => handle.pubSub.publish(topic, { i })).not.toThrow();
        if (i % 100 === 99) await new Promise((r) => setImmediate(r)); // the fast reader reads meanwhile
      }
      await fastDone; // a reader that keeps up gets every event
      expect(fastSeen).toBe(MAX_UNREAD_EVENTS + 50);
      // The slow one gets what its queue held, then the error.
      expect((await firstSlow).value).toEqual({ i: 0 });
      let read = 1;
      const end = await (async () => {
        for (;;) {
          try {
            const r = await slow.next();
            if (r.done) return "done";
            read++;
          } catch (e) {
            return e;
          }
        }
      })();
      expect(read).toBe(MAX_UNREAD_EVENTS + 1); // the one its waiting next() took, and the queue
      expect(end).toMatchObject({ extensions: { code: "RATE_LIMITED" }, message: expect.stringMatching(/read events as they come/) });
      await fast.return?.();
    } finally {
      await handle.close();
    }
  });
});
