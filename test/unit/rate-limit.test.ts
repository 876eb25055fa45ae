// Rate limits: minute windows, the retry hint, counts shared through Redis, and the
// fallback to counting locally when Redis does not answer.
import { randomBytes } from "node:crypto";
import net from "node:net";
import { afterAll, describe, expect, it } from "@jest/globals";
import { Redis } from "ioredis";
import { AppError } from "../../src/infra/errors.js";
import { RateLimiter, RedisWindowStore, type WindowStore } from "../../src/infra/rate-limit.js";

const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const MINUTE = 60_000;
const T0 = 1_800_000_000_000; // a whole minute

async function refusal(p: Promise<void>): Promise<AppError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(AppError);
  return e as AppError;
}

describe("RateLimiter (in process)", () => {
  it("allows the limit per minute window, then refuses with the seconds to the next window", async () => {
    const l = new RateLimiter(2);
    await l.check("a", T0 + 10_000);
    await l.check("a", T0 + 20_000);
    const e = await refusal(l.check("a", T0 + 45_500));
    expect(e.code).toBe("RATE_LIMITED");
    expect(e.extensions.retryAfterSeconds).toBe(15);
    // Another key counts on its own; the next window starts at zero.
    await l.check("b", T0 + 45_500);
    await l.check("a", T0 + MINUTE);
    await l.check("a", T0 + MINUTE + 1);
    await expect(l.check("a", T0 + MINUTE + 2)).rejects.toThrow(/retry in 60 s/);
  });

  it("0 turns it off", async () => {
    const l = new RateLimiter(0);
    for (let i = 0; i < 1000; i++) await l.check("a", T0);
  });
});

describe("RateLimiter with a shared store", () => {
  it("counts in the store, so two limiters (two instances) share one limit", async () => {
    const counts = new Map<string, number>();
    const store: WindowStore = { hit: async (k, w) => counts.set(`${w}:${k}`, (counts.get(`${w}:${k}`) ?? 0) + 1).get(`${w}:${k}`)! };
    const [a, b] = [new RateLimiter(3, store), new RateLimiter(3, store)];
    await a.check("ip", T0);
    await b.check("ip", T0 + 1);
    await a.check("ip", T0 + 2);
    await expect(b.check("ip", T0 + 3)).rejects.toThrow(/Too many requests/);
  });

  it("falls back to counting locally when the store fails, and says so once a minute", async () => {
    const warnings: unknown[] = [];
    const log = { warn: (o: unknown) => warnings.push(o) } as never;
    const l = new RateLimiter(2, { hit: () => Promise.reject(new Error("connection refused")) }, log);
    await l.check("ip", T0);
    await l.check("ip", T0 + 1);
    await expect(l.check("ip", T0 + 2)).rejects.toThrow(/Too many requests/);
    expect(warnings).toEqual([{ err: "connection refused" }]);
  });
});

describe("RedisWindowStore", () => {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const down = new Redis("redis://127.0.0.1:1", { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  afterAll(() => {
    redis.disconnect();
    // Already ended after the refused connection; disconnecting again would leave a timer behind.
    if (down.status !== "end") down.disconnect();
  });

  it("counts per key and window in Redis, with an expiry on every counter", async () => {
    const prefix = `postbox:test:${randomBytes(6).toString("hex")}:`;
    const s = new RedisWindowStore(redis, prefix);
    expect(await s.hit("ip", T0)).toBe(1);
    expect(await s.hit("ip", T0)).toBe(2);
    expect(await s.hit("other", T0)).toBe(1);
    expect(await s.hit("ip", T0 + MINUTE)).toBe(1);
    const ttl = await redis.pttl(`${prefix}${T0}:ip`);
    expect(ttl).toBeGreaterThan(MINUTE);
    expect(ttl).toBeLessThanOrEqual(2 * MINUTE);
  });

  it("rejects (rather than hangs) when Redis cannot be reached", async () => {
    const started = Date.now();
    await expect(new RedisWindowStore(down).hit("ip", T0)).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("gives up on a Redis that accepts the connection but does not answer", async () => {
    const sockets: net.Socket[] = [];
    const mute = net.createServer((s) => sockets.push(s));
    await new Promise<void>((r) => mute.listen(0, "127.0.0.1", r));
    // No ready check: an INFO left unanswered fails when the client disconnects, and ioredis then
    // "recovers" by leaving a 2 s timer on the closed socket, which kept jest's worker from exiting.
    const client = new Redis({ port: (mute.address() as net.AddressInfo).port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, enableReadyCheck: false });
    try {
      await expect(new RedisWindowStore(client).hit("ip", T0)).rejects.toThrow(/no answer from Redis within 250 ms/);
    } finally {
      client.disconnect();
      for (const s of sockets) s.destroy();
      await new Promise((r) => mute.close(r));
    }
  });
});
