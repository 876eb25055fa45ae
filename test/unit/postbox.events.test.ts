// StatusHub: per-contract channel shared by an instance's subscribers, with
// events reaching only the listeners they concern.
import { describe, expect, it } from "@jest/globals";
import { createPubSub } from "@graphql-yoga/subscription";
import { StatusHub, asStatusPayload, contractTopic, type PostboxStatusPayload } from "../../src/modules/postbox/postbox.events.js";
import type { PubSubEvents } from "../../src/infra/pubsub.js";

const ev = (contractId: string, postboxId: string, status: PostboxStatusPayload["status"] = "READY"): PostboxStatusPayload => ({
  contractId,
  postboxId,
  status,
  previousStatus: "PENDING",
  at: new Date().toISOString(),
});

/** Lets the hub's pump loop run (pub/sub delivery is asynchronous). */
const settle = () => new Promise((r) => setTimeout(r, 0));

function setup() {
  const pubSub = createPubSub<PubSubEvents>();
  let subscribes = 0;
  const counted = { ...pubSub, subscribe: (topic: string) => (subscribes++, pubSub.subscribe(topic)), ready: async () => {} };
  const errors: unknown[] = [];
  const hub = new StatusHub(counted, (e) => errors.push(e));
  const publish = (p: PostboxStatusPayload) => pubSub.publish(contractTopic(p.contractId), p as unknown as Record<string, unknown>);
  return { hub, publish, errors, subscribes: () => subscribes };
}

describe("StatusHub", () => {
  it("delivers a postbox's events to its listeners and the contract-wide ones only", async () => {
    const { hub, publish, subscribes } = setup();
    const got: Record<string, string[]> = { a: [], b: [], all: [], other: [] };
    hub.listen("ctr_1", "pbx_a", (p) => got.a.push(p.postboxId));
    hub.listen("ctr_1", "pbx_b", (p) => got.b.push(p.postboxId));
    hub.listen("ctr_1", null, (p) => got.all.push(p.postboxId));
    hub.listen("ctr_2", null, (p) => got.other.push(p.postboxId));
    publish(ev("ctr_1", "pbx_a"));
    publish(ev("ctr_1", "pbx_c"));
    publish(ev("ctr_2", "pbx_z"));
    await settle();
    expect(got).toEqual({ a: ["pbx_a"], b: [], all: ["pbx_a", "pbx_c"], other: ["pbx_z"] });
    // One pub/sub subscription per contract, however many listeners.
    expect(subscribes()).toBe(2);
  });

  it("closes a contract's channel with its last listener and opens a fresh one later", async () => {
    const { hub, publish, subscribes } = setup();
    const got: string[] = [];
    const off1 = hub.listen("ctr_1", "pbx_a", (p) => got.push(`1:${p.status}`));
    const off2 = hub.listen("ctr_1", null, (p) => got.push(`2:${p.status}`));
    off1();
    off1(); // idempotent
    publish(ev("ctr_1", "pbx_a", "READY"));
    await settle();
    off2();
    publish(ev("ctr_1", "pbx_a", "CLOSED"));
    await settle();
    expect(got).toEqual(["2:READY"]);
    hub.listen("ctr_1", "pbx_a", (p) => got.push(`3:${p.status}`));
    publish(ev("ctr_1", "pbx_a", "EXPIRED"));
    await settle();
    expect(got).toEqual(["2:READY", "3:EXPIRED"]);
    expect(subscribes()).toBe(2);
  });

  it("keeps delivering when one listener throws, and reports the error", async () => {
    const { hub, publish, errors } = setup();
    const got: string[] = [];
    hub.listen("ctr_1", null, () => {
      throw new Error("boom");
    });
    hub.listen("ctr_1", null, (p) => got.push(p.postboxId));
    publish(ev("ctr_1", "pbx_a"));
    await settle();
    expect(got).toEqual(["pbx_a"]);
    expect(errors).toHaveLength(1);
  });

  it("ignores malformed payloads and ones naming another contract", async () => {
    const { hub, errors } = setup();
    const pubSub = (hub as unknown as { pubSub: ReturnType<typeof createPubSub<PubSubEvents>> }).pubSub;
    const got: string[] = [];
    hub.listen("ctr_1", null, (p) => got.push(p.postboxId));
    pubSub.publish(contractTopic("ctr_1"), { nonsense: true });
    pubSub.publish(contractTopic("ctr_1"), ev("ctr_2", "pbx_x") as unknown as Record<string, unknown>);
    pubSub.publish(contractTopic("ctr_1"), ev("ctr_1", "pbx_ok") as unknown as Record<string, unknown>);
    await settle();
    expect(got).toEqual(["pbx_ok"]);
    expect(errors).toHaveLength(0);
  });

  it("asStatusPayload accepts Redis-decoded JSON and rejects unknown statuses", () => {
    const p = ev("ctr_1", "pbx_a");
    expect(asStatusPayload(JSON.parse(JSON.stringify(p)))).toEqual(p);
    expect(asStatusPayload({ ...p, status: "WHATEVER" })).toBeUndefined();
    expect(asStatusPayload(null)).toBeUndefined();
  });
});
