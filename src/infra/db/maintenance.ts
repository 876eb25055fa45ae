// The embedded database's housekeeping: a plain VACUUM of every table once a
// minute (see Database.vacuum for why PGlite needs it). Frequent rather than rare
// because it stops the database thread while it runs, and its cost grows with the
// rows changed since the last one: measured on a database of 20,000 pushes
// (86 MB), 6 ms with nothing changed and 14 ms after 10,000 purges. Plain VACUUM
// also freezes old rows as it goes, which PostgreSQL needs before its transaction
// counter wraps around.
import type { Logger } from "../logger.js";
import type { Task } from "../scheduler.js";
import type { Database } from "./database.js";

export const VACUUM_EVERY_MS = 60_000;

/** The scheduler task that vacuums the embedded database when a minute has passed; null on PostgreSQL. */
export function vacuumTask(db: Pick<Database, "vacuum">, log: Logger, everyMs = VACUUM_EVERY_MS): Task | null {
  const vacuum = db.vacuum;
  if (!vacuum) return null;
  let last: number | undefined;
  return {
    name: "database.vacuum",
    async run(now: Date) {
      if (last !== undefined && now.getTime() - last < everyMs) return;
      last = now.getTime();
      const started = performance.now();
      await vacuum();
      const ms = Math.round(performance.now() - started);
      // Slow runs held every query up for that long: worth seeing at the default level.
      if (ms >= 500) log.info({ ms }, "embedded database vacuumed (slow)");
      else log.debug({ ms }, "embedded database vacuumed");
    },
  };
}
