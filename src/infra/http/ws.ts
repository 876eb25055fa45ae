// graphql-ws on the same port and path as HTTP GraphQL. Applies the same limits
// as the HTTP pipeline (graphql-armor rules, token limit), authenticates the
// connection at connect time, and formats errors the same way.
import type http from "node:http";
import { randomUUID } from "node:crypto";
import { execute, parse, specifiedRules, validate, GraphQLError, NoSchemaIntrospectionCustomRule, type DocumentNode, type GraphQLSchema, type GraphQLFormattedError } from "graphql";
import { WebSocketServer } from "ws";
import { useServer } from "graphql-ws/use/ws";
import { AppError, ErrorCode } from "../errors.js";
import type { Limits } from "../graphql/armor.js";
import { reportRefusal, type RefusalListener } from "../graphql/refusals.js";
import { checkVariables } from "../graphql/text-input.js";
import type { Context } from "graphql-ws";
import { bearerToken, createContext, SESSION_KEY_PREFIX, USER_TOKEN_PREFIX, type Authenticators, type GraphQLContext } from "../graphql/context.js";
import type { Logger } from "../logger.js";
import type { InflightOperations } from "./inflight.js";

export interface WsOptions {
  server: http.Server;
  schema: GraphQLSchema;
  limits: Limits;
  auth: Authenticators;
  log: Logger;
  maxPayload: number;
  formatError: (formatted: GraphQLFormattedError, error: unknown) => GraphQLFormattedError;
  clientIp: (req: http.IncomingMessage) => string;
  /** INTROSPECTION: Apollo enforces it on HTTP; here it is a validation rule. */
  introspection: boolean;
  /** Told of operations refused before any resolver ran. */
  refusalListeners: RefusalListener[];
  /** Queries and mutations run through it, so that stopping waits for them (subscriptions use subscribe, not execute). */
  inflight: InflightOperations;
  /** WS_MAX_OPERATIONS: operations one connection may have running at once. */
  maxOperations: number;
  /** Production: validation messages lose graphql-js's "Did you mean …?" (armor's blockFieldSuggestion does this on HTTP). */
  hideSuggestions: boolean;
}

function authorizationOf(params: Record<string, unknown> | undefined): string | undefined {
  const v = params?.authorization ?? params?.Authorization;
  return typeof v === "string" ? v : undefined;
}

