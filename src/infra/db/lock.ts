// PGlite is single-process: two processes opening one data directory corrupt it.
// Whoever opens the embedded database (the server, `npm run db:migrate`) first
// takes `<DATA_DIR>/db.lock`, a file holding its pid. A lock whose process is gone
// (crash, kill -9) is taken over; one held by a live process is refused.
import { readFileSync, unlinkSync } from "node:fs";
import { mkdir, readFile, unlink, writeFile } from "node:fs/promises";
import path from "node:path";

export class DatabaseLockedError extends Error {
  constructor(
    readonly lockFile: string,
    readonly pid: number,
  ) {
    super(
      `The embedded database is in use by process ${pid} (lock ${lockFile}). ` +
        `Only one process may open it: is the Postbox server running? Stop it first, or use the CLI's commands (npm run cli), which go through the server. ` +
        `If no such process is Postbox, delete the lock file.`,
    );
    this.name = "DatabaseLockedError";
  }
}

export interface DbLock {
  readonly file: string;
  release(): Promise<void>;
}

// Locks this process holds, so that they are removed even on process.exit().
const held = new Set<string>();
let exitHookInstalled = false;

function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const file of held) {
      try {
        if (readFileSync(file, "utf8").trim() === String(process.pid)) unlinkSync(file);
      } catch {
        // already gone
      }
    }
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function readPid(file: string): Promise<number | undefined> {
  try {
    const n = Number((await readFile(file, "utf8")).trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

/** Takes the lock file or throws DatabaseLockedError naming the process that holds it. */
export async function acquireDbLock(file: string): Promise<DbLock> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: "wx", mode: 0o600 });
      held.add(file);
      installExitHook();
      let released = false;
      return {
        file,
        async release() {
          if (released) return;
          released = true;
          held.delete(file);
          // Remove it only if it is still ours (never someone else's lock).
          if ((await readPid(file)) === process.pid) await unlink(file).catch(() => {});
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const pid = await readPid(file);
    // Our own pid in a lock we do not hold is left over from an earlier process
    // that had the same pid (containers restart with the same pids).
    const stale = pid === undefined || (pid === process.pid ? !held.has(file) : !isAlive(pid));
    if (!stale) throw new DatabaseLockedError(file, pid!);
    await unlink(file).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== "ENOENT") throw e;
    });
  }
  // Another process took the stale lock between our unlink and our create.
  throw new DatabaseLockedError(file, (await readPid(file)) ?? 0);
}
