// Types of pglite-durable.mjs (plain JavaScript: the database thread loads it).
import type { PGlite } from "@electric-sql/pglite";

/** fsyncs every file and folder under `dir`, then `dir`'s own entry in its parent. */
export function syncTree(dir: string): void;

/** Opens (creating if need be) the embedded database; with `sync` (the default) its commits are synced to disk. */
export function openPglite(dataDir: string, opts?: { sync?: boolean; loadDataDir?: Blob; onSync?: (path: string) => void }): Promise<PGlite>;
