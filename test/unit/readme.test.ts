// README.md: the configuration table is generated from SPEC and must not go stale;
// the places where other parts of the walkthrough are merged must stay.
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "@jest/globals";
import { SPEC } from "../../src/infra/config.js";
import { README, renderConfigTable, withConfigTable } from "../../scripts/docs-config.js";

describe("README.md", () => {
  it("has the configuration table for every variable in SPEC (run `npm run docs:config` to update it)", async () => {
    const text = await readFile(README, "utf8");
    if (withConfigTable(text) !== text) {
      throw new Error("The configuration table in README.md is stale: SPEC in src/infra/config.ts changed. Run `npm run docs:config` and commit README.md.");
    }
    for (const name of Object.keys(SPEC)) expect(text).toContain(`| \`${name}\` |`);
  });

  it("renders one row per variable with its default", () => {
    const table = renderConfigTable().split("\n");
    expect(table).toHaveLength(Object.keys(SPEC).length + 2);
    expect(table).toContain("| `PORT` | `4000` | HTTP and WebSocket port (GraphQL at `/graphql`). |");
    expect(table.find((l) => l.startsWith("| `DATABASE_URL` |"))).toMatch(/^\| `DATABASE_URL` \| — \|/);
  });

  it("refuses to rewrite a README without the markers", () => {
    expect(() => withConfigTable("# no table here")).toThrow(/needs the markers/);
  });

  it("keeps the quick start to two commands and the walkthrough merge points", async () => {
    const text = await readFile(README, "utf8");
    const quick = text.slice(text.indexOf("## Quick start"), text.indexOf("## Walkthrough"));
    const commands = quick.slice(quick.indexOf("```sh") + 5, quick.indexOf("```", quick.indexOf("```sh") + 5)).trim().split("\n");
    expect(commands.map((c) => c.replace(/\s+#.*$/, ""))).toEqual(["npm ci && npm start", "npm test"]);
    for (const marker of ["<!-- walkthrough:postbox -->", "<!-- walkthrough:push -->", "<!-- walkthrough:user-app -->"]) expect(text).toContain(marker);
  });
});
