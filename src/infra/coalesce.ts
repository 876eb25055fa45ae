// Single flight: concurrent calls with the same key share one in-flight call
// instead of each starting their own; the next call after it settles starts
// afresh, so nothing is cached. Used for session-key authentication, where an
// application's backend sends many requests at once with one session key and
// each would otherwise cost its own database query.
//
// The call starts on the next turn of the event loop: the embedded database
// answers without real I/O, so a lookup started at once would finish before Node
// reads the other requests that are already waiting on their sockets, and none
// would ever share it. When idle this costs one event-loop turn.
export function coalesce<T>(fn: (key: string) => Promise<T>): (key: string) => Promise<T> {
  const inflight = new Map<string, Promise<T>>();
  return (key) => {
    let p = inflight.get(key);
    if (!p) {
      p = new Promise<void>((r) => setImmediate(r)).then(() => fn(key)).finally(() => inflight.delete(key));
      inflight.set(key, p);
    }
    return p;
  };
}
