// The embedded database's thread (pglite.worker.mjs) on a disk whose syncs fail: once
// the file `<dataDir>.fail-syncs` exists, every fsync and fdatasync throws EIO, as they
// do when a disk cannot write back what it was given.
import fs from "node:fs";
import { workerData } from "node:worker_threads";

const marker = `${workerData.dataDir}.fail-syncs`;
for (const name of ["fsyncSync", "fdatasyncSync"]) {
  const real = fs[name];
  fs[name] = (fd) => {
    if (!fs.existsSync(marker)) return real(fd);
    const syscall = name.replace("Sync", "");
    throw Object.assign(new Error(`EIO: i/o error, ${syscall}`), { code: "EIO", errno: -5, syscall });
  };
}

await import("../../src/infra/db/pglite.worker.mjs");
