// The embedded database's lock file: one process at a time; locks of dead
// processes are taken over; a live holder is named in the refusal.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "@jest/globals";
import { acquireDbLock, DatabaseLockedError } from "../../src/infra/db/lock.js";
import { pgliteLockFile } from "../../src/infra/db/database.js";

let dir: string;
let file: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "postbox-lock-"));
  file = path.join(dir, "db.lock");
});
afterEach(async () => rm(dir, { recursive: true, force: true }));

function deadPid(): number {
  const child = spawnSync(process.execPath, ["-e", ""]);
  return child.pid!;
}

describe("db.lock", () => {
  it("sits next to the embedded database folder", () => {
    expect(pgliteLockFile("/srv/postbox/data/db")).toBe("/srv/postbox/data/db.lock");
    expect(pgliteLockFile("/srv/postbox/data/db/")).toBe("/srv/postbox/data/db.lock");
  });

  it("holds this process's pid, readable only by its owner, and is removed on release", async () => {
    const lock = await acquireDbLock(file);
    expect((await readFile(file, "utf8")).trim()).toBe(String(process.pid));
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    await lock.release();
    expect(existsSync(file)).toBe(false);
    await lock.release(); // idempotent
  });

  it("refuses a second holder in the same process", async () => {
    const lock = await acquireDbLock(file);
    await expect(acquireDbLock(file)).rejects.toBeInstanceOf(DatabaseLockedError);
    await lock.release();
    const again = await acquireDbLock(file);
    await again.release();
  });

  it("refuses a lock held by a live process, naming it and the way out", async () => {
    await writeFile(file, "1\n"); // pid 1 is always alive
    const err = await acquireDbLock(file).catch((e) => e);
    expect(err).toBeInstanceOf(DatabaseLockedError);
    expect(err.pid).toBe(1);
    expect(err.message).toMatch(/in use by process 1/);
    expect(err.message).toMatch(/is the Postbox server running\?/);
    expect(err.message).toContain(file);
    expect((await readFile(file, "utf8")).trim()).toBe("1");
  });

  it.each([
    ["a dead process", () => `${deadPid()}\n`],
    ["garbage", () => "not a pid"],
    ["nothing", () => ""],
  ])("takes over a lock left by %s", async (_n, content) => {
    await writeFile(file, content());
    const lock = await acquireDbLock(file);
    expect((await readFile(file, "utf8")).trim()).toBe(String(process.pid));
    await lock.release();
  });

  it("does not remove a lock that another process took over meanwhile", async () => {
    const lock = await acquireDbLock(file);
    await writeFile(file, "1\n");
    await lock.release();
    expect((await readFile(file, "utf8")).trim()).toBe("1");
  });
});
