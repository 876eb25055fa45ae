// Delivers the outbox. Claims due deliveries (safe across instances, see
// WebhookRepository.claimDue), signs and sends each, and records the attempt.
// Runs from the scheduler every SWEEP_INTERVAL and, so that an event usually goes
// out within milliseconds, whenever an enqueued delivery becomes visible (commits).
import { newId } from "../../infra/ids.js";
import type { Logger } from "../../infra/logger.js";
import type { AuditService } from "../audit/audit.service.js";
import type { ClaimedDelivery, WebhookRepository } from "./webhook.repository.js";
import { INTERRUPTED, type SendResult, type WebhookSender } from "./webhook.sender.js";
import { MAX_ATTEMPTS, retryDelayMs, signatureHeader } from "./webhook.signature.js";

export interface DispatcherOptions {
  /** Parallel sends per instance. */
  concurrency: number;
  /** Parallel sends to one endpoint (see WebhookRepository.claimDue). */
  perEndpoint: number;
  /** How long a claim lasts: longer than one attempt can take, so it never lapses mid-send. */
  lockMs: number;
  /** While run() waits for busy lanes, how often it fills free ones with deliveries that came due (SWEEP_INTERVAL). */
  refillMs: number;
}

/** When to look for a just-enqueued delivery: its transaction has usually committed by the second try. */
const WATCH_DELAYS_MS = [1, 10, 50, 250, 1000, 3000];

export class WebhookDispatcher {
  /** Lanes sending now (each claims one delivery after another until none is due). */
  private readonly lanes = new Set<Promise<number>>();
  /** The run under way: there is at most one per instance (see run()). */
  private current?: Promise<number>;
  /** run() was called again while one was under way: it fills free lanes once more before it ends. */
  private again = false;
  /** Wakes the run under way from its wait for busy lanes. */
  private wake?: () => void;
  private stopped = false;
  private readonly abort = new AbortController();
  private readonly watched = new Map<string, number>();
  private watchTimer?: NodeJS.Timeout;
  private watchDueAt = 0;
  private watching?: Promise<void>;

  constructor(
    private readonly repo: WebhookRepository,
    private readonly sender: WebhookSender,
    private readonly audit: AuditService,
    private readonly log: Logger,
    private readonly opts: DispatcherOptions,
  ) {}

  /**
   * Sends everything due now; resolves when nothing due is left (scheduler task and
   * tests). Lanes already busy (say, on a receiver that hangs) keep going; free lane
   * slots are filled at once, so a new event never waits for a slow send to end.
   *
   * One run at a time: a call while a run is under way joins it, and that run claims
   * once more before it ends, so what was due at the call is sent before it resolves.
   * (Runs side by side, one per enqueue, each waited for the others' claims and then
   * claimed again: with nothing due they could go on so in turn for ever, a claim a
   * millisecond on the embedded database's only thread, and a test waiting for its run
   * waited for ever: seen as a claim that "never answered".)
   */
  run(): Promise<number> {
    if (this.stopped) return Promise.resolve(0);
    if (this.current) {
      this.again = true;
      this.wake?.();
      return this.current;
    }
    this.current = this.loop();
    return this.current;
  }

  private async loop(): Promise<number> {
    const started: Promise<number>[] = [];
    try {
      for (;;) {
        this.again = false;
        started.push(...(await this.fill()));
        if (this.stopped) break;
        // Called again while this fill claimed: claim for that call too, at once.
        if (this.again) continue;
        if (!this.lanes.size) break;
        // Wait for the lanes (each claims whatever else is due before it ends).
        // Meanwhile the scheduler's call joins this run, so while a lane hangs on a
        // slow receiver the free ones are filled every refillMs, and at once on a new call:
        // a retry of another endpoint that comes due must not wait for that receiver.
        let timer: NodeJS.Timeout | undefined;
        const woken = new Promise<void>((resolve) => {
          this.wake = resolve;
          timer = setTimeout(resolve, this.opts.refillMs).unref();
        });
        await Promise.race([Promise.allSettled([...this.lanes]), woken]);
        this.wake = undefined;
        clearTimeout(timer);
      }
    } finally {
      // Over (or failed): a call from here on starts a new run.
      this.current = undefined;
      this.wake = undefined;
    }
    const results = await Promise.allSettled(started);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    return results.reduce((n, r) => n + (r.status === "fulfilled" ? r.value : 0), 0);
  }

