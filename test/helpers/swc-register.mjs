// `node --import ./test/helpers/swc-register.mjs src/main.ts`: runs the TypeScript
// sources directly, compiled by swc with decorator metadata exactly as jest does
// (tsx/esbuild cannot emit it, and type-graphql needs it). Tests use it to spawn
// the real entry point (src/main.ts) as a child process without a build.
import { register } from "node:module";

register("./swc-hooks.mjs", import.meta.url);
