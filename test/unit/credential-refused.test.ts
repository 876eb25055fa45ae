// The one rule the CLI's `user watch` and the web app's live inbox share for telling a
// refused credential (renew it, then reconnect) from a lost connection (just reconnect).
import { describe, expect, it } from "@jest/globals";
import { credentialRefused } from "../../src/infra/graphql/credential-refused.js";

describe("credentialRefused", () => {
  it("is true for GraphQL errors with code UNAUTHENTICATED, among others", () => {
    expect(credentialRefused([{ message: "x", extensions: { code: "RATE_LIMITED" } }, { message: "expired", extensions: { code: "UNAUTHENTICATED" } }])).toBe(true);
  });

  it("is true for a socket closed with 4403 Forbidden (the server's onConnect refused)", () => {
    expect(credentialRefused({ code: 4403, reason: "Forbidden" })).toBe(true);
  });

  it("is false for other GraphQL errors, other close codes and plain errors", () => {
    expect(credentialRefused([{ message: "gone", extensions: { code: "NOT_FOUND" } }])).toBe(false);
    expect(credentialRefused({ code: 1006, reason: "" })).toBe(false);
    expect(credentialRefused(new Error("socket hang up"))).toBe(false);
    expect(credentialRefused(null)).toBe(false);
  });
});
