// schema.graphql is generated from the code and committed; this fails when it is stale.
import { readFile } from "node:fs/promises";
import { expect, it } from "@jest/globals";
import { printAppSchema } from "../../src/schema-emit.js";

it("schema.graphql matches the schema built from the code (run `npm run schema` to update it)", async () => {
  const committed = await readFile(new URL("../../schema.graphql", import.meta.url), "utf8");
  const built = await printAppSchema();
  if (committed !== built) {
    const a = committed.split("\n");
    const b = built.split("\n");
    const line = a.findIndex((l, i) => l !== b[i]);
    throw new Error(
      `schema.graphql is stale: the schema built from the code differs from the committed file (first at line ${line + 1}: ` +
        `file ${JSON.stringify(a[line] ?? "<end>")}, code ${JSON.stringify(b[line] ?? "<end>")}). Run \`npm run schema\` and commit the result.`,
    );
  }
  expect(built).toContain("createSession(input: CreateSessionInput!): Session!");
});
