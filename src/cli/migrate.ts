// `npm run db:migrate`: applies prisma/migrations to DATABASE_URL, or to the
// embedded database in DATA_DIR, and says what it did. The server does the same at
// start; this is for operators who migrate before rolling out. On the embedded
// database it refuses while a server holds it (db.lock, see infra/db/lock.ts).
import path from "node:path";
import { ConfigError, loadConfig } from "../infra/config.js";
import { openDatabase } from "../infra/db/database.js";
import { DatabaseLockedError } from "../infra/db/lock.js";

/** A URL without its password, for messages. */
function redactUrl(raw: string): string {
  try {
    const u = new URL(raw);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparseable URL)";
  }
}

async function main(): Promise<number> {
  let config;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`db:migrate: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  const dataDir = path.join(config.DATA_DIR, "db");
  const target = config.DATABASE_URL ? `PostgreSQL ${redactUrl(config.DATABASE_URL)}` : `embedded database ${dataDir}`;
  let db;
  try {
    db = await openDatabase({ url: config.DATABASE_URL, dataDir, poolSize: 2, sync: config.EMBEDDED_DB_SYNC });
  } catch (e) {
    if (e instanceof DatabaseLockedError) {
      process.stderr.write(`db:migrate: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  try {
    const result = await db.migrate();
    for (const name of result.applied) process.stdout.write(`applied ${name}\n`);
    process.stdout.write(
      result.applied.length
        ? `${target}: applied ${result.applied.length} migration(s); ${result.alreadyApplied} were already applied.\n`
        : `${target}: up to date (${result.alreadyApplied} migration(s) already applied, nothing to do).\n`,
    );
    return 0;
  } finally {
    await db.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`db:migrate: failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
