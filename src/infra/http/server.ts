// HTTP server: Express 5 with Apollo Server at /graphql, graphql-ws on the same
// port and path, health endpoints, the admin API and the user's web app.
import http from "node:http";
import { randomUUID } from "node:crypto";
import express, { type Request, type RequestHandler, type Router } from "express";
import { ApolloServer, type ApolloServerPlugin } from "@apollo/server";
import { expressMiddleware } from "@as-integrations/express5";
import { ApolloServerPluginDrainHttpServer } from "@apollo/server/plugin/drainHttpServer";
import { ApolloServerPluginCacheControlDisabled, ApolloServerPluginInlineTraceDisabled } from "@apollo/server/plugin/disabled";
import { ApolloServerPluginLandingPageLocalDefault, ApolloServerPluginLandingPageProductionDefault } from "@apollo/server/plugin/landingPage/default";
import { GraphQLError, type GraphQLSchema } from "graphql";
import proxyaddr from "proxy-addr";
import type { Config, TrustProxy } from "../config.js";
import { ErrorCode } from "../errors.js";
import type { Limits } from "../graphql/armor.js";
import { createContext, type Authenticators, type GraphQLContext } from "../graphql/context.js";
import { makeFormatError } from "../graphql/errors.js";
import type { Logger } from "../logger.js";
import { refusalPlugin, type RefusalListener } from "../graphql/refusals.js";
import { bodyTooLargeMessage, sendError } from "./http-errors.js";
import { graphqlMultipart } from "./multipart.js";
import { InflightOperations } from "./inflight.js";
import { INLINE_CONTENT_KEYS, largeJsonBodies, type RequestWithInlineValues } from "./large-json.js";
import { createWsServer } from "./ws.js";
import { expressObjectClasses } from "./express-objects.js";

const LARGE_BODY_BYTES = 1024 * 1024;
// pushData's content fields, and how long a value must be to stay in the body's buffer.
const INLINE_MIN_CHARS = 64 * 1024;

export interface HttpServerDeps {
  config: Config;
  schema: GraphQLSchema;
  limits: Limits;
  auth: Authenticators;
  log: Logger;
  ready: () => Promise<void>;
  adminRouter: Router;
  /** Told of operations GraphQL refused before any resolver ran, over HTTP and WebSocket (e.g. to audit pushes). */
  refusalListeners?: RefusalListener[];
  /** Extra routes mounted after GraphQL (the user's web app). */
  mounts?: { path: string; handler: RequestHandler | Router }[];
}

export interface RunningHttpServer {
  server: http.Server;
  url: string;
  /** Queries and mutations running now, on both transports (stop waits for them). */
  operationsInFlight(): number;
  stop(): Promise<void>;
}

/** Logs one line per operation with its request id, name, duration and error codes (never variables). */
function loggingPlugin(): ApolloServerPlugin<GraphQLContext> {
  return {
    async requestDidStart() {
      const start = process.hrtime.bigint();
      return {
        async willSendResponse({ contextValue: ctx, operationName, errors, response }) {
          const ms = Number(process.hrtime.bigint() - start) / 1e6;
          const codes = errors?.map((e) => e.extensions?.code ?? "INTERNAL_SERVER_ERROR");
          ctx.log.info({ requestId: ctx.requestId, operation: operationName ?? null, ms: Math.round(ms * 10) / 10, errors: codes?.length ? codes : undefined, status: response.http.status }, "graphql");
        },
      };
    },
  };
}

/**
 * Refuses subscription operations over HTTP before they run: Apollo would execute one as
 * a query, calling the event resolver with no event (a TypeError, logged as an internal error).
 */
function noHttpSubscriptionsPlugin(): ApolloServerPlugin<GraphQLContext> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation({ operation }) {
          if (operation?.operation !== "subscription") return;
          throw new GraphQLError("Subscriptions are not served over HTTP: subscribe over WebSocket (the graphql-ws protocol) at this same /graphql path.", {
            extensions: { code: "BAD_REQUEST", http: { status: 400 } },
          });
        },
      };
    },
  };
}

