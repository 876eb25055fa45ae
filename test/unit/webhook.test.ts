// Webhook building blocks in isolation: Standard Webhooks signing, the secret
// format, the retry schedule and its jitter, and the outbound URL policy,
// including a name that resolves to a private address at delivery time, and the
// dispatcher's run() waiting for every send it may not see yet.
import { createHmac } from "node:crypto";
import type dns from "node:dns";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { checkOutboundUrl } from "../../src/infra/url-policy.js";
import { MAX_ATTEMPTS, RETRY_JITTER, RETRY_SCHEDULE_MS, newWebhookSecret, retryDelayMs, signWebhook } from "../../src/modules/webhook/webhook.signature.js";
import { PrivateAddressError, WebhookSender, checkedLookup } from "../../src/modules/webhook/webhook.sender.js";
import type { ClaimedDelivery, WebhookRepository } from "../../src/modules/webhook/webhook.repository.js";
import { WebhookDispatcher } from "../../src/modules/webhook/webhook.worker.js";

describe("Standard Webhooks signature", () => {
  it("reproduces the specification's published test vector", () => {
    expect(signWebhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}')).toBe(
      "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    );
  });

  it("matches the reference construction for a fresh secret and a unicode body", () => {
    const secret = newWebhookSecret();
    const body = JSON.stringify({ type: "postbox.ready", timestamp: "2026-01-01T00:00:00.000Z", data: { note: "é ✓" } });
    const key = Buffer.from(secret.split("_")[1], "base64");
    const expected = createHmac("sha256", key).update(`msg_abc.1700000000.${body}`, "utf8").digest("base64");
    expect(signWebhook(secret, "msg_abc", 1700000000, body)).toBe(`v1,${expected}`);
    // Any change to id, timestamp or body changes the signature.
    expect(signWebhook(secret, "msg_abd", 1700000000, body)).not.toBe(`v1,${expected}`);
    expect(signWebhook(secret, "msg_abc", 1700000001, body)).not.toBe(`v1,${expected}`);
    expect(signWebhook(secret, "msg_abc", 1700000000, body + " ")).not.toBe(`v1,${expected}`);
  });

  it("makes whsec_ secrets of 24–64 random bytes in base64", () => {
    const a = newWebhookSecret();
    const b = newWebhookSecret();
    expect(a).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    const bytes = Buffer.from(a.slice(6), "base64");
    expect(bytes.length).toBeGreaterThanOrEqual(24);
    expect(bytes.length).toBeLessThanOrEqual(64);
    expect(a).not.toBe(b);
  });
});

describe("retry schedule", () => {
  it("is 0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h", () => {
    expect(RETRY_SCHEDULE_MS).toEqual([0, 5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]);
    expect(MAX_ATTEMPTS).toBe(8);
  });

  it.each([1, 2, 3, 4, 5, 6, 7])("waits the scheduled delay ±20 %% after %i failed attempt(s)", (n) => {
    const base = RETRY_SCHEDULE_MS[n];
    expect(retryDelayMs(n, () => 0)).toBe(Math.round(base * (1 - RETRY_JITTER)));
    expect(retryDelayMs(n, () => 0.5)).toBe(base);
    expect(retryDelayMs(n, () => 0.999999)).toBeLessThanOrEqual(Math.round(base * (1 + RETRY_JITTER)));
    const samples = Array.from({ length: 500 }, () => retryDelayMs(n)!);
    for (const s of samples) {
      expect(s).toBeGreaterThanOrEqual(Math.floor(base * 0.8));
      expect(s).toBeLessThanOrEqual(Math.ceil(base * 1.2));
    }
    // Jitter really varies (500 identical draws would mean none).
    expect(new Set(samples).size).toBeGreaterThan(1);
  });

  it("gives up after the eighth attempt", () => {
    expect(retryDelayMs(8)).toBeNull();
    expect(retryDelayMs(9)).toBeNull();
  });
});

