// `npm ci` / `npm install` runs this: it generates the Prisma client and builds the web
// app, with tools that are development dependencies (the prisma CLI, esbuild). An
// install without them (`npm ci --omit=dev`, beside a dist/ and web/dist/ built with
// them, as in a container's runtime stage) has nothing to build here, so it skips.
import { execSync } from "node:child_process";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const installed = (name) => {
  try {
    require.resolve(`${name}/package.json`);
    return true;
  } catch {
    return false;
  }
};

if (installed("prisma") && installed("esbuild")) {
  execSync("npm run generate && npm run build:web", { stdio: "inherit" });
} else {
  process.stdout.write("postbox: development dependencies not installed; the Prisma client and the web app are not built (use the dist/ and web/dist/ of a full install).\n");
}