  /** Claims due deliveries for the free lane slots and starts a lane for each. */
  private async fill(): Promise<Promise<number>[]> {
    const free = this.opts.concurrency - this.lanes.size;
    if (free <= 0) return [];
    return (await this.claim(free)).map((row) => this.lane(row));
  }

  /** Fire-and-forget run, e.g. right after a transaction that enqueued deliveries committed. */
  notify(): void {
    void this.run().catch((err) => this.log.error({ err }, "webhook delivery failed"));
  }

  /**
   * Called by enqueue, inside the caller's still-open transaction: once the
   * delivery is visible (committed) run at once. If it never shows up (rolled
   * back, or a very long transaction), the periodic run covers it.
   */
  watch(deliveryId: string): void {
    if (this.stopped) return;
    this.watched.set(deliveryId, 0);
    this.scheduleWatch(0);
  }

  private scheduleWatch(step: number) {
    // A check under way reschedules itself for whatever is still watched when it ends.
    if (this.watching || this.stopped) return;
    const delay = WATCH_DELAYS_MS[Math.min(step, WATCH_DELAYS_MS.length - 1)];
    const dueAt = Date.now() + delay;
    if (this.watchTimer) {
      // A new delivery must not wait behind a long-delayed look for an old one.
      if (this.watchDueAt <= dueAt) return;
      clearTimeout(this.watchTimer);
    }
    this.watchDueAt = dueAt;
    this.watchTimer = setTimeout(() => {
      this.watchTimer = undefined;
      this.watching = this.checkWatched().finally(() => {
        this.watching = undefined;
        if (this.watched.size) this.scheduleWatch(Math.min(...this.watched.values()));
      });
    }, delay);
    this.watchTimer.unref();
  }

  private async checkWatched() {
    const ids = [...this.watched.keys()];
    let visible: string[];
    try {
      visible = await this.repo.existing(ids);
    } catch (err) {
      if (!this.stopped) this.log.warn({ err }, "webhook outbox check failed");
      visible = [];
    }
    for (const id of ids) {
      if (visible.includes(id)) this.watched.delete(id);
      else {
        const step = (this.watched.get(id) ?? 0) + 1;
        if (step >= WATCH_DELAYS_MS.length) this.watched.delete(id);
        else this.watched.set(id, step);
      }
    }
    if (visible.length) this.notify();
  }

  /** Sends `first`, then claims and sends one more at a time until nothing is due. */
  private lane(first: ClaimedDelivery): Promise<number> {
    const run = (async () => {
      let sent = 0;
      let next: ClaimedDelivery | undefined = first;
      while (next && !this.stopped) {
        await this.attempt(next);
        sent++;
        [next] = await this.claim(1);
      }
      return sent;
    })();
    const tracked = run.finally(() => this.lanes.delete(tracked));
    this.lanes.add(tracked);
    return tracked;
  }

  private claim(limit: number): Promise<ClaimedDelivery[]> {
    if (this.stopped) return Promise.resolve([]);
    const now = new Date();
    return this.repo.claimDue(now, new Date(now.getTime() + this.opts.lockMs), limit, this.opts.perEndpoint);
  }

