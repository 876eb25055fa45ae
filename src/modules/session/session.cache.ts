// Sessions this instance has verified recently. Every authenticated request
// resolves its session key; reading the session, its contract and application
// each time was the largest single cost of a push on the embedded database.
//
// An entry lives at most SESSION_RECHECK and never past the session's expiry.
// Whatever makes a session invalid before then goes through SessionEnds
// (endSession, disabling the application, rotating the contract's key): that
// forgets the entry here at once and on other instances when the bus delivers it. A lookup that started before such
// an end is not cached (the generation check), so it cannot bring the entry back.
import type { SessionPrincipal } from "../../infra/graphql/context.js";
import type { SessionEndedPayload } from "./session.events.js";

const MAX_ENTRIES = 10_000;

interface Entry {
  principal: SessionPrincipal;
  until: number;
}

export class VerifiedSessions {
  private readonly byKeyHash = new Map<string, Entry>();
  private generation = 0;

  constructor(private readonly recheckMs: number) {}

  /** The principal when still fresh. */
  get(keyHash: string, now = Date.now()): SessionPrincipal | undefined {
    const e = this.byKeyHash.get(keyHash);
    if (!e) return undefined;
    if (e.until > now) return e.principal;
    this.byKeyHash.delete(keyHash);
    return undefined;
  }

  /** Marks the start of a database lookup; pass the mark to put(). */
  mark(): number {
    return this.generation;
  }

  put(keyHash: string, principal: SessionPrincipal, mark: number, now = Date.now()): void {
    if (this.recheckMs <= 0 || mark !== this.generation) return;
    if (this.byKeyHash.size >= MAX_ENTRIES) this.byKeyHash.clear();
    this.byKeyHash.set(keyHash, { principal: Object.freeze(principal), until: Math.min(now + this.recheckMs, principal.expiresAt.getTime()) });
  }

  forget(p: SessionEndedPayload): void {
    this.generation++;
    for (const [k, e] of this.byKeyHash) {
      const { sessionId, contractId, applicationId } = e.principal;
      if (sessionId === p.sessionId || contractId === p.contractId || applicationId === p.applicationId) this.byKeyHash.delete(k);
    }
  }
}
