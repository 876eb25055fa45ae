// The device's postboxes in IndexedDB: for each, the private key (a
// non-extractable CryptoKey, which IndexedDB stores as an opaque handle that
// script cannot read back) and the user credential the server issued.
// A key pair the consent page made but the server has not yet confirmed is kept
// in the same store under its postboxId, marked `pending` (see PendingKey).
import type { PublicJwk } from "./keys.js";

export interface StoredPostbox {
  postboxId: string;
  privateKey: CryptoKey;
  publicJwk: PublicJwk;
  accessToken: string;
  accessExpiresAt: string;
  refreshToken: string;
  refreshExpiresAt: string | null;
  applicationName: string | null;
  savedAt: string;
  /** Set once the user downloaded a key backup on this device (or restored from one). */
  backedUp: boolean;
}

/**
 * A key pair made for a postbox before acceptPostbox was sent. Saved first because the
 * server may take the key while its answer is lost (connection drop, proxy 502): this
 * copy then proves the key (userKeyChallenge) to get a credential. It is replaced by the
 * StoredPostbox once there is one, and is not a postbox: the listing and getPostbox skip it.
 */
export interface PendingKey {
  postboxId: string;
  pending: true;
  privateKey: CryptoKey;
  publicJwk: PublicJwk;
  applicationName: string | null;
  /** After this the postbox can no longer become READY, so a key the server does not hold is useless. */
  consentExpiresAt: string;
  savedAt: string;
}

type Row = StoredPostbox | PendingKey;

const isPending = (r: Row | undefined): r is PendingKey => (r as PendingKey | undefined)?.pending === true;

const DB_NAME = "postbox";
const STORE = "postboxes";

let opening: Promise<IDBDatabase> | undefined;

function open(): Promise<IDBDatabase> {
  opening ??= new Promise<IDBDatabase>((resolve, reject) => {
    if (!("indexedDB" in window)) {
      reject(new Error("This browser has no IndexedDB, so it cannot keep your key. Use a current browser outside private mode."));
      return;
    }
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => {
      req.result.createObjectStore(STORE, { keyPath: "postboxId" });
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(new Error(`This browser refused to open its local database (${req.error?.message ?? "unknown reason"}). Private browsing modes often do.`));
    req.onblocked = () => reject(new Error("Close other Postbox tabs and reload: an older version of this page holds the local database."));
  });
  opening.catch(() => (opening = undefined));
  return opening;
}

async function run<T>(mode: IDBTransactionMode, fn: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await open();
  return new Promise<T>((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const req = fn(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(req.result);
    tx.onerror = () => reject(tx.error ?? req.error);
    tx.onabort = () => reject(tx.error ?? new Error("The local database transaction was aborted."));
  });
}

export async function listPostboxes(): Promise<StoredPostbox[]> {
  const all = await run("readonly", (s) => s.getAll() as IDBRequest<Row[]>);
  return all.filter((r): r is StoredPostbox => !isPending(r)).sort((a, b) => b.savedAt.localeCompare(a.savedAt));
}

export async function getPostbox(postboxId: string): Promise<StoredPostbox | undefined> {
  const r = await run("readonly", (s) => s.get(postboxId) as IDBRequest<Row | undefined>);
  return isPending(r) ? undefined : r;
}

export async function listPendingKeys(): Promise<PendingKey[]> {
  return (await run("readonly", (s) => s.getAll() as IDBRequest<Row[]>)).filter(isPending);
}

export async function getPendingKey(postboxId: string): Promise<PendingKey | undefined> {
  const r = await run("readonly", (s) => s.get(postboxId) as IDBRequest<Row | undefined>);
  return isPending(r) ? r : undefined;
}

/** Writes `r` unless a confirmed postbox is stored under its id (read and written in one transaction); true if written. */
export async function saveUnlessConfirmed(r: Row): Promise<boolean> {
  return change(r.postboxId, (current) => (current && !isPending(current) ? undefined : r)).then((next) => next === r);
}

/** Removes the pending key of a postbox, never a confirmed postbox. */
export async function deletePendingKey(postboxId: string): Promise<void> {
  await change(postboxId, (current) => (isPending(current) ? null : undefined));
}

export async function savePostbox(p: StoredPostbox): Promise<void> {
  await run("readwrite", (s) => s.put(p));
}

/**
 * Changes some fields of a stored postbox, reading and writing in one transaction: read
 * and written in two, a token renewal saved in between (another tab) was overwritten
 * with the used refresh token, which the server then took for a stolen one.
 */
export async function updatePostbox(postboxId: string, patch: Partial<Omit<StoredPostbox, "postboxId">>): Promise<StoredPostbox | undefined> {
  const next = await change(postboxId, (current) => (current && !isPending(current) ? { ...current, ...patch } : undefined));
  return next ?? undefined;
}

/** Reads a record and, in the same transaction, writes what `fn` returns: a record, null (delete) or undefined (leave it). */
async function change<T extends Row>(postboxId: string, fn: (current: Row | undefined) => T | null | undefined): Promise<T | null | undefined> {
  const db = await open();
  return new Promise<T | null | undefined>((resolve, reject) => {
    const tx = db.transaction(STORE, "readwrite");
    const store = tx.objectStore(STORE);
    let next: T | null | undefined;
    const read = store.get(postboxId) as IDBRequest<Row | undefined>;
    read.onsuccess = () => {
      next = fn(read.result);
      if (next) store.put(next);
      else if (next === null) store.delete(postboxId);
    };
    tx.oncomplete = () => resolve(next);
    tx.onerror = () => reject(tx.error ?? read.error);
    tx.onabort = () => reject(tx.error ?? new Error("The local database transaction was aborted."));
  });
}

export async function deletePostbox(postboxId: string): Promise<void> {
  await run("readwrite", (s) => s.delete(postboxId));
}
