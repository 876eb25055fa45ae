// Opens the embedded database so that a commit is on disk before it is acknowledged.
//
// PGlite starts PostgreSQL with fsync off (its default start parameters include -F),
// and its Node file layer (Emscripten's NODEFS) has no fsync at all: a commit was only
// handed to the operating system. A crash of the server process lost nothing, but an
// operating-system crash or a power loss could lose acknowledged pushes or leave the
// data directory damaged (PostgreSQL's write-ahead rule needs the log on disk before
// the pages it covers). With `sync`, PostgreSQL's own fsync is on, so it syncs the
// log at every commit and data files at checkpoints, as a PostgreSQL server does, and
// each of those calls reaches the disk (fs.fsyncSync; fs.fdatasyncSync for the log).
// A sync that fails stops the database's thread (see stopOnSyncFailure).
//
// Plain JavaScript on purpose, like the worker that loads it.
import fs from "node:fs";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { NodeFS } from "@electric-sql/pglite/nodefs";

const WAL_SEGMENT = /\/pg_wal\/[0-9A-F]{24}$/;

/** The exit code of a thread (or process) stopped by a failed sync: sysexits' EX_IOERR. */
export const SYNC_FAILURE_EXIT_CODE = 74;

/**
 * A failed sync stops everything at once, as PostgreSQL's PANIC does on a server: the
 * kernel may have dropped the pages it could not write, so going on (or a later sync that
 * succeeds) could acknowledge commits that are not on disk. Returned to PostgreSQL as an
 * errno, its PANIC does not stop PGlite: the statement fails like any other and the
 * database goes on (once, on a main thread, it spun for ever instead). So the failure
 * never returns to it: `process.exit` ends the database's thread (in a worker) or the
 * process, an exit no code can catch, after `onSyncFailure` has been told. Restarted, the
 * database recovers what its log has.
 */
function stopOnSyncFailure(error, onSyncFailure) {
  try {
    onSyncFailure?.(error);
  } finally {
    process.exit(SYNC_FAILURE_EXIT_CODE);
  }
}

/**
 * NODEFS with an fsync. PostgreSQL's fsync() arrives as Emscripten's fd_sync, which calls
 * the stream's fsync if it has one; NODEFS has none, so it returned success untouched.
 */
class SyncingNodeFS extends NodeFS {
  constructor(dataDir, { onSync, onSyncFailure }) {
    super(dataDir);
    this.onSync = onSync;
    this.onSyncFailure = onSyncFailure;
  }

  async init(pg, opts) {
    const result = await super.init(pg, opts);
    result.emscriptenOpts.preRun = [
      ...(result.emscriptenOpts.preRun ?? []),
      (mod) => {
        // Every NODEFS file's streams share this object, so files opened later have it too.
        mod.NODEFS.stream_ops.fsync = (stream) => {
          // The log's segments, synced at every commit, need only their data and size
          // (fdatasync, what PostgreSQL itself uses for them on Linux; about 12% quicker
          // here); other files and folders, synced at checkpoints, get a full fsync.
          const sync = WAL_SEGMENT.test(stream.path) ? fs.fdatasyncSync : fs.fsyncSync;
          try {
            sync(stream.nfd);
          } catch (e) {
            stopOnSyncFailure(new Error(`could not sync ${hostPath(mod, stream)} to disk (${e?.message ?? e})`, { cause: e }), this.onSyncFailure);
          }
          this.onSync?.(stream.path);
          return 0;
        };
      },
    ];
    return result;
  }
}

/** The file's path on the host, for a message (PostgreSQL's own path as a fallback). */
function hostPath(mod, stream) {
  try {
    return mod.NODEFS.realPath(stream.node);
  } catch {
    return stream.path;
  }
}

/**
 * PGlite's start parameters with fsync on. `wal_sync_method=fsync`: Emscripten's
 * fdatasync (PostgreSQL's default method on Linux) never reaches the file layer.
 */
function syncingStartParams() {
  return [...PGlite.defaultStartParams.filter((p) => p !== "-F"), "-c", "fsync=on", "-c", "wal_sync_method=fsync"];
}

/** fsyncs every file and folder under `dir`, then `dir`'s own entry in its parent. */
export function syncTree(dir) {
  const syncPath = (p) => {
    const fd = fs.openSync(p, "r");
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  };
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) syncPath(p);
    }
    syncPath(d);
  };
  walk(dir);
  syncPath(path.dirname(dir));
}

/**
 * Opens (creating if need be) the database at `dataDir`: a folder, or "memory://" (no
 * disk, so `sync` does not apply). `onSync(path)` is told of every fsync PostgreSQL makes;
 * `onSyncFailure(error)` of a sync that failed, just before the thread stops.
 */
export async function openPglite(dataDir, { sync = true, loadDataDir, onSync, onSyncFailure } = {}) {
  const load = loadDataDir ? { loadDataDir } : {};
  if (!sync || dataDir.startsWith("memory://")) return PGlite.create(dataDir, load);
  const fresh = !fs.existsSync(path.join(dataDir, "PG_VERSION"));
  const pglite = await PGlite.create({ fs: new SyncingNodeFS(dataDir, { onSync, onSyncFailure }), startParams: syncingStartParams(), ...load });
  // A new database's files were written by initdb (or restored from a dump) with no sync
  // of their own: once, now, before anything is committed on top of them.
  if (fresh) syncTree(dataDir);
  return pglite;
}
