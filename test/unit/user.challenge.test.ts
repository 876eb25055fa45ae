// Sealed key challenges: what the id carries comes back only from an id this server sealed.
import { createHash } from "node:crypto";
import { describe, expect, it } from "@jest/globals";
import { MAX_CHALLENGE_ID_LENGTH, openChallenge, sealChallenge, type ChallengeClaims } from "../../src/modules/user/user.challenge.js";

const SECRET = "a server secret of thirty-two characters or more";
const claims = (over: Partial<ChallengeClaims> = {}): ChallengeClaims => ({
  nonce: Buffer.alloc(16, 9).toString("base64url"),
  postboxId: "pbx_01JDQ3Z8M2V4K7RX5T9W6YB1CN",
  answerHash: createHash("sha256").update("the answer").digest(),
  expiresAt: new Date("2026-12-02T17:00:00.123Z"),
  ...over,
});

describe("sealChallenge / openChallenge", () => {
  it("gives back every claim", () => {
    const c = claims();
    expect(openChallenge(SECRET, sealChallenge(SECRET, c))).toEqual(c);
  });

  it("refuses an id with any one byte changed", () => {
    const id = sealChallenge(SECRET, claims());
    const raw = Buffer.from(id.slice(4), "base64url");
    for (let i = 0; i < raw.length; i++) {
      const bad = Buffer.from(raw);
      bad[i] ^= 1;
      expect(openChallenge(SECRET, "uch_" + bad.toString("base64url"))).toBeNull();
    }
  });

  it("refuses ids sealed with another secret, cut short, lengthened, or spelt another way", () => {
    const id = sealChallenge(SECRET, claims());
    expect(openChallenge("another secret of thirty-two characters or more", id)).toBeNull();
    expect(openChallenge(SECRET, id.slice(0, -1))).toBeNull();
    expect(openChallenge(SECRET, id.slice(0, 60))).toBeNull();
    expect(openChallenge(SECRET, id + "AAAA")).toBeNull();
    // Node's decoder would skip the "!": the same bytes, another id.
    expect(openChallenge(SECRET, id.slice(0, 20) + "!" + id.slice(20))).toBeNull();
    expect(openChallenge(SECRET, id.replace(/^uch_/, "uch-"))).toBeNull();
    expect(openChallenge(SECRET, "uch_" + "A".repeat(MAX_CHALLENGE_ID_LENGTH))).toBeNull();
    expect(openChallenge(SECRET, 42)).toBeNull();
  });

  it("seals the longest postbox id within the accepted length, and refuses longer ones", () => {
    const id = sealChallenge(SECRET, claims({ postboxId: "p".repeat(64) }));
    expect(id.length).toBeLessThanOrEqual(MAX_CHALLENGE_ID_LENGTH);
    expect(openChallenge(SECRET, id)?.postboxId).toBe("p".repeat(64));
    expect(() => sealChallenge(SECRET, claims({ postboxId: "p".repeat(65) }))).toThrow(/malformed/);
    expect(() => sealChallenge(SECRET, claims({ nonce: "short" }))).toThrow(/malformed/);
  });
});