describe("outbound URL policy", () => {
  it.each([
    ["ftp://hooks.example.com/x", /http or https/],
    ["file:///etc/passwd", /http or https/],
    ["not a url", /absolute http/],
    ["https://user:pw@hooks.example.com/", /credentials/],
    ["http://127.0.0.1:8080/hook", /private or loopback/],
    ["http://10.1.2.3/hook", /private or loopback/],
    ["http://192.168.1.10/hook", /private or loopback/],
    ["http://169.254.169.254/latest/meta-data", /private or loopback/],
    ["http://[::1]/hook", /private or loopback/],
    ["http://[::ffff:127.0.0.1]/hook", /private or loopback/],
    ["http://[::ffff:a00:1]/hook", /private or loopback/],
    ["http://[::127.0.0.1]/hook", /private or loopback/],
    ["http://localhost:3000/hook", /private or loopback/],
    ["http://intranet/hook", /private or loopback/],
  ])("refuses %s", (url, message) => {
    expect(() => checkOutboundUrl(url, "url", false)).toThrow(message);
  });

  it("accepts public http(s) URLs, and private ones only when allowed", () => {
    expect(checkOutboundUrl("https://hooks.example.com/postbox?x=1", "url", false)).toBe("https://hooks.example.com/postbox?x=1");
    expect(checkOutboundUrl("http://[::ffff:5db8:d822]/hook", "url", false)).toBe("http://[::ffff:5db8:d822]/hook");
    expect(checkOutboundUrl("http://127.0.0.1:8080/hook", "url", true)).toBe("http://127.0.0.1:8080/hook");
    expect(() => checkOutboundUrl("ftp://127.0.0.1/", "url", true)).toThrow(/http or https/);
  });
});

