// Objects made on every request keep shared hidden classes (docs/design.md, "Object
// shapes on Node 20"): two requests held at the same middleware have the same V8 map,
// and Express still works on them as usual; so do two pushes' audit events.
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import http from "node:http";
import type { AddressInfo } from "node:net";
import v8 from "node:v8";
import express, { type Request, type Response } from "express";
import { expressObjectClasses } from "../../src/infra/http/express-objects.js";
import type { AuditRepository } from "../../src/modules/audit/audit.repository.js";
import { AuditService, type AuditInput } from "../../src/modules/audit/audit.service.js";

// %HaveSameMap is V8's own test hook; the flag applies to code compiled after it is set.
v8.setFlagsFromString("--allow-natives-syntax");
const haveSameMap = new Function("a", "b", "return %HaveSameMap(a, b)") as (a: object, b: object) => boolean;

describe("expressObjectClasses", () => {
  const app = express();
  const held: { req: Request; res: Response }[] = [];
  const compared: { req: boolean; res: boolean; proto: boolean; app: boolean; header: string | undefined; body: unknown }[] = [];
  let server: http.Server;
  let port: number;

  beforeAll(async () => {
    app.use((req, _res, next) => {
      (req as Request & { requestId?: string }).requestId = "r";
      next();
    });
    app.use(express.json());
    app.post("/echo", (req, res) => {
      held.push({ req, res });
      if (held.length < 2) return;
      // Both requests are now at the same point of the same path.
      const [a, b] = held.splice(0);
      compared.push({
        req: haveSameMap(a.req, b.req),
        res: haveSameMap(a.res, b.res),
        proto: Object.getPrototypeOf(a.req) === app.request && Object.getPrototypeOf(a.res) === app.response,
        app: a.req.app === app && a.res.app === app,
        header: a.req.get("x-probe"),
        body: a.req.body,
      });
      for (const h of [a, b]) h.res.status(201).json({ echo: h.req.body });
    });
    server = http.createServer(expressObjectClasses(app), app);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  const post = (agent: http.Agent, n: number) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port, path: "/echo", method: "POST", agent, headers: { "content-type": "application/json", "x-probe": "yes" } }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on("error", reject);
      req.end(JSON.stringify({ n }));
    });

  it("gives requests and responses the same shapes, request after request", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
    try {
      for (let round = 0; round < 6; round++) {
        const answers = await Promise.all([post(agent, round * 2), post(agent, round * 2 + 1)]);
        expect(answers.map((a) => a.status)).toEqual([201, 201]);
        expect(answers.map((a) => JSON.parse(a.body).echo.n).sort()).toEqual([round * 2, round * 2 + 1]);
      }
    } finally {
      agent.destroy();
    }
    expect(compared).toHaveLength(6);
    // The first rounds may still meet shapes being set up (a field's representation
    // generalised once); every later one shares them.
    for (const c of compared.slice(2)) expect(c).toMatchObject({ req: true, res: true });
    for (const c of compared) expect(c).toMatchObject({ proto: true, app: true, header: "yes" });
    for (const c of compared) expect(c.body).toEqual({ n: expect.any(Number) });
  });
});

describe("audit events on their way to the batch statement", () => {
  it("share one shape, and carry the canonical text of their own columns", () => {
    // pending() needs no database: the events are chained by the batch statement.
    const audit = new AuditService({} as AuditRepository);
    const input = (n: number): AuditInput => ({
      actorType: "APP",
      actorId: "app_1",
      action: "push.create",
      outcome: "SUCCESS",
      applicationId: "app_1",
      contractId: "ctr_1",
      postboxId: `pbx_${n}`,
      targetId: `psh_${n}`,
      detail: { kind: "data", size: n, duplicate: false },
    });
    const events = [1, 2, 3].map((n) => audit.pending(input(n)));
    expect(haveSameMap(events[1], events[2])).toBe(true);
    expect(events[2]).toMatchObject({ postboxId: "pbx_3", targetId: "psh_3", reason: null, detail: { size: 3 } });
    expect(JSON.parse(events[2].canonical)).toEqual([events[2].id, events[2].at.toISOString(), "APP", "app_1", "push.create", "SUCCESS", null, "app_1", "ctr_1", "pbx_3", "psh_3", { duplicate: false, kind: "data", size: 3 }]);
  });
});
