// The verified-session cache: what it answers from, for how long, and what makes
// it forget (including a lookup that raced with an end).
import { describe, expect, it } from "@jest/globals";
import type { SessionPrincipal } from "../../src/infra/graphql/context.js";
import { VerifiedSessions } from "../../src/modules/session/session.cache.js";

const NOW = Date.parse("2026-11-28T12:00:00Z");

function principal(over: Partial<SessionPrincipal> = {}): SessionPrincipal {
  return { sessionId: "ses_1", applicationId: "app_1", contractId: "ctr_1", contractKind: "WRITE", expiresAt: new Date(NOW + 30 * 60_000), ...over };
}

describe("VerifiedSessions", () => {
  it("answers a verified key until SESSION_RECHECK has passed, then asks again", () => {
    const c = new VerifiedSessions(5000);
    c.put("k1", principal(), c.mark(), NOW);
    expect(c.get("k1", NOW + 4999)?.sessionId).toBe("ses_1");
    expect(c.get("k1", NOW + 5000)).toBeUndefined();
    expect(c.get("k2", NOW)).toBeUndefined();
  });

  it("never answers past the session's own expiry", () => {
    const c = new VerifiedSessions(60_000);
    c.put("k1", principal({ expiresAt: new Date(NOW + 1000) }), c.mark(), NOW);
    expect(c.get("k1", NOW + 999)).toBeDefined();
    expect(c.get("k1", NOW + 1000)).toBeUndefined();
  });

  it("forgets an ended session, and every session of a disabled application, and nothing else", () => {
    const c = new VerifiedSessions(60_000);
    c.put("a", principal({ sessionId: "ses_a" }), c.mark(), NOW);
    c.put("b", principal({ sessionId: "ses_b" }), c.mark(), NOW);
    c.put("c", principal({ sessionId: "ses_c", applicationId: "app_2" }), c.mark(), NOW);
    c.forget({ sessionId: "ses_a" });
    expect(c.get("a", NOW)).toBeUndefined();
    expect(c.get("b", NOW)).toBeDefined();
    c.forget({ applicationId: "app_1" });
    expect(c.get("b", NOW)).toBeUndefined();
    expect(c.get("c", NOW)?.applicationId).toBe("app_2");
  });

  it("forgets every session of a contract whose key was rotated, and no other contract's", () => {
    const c = new VerifiedSessions(60_000);
    c.put("a", principal({ sessionId: "ses_a", contractId: "ctr_1" }), c.mark(), NOW);
    c.put("b", principal({ sessionId: "ses_b", contractId: "ctr_2" }), c.mark(), NOW);
    c.forget({ contractId: "ctr_1" });
    expect(c.get("a", NOW)).toBeUndefined();
    expect(c.get("b", NOW)?.contractId).toBe("ctr_2");
  });

  it("does not keep the result of a lookup that started before an end", () => {
    const c = new VerifiedSessions(60_000);
    const mark = c.mark(); // the database read starts...
    c.forget({ sessionId: "ses_1" }); // ...the session is ended meanwhile...
    c.put("k1", principal(), mark, NOW); // ...and the stale answer arrives
    expect(c.get("k1", NOW)).toBeUndefined();
    c.put("k1", principal(), c.mark(), NOW);
    expect(c.get("k1", NOW)).toBeDefined();
  });

  it("keeps nothing when SESSION_RECHECK is 0", () => {
    const c = new VerifiedSessions(0);
    c.put("k1", principal(), c.mark(), NOW);
    expect(c.get("k1", NOW)).toBeUndefined();
  });

  it("hands out a frozen principal, so no caller can change what the next request sees", () => {
    const c = new VerifiedSessions(60_000);
    c.put("k1", principal(), c.mark(), NOW);
    expect(Object.isFrozen(c.get("k1", NOW))).toBe(true);
  });
});
