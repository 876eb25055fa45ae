// The embedded database's own thread. PGlite runs PostgreSQL compiled to
// WebAssembly, synchronously: on the server's thread every statement would stop
// all other requests for as long as it runs. Here it runs beside them, and the
// server talks to it by messages (see pglite-proxy.ts for the other end).
//
// Plain JavaScript on purpose: worker threads load files as they are, with no
// TypeScript step (the same file serves `tsx`, jest and the build).
//
// Requests: { id, op, args }. Answers: { id, ok } or { id, error }; and { fatal: { message } }
// just before the thread stops because a sync to disk failed (see pglite-durable.mjs).
import { parentPort, workerData } from "node:worker_threads";
import { PrismaPGlite } from "pglite-prisma-adapter";
import { openPglite } from "./pglite-durable.mjs";
import { preparedStatements } from "./pglite-prepared.mjs";
import { cachedStatements } from "./pglite-statements.mjs";

const { dataDir, loadDataDir, sync, firstTxId = 1 } = workerData;

/** Open transactions by id: the adapter's (Prisma) or PGlite's own (the migrator). */
const transactions = new Map();
// From the range the server gave this thread: no id of an earlier thread's comes back.
let nextTx = firstTxId;

function serializeError(e) {
  if (e && e.name === "DriverAdapterError") return { driver: e.cause };
  return { message: e instanceof Error ? e.message : String(e), name: e?.name, code: e?.code };
}

/** A PGlite transaction held open until commit/rollback arrive (like pglite-prisma-adapter does it). */
function holdTransaction(pglite) {
  return new Promise((resolve, reject) => {
    let release;
    const done = new Promise((r) => (release = r));
    const finished = pglite
      .transaction(async (tx) => {
        resolve({ tx, release, finished });
        await done;
      })
      .catch((e) => {
        reject(e);
        throw e;
      });
    finished.catch(() => {});
  });
}

async function main() {
  let pglite;
  try {
    pglite = await openPglite(dataDir, { sync, loadDataDir, onSyncFailure: (e) => parentPort.postMessage({ fatal: { message: e.message } }) });
  } catch (e) {
    parentPort.postMessage({ id: 0, error: serializeError(e) });
    return;
  }
  // Prisma's queries as cached prepared statements (see pglite-statements.mjs).
  const adapter = await new PrismaPGlite(cachedStatements(pglite).client).connect();
  const queryable = (txId) => (txId ? transactions.get(txId)?.queryable : adapter);

  const ops = {
    // Prisma's driver adapter, method by method.
    queryRaw: (txId, query) => need(queryable(txId), txId).queryRaw(query),
    executeRaw: (txId, query) => need(queryable(txId), txId).executeRaw(query),
    executeScript: (script) => adapter.executeScript(script),
    async startTransaction(isolationLevel) {
      const t = await adapter.startTransaction(isolationLevel);
      const id = nextTx++;
      transactions.set(id, { queryable: t, end: (how) => t[how]() });
      return { id, options: t.options };
    },
    // The migrator's runner.
    query: async (sql, params) => (await pglite.query(sql, params)).rows,
    // A hot statement, prepared once with binary parameters (see pglite-prepared.mjs).
    prepared: preparedStatements(pglite),
    async begin() {
      const held = await holdTransaction(pglite);
      const id = nextTx++;
      const tx = held.tx;
      transactions.set(id, {
        queryable: {
          query: async (sql, params) => (await tx.query(sql, params)).rows,
          exec: async (script) => {
            await tx.exec(script);
          },
        },
        end: async (how) => {
          if (how === "rollback") await tx.rollback();
          held.release();
          await held.finished;
        },
      });
      return id;
    },
    txQuery: (txId, sql, params) => need(queryable(txId), txId).query(sql, params),
    txExec: (txId, script) => need(queryable(txId), txId).exec(script),
    async end(txId, how) {
      const t = transactions.get(txId);
      if (!t) throw new Error(`no open transaction ${txId}`);
      transactions.delete(txId);
      await t.end(how);
    },
    async close() {
      await pglite.close();
    },
  };

  parentPort.on("message", async ({ id, op, args }) => {
    try {
      const fn = ops[op];
      if (!fn) throw new Error(`unknown operation ${op}`);
      parentPort.postMessage({ id, ok: await fn(...args) });
    } catch (e) {
      parentPort.postMessage({ id, error: serializeError(e) });
    }
  });
  parentPort.postMessage({ id: 0, ok: "ready" });
}

function need(q, txId) {
  if (!q) throw new Error(`no open transaction ${txId}`);
  return q;
}

void main();
