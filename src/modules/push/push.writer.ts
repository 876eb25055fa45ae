// Group commit for pushes. Every push is stored atomically with its audit event,
// and each statement has a fixed cost that dwarfs the rest of a push. So pushes
// that arrive while a write is in flight are written together by the next one:
// one statement stores all of them, their content and their audit events (which
// the database chains onto the log's head). Each request still resolves only
// after the statement holding its push has committed.
//
// A write starts on the next turn of the event loop (setImmediate), not at once:
// yielding lets requests already waiting on their sockets reach the queue and
// join the batch; when idle this costs one event-loop turn.
import type { AuditInput, AuditService } from "../audit/audit.service.js";
import type { NewPush, PushRepository, PushRow } from "./push.repository.js";

export interface PendingWrite {
  push: NewPush;
  /** The push.create event, recorded only if the push is stored. */
  audit: AuditInput;
}

interface Waiter extends PendingWrite {
  resolve(row: PushRow | null): void;
  reject(e: unknown): void;
}

const MAX_BATCH = 64;
// Bounds the memory of one transaction's statement; a bigger single push still goes alone.
const MAX_BATCH_BYTES = 8 * 1024 * 1024;

export class PushWriter {
  private queue: Waiter[] = [];
  private flushing = false;

  constructor(
    private readonly repo: PushRepository,
    private readonly audit: AuditService,
  ) {}

  /** Stores the push if its postbox still accepts it: the row, or null when the postbox refused. */
  write(item: PendingWrite): Promise<PushRow | null> {
    return new Promise((resolve, reject) => {
      this.queue.push({ push: item.push, audit: item.audit, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    try {
      for (let first = true; this.queue.length; first = false) {
        if (!first) await new Promise((r) => setImmediate(r));
        const batch = this.take();
        try {
          const rows = await this.commit(batch);
          for (const w of batch) w.resolve(rows.get(w.push.id) ?? null);
        } catch (e) {
          if (batch.length === 1) {
            batch[0].reject(e);
            continue;
          }
          // One bad push (say, a concurrent reuse of an idempotency key) must not fail
          // the others: write each on its own, so only that one sees its error.
          for (const w of batch) {
            try {
              w.resolve((await this.commit([w])).get(w.push.id) ?? null);
            } catch (err) {
              w.reject(err);
            }
          }
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  private take(): Waiter[] {
    let bytes = 0;
    let n = 0;
    while (n < this.queue.length && n < MAX_BATCH) {
      bytes += (this.queue[n].push.ciphertext?.length ?? 0) + this.queue[n].push.descriptor.length;
      if (n > 0 && bytes > MAX_BATCH_BYTES) break;
      n++;
    }
    return this.queue.splice(0, n);
  }

  private async commit(batch: Waiter[]): Promise<Map<string, PushRow>> {
    const rows = await this.repo.insertWithAudit(batch.map((w) => ({ push: w.push, event: this.audit.pending(w.audit) })));
    return new Map(rows.map((r) => [r.id, r]));
  }
}
