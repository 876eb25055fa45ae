import type { PGlite, QueryOptions, Results, Transaction } from "@electric-sql/pglite";

export declare const MAX_STATEMENTS: number;

/** What pglite-prisma-adapter uses of a PGlite: query, exec and transaction. */
export interface CachedClient {
  query<T>(sql: string, params?: unknown[], options?: QueryOptions): Promise<Results<T>>;
  exec: PGlite["exec"];
  transaction<T>(fn: (tx: Pick<Transaction, "query" | "exec" | "rollback" | "closed">) => Promise<T>): Promise<T>;
}

export declare function cachedStatements(pglite: PGlite, options?: { max?: number }): { client: CachedClient; size(): number };
