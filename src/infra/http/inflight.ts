// GraphQL queries and mutations still running, over HTTP and WebSocket alike. On
// stop the server first stops taking work (HTTP drained, sockets closed), then waits
// for these, so that none meets a closed database halfway through its writes; their
// clients may have gone already. Subscriptions are not counted: they end with their socket.
import type { ApolloServerPlugin } from "@apollo/server";

export class InflightOperations {
  private count = 0;
  private waiters: (() => void)[] = [];

  /** Operations running now (stop waits for them). */
  get running(): number {
    return this.count;
  }

  private start(): () => void {
    this.count++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--this.count === 0) for (const w of this.waiters.splice(0)) w();
    };
  }

  /** Counts an operation from its start until its result is settled (WebSocket execution). */
  async track<T>(run: () => T | Promise<T>): Promise<T> {
    const end = this.start();
    try {
      return await run();
    } finally {
      end();
    }
  }

  /** Counts HTTP operations from their start until their response is sent (or dropped). */
  plugin<C extends object>(): ApolloServerPlugin<C> {
    return {
      requestDidStart: async () => {
        const end = this.start();
        return { willSendResponse: async () => end() };
      },
    };
  }

  /** Resolves when none is running, or after `maxMs` (a stuck one must not block shutdown forever). */
  settled(maxMs: number): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, maxMs);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
