// Calls the API as the user of one stored postbox: attaches the access token,
// renews it with the refresh token when it has expired (refresh tokens rotate,
// so renewal is serialised per postbox, across tabs with the Web Locks API),
// and keeps the new pair in IndexedDB. When the server has revoked the credential
// (its refresh token was used twice) or no longer knows it (restored from an old
// backup), a new one is obtained by decrypting a challenge with this device's key.
// The same proof finishes an acceptance whose answer was lost (see PendingKey).
import { decodeProtectedHeader } from "jose";
import { ApiError, NetworkError, gql } from "./api.js";
import { BASE } from "./base.js";
import { decryptJwe, type PublicJwk } from "./keys.js";
import { deletePendingKey, getPostbox, listPendingKeys, saveUnlessConfirmed, savePostbox, type StoredPostbox } from "./store.js";

const CHALLENGE = /* GraphQL */ `
  mutation Challenge($postboxId: ID!) { userKeyChallenge(postboxId: $postboxId) { challengeId jwe } }
`;
const REISSUE = /* GraphQL */ `
  mutation Reissue($challengeId: ID!, $answer: String!) {
    reissueUserCredential(challengeId: $challengeId, answer: $answer) { accessToken accessTokenExpiresAt refreshToken refreshTokenExpiresAt }
  }
`;

export interface IssuedTokens {
  accessToken: string;
  accessTokenExpiresAt: string;
  refreshToken: string;
  refreshTokenExpiresAt: string;
}

const REFRESH = /* GraphQL */ `
  mutation Refresh($refreshToken: String!) {
    refreshUserToken(refreshToken: $refreshToken) { accessToken accessTokenExpiresAt refreshToken refreshTokenExpiresAt }
  }
`;

// Renew a little early so a token does not expire between the check and the request.
const EARLY_MS = 30_000;

const inFlight = new Map<string, Promise<StoredPostbox>>();

function expired(p: StoredPostbox): boolean {
  return Date.parse(p.accessExpiresAt) - EARLY_MS <= Date.now();
}

async function withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const locks = (navigator as Navigator & { locks?: LockManager }).locks;
  return locks ? locks.request(name, fn) : fn();
}

/** Renews the access token. `force` renews even if the stored one looks valid (the server refused it). */
function refresh(postboxId: string, force: boolean, usedToken: string): Promise<StoredPostbox> {
  let p = inFlight.get(postboxId);
  if (!p) {
    p = withLock(`postbox-refresh:${postboxId}`, async () => {
      // Another tab may have renewed it while this one waited for the lock.
      const current = await getPostbox(postboxId);
      if (!current) throw new ApiError("NOT_FOUND", "This postbox was removed from this device.");
      if (!expired(current) && (!force || current.accessToken !== usedToken)) return current;
      let tokens: IssuedTokens;
      try {
        tokens = (await gql<{ refreshUserToken: IssuedTokens }>(REFRESH, { refreshToken: current.refreshToken })).refreshUserToken;
      } catch (e) {
        if (!(e instanceof ApiError && e.reissue)) throw e;
        tokens = await proveKey(current.postboxId, current.privateKey, current.publicJwk);
      }
      const next: StoredPostbox = {
        ...current,
        accessToken: tokens.accessToken,
        accessExpiresAt: tokens.accessTokenExpiresAt,
        refreshToken: tokens.refreshToken,
        refreshExpiresAt: tokens.refreshTokenExpiresAt,
      };
      await savePostbox(next);
      return next;
    }).finally(() => inFlight.delete(postboxId));
    inFlight.set(postboxId, p);
  }
  return p;
}

/** The postbox is READY with a public key other than this device's: this device cannot read it. */
export class KeyMismatch extends Error {
  constructor(readonly serverKid: string | undefined) {
    super("This postbox holds a different key than this device's.");
    this.name = "KeyMismatch";
  }
}

/**
 * A new credential for whoever can decrypt the server's challenge: this device's key proves it is the user's.
 * The challenge is encrypted to the postbox's key and names it (kid, its thumbprint) in its header,
 * so a postbox that holds another key is told apart from a failure (KeyMismatch).
 */