export async function startHttpServer(deps: HttpServerDeps): Promise<RunningHttpServer> {
  const { config, log } = deps;
  const app = express();
  app.disable("x-powered-by");
  // No ETag (a hash of every body res.send writes): GraphQL and admin answers are
  // no-store POST replies that no cache revalidates. Static assets get theirs from
  // express.static, and file downloads carry their sha256 (push.download.ts).
  app.disable("etag");
  // One rule for HTTP and WebSocket upgrades (which Express never sees): see TRUST_PROXY.
  const trust = trustedProxies(config.TRUST_PROXY);
  app.set("trust proxy", trust);
  const server = http.createServer(expressObjectClasses(app), app);
  const formatError = makeFormatError(log);
  const clientIp = (req: http.IncomingMessage) => (req.socket ? proxyaddr(req, trust) : undefined) ?? "unknown";

  // Queries and mutations still running when the server stops, on either transport
  // (their clients may have gone already): stop() waits for them, so that none meets a closed database.
  const inflight = new InflightOperations();

  const ws = createWsServer({
    inflight,
    server,
    schema: deps.schema,
    limits: deps.limits,
    auth: deps.auth,
    log,
    maxPayload: config.BODY_LIMIT_BYTES,
    formatError,
    clientIp,
    introspection: config.INTROSPECTION,
    refusalListeners: deps.refusalListeners ?? [],
    maxOperations: config.WS_MAX_OPERATIONS,
    hideSuggestions: config.NODE_ENV === "production",
  });

  const apollo = new ApolloServer<GraphQLContext>({
    schema: deps.schema,
    introspection: config.INTROSPECTION,
    includeStacktraceInErrorResponses: false,
    // main.ts owns SIGTERM/SIGINT (it stops the scheduler and the database too). Apollo's
    // own handler would stop only Apollo and then re-send the signal, which main.ts
    // counts as a second signal and exits 1.
    stopOnTerminationSignals: false,
    formatError,
    validationRules: deps.limits.validationRules,
    parseOptions: { maxTokens: deps.limits.maxTokens },
    logger: { debug: (m) => log.debug(m), info: (m) => log.info(m), warn: (m) => log.warn(m), error: (m) => log.error(m) },
    plugins: [
      ApolloServerPluginDrainHttpServer({ httpServer: server, stopGracePeriodMillis: config.SHUTDOWN_GRACE }),
      // Installed by default, unused here: no answer may be cached (the /graphql route
      // sets no-store itself), and this is no federated subgraph. Cache control alone
      // hooks every field resolution of every operation.
      ApolloServerPluginCacheControlDisabled(),
      ApolloServerPluginInlineTraceDisabled(),
      { async serverWillStart() { return { async drainServer() { await ws.dispose(); } }; } },
      config.NODE_ENV === "production"
        ? ApolloServerPluginLandingPageProductionDefault({ footer: false })
        : ApolloServerPluginLandingPageLocalDefault({ embed: true, footer: false }),
      loggingPlugin(),
      noHttpSubscriptionsPlugin(),
      inflight.plugin<GraphQLContext>(),
      ...deps.limits.plugins,
      refusalPlugin(deps.refusalListeners ?? []),
    ],
  });
  await apollo.start();

  app.use((req, res, next) => {
    const id = (req.get("x-request-id") ?? "").slice(0, 100) || randomUUID();
    res.setHeader("x-request-id", id);
    (req as Request & { requestId: string }).requestId = id;
    next();
  });
  app.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  app.get("/readyz", async (_req, res) => {
    try {
      await deps.ready();
      res.json({ status: "ready" });
    } catch (err) {
      log.warn({ err }, "readiness check failed");
      res.status(503).json({ status: "unavailable", reason: "database unreachable" });
    }
  });
  app.use("/admin", deps.adminRouter);

  app.use(
    "/graphql",
    (_req, res, next) => {
      // Answers carry credentials and ciphertext: no cache, shared or private, keeps them.
      res.setHeader("cache-control", "no-store");
      next();
    },
    // Bodies over 1 MiB (a large file pushed inline): pushData's content stays in the body's buffer.
    largeJsonBodies({ threshold: LARGE_BODY_BYTES, limit: config.BODY_LIMIT_BYTES, keys: INLINE_CONTENT_KEYS, minChars: INLINE_MIN_CHARS }),
    express.json({ limit: config.BODY_LIMIT_BYTES }),
    graphqlMultipart({ maxBodyBytes: config.BODY_LIMIT_BYTES }),
    expressMiddleware(apollo, {
      context: async ({ req }) =>
        createContext({
          requestId: (req as Request & { requestId: string }).requestId,
          ip: clientIp(req),
          log,
          authorization: req.get("authorization"),
          auth: deps.auth,
          inlineValues: (req as RequestWithInlineValues).inlineValues,
        }),
    }),
  );
  // Mounted after /graphql so that GraphQL requests, the hot path, skip these routers.
  for (const m of deps.mounts ?? []) app.use(m.path, m.handler);
  // Whatever reaches Express's error path, in GraphQL's response shape rather than
  // Express's HTML page with a stack trace: body-parser errors (oversized or malformed
  // JSON; any other it marks safe to show, such as an unknown or corrupt Content-Encoding,
  // with its status); anything else masked and logged.
  app.use((err: Error & { type?: string; limit?: number; status?: number; statusCode?: number; expose?: boolean }, req: Request, res: express.Response, _next: express.NextFunction) => {
    if (err?.type === "entity.too.large") {
      sendError(res, 413, ErrorCode.PAYLOAD_TOO_LARGE, bodyTooLargeMessage(err.limit ?? config.BODY_LIMIT_BYTES));
      return;
    }
    if (err?.type === "entity.parse.failed") {
      sendError(res, 400, "BAD_REQUEST", "The request body is not valid JSON.");
      return;
    }
    const status = Number(err?.status ?? err?.statusCode);
    if (err?.expose && status >= 400 && status < 500) {
      // A corrupt compressed body comes with just the status's own name as its message.
      const why = err.message && err.message !== http.STATUS_CODES[status] ? `: ${err.message}` : "; check that its Content-Encoding and charset match its bytes";
      sendError(res, status, "BAD_REQUEST", `The request body could not be read${why}.`);
      return;
    }
    log.error({ err, requestId: (req as Request & { requestId?: string }).requestId, path: req.path }, "internal error in HTTP request");
    if (res.headersSent) res.destroy();
    else sendError(res, 500, ErrorCode.INTERNAL_SERVER_ERROR, "Internal server error.");
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.PORT, config.HOST, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : config.PORT;
  const host = config.HOST === "0.0.0.0" || config.HOST === "::" ? "localhost" : config.HOST;
  return {
    server,
    url: `http://${host}:${port}`,
    operationsInFlight: () => inflight.running,
    async stop() {
      // One deadline for both: connections drain for up to SHUTDOWN_GRACE (then they are
      // closed), and operations still running (their clients may be gone) get what is left.
      const deadline = Date.now() + config.SHUTDOWN_GRACE;
      await apollo.stop(); // drains HTTP and disposes the WebSocket server
      await inflight.settled(Math.max(500, deadline - Date.now()));
    },
  };
}

/** TRUST_PROXY as a proxy-addr rule: whether the hop at `addr`, `i` hops from this server, may name the one before it. */
function trustedProxies(t: TrustProxy): (addr: string, i: number) => boolean {
  if (t === false) return () => false;
  if (typeof t === "number") return (_addr, i) => i < t;
  return proxyaddr.compile(t);
}
