// The embedded database's vacuum: which tables each run takes, and the task that runs
// it on PGlite only, at most once per interval.
import { describe, expect, it } from "@jest/globals";
import { MIN_PARENT_PAGES, VACUUM_EVERY_MS, WRAPAROUND_AGE, vacuumStatements, vacuumTask } from "../../src/infra/db/maintenance.js";
import { createLogger } from "../../src/infra/logger.js";

const log = createLogger("silent");
const NOW = Date.parse("2026-11-30T12:00:00Z");

describe("vacuumTask", () => {
  it("is not scheduled where the database vacuums itself (PostgreSQL)", () => {
    expect(vacuumTask({ vacuum: null }, log)).toBeNull();
  });

  it("vacuums on its first run, then once the interval has passed", async () => {
    let runs = 0;
    const task = vacuumTask({ vacuum: async () => void runs++ }, log)!;
    expect(task.name).toBe("database.vacuum");
    await task.run(new Date(NOW));
    expect(runs).toBe(1);
    await task.run(new Date(NOW + VACUUM_EVERY_MS - 1));
    expect(runs).toBe(1);
    await task.run(new Date(NOW + VACUUM_EVERY_MS));
    expect(runs).toBe(2);
  });

  it("lets a failed vacuum fail the run (the scheduler logs it) and tries again next interval", async () => {
    let runs = 0;
    const task = vacuumTask({ vacuum: async () => { runs++; throw new Error("disk full"); } }, log, 1000)!;
    await expect(task.run(new Date(NOW))).rejects.toThrow("disk full");
    await task.run(new Date(NOW + 500)).catch(() => {});
    expect(runs).toBe(1);
    await expect(task.run(new Date(NOW + 1000))).rejects.toThrow("disk full");
    expect(runs).toBe(2);
  });
});

describe("vacuumStatements", () => {
  const tables = [
    { name: "PushContent", pages: 1, referenced: false },
    { name: "AuditEvent", pages: 500, referenced: false },
    { name: "Push", pages: MIN_PARENT_PAGES - 1, referenced: true },
    { name: "Postbox", pages: MIN_PARENT_PAGES, referenced: true },
    { name: 'Odd"Name', pages: 0, referenced: false },
  ];

  it("vacuums every table no foreign key points to, and the others only once they are large, never truncating them", () => {
    expect(vacuumStatements(tables, 1000)).toEqual(['VACUUM "PushContent", "AuditEvent", "Odd""Name"', 'VACUUM (TRUNCATE false) "Postbox"']);
  });

  it("leaves out an empty list", () => {
    expect(vacuumStatements([{ name: "Push", pages: 1, referenced: true }], 0)).toEqual([]);
    expect(vacuumStatements([{ name: "Push", pages: MIN_PARENT_PAGES, referenced: true }], 0)).toEqual(['VACUUM (TRUNCATE false) "Push"']);
  });

  it("vacuums the whole database, catalogs included, once its transactions near wraparound", () => {
    expect(vacuumStatements(tables, WRAPAROUND_AGE - 1)).toHaveLength(2);
    expect(vacuumStatements(tables, WRAPAROUND_AGE)).toEqual(["VACUUM (TRUNCATE false)"]);
  });
});
