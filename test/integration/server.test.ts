// Server behaviour users expect: health and readiness, graceful shutdown (in
// process, waiting for mutations in flight on HTTP and WebSocket, and of the real
// entry point on SIGTERM), graphql-armor limits on HTTP
// and WebSocket, body size limit, masked internal errors, introspection by
// configuration, CSRF prevention, the Sandbox landing page, and JSON logs with a
// request id and no credentials.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import { gzipSync } from "node:zlib";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { createClient, type Client } from "graphql-ws";
import { request } from "undici";
import WebSocket from "ws";
import { operation } from "../documents/index.js";
import type { CreateSessionMutation } from "../generated/graphql.js";
import { createSession, registerApp, signAssertion } from "../helpers/factories.js";
import { createTestDatabase, errorCode, startTestServer, type TestServer } from "../helpers/server.js";
import { collect, wsClient } from "../helpers/ws.js";
import { waitUntil } from "./postbox.helpers.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

interface WsResult {
  data?: Record<string, unknown> | null;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

/** Runs one operation over graphql-ws; validation refusals arrive as an error array. */
function wsExecute(client: Client, query: string, variables?: Record<string, unknown>): Promise<WsResult> {
  return new Promise((resolve, reject) => {
    let result: WsResult = {};
    client.subscribe(
      { query, variables },
      {
        next: (v) => {
          result = v as WsResult;
        },
        error: (e) => (Array.isArray(e) ? resolve({ errors: e }) : reject(e)),
        complete: () => resolve(result),
      },
    );
  });
}

/** A raw graphql-transport-ws connection, acknowledged. */
async function rawWs(url: string): Promise<{ ws: WebSocket; closed: Promise<{ code: number; reason: string }> }> {
  const ws = new WebSocket(url, "graphql-transport-ws");
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise<void>((resolve, reject) => {
    ws.on("open", () => ws.send(JSON.stringify({ type: "connection_init" })));
    ws.on("message", (m) => {
      if (JSON.parse(m.toString()).type === "connection_ack") resolve();
    });
    ws.on("error", reject);
  });
  return { ws, closed };
}

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await request(url, { method: "GET", headers });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

// 9 levels: __type > fields > type > ofType ×5 > name.
const DEEP = `{ __type(name: "Query") { fields { type { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } }`;
// graphql-armor does not count aliases of __typename.
const aliases = (n: number) => `{ ${Array.from({ length: n }, (_, i) => `a${i}: currentSession { appId }`).join(" ")} }`;
const ALIASES = aliases(16);
const TOKENS = `{ ${Array.from({ length: 2100 }, () => "__typename").join(" ")} }`;
const INTROSPECTION = `{ __schema { queryType { name } } }`;

describe("a development server", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ env: { NODE_ENV: "development", MAX_PUSH_BYTES: "1KiB" } });
  });
  afterAll(async () => t?.stop());

  it("answers /healthz and /readyz", async () => {
    const health = await get(`${t.url}/healthz`);
    expect(health.status).toBe(200);
    expect(JSON.parse(health.text)).toEqual({ status: "ok" });
    const ready = await get(`${t.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.text)).toEqual({ status: "ready" });
  });

  it("serves the Apollo Sandbox on GET /graphql for a browser", async () => {
    const r = await get(`${t.url}/graphql`, { accept: "text/html" });
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toMatch(/text\/html/);
    expect(r.text).toContain("embeddable-sandbox");
    expect(r.text).toContain("EmbeddedSandbox");
  });

  it("refuses a GET operation without a CSRF preflight header, and runs it with one", async () => {
    const q = `${t.url}/graphql?query=${encodeURIComponent("{ __typename }")}`;
    const blocked = await get(q);
    expect(blocked.status).toBe(400);
    expect(blocked.text).toMatch(/Cross-Site Request Forgery/);
    const allowed = await get(q, { "apollo-require-preflight": "true" });
    expect(allowed.status).toBe(200);
    expect(JSON.parse(allowed.text)).toEqual({ data: { __typename: "Query" } });
  });

  it.each([
    ["an unknown Content-Encoding", { "content-encoding": "zz" }, Buffer.from(JSON.stringify({ query: "{ __typename }" })), 415, /unsupported content encoding "zz"/],
    ["a gzip body that is not gzip", { "content-encoding": "gzip" }, Buffer.from(JSON.stringify({ query: "{ __typename }" })), 400, /could not be read; check that its Content-Encoding/],
  ])("answers a body with %s in GraphQL's error shape, without a stack trace", async (_n, headers, body, status, message) => {
    const res = await request(`${t.url}/graphql`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
    const text = await res.body.text();
    expect(res.statusCode).toBe(status);
    expect(res.headers["content-type"]).toMatch(/application\/json/);
    const json = JSON.parse(text);
    expect(json.errors[0].extensions.code).toBe("BAD_REQUEST");
    expect(json.errors[0].message).toMatch(message);
    expect(text).not.toMatch(/ at |node_modules/);
  });

  it("takes a gzip-compressed body", async () => {
    const res = await request(`${t.url}/graphql`, { method: "POST", headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: gzipSync(JSON.stringify({ query: "{ __typename }" })) });
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toEqual({ data: { __typename: "Query" } });
  });

  it("refuses a POST whose content type a browser form could send", async () => {
    const res = await request(`${t.url}/graphql`, { method: "POST", headers: { "content-type": "text/plain" }, body: JSON.stringify({ query: "{ __typename }" }) });
    const text = await res.body.text();
    expect(res.statusCode).toBe(400);
    expect(text).toMatch(/Cross-Site Request Forgery/);
  });

  it("allows introspection by default outside production", async () => {
    const r = await t.gql(INTROSPECTION);
    expect(r.data).toEqual({ __schema: { queryType: { name: "Query" } } });
  });

  describe("graphql-armor limits", () => {
    it.each([
      ["depth", DEEP, /depth limit of 8 exceeded, found 9/],
      ["aliases", ALIASES, /Aliases limit of 15 exceeded, found 16/],
      ["tokens", TOKENS, /Token limit of 2000 exceeded|contains more th\w+ 2000 tokens/],
    ])("refuses an operation over the %s limit over HTTP", async (_n, query, message) => {
      const r = await t.gql(query);
      expect(r.data).toBeUndefined();
      expect(r.errors?.[0].message).toMatch(message);
      expect(r.errors?.[0].extensions?.code).toMatch(/GRAPHQL_(VALIDATION|PARSE)_FAILED|BAD_USER_INPUT/);
    });

    it.each([
      ["depth", DEEP, /depth limit of 8 exceeded, found 9/],
      ["aliases", ALIASES, /Aliases limit of 15 exceeded, found 16/],
      ["tokens", TOKENS, /Token limit of 2000 exceeded|contains more th\w+ 2000 tokens/],
    ])("refuses an operation over the %s limit over WebSocket", async (_n, query, message) => {
      const client = wsClient(t.wsUrl);
      try {
        const r = await wsExecute(client, query);
        expect(r.data).toBeUndefined();
        expect(r.errors?.[0].message).toMatch(message);
      } finally {
        await client.dispose();
      }
    });

    describe("text that cannot be stored (a NUL, an unpaired surrogate)", () => {
      const CREATE = `mutation($input: CreateSessionInput!) { createSession(input: $input) { key } }`;
      const input = (appId: string) => ({ input: { appId, contractId: "ctr_x", assertion: "x.y" } });

      it.each([
        ["a NUL", "app_\u0000x"],
        ["a lone high surrogate", "app_\ud83d"],
        ["a lone low surrogate", "app_\ude00x"],
      ])("is refused in variables with %s over HTTP and WebSocket, naming the variable", async (_n, appId) => {
        const before = await t.app.db.prisma.auditEvent.count();
        const http = await t.gql(CREATE, input(appId));
        expect(http.status).toBe(400);
        expect(http.errors?.[0].extensions?.code).toBe("BAD_USER_INPUT");
        expect(http.errors?.[0].message).toMatch(/^Variable \$input\.appId contains a NUL character or an unpaired UTF-16 surrogate/);
        const client = wsClient(t.wsUrl);
        try {
          const ws = await wsExecute(client, CREATE, input(appId));
          expect(ws.errors?.[0].extensions?.code).toBe("BAD_USER_INPUT");
          expect(ws.errors?.[0].message).toMatch(/\$input\.appId/);
        } finally {
          await client.dispose();
        }
        // Refused before any resolver ran: nothing written.
        expect(await t.app.db.prisma.auditEvent.count()).toBe(before);
      });

      it("is refused when it is the large-body parser's placeholder, sent by the client, over HTTP and WebSocket", async () => {
        const logged = t.logs.length;
        const variables = { input: { appId: "app_x", contractId: "\u0000inline-value:0", assertion: "x.y" } };
        const http = await t.gql(CREATE, variables);
        expect(http.status).toBe(400);
        expect(http.errors?.[0].extensions?.code).toBe("BAD_USER_INPUT");
        expect(http.errors?.[0].message).toMatch(/^Variable \$input\.contractId contains a NUL character/);
        const client = wsClient(t.wsUrl);
        try {
          const ws = await wsExecute(client, CREATE, variables);
          expect(ws.errors?.[0].extensions?.code).toBe("BAD_USER_INPUT");
          expect(ws.errors?.[0].message).toMatch(/\$input\.contractId/);
        } finally {
          await client.dispose();
        }
        expect(t.logs.slice(logged).map((l) => JSON.parse(l).level)).not.toContain(50);
      });

      it("is refused in a string literal of the query", async () => {
        const r = await t.gql(`mutation { createSession(input: { appId: "app_\\u0000", contractId: "ctr_x", assertion: "x.y" }) { key } }`);
        // Like every other validation rule's refusal (depth, cost, introspection).
        expect(r.errors?.[0].extensions?.code).toBe("GRAPHQL_VALIDATION_FAILED");
        expect(r.errors?.[0].message).toMatch(/A string in the query contains a NUL character/);
      });

      it("leaves well-formed text alone, emoji and all", async () => {
        const r = await t.gql(CREATE, input("app_\u{1F600}"));
        // It reaches the resolver, which refuses the assertion for what it is.
        expect(r.errors?.[0].message).not.toMatch(/cannot be stored/);
        expect(r.errors?.[0].message).toMatch(/JWS|assertion/i);
      });
    });

    it.each([
      ["an unclosed selection", `{ __typename`],
      ["a stray brace", `{ __typename }}`],
      ["an unterminated string", `{ a(x: "b) }`],
      ["a bad number", `{ a(b: 1e) }`],
    ])("answers a document with %s 400 GRAPHQL_PARSE_FAILED, and counts the operation as ended", async (_n, query) => {
      const r = await t.gql(query);
      expect(r.status).toBe(400);
      expect(r.errors?.[0].extensions?.code).toBe("GRAPHQL_PARSE_FAILED");
      expect(r.errors?.[0].message).toMatch(/^Syntax Error: /);
      // A request that never ended would hold up the server's stop for its whole grace period.
      expect(t.app.operationsInFlight()).toBe(0);
    });

    it.each([
      ["an unclosed selection", `{ __typename`],
      ["an unterminated string", `{ a(x: "b) }`],
      ["too many tokens", TOKENS],
    ])("answers a document with %s GRAPHQL_PARSE_FAILED over WebSocket too, as over HTTP", async (_n, query) => {
      const client = wsClient(t.wsUrl);
      try {
        const r = await wsExecute(client, query);
        expect(r.errors?.[0].extensions?.code).toBe("GRAPHQL_PARSE_FAILED");
        expect(r.errors?.[0].message).toMatch(/^Syntax Error: /);
        expect((await t.gql(query)).errors?.[0].extensions?.code).toBe("GRAPHQL_PARSE_FAILED");
      } finally {
        await client.dispose();
      }
    });

    it("runs operations within the limits on both transports (refused only for lack of a session)", async () => {
      const ok = aliases(15);
      const http = await t.gql(ok);
      expect(http.errors?.[0].extensions?.code).toBe("UNAUTHENTICATED");
      const client = wsClient(t.wsUrl);
      try {
        const ws = await wsExecute(client, ok);
        expect(ws.errors?.[0].extensions?.code).toBe("UNAUTHENTICATED");
        // A refused operation leaves the connection usable.
        expect((await wsExecute(client, TOKENS)).errors?.[0].message).toMatch(/2000 tokens/);
        expect((await wsExecute(client, `{ __typename }`)).data).toEqual({ __typename: "Query" });
      } finally {
        await client.dispose();
      }
    });
  });

  it("refuses an oversized body with 413 PAYLOAD_TOO_LARGE", async () => {
    const body = JSON.stringify({ query: "{ __typename }", variables: { pad: "x".repeat(t.app.config.BODY_LIMIT_BYTES + 1024) } });
    const res = await request(`${t.url}/graphql`, { method: "POST", headers: { "content-type": "application/json" }, body });
    const json = (await res.body.json()) as { errors: { message: string; extensions: { code: string } }[] };
    expect(res.statusCode).toBe(413);
    expect(json.errors[0].extensions.code).toBe("PAYLOAD_TOO_LARGE");
    expect(json.errors[0].message).toMatch(/MAX_PUSH_BYTES/);
  });

  it("closes a WebSocket that sends an oversized message (1009)", async () => {
    const { ws, closed } = await rawWs(t.wsUrl);
    ws.send(JSON.stringify({ id: "1", type: "subscribe", payload: { query: "{ __typename }", variables: { pad: "x".repeat(t.app.config.BODY_LIMIT_BYTES + 1024) } } }));
    expect((await closed).code).toBe(1009);
    expect(t.logs.some((l) => JSON.parse(l).msg === "websocket connection error" && /Max payload size exceeded/.test(JSON.parse(l).reason))).toBe(true);
  });

  it("answers malformed JSON with a coded 400", async () => {
    const res = await request(`${t.url}/graphql`, { method: "POST", headers: { "content-type": "application/json" }, body: "{not json" });
    expect(res.statusCode).toBe(400);
    expect(((await res.body.json()) as { errors: { extensions: { code: string } }[] }).errors[0].extensions.code).toBe("BAD_REQUEST");
  });

  it("refuses a subscription sent over HTTP with 400 BAD_REQUEST, pointing at the WebSocket endpoint, without logging an error", async () => {
    const logged = t.logs.length;
    const r = await t.gql(`subscription { postboxStatusChanged { postboxId status } }`);
    expect(r.status).toBe(400);
    expect(r.data).toBeUndefined();
    expect(r.errors?.[0].extensions?.code).toBe("BAD_REQUEST");
    expect(r.errors?.[0].message).toMatch(/WebSocket.*graphql-ws.*\/graphql/);
    expect(t.logs.slice(logged).map((l) => JSON.parse(l).level)).not.toContain(50);
    // Over WebSocket the same operation is a subscription like any other (this one needs a session).
    const client = wsClient(t.wsUrl);
    try {
      expect((await wsExecute(client, `subscription { postboxStatusChanged { postboxId status } }`)).errors?.[0].extensions?.code).toBe("UNAUTHENTICATED");
    } finally {
      await client.dispose();
    }
  });

  it("logs JSON lines with the request id and never the Authorization value", async () => {
    const secret = `pbs_${"S".repeat(43)}`;
    const requestId = `req-${Date.now()}`;
    const r = await t.gql(`query Probe { currentSession { appId } }`, {}, { headers: { authorization: `Bearer ${secret}`, "x-request-id": requestId } });
    expect(r.errors?.[0].extensions?.code).toBe("UNAUTHENTICATED");
    expect(r.headers["x-request-id"]).toBe(requestId);
    const lines = t.logs.map((l) => JSON.parse(l) as Record<string, unknown>);
    const line = lines.find((l) => l.requestId === requestId);
    expect(line).toMatchObject({ msg: "graphql", operation: "Probe", errors: ["UNAUTHENTICATED"] });
    expect(t.logs.join("\n")).not.toContain(secret);
    expect(t.logs.join("\n")).not.toMatch(/Bearer /);

    // Without a client-supplied id, the server makes one, returns it and logs it.
    const r2 = await t.gql(`query Probe2 { __typename }`);
    const generated = r2.headers["x-request-id"] as string;
    expect(generated).toMatch(/^[0-9a-f-]{36}$/);
    expect(t.logs.map((l) => JSON.parse(l)).some((l) => l.requestId === generated && l.operation === "Probe2")).toBe(true);
  });

  it("keeps the assertion and session key out of the logs, and answers out of caches", async () => {
    const app = await registerApp(t);
    const assertion = await signAssertion(app);
    const r = await t.gql<CreateSessionMutation>(operation("CreateSession"), { input: { appId: app.appId, contractId: app.contractId, assertion } });
    const key = r.data!.createSession.key;
    // The answer holds a credential: no cache may keep it (nor an error, nor a plain query).
    expect(r.headers["cache-control"]).toBe("no-store");
    expect((await t.gql(`{ nope }`)).headers["cache-control"]).toBe("no-store");
    const plain = await t.gql(`{ __typename }`);
    expect(plain.headers["cache-control"]).toBe("no-store");
    expect(plain.headers.etag).toBeUndefined(); // nothing to revalidate
    const all = t.logs.join("\n");
    expect(all).not.toContain(assertion.split(".")[2]);
    expect(all).not.toContain(key);
  });
});

