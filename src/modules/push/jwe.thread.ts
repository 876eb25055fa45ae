// The encryption thread's client. Wrapping a content key to the user's key is the
// costly, asymmetric step of every JWE the server writes. This thread does the
// elliptic-curve part ahead of use where it can, many per message: ephemeral X25519
// key pairs, and whole key agreements for the EC keys that pushes stream to (see
// push.crypto.ts). Pushes are then sealed where they arrive. A P-256 push with no
// agreement made ahead (a key agreement of about 110 µs through Node) is sealed here
// instead, on another core while the thread that serves HTTP goes on serving
// requests. RSA keys do not come here.
//
// One thread (a second one measured no better on two cores), started on first use
// and not holding the process open while idle. If it fails, the jobs in it are
// refused and the next job starts a new one. Jobs requested in one turn of the
// event loop go over in one message; each is answered as soon as it is done.
import { Worker } from "node:worker_threads";
import { dropAgreements, type Agreements, type Encrypted, type EphemeralX25519, type RecipientKey, type WrappedKey } from "./jwe-writer.mjs";

const WORKER_URL = new URL("./jwe.worker.mjs", import.meta.url);

type Job =
  | { op: "seal"; key: RecipientKey; data: Uint8Array[] }
  | { op: "wrap"; key: RecipientKey; data: Uint8Array }
  | { op: "x25519Keys"; count: number }
  | { op: "agreements"; key: RecipientKey; count: number };

interface Pending {
  job: Job;
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

type Result = { ok: unknown; error?: undefined } | { error: string };

/** A copy of `b` in an ArrayBuffer of its own, so that it can be moved (transferred) to the thread. */
function movable(b: Uint8Array): Uint8Array {
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer ? b : new Uint8Array(b);
}

export class JweThread {
  private worker: Worker | undefined;
  private queue: Pending[] = [];
  /** Batches sent and not fully answered, with the thread they went to. */
  private readonly inFlight = new Map<number, { worker: Worker; batch: Pending[] }>();
  private nextId = 1;
  private users = 0;

  /**
   * The JWEs of small plaintexts, under one key agreement (a push's file and descriptor).
   * The plaintexts move to the thread (the caller's copies are wiped or detached).
   */
  seal(key: RecipientKey, plaintexts: Uint8Array[]): Promise<Encrypted[]> {
    const data = plaintexts.map((plaintext) => {
      const moved = movable(plaintext);
      if (moved !== plaintext) plaintext.fill(0);
      return moved;
    });
    return this.enqueue({ op: "seal", key, data }) as Promise<Encrypted[]>;
  }

  /** The protected header and encrypted key of a JWE whose content key is `cek` (which the caller keeps). */
  wrap(key: RecipientKey, cek: Uint8Array): Promise<WrappedKey> {
    return this.enqueue({ op: "wrap", key, data: new Uint8Array(cek) }) as Promise<WrappedKey>;
  }

  /** `count` new ephemeral X25519 key pairs, made here so that the caller's thread does not spend its time on them. */
  x25519Keys(count: number): Promise<EphemeralX25519[]> {
    return this.enqueue({ op: "x25519Keys", count }) as Promise<EphemeralX25519[]>;
  }

  /** `count` ECDH-ES key agreements with the EC key `key`, each under an ephemeral key of its own, for the caller's pool (jwe-writer.mjs). */
  agreements(key: RecipientKey, count: number): Promise<Agreements> {
    return this.enqueue({ op: "agreements", key, count }) as Promise<Agreements>;
  }

  /** Whether the thread is started (it starts on the first job). */
  get running(): boolean {
    return this.worker !== undefined;
  }

  /**
   * Registers a user of the thread (an app, see createApp); the returned function
   * releases it, and the last release stops the thread. One process may run several
   * apps (tests do), and a thread left running would outlive all of them.
   */
  retain(): () => Promise<void> {
    this.users++;
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      if (--this.users === 0) await this.close();
    };
  }

  /** Stops the thread (a later job starts a new one) and wipes the agreements it made ahead. */
  async close(): Promise<void> {
    dropAgreements(Number.POSITIVE_INFINITY);
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.terminate();
  }

  private enqueue(job: Job): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.queue.push({ job, resolve, reject });
      if (this.queue.length === 1) setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    if (!batch.length) return;
    let worker: Worker;
    try {
      worker = this.worker ?? this.start();
    } catch (e) {
      for (const p of batch) p.reject(e);
      return;
    }
    const id = this.nextId++;
    const jobs = batch.map((p) => p.job);
    try {
      worker.postMessage({ id, jobs }, [...new Set(jobs.flatMap((j) => ("data" in j ? j.data : [])).map((d) => d.buffer as ArrayBuffer))]);
    } catch (e) {
      for (const p of batch) p.reject(e); // a job that cannot be sent (say, a key that is not plain data)
      return;
    }
    this.inFlight.set(id, { worker, batch });
    if (this.inFlight.size === 1) worker.ref();
  }

  private start(): Worker {
    const worker = new Worker(WORKER_URL);
    worker.unref();
    worker.on("message", ({ id, i, result }: { id: number; i: number; result: Result }) => {
      const batch = this.inFlight.get(id)?.batch;
      if (!batch) return;
      const p = batch[i];
      if (i === batch.length - 1) {
        this.inFlight.delete(id);
        if (this.inFlight.size === 0) worker.unref();
      }
      if (result.error === undefined) p.resolve(result.ok);
      else p.reject(new Error(`Encryption failed: ${result.error}`));
    });
    // Only this thread's jobs fail with it (after close(), a new thread may already have some).
    const fail = (e: Error) => {
      if (this.worker === worker) this.worker = undefined;
      for (const [id, sent] of this.inFlight) {
        if (sent.worker !== worker) continue;
        for (const p of sent.batch) p.reject(e);
        this.inFlight.delete(id);
      }
    };
    worker.on("error", (e) => fail(new Error(`The encryption thread failed: ${e.message}`)));
    worker.on("exit", (code) => fail(new Error(`The encryption thread stopped (exit code ${code}).`)));
    this.worker = worker;
    return worker;
  }
}

/** The process's encryption thread. */
export const jweThread = new JweThread();
