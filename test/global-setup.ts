// Initialising a PGlite data directory takes seconds; restoring a dump of an
// already-migrated one takes well under one. Every test server starts from this dump.
import { writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import type { SqlRunner } from "../src/infra/db/migrate.js";

// jest loads globalSetup with require(), where its ".js" → ".ts" module mapping does
// not apply: load the migrator by its CommonJS path, typed from the ESM one.
const { migrate } = require("../src/infra/db/migrate") as typeof import("../src/infra/db/migrate.js");

export default async function globalSetup() {
  const pglite = await PGlite.create("memory://");
  const runner: SqlRunner = {
    query: async <T>(sql: string, params?: unknown[]) => (await pglite.query<T>(sql, params)).rows,
    execInTransaction: (script, after) =>
      pglite.transaction(async (tx) => {
        await tx.exec(script);
        await after(async <T>(sql: string, params?: unknown[]) => (await tx.query<T>(sql, params)).rows);
      }),
    withLock: (fn) => fn(),
  };
  await migrate(runner);
  const dump = await pglite.dumpDataDir("gzip");
  const file = path.join(os.tmpdir(), `postbox-test-pglite-${process.pid}.tar.gz`);
  await writeFile(file, Buffer.from(await dump.arrayBuffer()));
  await pglite.close();
  process.env.TEST_PGLITE_DUMP = file;
}