describe("introspection off by configuration", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ env: { NODE_ENV: "development", INTROSPECTION: "false" } });
  });
  afterAll(async () => t?.stop());

  it("refuses introspection over HTTP and still runs other operations", async () => {
    const r = await t.gql(INTROSPECTION);
    expect(r.data).toBeUndefined();
    expect(r.errors?.[0].extensions?.code).toBe("GRAPHQL_VALIDATION_FAILED");
    expect(r.errors?.[0].message).toMatch(/introspection/i);
    expect((await t.gql(`{ __typename }`)).data).toEqual({ __typename: "Query" });
  });

  it("refuses introspection over WebSocket too", async () => {
    const client = wsClient(t.wsUrl);
    try {
      const r = await wsExecute(client, INTROSPECTION);
      expect(r.data).toBeUndefined();
      expect(r.errors?.[0].message).toMatch(/introspection/i);
      expect((await wsExecute(client, `{ __typename }`)).data).toEqual({ __typename: "Query" });
    } finally {
      await client.dispose();
    }
  });
});

describe("operations per WebSocket connection", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ env: { WS_MAX_OPERATIONS: "2" } });
  });
  afterAll(async () => t?.stop());

  it("refuses one over WS_MAX_OPERATIONS with RATE_LIMITED, keeps the connection and the others, and takes one again once another ends", async () => {
    const app = await registerApp(t);
    const key = await createSession(t, app);
    const client = wsClient(t.wsUrl, `Bearer ${key}`);
    try {
      const open = () => t.app.services.postboxes.openSubscriptions;
      const first = collect(client, `subscription { postboxStatusChanged { postboxId status } }`);
      const second = collect(client, `subscription { postboxStatusChanged { postboxId status } }`);
      await waitUntil(() => open() === 2, "two streams are open");
      const third = await wsExecute(client, `{ __typename }`);
      expect(third.errors?.[0].extensions?.code).toBe("RATE_LIMITED");
      expect(third.errors?.[0].message).toMatch(/already has 2 operations running/);
      expect(first.errors).toEqual([]);
      first.dispose();
      await waitUntil(() => open() === 1, "the first stream ended");
      expect((await wsExecute(client, `{ __typename }`)).data).toEqual({ __typename: "Query" });
      expect(second.errors).toEqual([]);
    } finally {
      await client.dispose();
    }
  });

  it("counts each connection on its own", async () => {
    const a = wsClient(t.wsUrl);
    const b = wsClient(t.wsUrl);
    try {
      const results = await Promise.all([a, a, b, b].map((c) => wsExecute(c, `{ __typename }`)));
      expect(results.map((r) => r.data)).toEqual(Array(4).fill({ __typename: "Query" }));
    } finally {
      await a.dispose();
      await b.dispose();
    }
  });
});

