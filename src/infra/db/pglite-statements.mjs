// Prisma's queries on the embedded database as named prepared statements, each SQL
// text parsed once. PGlite's query() sends every call as six messages, each its own
// trip into PostgreSQL: Parse, Describe (of the statement, for its parameters'
// types), Bind, Describe, Execute, Sync; and PostgreSQL parses and plans the SQL
// again every time. Prisma sends a few dozen distinct SQL texts over and over, as
// Prisma's own engine did on PostgreSQL with its statement cache. Here the first call
// of a text parses it (Parse, Describe, Sync: one trip) and every call binds it (Bind,
// Describe, Execute, Sync: one trip). Measured in process on a one-row lookup by id,
// with the adapter's options: 325–467 µs a query through query(), 89–99 µs this way
// (docs/design.md).
//
// The results are read by PGlite's own parser, with the same parsers and serializers
// as query(), so callers (pglite-prisma-adapter) see exactly what query() returns.
// Plain JavaScript on purpose, like the worker that loads it.
import { parse, protocol } from "@electric-sql/pglite";

const { serialize } = protocol;

/** Statements kept per database; the least recently used one is closed beyond this. */
export const MAX_STATEMENTS = 256;

// "prepared statement does not exist" (DEALLOCATE, DISCARD ALL) and "cached plan must
// not change result type" (a table changed under the statement): parse it again.
const STALE = new Set(["26000", "0A000"]);

// Statement names are unique per cache, should a database ever be given two.
let caches = 0;

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * A query() like PGlite's for pglite-prisma-adapter, on cached prepared statements:
 * `client` for the adapter (query, exec, transaction), whose transactions' query()
 * uses the cache too; `size()` is the number of statements held.
 */
export function cachedStatements(pglite, { max = MAX_STATEMENTS } = {}) {
  const cache = new Map(); // SQL text -> { name, types }, least recently used first
  const evicted = []; // names dropped from the cache inside a transaction, closed after it
  const prefix = `prisma_${++caches}_`;
  let counter = 0;

  async function close(names) {
    const messages = names.map((name) => serialize.close({ type: "S", name }));
    await pglite.execProtocol(concat([...messages, serialize.sync()]), { syncToFs: false });
  }

  async function prepare(sql, inTransaction) {
    const name = `${prefix}${++counter}`;
    const { messages } = await pglite.execProtocol(concat([serialize.parse({ name, text: sql }), serialize.describe({ type: "S", name }), serialize.sync()]), { syncToFs: false });
    const st = { name, types: messages.find((m) => m.name === "parameterDescription")?.dataTypeIDs ?? [] };
    cache.set(sql, st);
    if (cache.size > max) {
      const [oldest, { name: gone }] = cache.entries().next().value;
      cache.delete(oldest);
      evicted.push(gone);
    }
    // Not inside a transaction, where a failed Close would abort it.
    if (evicted.length && !inTransaction) await close(evicted.splice(0));
    return st;
  }

  async function run(sql, params, options, inTransaction, retried = false) {
    let st = cache.get(sql);
    if (st) {
      cache.delete(sql); // to the recent end
      cache.set(sql, st);
    } else {
      st = await prepare(sql, inTransaction);
    }
    // Text parameters, serialized as query() serializes them: by the type PostgreSQL inferred.
    const values = params.map((v, i) => {
      if (v === null || v === undefined) return null;
      const serializer = options?.serializers?.[st.types[i]] ?? pglite.serializers[st.types[i]];
      return serializer ? serializer(v) : v.toString();
    });
    try {
      const { messages } = await pglite.execProtocol(
        concat([serialize.bind({ statement: st.name, values }), serialize.describe({ type: "P" }), serialize.execute({}), serialize.sync()]),
        { syncToFs: !inTransaction },
      );
      return parse.parseResults(messages, parsersFor(options), options?.rowMode ? { rowMode: options.rowMode } : undefined)[0];
    } catch (e) {
      if (!STALE.has(e?.code)) throw e;
      cache.delete(sql);
      // A transaction is aborted by the error; outside one, the statement runs again, parsed
      // anew, once: 0A000 is also "feature not supported", which a new parse does not cure.
      if (inTransaction || retried) throw e;
      return run(sql, params, options, inTransaction, true);
    }
  }

  // parseResults merges the caller's parsers into PGlite's by copying both, every call
  // (about a tenth of the thread's time under reads): merged once per parsers object
  // instead, on top of PGlite's own, which stay live underneath.
  const merged = new WeakMap();
  function parsersFor(options) {
    const own = options?.parsers;
    if (!own) return pglite.parsers;
    let parsers = merged.get(own);
    if (!parsers) merged.set(own, (parsers = Object.assign(Object.create(pglite.parsers), own)));
    return parsers;
  }

  /** A transaction's handle whose query() goes through the cache; the rest is PGlite's. */
  function within(tx) {
    return {
      query(sql, params = [], options) {
        if (tx.closed) return Promise.reject(new Error("Transaction is closed"));
        return pglite._runExclusiveQuery(() => run(sql, params, options, true));
      },
      exec: (sql, options) => tx.exec(sql, options),
      rollback: () => tx.rollback(),
      get closed() {
        return tx.closed;
      },
    };
  }

  return {
    client: {
      // The same two locks query() takes (underscored in PGlite, but declared in its types).
      query: (sql, params = [], options) => pglite._runExclusiveTransaction(() => pglite._runExclusiveQuery(() => run(sql, params, options, false))),
      exec: (sql, options) => pglite.exec(sql, options),
      transaction: (fn) => pglite.transaction((tx) => fn(within(tx))),
    },
    size: () => cache.size,
  };
}
