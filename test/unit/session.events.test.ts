// SessionEnds: a stream's watch on its session, and the key lookup that races an end.
import { describe, expect, it } from "@jest/globals";
import { createAppPubSub } from "../../src/infra/pubsub.js";
import { SessionEnds } from "../../src/modules/session/session.events.js";
import { SessionService } from "../../src/modules/session/session.service.js";

const settle = () => new Promise((r) => setTimeout(r, 0));
const session = (over: Partial<{ expiresAt: Date }> = {}) => ({ sessionId: "ses_1", contractId: "ctr_1", applicationId: "app_1", expiresAt: new Date(Date.now() + 60_000), ...over });

function setup(isLive: (id: string) => Promise<boolean> = async () => true, publish?: () => unknown) {
  const warnings: unknown[] = [];
  const log = { warn: (o: unknown) => warnings.push(o), error() {}, info() {}, debug() {} };
  const pubSub = createAppPubSub().pubSub;
  const ends = new SessionEnds(publish ? ({ ...pubSub, publish } as never) : pubSub, log as never, isLive);
  return { ends, warnings };
}

describe("SessionEnds.watch", () => {
  it("ends a stream whose session has already expired at once, once, without throwing", async () => {
    const { ends } = setup();
    let ended = 0;
    const cancel = ends.watch(session({ expiresAt: new Date(Date.now() - 1) }), () => ended++);
    expect(ended).toBe(1);
    cancel();
    ends.announce({ sessionId: "ses_1" });
    await settle();
    expect(ended).toBe(1);
  });

  it("ends a stream whose session the database no longer holds valid (an end announced before the watch)", async () => {
    const asked: string[] = [];
    const { ends } = setup(async (id) => (asked.push(id), false));
    let ended = 0;
    ends.watch(session(), () => ended++);
    expect(ended).toBe(0);
    await settle();
    expect(asked).toEqual(["ses_1"]);
    expect(ended).toBe(1);
  });

  it("keeps a live session's stream until its end is announced, and a stream whose re-read failed", async () => {
    const { ends, warnings } = setup(async (id) => {
      if (id === "ses_2") throw new Error("database gone");
      return true;
    });
    const ended: string[] = [];
    ends.watch(session(), () => ended.push("ses_1"));
    ends.watch({ ...session(), sessionId: "ses_2" }, () => ended.push("ses_2"));
    await settle();
    expect(ended).toEqual([]);
    expect(warnings).toHaveLength(1);
    // Ends reach this instance's streams, and the bus's echo of them is harmless.
    ends.announce({ sessionId: "ses_1" });
    await settle();
    expect(ended).toEqual(["ses_1"]);
    ends.announce({ contractId: "ctr_1" });
    await settle();
    expect(ended).toEqual(["ses_1", "ses_2"]);
  });
});

describe("SessionEnds.announce", () => {
  // Redis down: the message never comes back, so this instance's streams must end without it.
  it.each([
    ["rejects", () => Promise.reject(new Error("redis down"))],
    [
      "throws",
      () => {
        throw new Error("redis down");
      },
    ],
  ])("ends this instance's matching streams at once when the bus's publish %s", async (_, publish) => {
    const { ends, warnings } = setup(async () => true, publish);
    const ended: string[] = [];
    ends.watch(session(), () => ended.push("ses_1"));
    ends.watch({ ...session(), sessionId: "ses_2" }, () => ended.push("ses_2"));
    await settle();
    ends.announce({ sessionId: "ses_1" });
    expect(ended).toEqual(["ses_1"]);
    await settle();
    expect(warnings).toHaveLength(1);
    ends.announce({ applicationId: "app_1" });
    expect(ended).toEqual(["ses_1", "ses_2"]);
  });

  it("ends a stream once when the bus brings its own announcement back", async () => {
    const { ends } = setup();
    let ended = 0;
    ends.watch(session(), () => ended++);
    await settle();
    ends.announce({ sessionId: "ses_1" });
    expect(ended).toBe(1);
    ends.announce({ contractId: "ctr_1" });
    await settle();
    expect(ended).toBe(1);
  });
});

describe("SessionService.authenticate", () => {
  it("reads the session again when an end was announced while it read, and then refuses it", async () => {
    const { ends } = setup();
    const live = { id: "ses_1", expiresAt: new Date(Date.now() + 60_000), revokedAt: null as Date | null, contract: { id: "ctr_1", kind: "WRITE", disabledAt: null, applicationId: "app_1", application: { disabledAt: null } } };
    let reads = 0;
    const repo = {
      findByKeyHash: async () => {
        reads++;
        if (reads === 1) {
          // endSession commits and announces while this read is out: its answer is stale.
          const stale = structuredClone(live);
          live.revokedAt = new Date();
          ends.announce({ sessionId: "ses_1" });
          return stale;
        }
        return live;
      },
    };
    const service = new SessionService(repo as never, {} as never, {} as never, { SESSION_RECHECK: 5000 } as never, ends);
    await expect(service.authenticate("pbs_key")).rejects.toMatchObject({ extensions: { code: "UNAUTHENTICATED" } });
    expect(reads).toBe(2);
  });
});