describe("the client's address behind a reverse proxy (TRUST_PROXY)", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ env: { TRUST_PROXY: "true", RATE_LIMIT_PER_MINUTE: "3" } });
  });
  afterAll(async () => t?.stop());
  const ASK = `query($code: String!) { consentRequest(code: $code) { status } }`;
  // Windows are whole minutes: start early in one so that a test's requests share it.
  const earlyInMinute = async () => {
    const into = Date.now() % 60_000;
    if (into > 50_000) await new Promise((r) => setTimeout(r, 60_000 - into + 100));
  };

  it("is the one the nearest proxy appended, not whatever the client put in front of it", async () => {
    await earlyInMinute();
    // The proxy appends the address it sees to what the client sent: "<anything>, <client>".
    const from = (i: number) => ({ headers: { "x-forwarded-for": `198.51.100.${i}, 203.0.113.9` } });
    for (let i = 1; i <= 3; i++) expect(errorCode(await t.gql(ASK, { code: "pbc_unknown" }, from(i)))).toBe("NOT_FOUND");
    expect(errorCode(await t.gql(ASK, { code: "pbc_unknown" }, from(4)))).toBe("RATE_LIMITED");
  });

  it("counts for WebSocket requests too", async () => {
    await earlyInMinute();
    const address = "203.0.113.50";
    class ThroughProxy extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols, { headers: { "x-forwarded-for": address } });
      }
    }
    const client = createClient({ url: t.wsUrl, webSocketImpl: ThroughProxy, retryAttempts: 0, lazy: true });
    try {
      for (let i = 0; i < 3; i++) {
        const r = await new Promise<{ errors?: readonly { extensions?: Record<string, unknown> }[] }>((resolve) => {
          let result = {};
          client.subscribe({ query: ASK, variables: { code: "pbc_unknown" } }, { next: (v) => (result = v), error: (e) => resolve({ errors: e as never }), complete: () => resolve(result) });
        });
        expect(r.errors?.[0].extensions?.code).toBe("NOT_FOUND");
      }
      // The same address over HTTP shares the count.
      expect(errorCode(await t.gql(ASK, { code: "pbc_unknown" }, { headers: { "x-forwarded-for": address } }))).toBe("RATE_LIMITED");
    } finally {
      await client.dispose();
    }
  });
});

