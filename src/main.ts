// Entry point: `npm start`. Reads configuration (stopping with a message that
// names a bad variable), starts Postbox, and shuts down gracefully on SIGTERM/SIGINT.
import "reflect-metadata";
import { ConfigError, loadConfig } from "./infra/config.js";
import { createApp } from "./app.js";

async function main() {
  let config;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`postbox: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const app = await createApp(config);
  let signals = 0;
  const shutdown = (signal: string) => {
    if (++signals > 1) process.exit(1); // a second signal forces the exit
    app.log.info({ signal }, "shutting down");
    app.stop().then(
      () => process.exit(0),
      (err) => {
        app.log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
}

main().catch((err) => {
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  const why =
    e?.code === "EADDRINUSE" ? `${e.address}:${e.port} is already in use; stop what listens there or set PORT (or HOST) to another` : err instanceof Error ? err.message : String(err);
  process.stderr.write(`postbox: failed to start: ${why}\n`);
  process.exit(1);
});
