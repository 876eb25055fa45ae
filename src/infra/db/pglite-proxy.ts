// The server's side of the embedded database thread (pglite.worker.mjs): a
// Prisma driver adapter and the migrator's SqlRunner whose every call is a
// message to that thread. Statements still run one at a time in PGlite, but no
// longer on the thread that serves HTTP: requests that need no database (and the
// encryption, GraphQL and HTTP work of those that do) go on while one runs, on
// the machine's other core.
import { Worker } from "node:worker_threads";
import {
  DriverAdapterError,
  type IsolationLevel,
  type SqlDriverAdapter,
  type SqlDriverAdapterFactory,
  type SqlQuery,
  type SqlResultSet,
  type Transaction,
  type TransactionOptions,
} from "@prisma/driver-adapter-utils";
import type { SqlRunner } from "./migrate.js";
import type { ParamType } from "./pglite-prepared.mjs";

const WORKER_URL = new URL("./pglite.worker.mjs", import.meta.url);
// The adapter in the worker; Prisma sees its name through the proxy.
const ADAPTER_NAME = "pglite-prisma-adapter";

type WireError = { driver: ConstructorParameters<typeof DriverAdapterError>[0] } | { message: string; name?: string; code?: string };

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

export class PgliteThread {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failure: Error | undefined;

  private constructor(private readonly worker: Worker) {
    const fail = (e: Error) => {
      this.failure ??= e;
      for (const p of this.pending.values()) p.reject(this.failure);
      this.pending.clear();
    };
    worker.on("message", ({ id, ok, error, fatal }: { id: number; ok?: unknown; error?: WireError; fatal?: { message: string } }) => {
      if (fatal) {
        // Every later call fails with this; readiness turns 503 and logs it.
        fail(
          new Error(
            `The embedded database stopped: it ${fatal.message}. Nothing after that was acknowledged. Fix the disk, then restart the server; the database recovers what was committed.`,
          ),
        );
        return;
      }
      const p = this.pending.get(id);
      if (!p) return;
      this.pending.delete(id);
      if (error) p.reject(toError(error));
      else p.resolve(ok);
    });
    worker.on("error", fail);
    worker.on("exit", (code) => fail(new Error(`The embedded database thread stopped (exit code ${code}).`)));
  }

  /**
   * Starts the thread and opens the database in it; rejects if PGlite cannot open it.
   * `sync`: commits are synced to disk before they are acknowledged (pglite-durable.mjs, where its default is).
   * `workerUrl`: the thread's script, pglite.worker.mjs unless a test runs it on a failing disk.
   */
  static async start(dataDir: string, opts: { sync?: boolean; loadDataDir?: Blob; workerUrl?: URL } = {}): Promise<PgliteThread> {
    const worker = new Worker(opts.workerUrl ?? WORKER_URL, { workerData: { dataDir, loadDataDir: opts.loadDataDir, sync: opts.sync } });
    const thread = new PgliteThread(worker);
    try {
      await new Promise((resolve, reject) => thread.pending.set(0, { resolve, reject }));
    } catch (e) {
      await worker.terminate();
      throw e;
    }
    return thread;
  }

  call<T>(op: string, ...args: unknown[]): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ id, op, args });
    });
  }

  async close(): Promise<void> {
    try {
      await this.call("close");
    } finally {
      await this.worker.terminate();
    }
  }

  adapterFactory(): SqlDriverAdapterFactory {
    const thread = this;
    return {
      provider: "postgres",
      adapterName: ADAPTER_NAME,
      connect: async () => new ProxyAdapter(thread),
    };
  }

  /** A statement prepared once in the thread, with binary parameters (pglite-prepared.mjs). */
  prepared<T>(name: string, sql: string, types: ParamType[], params: unknown[]): Promise<T[]> {
    return this.call<T[]>("prepared", name, sql, types, params);
  }

  runner(): SqlRunner {
    return {
      query: <T>(sql: string, params?: unknown[]) => this.call<T[]>("query", sql, params ?? []),
      execInTransaction: async (script, after) => {
        const tx = await this.call<number>("begin");
        try {
          await this.call("txExec", tx, script);
          await after(<T>(sql: string, params?: unknown[]) => this.call<T[]>("txQuery", tx, sql, params ?? []));
        } catch (e) {
          await this.call("end", tx, "rollback").catch(() => {});
          throw e;
        }
        await this.call("end", tx, "commit");
      },
      withLock: (fn) => fn(), // one process owns an embedded database
    };
  }
}

function toError(e: WireError): Error {
  if ("driver" in e) return new DriverAdapterError(e.driver);
  const err = new Error(e.message);
  if (e.name) err.name = e.name;
  if (e.code) (err as Error & { code?: string }).code = e.code;
  return err;
}

class ProxyQueryable {
  readonly provider = "postgres" as const;
  readonly adapterName = ADAPTER_NAME;

  constructor(
    protected readonly thread: PgliteThread,
    protected readonly txId: number | null,
  ) {}

  queryRaw(query: SqlQuery): Promise<SqlResultSet> {
    return this.thread.call("queryRaw", this.txId, query);
  }

  executeRaw(query: SqlQuery): Promise<number> {
    return this.thread.call("executeRaw", this.txId, query);
  }
}

class ProxyTransaction extends ProxyQueryable implements Transaction {
  constructor(
    thread: PgliteThread,
    txId: number,
    readonly options: TransactionOptions,
  ) {
    super(thread, txId);
  }

  commit(): Promise<void> {
    return this.thread.call("end", this.txId, "commit");
  }

  rollback(): Promise<void> {
    return this.thread.call("end", this.txId, "rollback");
  }
}

class ProxyAdapter extends ProxyQueryable implements SqlDriverAdapter {
  constructor(thread: PgliteThread) {
    super(thread, null);
  }

  executeScript(script: string): Promise<void> {
    return this.thread.call("executeScript", script);
  }

  async startTransaction(isolationLevel?: IsolationLevel): Promise<Transaction> {
    const { id, options } = await this.thread.call<{ id: number; options: TransactionOptions }>("startTransaction", isolationLevel);
    return new ProxyTransaction(this.thread, id, options);
  }

  getConnectionInfo() {
    return { supportsRelationJoins: true };
  }

  async dispose(): Promise<void> {}
}