describe("a production server", () => {
  let t: TestServer;
  beforeAll(async () => {
    // EMBEDDED_DB_SYNC blank: its default (test servers otherwise turn it off).
    t = await startTestServer({ env: { NODE_ENV: "production", EMBEDDED_DB_SYNC: "" } });
  });
  afterAll(async () => t?.stop());

  it("syncs its commits to disk by default, and takes writes so", async () => {
    expect(t.app.config.EMBEDDED_DB_SYNC).toBe(true);
    // The embedded database as pglite-durable.mjs opens it; PostgreSQL's own setting there.
    expect(await t.app.db.sql("SHOW fsync", [])).toEqual([{ fsync: "on" }]);
    const app = await registerApp(t);
    expect(await createSession(t, app)).toMatch(/^pbs_/);
  });

  it("serves no Sandbox and no introspection, and does not reveal its limits", async () => {
    const page = await get(`${t.url}/graphql`, { accept: "text/html" });
    expect(page.text).not.toContain("EmbeddedSandbox");
    expect(page.text).toContain("%22isProd%22%3Atrue"); // Apollo's production landing page
    expect((await t.gql(INTROSPECTION)).errors?.[0].extensions?.code).toBe("GRAPHQL_VALIDATION_FAILED");
    const aliases = await t.gql(ALIASES);
    expect(aliases.data).toBeUndefined();
    expect(aliases.errors?.[0].message).not.toMatch(/15|16/);
  });

  it("suggests no field names for a misspelt field, over HTTP and WebSocket", async () => {
    const http = await t.gql(`{ postboxs { edges { cursor } } }`);
    expect(http.errors?.[0].message).toMatch(/Cannot query field "postboxs"/);
    expect(http.errors?.[0].message).not.toMatch(/Did you mean|postboxes/);
    const client = wsClient(t.wsUrl);
    try {
      const ws = await wsExecute(client, `{ postboxs { edges { cursor } } }`);
      expect(ws.errors?.[0].message).toMatch(/Cannot query field "postboxs"/);
      expect(ws.errors?.[0].message).not.toMatch(/Did you mean|postboxes/);
    } finally {
      await client.dispose();
    }
  });
});

