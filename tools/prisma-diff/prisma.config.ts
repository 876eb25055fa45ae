// Prisma 6 with the JS (WASM) schema engine: works without Prisma's binary host.
// The adapter it requires is an in-memory PGlite, so nothing outside is touched.
import { defineConfig } from "prisma/config";
import { PGlite } from "@electric-sql/pglite";
import { PrismaPGlite } from "pglite-prisma-adapter";

export default defineConfig({
  engine: "js",
  experimental: { adapter: true },
  schema: "../../prisma/schema.prisma",
  adapter: async () => new PrismaPGlite(new PGlite("memory://")),
});
