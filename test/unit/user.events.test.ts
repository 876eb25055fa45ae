// USER_FILES events: what comes off the bus (with Redis, from another instance, as
// JSON) is checked before a user's stream sees it, and a failing publish is logged,
// never thrown at the request that made the change.
import { describe, expect, it } from "@jest/globals";
import { asUserEvent, publishUserEvent, userTopic } from "../../src/modules/user/user.events.js";
import type { AppPubSub } from "../../src/infra/pubsub.js";
import type { Logger } from "../../src/infra/logger.js";

describe("asUserEvent", () => {
  it("keeps well-formed file and access events, as they are", () => {
    const file = { kind: "file", postboxId: "pbx_1", fileId: "psh_1", change: "ADDED", at: "2026-11-30T06:00:00.000Z" };
    expect(asUserEvent(file)).toEqual(file);
    expect(asUserEvent(JSON.parse(JSON.stringify({ ...file, change: "PURGED" })))).toEqual({ ...file, change: "PURGED" });
    expect(asUserEvent({ kind: "access", postboxId: "pbx_1", extra: "dropped" })).toEqual({ kind: "access", postboxId: "pbx_1" });
  });

  it("drops anything else", () => {
    const file = { kind: "file", postboxId: "pbx_1", fileId: "psh_1", change: "ADDED", at: "2026-11-30T06:00:00.000Z" };
    for (const bad of [
      null,
      "text",
      { ...file, kind: "other" },
      { ...file, change: "EXPLODED" },
      { ...file, fileId: 7 },
      { ...file, postboxId: undefined },
      { ...file, at: 1764482400000 },
      { kind: "access" },
    ]) {
      expect(asUserEvent(bad)).toBeUndefined();
    }
  });
});

describe("publishUserEvent", () => {
  it("publishes on the postbox's own topic, and logs a failure instead of throwing", () => {
    const sent: [string, unknown][] = [];
    const warnings: string[] = [];
    const log = { warn: (_o: unknown, msg: string) => void warnings.push(msg) } as unknown as Logger;
    const ok = { publish: (topic: string, payload: unknown) => void sent.push([topic, payload]) } as unknown as AppPubSub;
    publishUserEvent(ok, log, { kind: "access", postboxId: "pbx_9" });
    expect(sent).toEqual([[userTopic("pbx_9"), { kind: "access", postboxId: "pbx_9" }]]);
    expect(userTopic("pbx_9")).toBe("USER_FILES:pbx_9");

    const broken = {
      publish: () => {
        throw new Error("bus down");
      },
    } as unknown as AppPubSub;
    expect(() => publishUserEvent(broken, log, { kind: "access", postboxId: "pbx_9" })).not.toThrow();
    expect(warnings).toEqual(["could not publish a user event"]);
  });
});
