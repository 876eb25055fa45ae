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

/** What the server hears of the thread's life after it started (database.ts logs it). */
export interface ThreadEvents {
  /** The thread stopped on its own: every call fails with `error` until it is back. */
  stopped(error: Error): void;
  /** An attempt to reopen the database failed; the next is in `retryInMs`. */
  reopenFailed(error: Error, retryInMs: number): void;
  /** The database is open again in a new thread. */
  reopened(): void;
}

export interface ThreadOptions {
  /** Commits are synced to disk before they are acknowledged (pglite-durable.mjs, where its default is). */
  sync?: boolean;
  /** A data-directory dump to open the database from, the first time only. */
  loadDataDir?: Blob;
  /** The thread's script: pglite.worker.mjs unless a test runs it on a failing disk. */
  workerUrl?: URL;
  /**
   * After the thread stops on its own (a failed sync, a crash), a new one reopens a
   * database on disk after this long, and again after twice as long each time that
   * fails, up to a minute: PostgreSQL's recovery then replays what the log holds, as a
   * PostgreSQL server restarts after a crash. 0: never. An in-memory database is never
   * reopened (nothing of it survives its thread). Default 1 s.
   */
  reopenAfterMs?: number;
  events?: ThreadEvents;
}

const MAX_REOPEN_DELAY_MS = 60_000;

export class PgliteThread {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failure: Error | undefined;
  private worker!: Worker;
  private opened = false;
  private closing = false;
  private reopenTimer: NodeJS.Timeout | undefined;
  /** Threads started so far: each numbers its transactions from its own range (see open). */
  private threads = 0;

  private constructor(
    private readonly dataDir: string,
    private readonly opts: ThreadOptions,
  ) {}

  /** Starts the thread and opens the database in it; rejects if PGlite cannot open it. */
  static async start(dataDir: string, opts: ThreadOptions = {}): Promise<PgliteThread> {
    const thread = new PgliteThread(dataDir, opts);
    await thread.open(opts.loadDataDir);
    thread.opened = true;
    return thread;
  }

  /** A new thread for the database; resolves once it has opened it. */
  private async open(loadDataDir?: Blob): Promise<void> {
    // A transaction open in a thread that stopped is lost; its id must never name one of
    // the next thread's, or a late statement of it would run inside another's transaction.
    const firstTxId = this.threads++ * 2 ** 32 + 1;
    const worker = new Worker(this.opts.workerUrl ?? WORKER_URL, { workerData: { dataDir: this.dataDir, loadDataDir, sync: this.opts.sync, firstTxId } });
    this.worker = worker;
    // Events of a thread that has been replaced are no longer this object's concern.
    const stopped = (e: Error) => {
      if (this.worker !== worker) return;
      const first = !this.failure;
      this.failure ??= e;
      for (const [id, p] of this.pending) p.reject(id === 0 ? e : this.failure);
      this.pending.clear();
      if (first && this.opened && !this.closing) {
        this.opts.events?.stopped(this.failure);
        this.scheduleReopen(this.opts.reopenAfterMs ?? 1000);
      }
    };
    worker.on("message", ({ id, ok, error, fatal }: { id: number; ok?: unknown; error?: WireError; fatal?: { message: string } }) => {
      if (this.worker !== worker) return;
      if (fatal) {
        stopped(new Error(`The embedded database stopped: it ${fatal.message}. Nothing after that was acknowledged; the database reopens once the disk works again.`));
        return;
      }
      const p = this.pending.get(id);
      if (!p) return;
      this.pending.delete(id);
      if (error) p.reject(toError(error));
      else p.resolve(ok);
    });
    worker.on("error", stopped);
    worker.on("exit", (code) => stopped(new Error(`The embedded database thread stopped (exit code ${code}).`)));
    try {
      await new Promise((resolve, reject) => this.pending.set(0, { resolve, reject }));
    } catch (e) {
      await worker.terminate();
      throw e;
    }
  }

  private scheduleReopen(delayMs: number): void {
    if (delayMs <= 0 || this.closing || this.dataDir.startsWith("memory://")) return;
    this.reopenTimer = setTimeout(() => {
      this.open().then(
        () => {
          this.failure = undefined;
          this.opts.events?.reopened();
        },
        (e: Error) => {
          if (this.closing) return;
          const next = Math.min(delayMs * 2, MAX_REOPEN_DELAY_MS);
          this.opts.events?.reopenFailed(e, next);
          this.scheduleReopen(next);
        },
      );
    }, delayMs);
    // A server shutting down does not wait for this.
    this.reopenTimer.unref();
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
    this.closing = true;
    clearTimeout(this.reopenTimer);
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
