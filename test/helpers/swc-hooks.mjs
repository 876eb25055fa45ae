// Module hooks for swc-register.mjs: resolve "./x.js" to "./x.ts" when only the
// TypeScript file exists, and compile project .ts files with swc.
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { transform } from "@swc/core";

const SWC = {
  jsc: {
    target: "es2022",
    parser: { syntax: "typescript", decorators: true },
    transform: { legacyDecorator: true, decoratorMetadata: true },
  },
  module: { type: "es6" },
  sourceMaps: "inline",
};

export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (e) {
    const relative = specifier.startsWith("./") || specifier.startsWith("../") || specifier.startsWith("file:");
    if (relative && specifier.endsWith(".js") && e?.code === "ERR_MODULE_NOT_FOUND") {
      return next(specifier.slice(0, -3) + ".ts", context);
    }
    throw e;
  }
}

export async function load(url, context, next) {
  if (url.startsWith("file:") && url.endsWith(".ts") && !url.includes("/node_modules/")) {
    const filename = fileURLToPath(url);
    const { code } = await transform(await readFile(filename, "utf8"), { ...SWC, filename });
    return { format: "module", source: code, shortCircuit: true };
  }
  return next(url, context);
}