  private async attempt(d: ClaimedDelivery): Promise<void> {
    try {
      const timestamp = Math.floor(Date.now() / 1000);
      const result = await this.sender.send(
        d.url,
        {
          "content-type": "application/json",
          "webhook-id": d.id,
          "webhook-timestamp": String(timestamp),
          // Space-separated signatures (Standard Webhooks): the receiver accepts any one it can verify.
          "webhook-signature": signatureHeader(d.secret, d.retiredSecrets, d.id, timestamp, d.payload),
        },
        d.payload,
        this.abort.signal,
      );
      await this.record(d, d.attemptCount + 1, result);
    } catch (err) {
      // The claim lapses at lockedUntil and the delivery is tried again then.
      this.log.error({ err, deliveryId: d.id }, "could not attempt a webhook delivery");
    }
  }

  private async record(d: ClaimedDelivery, number: number, result: SendResult) {
    const at = new Date();
    const attempt = { id: newId("wha"), number, at, statusCode: result.statusCode ?? null, error: result.error ?? null, durationMs: result.durationMs };
    const ok = result.statusCode !== undefined && result.statusCode >= 200 && result.statusCode < 300;
    const log = { deliveryId: d.id, contractId: d.contractId, eventType: d.eventType, attempt: number, statusCode: result.statusCode, durationMs: result.durationMs };

    if (ok) {
      await this.repo.transaction((tx) => this.repo.finishAttempt(tx, d, { status: "SUCCEEDED", attemptCount: number, completedAt: at }, attempt));
      this.log.info(log, "webhook delivered");
      return;
    }
    if (result.statusCode === 410) {
      // Standard Webhooks: 410 Gone means "stop sending"; the endpoint is disabled until registered again.
      // Only the registration that answered: if the app registered another URL while this
      // send was out, the old host's 410 says nothing about the new one, and the delivery
      // is retried there like any other failure.
      const reason = "The endpoint answered 410 Gone.";
      const gone = await this.repo.transaction(async (tx) => {
        if (!(await this.repo.lockRegistration(tx, d.endpointId, d.registeredAt))) return false;
        if (!(await this.repo.finishAttempt(tx, d, { status: "FAILED", attemptCount: number, completedAt: at }, attempt))) return true;
        if (await this.repo.disableEndpoint(tx, d.endpointId, reason, at)) {
          await this.audit.record(
            { actorType: "SYSTEM", action: "webhook.disable", outcome: "SUCCESS", reason: "HTTP_410", contractId: d.contractId, targetId: d.endpointId, detail: { deliveryId: d.id } },
            tx,
          );
        }
        return true;
      });
      if (gone) {
        this.log.warn({ ...log, endpointId: d.endpointId }, "webhook endpoint answered 410 Gone; disabled");
        return;
      }
    }
    // Shutting down is not the receiver's fault: try again as soon as an instance is up,
    // and count neither this send nor earlier interrupted ones towards the backoff and
    // MAX_ATTEMPTS (the record keeps them, numbered, for the history).
    const interrupted = this.stopped && result.error === INTERRUPTED;
    const delay = interrupted ? 0 : retryDelayMs(number - (d.attemptCount > 0 ? await this.repo.countAttempts(d.id, INTERRUPTED) : 0));
    if (delay === null) {
      await this.repo.transaction((tx) => this.repo.finishAttempt(tx, d, { status: "FAILED", attemptCount: number, completedAt: at }, attempt));
      this.log.warn({ ...log, error: result.error }, `webhook delivery failed after ${MAX_ATTEMPTS} attempts`);
      return;
    }
    const nextAttemptAt = new Date(at.getTime() + delay);
    await this.repo.transaction((tx) => this.repo.finishAttempt(tx, d, { status: "PENDING", attemptCount: number, nextAttemptAt }, attempt));
    this.log.info({ ...log, error: result.error, nextAttemptAt }, "webhook attempt failed; will retry");
  }

  /** Stops claiming, aborts sends in flight (they are retried later) and waits for their bookkeeping. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    if (this.watchTimer) clearTimeout(this.watchTimer);
    this.watched.clear();
    this.abort.abort();
    // The run too: a claim of it still out must not meet a closed database.
    await Promise.allSettled([this.current, ...this.lanes, this.watching]);
    await this.sender.close().catch(() => {});
  }
}
