// The embedded database's vacuum task: on PGlite only, at most once per interval.
import { describe, expect, it } from "@jest/globals";
import { VACUUM_EVERY_MS, vacuumTask } from "../../src/infra/db/maintenance.js";
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
