// Fixed-window request limits per key (client address) for unauthenticated entry
// points. In-process: with several instances each enforces its own window.
import { rateLimited } from "./errors.js";

export class RateLimiter {
  private windows = new Map<string, { start: number; count: number }>();
  constructor(private readonly perMinute: number) {}

  check(key: string, now = Date.now()): void {
    if (this.perMinute <= 0) return;
    let w = this.windows.get(key);
    if (!w || now - w.start >= 60_000) {
      if (this.windows.size > 100_000) this.prune(now);
      w = { start: now, count: 0 };
      this.windows.set(key, w);
    }
    if (++w.count > this.perMinute) {
      const retry = Math.ceil((w.start + 60_000 - now) / 1000);
      throw rateLimited(`Too many requests from this address; retry in ${retry} s.`, retry);
    }
  }

  private prune(now: number) {
    for (const [k, w] of this.windows) if (now - w.start >= 60_000) this.windows.delete(k);
  }
}
