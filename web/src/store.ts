// The device's postboxes in IndexedDB: for each, the private key (a
// non-extractable CryptoKey, which IndexedDB stores as an opaque handle that
// script cannot read back) and the user credential the server issued.
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

export function listPostboxes(): Promise<StoredPostbox[]> {
  return run("readonly", (s) => s.getAll() as IDBRequest<StoredPostbox[]>).then((all) => all.sort((a, b) => b.savedAt.localeCompare(a.savedAt)));
}

export function getPostbox(postboxId: string): Promise<StoredPostbox | undefined> {
  return run("readonly", (s) => s.get(postboxId) as IDBRequest<StoredPostbox | undefined>);
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
  const db = await open();
  return new Promise<StoredPostbox | undefined>((resolve, reject) => {
    const tx = db.transaction(STORE, "readwrite");
    const store = tx.objectStore(STORE);
    let next: StoredPostbox | undefined;
    const read = store.get(postboxId) as IDBRequest<StoredPostbox | undefined>;
    read.onsuccess = () => {
      if (!read.result) return;
      next = { ...read.result, ...patch };
      store.put(next);
    };
    tx.oncomplete = () => resolve(next);
    tx.onerror = () => reject(tx.error ?? read.error);
    tx.onabort = () => reject(tx.error ?? new Error("The local database transaction was aborted."));
  });
}

export async function deletePostbox(postboxId: string): Promise<void> {
  await run("readwrite", (s) => s.delete(postboxId));
}