export async function proveKey(postboxId: string, privateKey: CryptoKey, publicJwk: PublicJwk): Promise<IssuedTokens> {
  const { userKeyChallenge: ch } = await gql<{ userKeyChallenge: { challengeId: string; jwe: string } }>(CHALLENGE, { postboxId });
  let kid: string | undefined;
  try {
    kid = decodeProtectedHeader(ch.jwe).kid;
  } catch {
    throw new NetworkError("The server's key challenge could not be read. Try again in a moment.");
  }
  if (kid !== publicJwk.kid) throw new KeyMismatch(kid);
  const code = await decryptJwe(ch.jwe, privateKey, publicJwk);
  const answer = btoa(String.fromCharCode(...code)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return (await gql<{ reissueUserCredential: IssuedTokens }>(REISSUE, { challengeId: ch.challengeId, answer })).reissueUserCredential;
}

/**
 * Settles the keys the consent page saved before accepting whose outcome it never learnt (the
 * tab was closed after a lost answer): a postbox READY with such a key becomes a postbox of
 * this device; a key the server does not hold and never will is removed. Anything else (the
 * network, a postbox still PENDING) leaves the key for a later try.
 */
export function settlePendingKeys(): Promise<boolean> {
  settling ??= settle().finally(() => (settling = undefined));
  return settling;
}

let settling: Promise<boolean> | undefined;

/** True if a postbox was added. */
async function settle(): Promise<boolean> {
  let added = false;
  for (const k of await listPendingKeys()) {
    try {
      const t = await proveKey(k.postboxId, k.privateKey, k.publicJwk);
      added = (await saveUnlessConfirmed({
        postboxId: k.postboxId,
        privateKey: k.privateKey,
        publicJwk: k.publicJwk,
        accessToken: t.accessToken,
        accessExpiresAt: t.accessTokenExpiresAt,
        refreshToken: t.refreshToken,
        refreshExpiresAt: t.refreshTokenExpiresAt,
        applicationName: k.applicationName,
        savedAt: new Date().toISOString(),
        backedUp: false,
      })) || added;
    } catch (e) {
      // NOT_FOUND: not READY. Past the consent deadline it cannot become READY with this key any more.
      const over = e instanceof KeyMismatch || (e instanceof ApiError && e.code === "NOT_FOUND" && Date.parse(k.consentExpiresAt) <= Date.now());
      if (over) await deletePendingKey(k.postboxId);
    }
  }
  return added;
}

export class Credential {
  constructor(private record: StoredPostbox) {}

  /** GETs a file's JWE from the download route (files/:id) with this postbox's access token, renewing it once if needed. */
  async download(pushId: string): Promise<string> {
    if (expired(this.record)) this.record = await refresh(this.record.postboxId, false, this.record.accessToken);
    const get = () =>
      fetch(new URL(`files/${encodeURIComponent(pushId)}`, BASE), {
        headers: { authorization: `Bearer ${this.record.accessToken}` },
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
      }).catch(() => {
        throw new NetworkError();
      });
    let res = await get();
    if (res.status === 401) {
      this.record = await refresh(this.record.postboxId, true, this.record.accessToken);
      res = await get();
    }
    if (!res.ok) {
      const body = (await res.json().catch(() => null)) as { errors?: { message: string; extensions?: { code?: string } }[] } | null;
      const err = body?.errors?.[0];
      throw err ? new ApiError(err.extensions?.code ?? "INTERNAL_SERVER_ERROR", err.message) : new NetworkError(`The server answered ${res.status} to the download. Try again in a moment.`);
    }
    return res.text();
  }

  /** A usable access token (for the live subscription's socket); `force` renews it even if it looks valid, as after the server refused it. */
  async accessToken(force = false): Promise<string> {
    if (force || expired(this.record)) this.record = await refresh(this.record.postboxId, force, this.record.accessToken);
    return this.record.accessToken;
  }

  get postbox(): StoredPostbox {
    return this.record;
  }

  /** Runs a GraphQL operation with this postbox's access token, renewing it once if needed. */
  async call<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
    if (expired(this.record)) this.record = await refresh(this.record.postboxId, false, this.record.accessToken);
    try {
      return await gql<T>(query, variables, this.record.accessToken);
    } catch (e) {
      if (!(e instanceof ApiError) || e.code !== "UNAUTHENTICATED") throw e;
      // The stored token may be stale (renewed in another tab, or restored from an old backup).
      let renewed: StoredPostbox;
      try {
        renewed = await refresh(this.record.postboxId, true, this.record.accessToken);
      } catch (r) {
        // The refusal of the refresh says more (e.g. "the postbox is CLOSED") than the first one.
        throw r instanceof ApiError ? r : e;
      }
      this.record = renewed;
      return gql<T>(query, variables, this.record.accessToken);
    }
  }
}
