// Fixed-window request limits per key (client address) for unauthenticated entry
// points. Windows are aligned to the minute, so every instance counts in the same
// window: with REDIS_URL the count lives in Redis and the limit holds across all
// instances; without it, in this process.
//
// If Redis does not answer, the instance falls back to counting on its own (a
// per-instance limit is better than none, and a Redis outage must not lock users
// out of consent); it says so in the log, at most once a minute.
import type { Redis } from "ioredis";
import { rateLimited } from "./errors.js";
import type { Logger } from "./logger.js";

const WINDOW_MS = 60_000;
// A Redis command slower than this counts as Redis being unavailable.
const REDIS_TIMEOUT_MS = 250;

/** Counts hits of a key in the window that starts at `windowStart`. */
export interface WindowStore {
  hit(key: string, windowStart: number): Promise<number>;
}

export class MemoryWindowStore implements WindowStore {
  private windows = new Map<string, { start: number; count: number }>();

  async hit(key: string, windowStart: number): Promise<number> {
    let w = this.windows.get(key);
    if (!w || w.start !== windowStart) {
      if (this.windows.size > 100_000) this.prune(windowStart);
      w = { start: windowStart, count: 0 };
      this.windows.set(key, w);
    }
    return ++w.count;
  }

  private prune(current: number) {
    for (const [k, w] of this.windows) if (w.start !== current) this.windows.delete(k);
  }
}

// INCR and the key's expiry in one step, so that a crash between the two cannot leave a counter that never expires.
const HIT_SCRIPT = `local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`;

export class RedisWindowStore implements WindowStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix = "postbox:ratelimit:",
  ) {}

  async hit(key: string, windowStart: number): Promise<number> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer from Redis within ${REDIS_TIMEOUT_MS} ms`)), REDIS_TIMEOUT_MS);
    });
    try {
      // The key names its window; it outlives the window a little so that clocks a few seconds apart still share it.
      const n = await Promise.race([this.redis.eval(HIT_SCRIPT, 1, `${this.prefix}${windowStart}:${key}`, String(WINDOW_MS * 2)), timeout]);
      return Number(n);
    } finally {
      clearTimeout(timer);
    }
  }
}

export class RateLimiter {
  private readonly local = new MemoryWindowStore();
  private lastWarning = 0;

  constructor(
    private readonly perMinute: number,
    /** Shared counts (Redis); unset: this process counts alone. */
    private readonly shared?: WindowStore,
    private readonly log?: Logger,
  ) {}

  /** Counts a request under `key`; throws RATE_LIMITED (with retryAfterSeconds) past the limit. */
  async check(key: string, now = Date.now()): Promise<void> {
    if (this.perMinute <= 0) return;
    const windowStart = now - (now % WINDOW_MS);
    const count = await this.count(key, windowStart, now);
    if (count > this.perMinute) {
      const retry = Math.max(1, Math.ceil((windowStart + WINDOW_MS - now) / 1000));
      throw rateLimited(`Too many requests from this address; retry in ${retry} s.`, retry);
    }
  }

  private async count(key: string, windowStart: number, now: number): Promise<number> {
    if (!this.shared) return this.local.hit(key, windowStart);
    try {
      return await this.shared.hit(key, windowStart);
    } catch (err) {
      if (now - this.lastWarning >= WINDOW_MS) {
        this.lastWarning = now;
        this.log?.warn({ err: err instanceof Error ? err.message : String(err) }, "rate limits: Redis unavailable, counting on this instance only");
      }
      return this.local.hit(key, windowStart);
    }
  }
}