describe("database outage and in-process shutdown", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => t?.stop());

  it("reports 503 on /readyz and masks internal errors when the database is gone", async () => {
    const app = await registerApp(t);
    expect((await get(`${t.url}/readyz`)).status).toBe(200);
    await t.app.db.close();

    const ready = await get(`${t.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.text)).toEqual({ status: "unavailable", reason: "database unreachable" });
    expect((await get(`${t.url}/healthz`)).status).toBe(200);

    const r = await t.gql(operation("CreateSession"), { input: { appId: app.appId, contractId: app.contractId, assertion: await signAssertion(app) } });
    expect(r.errors).toHaveLength(1);
    expect(r.errors![0]).toEqual({ message: "Internal server error.", path: ["createSession"], extensions: { code: "INTERNAL_SERVER_ERROR" } });
    expect(JSON.stringify(r)).not.toMatch(/pglite|pool|prisma|stack|at /i);
    expect(t.logs.some((l) => JSON.parse(l).msg === "internal error in GraphQL operation")).toBe(true);
  });

  it("closes HTTP and WebSocket connections on stop()", async () => {
    const { closed } = await rawWs(t.wsUrl);
    await t.app.stop();
    const close = await closed;
    expect(close.code).toBe(1001);
    await expect(request(`${t.url}/healthz`)).rejects.toMatchObject({ code: "ECONNREFUSED" });
  });
});

describe("stop() with operations in flight", () => {
  /** Holds createPostbox inside the service until released; records how each call ended. */
  function holdCreatePostbox(t: TestServer) {
    const postboxes = t.app.services.postboxes;
    const create = postboxes.create.bind(postboxes);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const started = new Promise<void>((r) => (entered = r));
    const outcomes: string[] = [];
    postboxes.create = async (...args: Parameters<typeof create>) => {
      entered();
      await gate;
      try {
        const pb = await create(...args);
        outcomes.push(`created ${pb.id}`);
        return pb;
      } catch (e) {
        outcomes.push(`failed: ${(e as Error).message}`);
        throw e;
      }
    };
    return { started, release, outcomes };
  }
  const CREATE = `mutation { createPostbox { id } }`;

  it.each(["WebSocket", "HTTP"])("waits for a mutation still running over %s, so that it completes against an open database", async (transport) => {
    const t = await startTestServer();
    try {
      const session = await createSession(t, await registerApp(t));
      const held = holdCreatePostbox(t);
      const client = wsClient(t.wsUrl, `Bearer ${session}`);
      const answer =
        transport === "HTTP"
          ? t.gql(CREATE, {}, { token: session }).then((r) => r.data?.createPostbox.id)
          : new Promise((resolve) => client.subscribe({ query: CREATE }, { next: resolve, error: () => resolve("socket closed"), complete: () => resolve("complete") }));
      await held.started;

      let stopped = false;
      const stopping = t.app.stop().then(() => (stopped = true));
      await new Promise((r) => setTimeout(r, 300));
      expect(stopped).toBe(false); // still waiting for it
      held.release();
      await stopping;
      expect(held.outcomes).toEqual([expect.stringMatching(/^created pbx_/)]);
      // An HTTP client still gets its answer; a WebSocket was closed (1001) before the result.
      if (transport === "HTTP") expect(await answer).toMatch(/^pbx_/);
      else await answer;
      await client.dispose();
    } finally {
      await t.stop();
    }
  });

  it("waits no longer than SHUTDOWN_GRACE for one that does not finish, and closes its connection", async () => {
    const t = await startTestServer({ env: { SHUTDOWN_GRACE: "1s" } });
    try {
      const session = await createSession(t, await registerApp(t));
      const held = holdCreatePostbox(t);
      const answer = t.gql(CREATE, {}, { token: session }).then(
        (r) => (r.errors ? `error ${r.errors[0].message}` : "answered"),
        (e: Error) => `connection lost: ${e.message}`,
      );
      await held.started;
      let stopped = false;
      const began = Date.now();
      const stopping = t.app.stop().then(() => (stopped = true));
      await new Promise((r) => setTimeout(r, 300));
      expect(stopped).toBe(false); // within the grace, it waits
      await stopping; // the held mutation never returns: stop() ends anyway
      // 1 s of grace and at most half a second more for the operations (the default was 5 s + 10 s).
      expect(Date.now() - began).toBeLessThan(4500);
      expect(held.outcomes).toEqual([]);
      expect(await answer).toMatch(/^connection lost/);
      held.release();
    } finally {
      await t.stop();
    }
  });
});

describe("the real entry point", () => {
  let child: ChildProcess | undefined;
  let dataDir: string;
  let dropDb: (() => Promise<void>) | undefined;

  afterAll(async () => {
    if (child && child.exitCode === null) child.kill("SIGKILL");
    await dropDb?.();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it("drains HTTP and WebSocket, closes the database and exits 0 on SIGTERM", async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "postbox-main-"));
    let databaseUrl: string | undefined;
    if (process.env.TEST_DB === "postgres") {
      const db = await createTestDatabase();
      databaseUrl = db.url;
      dropDb = db.drop;
    }
    const proc = spawn(process.execPath, ["--import", "./test/helpers/swc-register.mjs", "src/main.ts"], {
      cwd: root,
      env: { PATH: process.env.PATH, NODE_ENV: "production", HOST: "127.0.0.1", PORT: "0", DATA_DIR: dataDir, ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = proc;
    const lines: string[] = [];
    let stderr = "";
    proc.stderr!.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
    const url = await new Promise<string>((resolve, reject) => {
      let buf = "";
      proc.stdout!.on("data", (d: Buffer) => {
        buf += d.toString();
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          lines.push(line);
          const parsed = JSON.parse(line) as { msg?: string; url?: string };
          if (parsed.msg === "postbox listening") resolve(parsed.url!);
        }
      });
      exited.then((code) => reject(new Error(`server exited early (${code}): ${stderr}`)));
    });

    expect(JSON.parse((await get(`${url}/readyz`)).text)).toEqual({ status: "ready" });
    if (!databaseUrl) expect(existsSync(path.join(dataDir, "db.lock"))).toBe(true);
    const { closed } = await rawWs(`${url.replace(/^http/, "ws")}/graphql`);

    proc.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect((await closed).code).toBe(1001);
    const msgs = lines.map((l) => JSON.parse(l).msg);
    expect(msgs).toEqual(expect.arrayContaining(["shutting down", "postbox stopped"]));
    expect(stderr).toBe("");
    expect(existsSync(path.join(dataDir, "db.lock"))).toBe(false);
    await expect(request(`${url}/healthz`)).rejects.toMatchObject({ code: "ECONNREFUSED" });
  });

  it("stops with one line naming the address when its port is taken", async () => {
    const taken = await startTestServer();
    const dir = await mkdtemp(path.join(os.tmpdir(), "postbox-main-"));
    try {
      const { hostname, port } = new URL(taken.url);
      const proc = spawn(process.execPath, ["--import", "./test/helpers/swc-register.mjs", "src/main.ts"], {
        cwd: root,
        env: { PATH: process.env.PATH, HOST: hostname, PORT: port, DATA_DIR: dir, LOG_LEVEL: "warn", ...(taken.databaseUrl ? { DATABASE_URL: taken.databaseUrl } : {}) },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stderr = "";
      proc.stderr!.on("data", (d) => (stderr += d));
      const code = await new Promise<number | null>((resolve) => proc.on("exit", (c) => resolve(c)));
      expect(code).toBe(1);
      expect(stderr).toBe(`postbox: failed to start: ${hostname}:${port} is already in use; stop what listens there or set PORT (or HOST) to another\n`);
    } finally {
      await taken.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
