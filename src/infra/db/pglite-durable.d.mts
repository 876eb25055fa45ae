// Types of pglite-durable.mjs (plain JavaScript: the database thread loads it).
import type { PGlite } from "@electric-sql/pglite";

/** fsyncs every file and folder under `dir`, then `dir`'s own entry in its parent. */
export function syncTree(dir: string): void;

/** The exit code of a database thread stopped by a failed sync (sysexits' EX_IOERR). */
export const SYNC_FAILURE_EXIT_CODE: number;

/**
 * Opens (creating if need be) the embedded database; with `sync` (the default) its commits
 * are synced to disk, and a sync that fails ends the thread (or process) after telling `onSyncFailure`.
 */
export function openPglite(
  dataDir: string,
  opts?: { sync?: boolean; loadDataDir?: Blob; onSync?: (path: string) => void; onSyncFailure?: (error: Error) => void },
): Promise<PGlite>;
