// Secrets the server generates into DATA_DIR when they are not configured,
// readable only by the server's user (mode 0600).
import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";

export async function loadOrCreateSecret(dataDir: string, fileName: string, prefix: string): Promise<string> {
  const file = path.join(dataDir, fileName);
  try {
    const existing = (await readFile(file, "utf8")).trim();
    if (existing) return existing;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const secret = `${prefix}_${randomBytes(32).toString("base64url")}`;
  await writeFile(file, secret + "\n", { mode: 0o600, flag: "wx" }).catch(async (e: NodeJS.ErrnoException) => {
    if (e.code !== "EEXIST") throw e;
  });
  await chmod(file, 0o600);
  return (await readFile(file, "utf8")).trim();
}
