// Secrets the server generates into DATA_DIR when they are not configured,
// readable only by the server's user (mode 0600).
import { randomBytes } from "node:crypto";
import { chmod, link, mkdir, open, readFile, rename, unlink } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "./logger.js";

/** The shortest secret config.ts accepts for ADMIN_TOKEN and SERVER_SECRET. */
export const MIN_SECRET_LENGTH = 32;

/**
 * The secret in `<dataDir>/<fileName>`, generated there when the file is missing.
 * A file that is empty or shorter than MIN_SECRET_LENGTH counts as missing: a crash
 * soon after the first start could leave it so, and an empty SERVER_SECRET breaks
 * every keyed hash while an empty admin token locks the admin API, for good.
 */
export async function loadOrCreateSecret(dataDir: string, fileName: string, prefix: string, log?: Pick<Logger, "warn">): Promise<string> {
  const file = path.join(dataDir, fileName);
  const existing = await readSecret(file);
  if (existing !== undefined && existing.length >= MIN_SECRET_LENGTH) return existing;
  if (existing !== undefined) {
    log?.warn({ file, length: existing.length }, `${fileName} is empty or too short (a crash right after it was written?): generating a new one`);
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const secret = `${prefix}_${randomBytes(32).toString("base64url")}`;
  await writeAtomically(file, secret + "\n", existing === undefined);
  await chmod(file, 0o600);
  // Another process starting at the same time may have created it first: use what is on disk.
  return (await readSecret(file)) ?? secret;
}

async function readSecret(file: string): Promise<string | undefined> {
  try {
    return (await readFile(file, "utf8")).trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

/**
 * Writes `text` to a temporary file (mode 0600) and syncs it, then puts it in place and
 * syncs the directory, so that a crash leaves either no file or the whole secret.
 * `create`: only if `file` does not exist yet (link fails on an existing one, so two
 * processes starting together keep one secret); otherwise it replaces `file` (rename).
 */
export async function writeAtomically(file: string, text: string, create: boolean): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    const fh = await open(tmp, "wx", 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (!create) {
      await rename(tmp, file);
    } else {
      try {
        await link(tmp, file);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "EEXIST") return; // created meanwhile by another process: theirs stands
        // A file system without hard links: replace instead.
        if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP") throw e;
        await rename(tmp, file);
      }
    }
  } finally {
    await unlink(tmp).catch(() => {}); // gone after a rename; the second name after a link
  }
  await syncDir(path.dirname(file));
}

/** Makes a new directory entry durable; where a directory cannot be opened for that (Windows), skipped. */
async function syncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await open(dir, "r");
    await fh.sync();
  } catch {
    // Best effort: the file itself is synced already.
  } finally {
    await fh?.close();
  }
}
