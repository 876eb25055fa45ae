// Prints the GraphQL schema (SDL, sorted) as built from the code. `npm run schema`
// writes it to schema.graphql; test/unit/schema.test.ts fails when that file is stale.
import "reflect-metadata";
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { lexicographicSortSchema, printSchema } from "graphql";
import { wire } from "./app.js";
import { loadConfig } from "./infra/config.js";
import type { Database } from "./infra/db/database.js";
import { buildAppSchema } from "./infra/graphql/schema.js";
import { createLogger } from "./infra/logger.js";
import { createAppPubSub } from "./infra/pubsub.js";

const HEADER = "# Generated from the code by `npm run schema`. Do not edit by hand.\n\n";

export async function printAppSchema(): Promise<string> {
  // Building the schema constructs repositories but runs no query, so no database is opened.
  const db = { kind: "pglite", prisma: {} } as unknown as Database;
  const wired = wire(loadConfig({}), db, createAppPubSub(), createLogger("silent"));
  const schema = await buildAppSchema(wired.resolvers, createAppPubSub().pubSub);
  return HEADER + printSchema(lexicographicSortSchema(schema)) + "\n";
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = process.argv[2] ?? "schema.graphql";
  await writeFile(out, await printAppSchema());
  process.stdout.write(`wrote ${out}\n`);
}
