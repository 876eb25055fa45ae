// A graphql-ws client as a frontend would use it (Node 20 has no global WebSocket).
import { createClient, type Client } from "graphql-ws";
import WebSocket from "ws";

export function wsClient(url: string, authorization?: string): Client {
  return createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams: authorization ? { authorization } : undefined,
    retryAttempts: 0,
    lazy: true,
  });
}

/** Subscribes and collects events; `next(n)` waits for the n-th event. */
export function collect<T = any>(client: Client, query: string, variables?: Record<string, unknown>) {
  const events: T[] = [];
  const errors: unknown[] = [];
  const waiters: { n: number; resolve: (v: T) => void; reject: (e: unknown) => void }[] = [];
  let completed = false;
  const flush = () => {
    for (const w of [...waiters]) {
      if (events.length >= w.n) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(events[w.n - 1]);
      } else if (errors.length || completed) {
        waiters.splice(waiters.indexOf(w), 1);
        w.reject(errors[0] ?? new Error("subscription completed"));
      }
    }
  };
  const dispose = client.subscribe<T>(
    { query, variables },
    {
      next: (v) => {
        if (v.errors?.length) errors.push(v.errors);
        else events.push(v.data as T);
        flush();
      },
      error: (e) => {
        errors.push(e);
        flush();
      },
      complete: () => {
        completed = true;
        flush();
      },
    },
  );
  return {
    events,
    errors,
    dispose,
    next(n = events.length + 1, timeoutMs = 10_000): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for event ${n}; got ${events.length}, errors ${JSON.stringify(errors)}`)), timeoutMs);
        waiters.push({ n, resolve: (v) => (clearTimeout(timer), resolve(v)), reject: (e) => (clearTimeout(timer), reject(e)) });
        flush();
      });
    },
  };
}
