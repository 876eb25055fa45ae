// Live file changes of one postbox (the myFilesChanged subscription over
// graphql-ws, same origin), so a file the application pushes shows up without a
// reload. The server authenticates a socket once, at connect, with the access
// token in its connection params, and ends the stream when that token expires:
// each (re)subscription therefore opens a fresh socket with a token that is valid
// now. Polling is never needed; the Refresh button stays for a lost connection.
import { createClient, type Client } from "graphql-ws/client";
import { credentialRefused } from "../../src/infra/graphql/credential-refused.js";
import { ApiError } from "./api.js";
import { BASE } from "./base.js";
import type { Credential } from "./credential.js";

// includeCurrent: each stream opens with where every file stands, so a change made while no
// stream was open (before the first, a dropped socket, a token renewal) still reloads the list;
// changedSince (the latest server time seen) keeps that to the files changed since.
const CHANGED = /* GraphQL */ `subscription FilesChanged($since: DateTimeISO) { myFilesChanged(includeCurrent: true, changedSince: $since) { fileId change at } }`;

const MAX_BACKOFF_MS = 30_000;

/** One change to a file of the postbox (or, when a stream opens, where a file stands). */
export interface FileEvent {
  fileId: string;
  change: "ADDED" | "DELIVERED" | "PURGED";
  at: string;
}

/** Every watcher of the page, so that re-rendering the inbox can close the old ones. */
const watchers = new Set<() => void>();

export function stopAllWatchers(): void {
  for (const stop of [...watchers]) stop();
}

/**
 * Calls `onChange` whenever the files of the credential's postbox may have changed
 * (on each change, including those made while a socket was down: a reconnect opens
 * with every file's current state), until the returned function is called.
 */
export function watchFiles(cred: Credential, onChange: (e: FileEvent) => void): () => void {
  let client: Client | undefined;
  let stopped = false;
  let backoff = 1000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  // The latest change seen, in the server's time (ISO strings of one format compare like their times).
  let since: string | null = null;

  const url = new URL("graphql", BASE);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";

  const again = (delay: number, renew = false) => {
    void client?.dispose();
    client = undefined;
    if (stopped) return;
    timer = setTimeout(() => void open(renew), delay);
  };

  const open = async (renew: boolean) => {
    let token: string;
    try {
      token = await cred.accessToken(renew);
    } catch (e) {
      // The postbox is over (closed, expired) or its credential cannot be renewed: nothing more will arrive.
      if (e instanceof ApiError) return stop();
      return again((backoff = Math.min(backoff * 2, MAX_BACKOFF_MS)));
    }
    if (stopped) return;
    const c = createClient({
      url: url.href,
      connectionParams: { authorization: `Bearer ${token}` },
      retryAttempts: 0,
      lazy: true,
    });
    client = c;
    c.subscribe<{ myFilesChanged: FileEvent }>(
      { query: CHANGED, variables: { since } },
      {
        next: (r) => {
          backoff = 1000;
          const e = r.data?.myFilesChanged;
          if (!e?.at) return;
          if (since === null || e.at > since) since = e.at;
          onChange(e);
        },
        // Refused (the token went stale: renew it) or the socket dropped: try again, more slowly each time.
        error: (e) => again((backoff = Math.min(backoff * 2, MAX_BACKOFF_MS)), credentialRefused(e)),
        // The server ended the stream: the access token expired, or the postbox closed (then renewing fails and this stops).
        complete: () => again(0),
      },
    );
  };

  const stop = () => {
    stopped = true;
    clearTimeout(timer);
    void client?.dispose();
    watchers.delete(stop);
  };
  watchers.add(stop);
  void open(false);
  return stop;
}
