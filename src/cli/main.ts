// `npm run cli -- <group> <command> [options]`: the operator CLI. It talks to the
// running server's admin API only (see lib.ts), so it imports no server code.
import { runCli, type GroupLoader } from "./lib.js";

// Command groups: one line each. A group module's default export is a CommandGroup (see lib.ts).
const groups: Record<string, GroupLoader> = {
  app: () => import("./commands/app.js"),
  contract: () => import("./commands/contract.js"),
  webhook: () => import("./commands/webhook.js"),
  user: async () => ({ default: (await import("./commands/user-files.js")).withFileCommands((await import("./commands/user.js")).default) }),
  audit: () => import("./commands/audit.js"),
};

process.exitCode = await runCli(process.argv.slice(2), groups);
