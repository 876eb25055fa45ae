// binaryParam (pglite-prepared.mjs) gives node-postgres the batch-of-pushes statement's
// parameters in PostgreSQL's binary format: PostgreSQL must read back exactly what the
// same values sent as text give.
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import pg from "pg";
import { binaryParam } from "../../src/infra/db/pglite-prepared.mjs";
import { TEST_DATABASE_URL } from "../helpers/server.js";

describe("binaryParam on PostgreSQL", () => {
  let client: pg.Client;
  beforeAll(async () => {
    client = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await client.connect();
  });
  afterAll(async () => client?.end());

  const SQL = `SELECT $1::text[]::text AS t, $2::int4[]::text AS i, $3::timestamp(3)[]::text AS ts, $4::text AS s, $5::int4::text AS n, $6::timestamp(3)::text AS at`;
  const at = new Date("2026-12-02T01:02:03.456Z");
  const values = [["a", null, "ü \"quoted\" \\ {b,c}", ""], [1, -2147483648, null, 2147483647], [at, null, "2026-01-01T00:00:00.000Z"], "plain", 7, at.toISOString()];
  const types = ["text[]", "int4[]", "timestamp[]", "text", "int4", "timestamp"] as const;

  it("sends text, integers, timestamps and NULLs as their text forms would", async () => {
    const asText = await client.query(SQL, values.map((v) => (Array.isArray(v) ? v.map((x) => (x instanceof Date ? x.toISOString() : x)) : v)));
    const asBinary = await client.query({ name: "binary_params", text: SQL, values: values.map((v, i) => binaryParam(types[i], v)) });
    expect(asBinary.rows).toEqual(asText.rows);
    expect(asBinary.rows[0]).toMatchObject({ i: "{1,-2147483648,NULL,2147483647}", at: "2026-12-02 01:02:03.456", s: "plain" });
    expect(binaryParam("text[]", null)).toBeNull();
  });

  it("refuses a value of the wrong kind before anything is sent", () => {
    expect(() => binaryParam("int4[]", [1.5])).toThrow(/expected an integer/);
    expect(() => binaryParam("timestamp", "not a date")).toThrow(/expected a date/);
    expect(() => binaryParam("text[]", "not an array")).toThrow(/expected an array/);
  });
});
