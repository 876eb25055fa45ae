// Periodic background work (expiry, purges, webhook delivery). Each task runs at
// most once at a time per process; tasks are written to be safe when several
// instances run them concurrently (atomic UPDATE … WHERE, SKIP LOCKED claims).
import type { Logger } from "./logger.js";

export interface Task {
  name: string;
  run(now: Date): Promise<unknown>;
}

export class Scheduler {
  private timer?: NodeJS.Timeout;
  private running = new Set<string>();
  private inflight = new Set<Promise<unknown>>();
  private stopped = false;

  constructor(private readonly tasks: Task[], private readonly intervalMs: number, private readonly log: Logger) {}

  start() {
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
    void this.tick();
  }

  /** Runs every task once now (also used by tests instead of waiting). */
  async tick(now = new Date()): Promise<void> {
    if (this.stopped) return;
    await Promise.all(
      this.tasks.map(async (t) => {
        if (this.running.has(t.name)) return;
        this.running.add(t.name);
        const p = t.run(now).catch((err) => this.log.error({ err, task: t.name }, "background task failed"));
        this.inflight.add(p);
        try {
          await p;
        } finally {
          this.inflight.delete(p);
          this.running.delete(t.name);
        }
      }),
    );
  }

  async stop() {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await Promise.all([...this.inflight]);
  }
}
