// Types of pglite-prepared.mjs (plain JavaScript: the database thread loads it).
import type { PGlite } from "@electric-sql/pglite";

export type ParamType = "text" | "text[]" | "int4" | "int4[]" | "timestamp" | "timestamp[]";

export type RunPrepared = (name: string, sql: string, types: ParamType[], params: unknown[]) => Promise<Record<string, string | null>[]>;

/** Runs statements prepared once per connection, with binary parameters. */
export function preparedStatements(pglite: PGlite): RunPrepared;

/** One parameter in PostgreSQL's binary format (null for NULL), for node-postgres's binary parameters. */
export function binaryParam(type: ParamType, value: unknown): Buffer | null;
