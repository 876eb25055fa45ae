// Prisma 7 CLI configuration. Only `prisma generate` is used from this CLI: its
// migrate commands need a native engine that cannot be downloaded offline, so the
// server applies prisma/migrations itself (src/infra/db/migrate.ts) and new
// migrations are written with tools/prisma-diff (see its README).
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
});
