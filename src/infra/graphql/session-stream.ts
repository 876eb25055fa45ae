// A GraphQL subscription stream over a pub/sub topic that lives no longer than
// the app session that opened it (see SessionEnds in modules/session).
import { Repeater } from "@graphql-yoga/subscription";

/** setTimeout's largest delay (2^31-1 ms); a longer one fires at once, so longer waits are re-armed. */
const MAX_TIMER_MS = 2_147_483_647;

export interface SessionStreamOptions<S, T> {
  /**
   * Events of the topic (`pubSub.subscribe(topic)`); returned when the stream ends, which
   * must end a next() still waiting (a Repeater's does).
   */
  source: AsyncIterable<S>;
  /**
   * Resolves once the source hears every event published from now on, on any instance
   * (`pubSub.ready(topic)`); awaited before the prelude. When it fails (Redis is
   * unreachable) the stream ends with that error rather than staying open deaf.
   */
  ready: () => Promise<void>;
  /** Registers the end of the session (expiry, endSession…): calls its argument then; returns the cancel function. */
  until: (end: () => void) => () => void;
  /**
   * Events sent first, read once the source listener is registered (so that nothing
   * published meanwhile is lost: it waits in the source until the prelude is sent).
   */
  prelude?: () => AsyncIterable<T>;
  /**
   * Checked once the source listener is registered: false ends the stream. For a credential
   * that `until` cannot watch, whose end (an event on the topic) may have come before the
   * listener did.
   */
  stillValid?: () => Promise<boolean>;
  /** The event as the client gets it, or undefined to drop it (scoping and filters live here); `end` ends the stream. */
  select: (event: S, end: () => void) => T | undefined;
  /** Called once the stream is open (the source listener registered) and once when it ends; for open-stream counts. */
  onOpen: () => void;
  onClose: () => void;
}

/** Calls `end` at `expiresAt` (at once when it has passed); returns the cancel function. */
export function endAtExpiry(expiresAt: Date, end: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    const left = expiresAt.getTime() - Date.now();
    if (left <= 0) return void end();
    timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
  };
  arm();
  return () => clearTimeout(timer);
}

/**
 * The events of `source` that `select` keeps, until the session ends or the
 * client leaves; either way the source subscription is returned.
 */
export function sessionStream<S, T>({ source, ready, until, stillValid, prelude, select, onOpen, onClose }: SessionStreamOptions<S, T>): AsyncIterable<T> {
  return new Repeater<T>(async (push, stop) => {
    const it = source[Symbol.asyncIterator]();
    // The first next() registers the listener; only then does the stream count as open.
    let pending = it.next();
    onOpen();
    const cancelEnd = until(() => void stop());
    let stopped = false;
    void stop.then(() => {
      stopped = true;
      cancelEnd();
      onClose();
      void it.return?.();
    });
    await ready();
    // A failed check (a database hiccup) leaves the stream open, as the checks on its events do.
    if (stillValid && !(await stillValid().catch(() => true))) {
      void stop();
      return;
    }
    if (prelude) {
      for await (const x of prelude()) {
        if (stopped) break;
        await push(x);
      }
    }
    for (;;) {
      // At expiry or client close the source is returned, which ends this wait even while
      // no event comes. (Not a race with stop: every race left a reaction on stop, which
      // held its event until the stream ended, for each event of the topic.)
      const r = await pending;
      if (r.done) break;
      pending = it.next();
      const out = select(r.value, () => void stop());
      if (out !== undefined) await push(out);
    }
    stop();
  });
}