export function createWsServer(opts: WsOptions) {
  const wss = new WebSocketServer({ server: opts.server, path: "/graphql", maxPayload: opts.maxPayload });
  const rules = [...specifiedRules, ...opts.limits.validationRules, ...(opts.introspection ? [] : [NoSchemaIntrospectionCustomRule])];
  // An error thrown by a subscription's source stream after it started reaches onError
  // wrapped by graphql-ws in a GraphQLError with no path, which formatError would take
  // for a request error and show as is: format what was thrown instead (an AppError
  // keeps its code; anything else is masked as internal).
  const formatAll = (errors: readonly GraphQLError[]) =>
    errors.map((e) => {
      const thrown = !e.nodes && !e.path && e.originalError && !(e.originalError instanceof GraphQLError) ? e.originalError : e;
      const formatted = opts.formatError(e.toJSON(), thrown);
      return opts.hideSuggestions ? { ...formatted, message: formatted.message.replace(/ Did you mean .*\?$/s, "") } : formatted;
    });
  const contextOf = (ctx: Context<Record<string, unknown> | undefined, { request: http.IncomingMessage }>) =>
    createContext({
      requestId: randomUUID(),
      ip: opts.clientIp(ctx.extra.request),
      log: opts.log,
      authorization: authorizationOf(ctx.connectionParams),
      auth: opts.auth,
    });

  const serverCleanup = useServer(
    {
      schema: opts.schema,
      execute: (args) => opts.inflight.track(() => execute(args)),
      // Parse and validate here rather than through graphql-ws's parse/validate options:
      // a parse error (syntax, token limit) thrown from those closes the whole socket
      // with 4500, while errors returned from onSubscribe answer just this operation.
      onSubscribe: async (ctx, _id, payload) => {
        // graphql-ws has registered this operation already: it counts itself.
        if (Object.keys(ctx.subscriptions).length > opts.maxOperations) {
          return [new AppError(ErrorCode.RATE_LIMITED, `This connection already has ${opts.maxOperations} operations running; complete some, or open another connection.`)];
        }
        let document: DocumentNode;
        try {
          document = parse(payload.query, { maxTokens: opts.limits.maxTokens });
        } catch (e) {
          if (!(e instanceof GraphQLError)) throw e;
          await reportRefusal(opts.refusalListeners, { context: contextOf(ctx), source: payload.query, stage: "parse", code: "GRAPHQL_PARSE_FAILED" });
          // graphql-js's syntax error has no code (formatError would call it a validation
          // failure): give it the one Apollo gives it on HTTP.
          return [new GraphQLError(e.message, { source: e.source, positions: e.positions, extensions: { code: "GRAPHQL_PARSE_FAILED" } })];
        }
        const errors = validate(opts.schema, document, rules);
        if (errors.length) {
          await reportRefusal(opts.refusalListeners, { context: contextOf(ctx), document, source: payload.query, stage: "validation", code: "GRAPHQL_VALIDATION_FAILED" });
          return errors;
        }
        const badText = checkVariables(payload.variables);
        if (badText) {
          await reportRefusal(opts.refusalListeners, { context: contextOf(ctx), document, source: payload.query, stage: "variables", code: "BAD_USER_INPUT" });
          return [badText];
        }
        return { schema: opts.schema, document, operationName: payload.operationName, variableValues: payload.variables };
      },
      onConnect: async (ctx) => {
        const authorization = authorizationOf(ctx.connectionParams);
        if (authorization === undefined) return true; // operations that need credentials refuse on their own
        const token = bearerToken(authorization);
        try {
          if (token?.startsWith(`${SESSION_KEY_PREFIX}_`)) await opts.auth.session(token);
          else if (token?.startsWith(`${USER_TOKEN_PREFIX}_`)) await opts.auth.user(token);
          else return false;
          return true;
        } catch {
          return false; // closes with 4403 Forbidden
        }
      },
      context: contextOf,
      onError: (_ctx, _id, _payload, errors) => formatAll(errors),
      onNext: async (_ctx, _id, payload, args, result) => {
        if (!result.errors?.length) return result;
        // Errors with no resolver reached (listeners check context.reached): variables that do not fit.
        if (!result.data) {
          await reportRefusal(opts.refusalListeners, {
            context: args.contextValue as GraphQLContext,
            document: args.document,
            source: payload.query,
            stage: "variables",
            code: String(result.errors[0].extensions?.code ?? "BAD_USER_INPUT"),
          });
        }
        return { ...result, errors: result.errors.map((e) => (e instanceof GraphQLError ? opts.formatError(e.toJSON(), e) : e)) };
      },
    },
    wss,
  );
  // graphql-ws prints the WebSocket server's errors, which are the HTTP server's (ws
  // re-emits them), with console.error: a port in use came out as a stack trace before
  // startHttpServer's own refusal. That refusal reports it; here it is only logged.
  wss.removeAllListeners("error");
  wss.on("error", (err: Error) => opts.log.debug({ reason: err.message }, "websocket server error (the HTTP server's)"));
  // graphql-ws reports a socket's errors (e.g. a message over maxPayload, which ws
  // answers by closing with 1009) with console.error and a stack trace. Replace its
  // listener, attached just before this one, with one JSON log line.
  wss.on("connection", (socket) => {
    socket.removeAllListeners("error");
    socket.on("error", (err: Error & { code?: string }) => {
      opts.log.warn({ code: err.code, reason: err.message }, "websocket connection error");
      if (socket.readyState === socket.OPEN) socket.close(1011, "Internal server error");
    });
  });
  return {
    wss,
    async dispose() {
      await serverCleanup.dispose();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