/** A resolver that answers from a table, like DNS records pointing wherever an attacker likes. */
function fakeResolver(table: Record<string, string[]>): typeof dns.lookup {
  return ((hostname: string, _opts: unknown, cb: (err: Error | null, addresses?: dns.LookupAddress[]) => void) => {
    const addrs = table[hostname];
    if (!addrs) return cb(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" }));
    cb(null, addrs.map((address) => ({ address, family: address.includes(":") ? 6 : 4 })));
  }) as unknown as typeof dns.lookup;
}

function lookupOnce(lookup: ReturnType<typeof checkedLookup>, host: string, all: boolean): Promise<{ err: Error | null; result: unknown }> {
  return new Promise((resolve) => {
    (lookup as unknown as (h: string, o: object, cb: (e: Error | null, a?: unknown, f?: number) => void) => void)(host, { all }, (err, a, f) =>
      resolve({ err, result: all ? a : { address: a, family: f } }),
    );
  });
}

describe("checked DNS lookup", () => {
  const lookup = checkedLookup(fakeResolver({ "public.example.com": ["93.184.216.34"], "inward.example.com": ["10.0.0.5"], "mixed.example.com": ["93.184.216.34", "127.0.0.1"] }));

  it("passes public addresses through (single and all)", async () => {
    expect(await lookupOnce(lookup, "public.example.com", false)).toEqual({ err: null, result: { address: "93.184.216.34", family: 4 } });
    expect(await lookupOnce(lookup, "public.example.com", true)).toEqual({ err: null, result: [{ address: "93.184.216.34", family: 4 }] });
  });

  it.each(["inward.example.com", "mixed.example.com"])("refuses %s, which resolves to a private address", async (host) => {
    const { err } = await lookupOnce(lookup, host, true);
    expect(err).toBeInstanceOf(PrivateAddressError);
    expect(err!.message).toMatch(/private or loopback/);
  });
});

describe("WebhookSender", () => {
  let server: http.Server;
  let port: number;
  const hits: string[] = [];
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      hits.push(req.url ?? "");
      if (req.url === "/slow") return; // never answers
      if (req.url === "/redirect") {
        res.writeHead(302, { location: `http://127.0.0.1:${port}/target` }).end();
        return;
      }
      if (req.url === "/big") {
        res.writeHead(200);
        res.end(Buffer.alloc(5 * 1024 * 1024, 97));
        return;
      }
      res.writeHead(204).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const resolve = () => fakeResolver({ "hooks.example.com": ["127.0.0.1"] });

  it("refuses at connect time a public name that resolves to a loopback address", async () => {
    const sender = new WebhookSender({ timeoutMs: 5000, allowPrivate: false, userAgent: "test", resolve: resolve() });
    const before = hits.length;
    const r = await sender.send(`http://hooks.example.com:${port}/hook`, {}, "{}");
    await sender.close();
    expect(r.statusCode).toBeUndefined();
    expect(r.error).toMatch(/^refused: hooks\.example\.com resolves to a private or loopback address/);
    expect(r.error).not.toContain("127.0.0.1"); // the application reads this: no inside address in it
    expect(hits.length).toBe(before);
  });

  it("connects through the same lookup when private addresses are allowed", async () => {
    const sender = new WebhookSender({ timeoutMs: 5000, allowPrivate: true, userAgent: "test", resolve: resolve() });
    const r = await sender.send(`http://hooks.example.com:${port}/hook`, {}, "{}");
    await sender.close();
    expect(r).toMatchObject({ statusCode: 204 });
    expect(r.error).toBeUndefined();
    expect(hits).toContain("/hook");
  });

  it("refuses a literal private address without connecting", async () => {
    const sender = new WebhookSender({ timeoutMs: 5000, allowPrivate: false, userAgent: "test" });
    const before = hits.length;
    const r = await sender.send(`http://127.0.0.1:${port}/hook`, {}, "{}");
    await sender.close();
    expect(r.error).toMatch(/^refused: .*private or loopback/);
    expect(hits.length).toBe(before);
  });

  it("does not follow redirects", async () => {
    const sender = new WebhookSender({ timeoutMs: 5000, allowPrivate: true, userAgent: "test" });
    const r = await sender.send(`http://127.0.0.1:${port}/redirect`, {}, "{}");
    await sender.close();
    expect(r).toMatchObject({ statusCode: 302, error: "redirect (302) not followed" });
    expect(hits).not.toContain("/target");
  });

  it("gives up on a receiver that does not answer within the timeout", async () => {
    const sender = new WebhookSender({ timeoutMs: 300, allowPrivate: true, userAgent: "test" });
    const r = await sender.send(`http://127.0.0.1:${port}/slow`, {}, "{}");
    await sender.close();
    expect(r.statusCode).toBeUndefined();
    expect(r.error).toBe("timeout: no answer within 300 ms");
  });

  it("reads only the start of a large answer and still reports success", async () => {
    const sender = new WebhookSender({ timeoutMs: 5000, allowPrivate: true, userAgent: "test" });
    const r = await sender.send(`http://127.0.0.1:${port}/big`, {}, "{}");
    await sender.close();
    expect(r).toMatchObject({ statusCode: 200 });
    expect(r.error).toBeUndefined();
  });
});

describe("WebhookDispatcher.run", () => {
  const delivery = (id: string) =>
    ({ id, endpointId: "whe_1", contractId: "con_1", eventType: "postbox.ready", payload: "{}", attemptCount: 0, lockedUntil: new Date(), url: "https://example.com/hook", secret: newWebhookSecret(), registeredAt: new Date(), retiredSecrets: [] }) as ClaimedDelivery;
  const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

  /**
   * A dispatcher on a scripted repository: the nth claim answers `script[n]` (rows, an
   * error, or "hold": it waits until released), later ones []; a send to an id in `hang`
   * waits until `releaseSends()`.
   */
  function harness(script: (ClaimedDelivery[] | Error | "hold")[], hang: string[] = []) {
    const held: ((rows: ClaimedDelivery[]) => void)[] = [];
    const recorded: string[] = [];
    let claims = 0;
    let releaseSends!: () => void;
    const gate = new Promise<void>((r) => (releaseSends = r));
    const repo = {
      claimDue: () => {
        const step = script[claims++] ?? [];
        if (step === "hold") return new Promise<ClaimedDelivery[]>((r) => held.push(r));
        return step instanceof Error ? Promise.reject(step) : Promise.resolve(step);
      },
      transaction: (fn: (tx: unknown) => Promise<unknown>) => fn({}),
      finishAttempt: async (_tx: unknown, d: ClaimedDelivery, outcome: { status: string }) => {
        recorded.push(`${d.id}:${outcome.status}`);
        return true;
      },
    } as unknown as WebhookRepository;
    const sender = {
      send: async (url: string, headers: Record<string, string>) => {
        if (hang.includes(headers["webhook-id"])) await gate;
        return { statusCode: 200, durationMs: 1 };
      },
      close: async () => {},
    } as unknown as WebhookSender;
    const log = { info() {}, warn() {}, error() {}, debug() {} };
    const dispatcher = new WebhookDispatcher(repo, sender, {} as never, log as never, { concurrency: 8, perEndpoint: 2, lockMs: 60_000, refillMs: 60_000 });
    return { dispatcher, recorded, claims: () => claims, release: (rows: ClaimedDelivery[] = []) => held.shift()!(rows), releaseSends };
  }

  it("a call while a run is under way joins it: that run claims once more, and the call resolves once what was due then is sent", async () => {
    // notify() starts a run whose claim is still out when run() is called; the delivery
    // that run() is for is only due by the next claim, which the run under way makes.
    const h = harness(["hold", [delivery("whd_1")]]);
    h.dispatcher.notify();
    let runDone = false;
    const run = h.dispatcher.run().then((n) => ((runDone = true), n));
    await tick();
    expect(h.claims()).toBe(1); // no second claim beside the first
    expect(runDone).toBe(false);
    h.release([]);
    expect(await run).toBe(1);
    expect(h.recorded).toEqual(["whd_1:SUCCEEDED"]);
    // The joined call's claim (2), the lane's look for more (3), the run's last look (4).
    expect(h.claims()).toBe(4);
  });

  it("claims at once for a call made while its claim was out and a lane hangs, not only at the next refill", async () => {
    const h = harness([[delivery("whd_slow")], "hold", [delivery("whd_new")]], ["whd_slow"]);
    const run = h.dispatcher.run();
    await tick();
    void h.dispatcher.run(); // wakes the run, which claims (2, held)
    await tick();
    expect(h.claims()).toBe(2);
    void h.dispatcher.run(); // while claim 2 is out
    h.release([]);
    await tick();
    // Claim 3 went out at once (refillMs is a minute) and its delivery was sent.
    expect(h.recorded).toEqual(["whd_new:SUCCEEDED"]);
    h.releaseSends();
    expect(await run).toBe(2);
    expect(h.recorded).toEqual(["whd_new:SUCCEEDED", "whd_slow:SUCCEEDED"]);
  });

  it("ends when nothing is due although it was called twice at once, with one claim for each call", async () => {
    const h = harness([]);
    const both = Promise.all([h.dispatcher.run(), h.dispatcher.run()]);
    const outcome = await Promise.race([both.then(() => "ended"), tick(2000).then(() => "still claiming")]);
    await h.dispatcher.stop();
    expect(outcome).toBe("ended");
    expect(h.claims()).toBe(2);
  });

  it("a failed claim fails the run under way, and the next call starts a new one", async () => {
    const h = harness([new Error("database gone")]);
    await expect(h.dispatcher.run()).rejects.toThrow("database gone");
    expect(await h.dispatcher.run()).toBe(0);
    expect(h.claims()).toBe(2);
  });

  it("stop() waits for the run's claim still out, and sends nothing it claimed", async () => {
    const h = harness(["hold"]);
    const run = h.dispatcher.run();
    await tick();
    let stopped = false;
    const stop = h.dispatcher.stop().then(() => (stopped = true));
    await tick();
    expect(stopped).toBe(false);
    h.release([delivery("whd_late")]);
    await stop;
    expect(await run).toBe(0);
    expect(h.recorded).toEqual([]);
  });
});
