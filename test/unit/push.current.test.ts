// myFilesChanged with includeCurrent: the stream starts with where each file of the
// postbox stands, read only after the live listener is registered, so a change made
// while the files are read is not lost; and a live event those first events already
// showed is not sent twice.
import { describe, expect, it } from "@jest/globals";
import { createAppPubSub } from "../../src/infra/pubsub.js";
import type { Logger } from "../../src/infra/logger.js";
import type { UserPrincipal } from "../../src/infra/graphql/context.js";
import { UserFilesService } from "../../src/modules/push/push.files.service.js";
import type { PushRepository } from "../../src/modules/push/push.repository.js";
import { publishUserEvent } from "../../src/modules/user/user.events.js";

const log = { warn: () => {}, info: () => {}, error: () => {}, debug: () => {} } as unknown as Logger;
const t = (s: number) => new Date(Date.UTC(2026, 10, 30, 8, 0, s));

function service(rows: () => Promise<object[]>) {
  const { pubSub } = createAppPubSub(undefined, log);
  const repo = { listStates: rows } as unknown as PushRepository;
  const pushes = new UserFilesService(repo, {} as never, {} as never, pubSub, {} as never, log);
  return { pushes, pubSub };
}

const user = { postboxId: "pbx_1", grantId: "grt_1", expiresAt: new Date(Date.now() + 60_000) } as UserPrincipal;

describe("UserFilesService.subscribeFiles with includeCurrent", () => {
  it("opens with each file's current state, then live changes, without repeating what it already showed", async () => {
    let publish: (change: "ADDED" | "DELIVERED", fileId: string, at: Date) => void = () => {};
    const { pushes, pubSub } = service(async () => {
      // Changes published while the rows are read: psh_b's ADDED is in the rows already, its DELIVERED is not.
      publish("ADDED", "psh_b", t(2));
      publish("DELIVERED", "psh_b", t(6));
      publish("ADDED", "psh_other", t(7)); // another postbox's change (see below)
      return [
        { id: "psh_a", status: "DELIVERED", receivedAt: t(1), deliveredAt: t(3), purgedAt: null },
        { id: "psh_b", status: "PENDING", receivedAt: t(2), deliveredAt: null, purgedAt: null },
        { id: "psh_c", status: "PENDING", receivedAt: t(4), deliveredAt: null, purgedAt: t(5) },
      ];
    });
    publish = (change, fileId, at) => publishUserEvent(pubSub, log, { kind: "file", postboxId: fileId === "psh_other" ? "pbx_2" : "pbx_1", fileId, change, at: at.toISOString() });

    const it = pushes.subscribeFiles(user, async () => true, { includeCurrent: true })[Symbol.asyncIterator]();
    const got = [];
    for (let i = 0; i < 4; i++) got.push((await it.next()).value);
    expect(got.map((e) => [e!.fileId, e!.change, e!.at])).toEqual([
      ["psh_a", "DELIVERED", t(3).toISOString()],
      ["psh_b", "ADDED", t(2).toISOString()],
      ["psh_c", "PURGED", t(5).toISOString()],
      ["psh_b", "DELIVERED", t(6).toISOString()],
    ]);
    // Later live changes come through; a repeat of a state already shown does not.
    publish("DELIVERED", "psh_a", t(3));
    publish("ADDED", "psh_d", t(8));
    expect((await it.next()).value).toMatchObject({ fileId: "psh_d", change: "ADDED" });
    await it.return?.();
  });

  it("without includeCurrent reads nothing and sends live changes only", async () => {
    let reads = 0;
    const { pushes, pubSub } = service(async () => {
      reads++;
      return [];
    });
    const it = pushes.subscribeFiles(user, async () => true)[Symbol.asyncIterator]();
    const first = it.next();
    await new Promise((r) => setImmediate(r));
    publishUserEvent(pubSub, log, { kind: "file", postboxId: "pbx_1", fileId: "psh_z", change: "ADDED", at: t(9).toISOString() });
    expect((await first).value).toMatchObject({ fileId: "psh_z", change: "ADDED" });
    expect(reads).toBe(0);
    await it.return?.();
  });
});
