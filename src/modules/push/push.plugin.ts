// Audits pushData requests that GraphQL refuses before the resolver runs: a
// document that does not parse, fails validation or a limit, or variables that do
// not fit PushDataInput. The service audits every attempt that reaches it; this
// covers the rest, so that every push attempt is on the log. HTTP only: over
// WebSocket, pushData is refused the same way but not audited (see README).
import type { ApolloServerPlugin, GraphQLRequestContext } from "@apollo/server";
import { Kind, parse, type DocumentNode, type GraphQLError } from "graphql";
import type { GraphQLContext } from "../../infra/graphql/context.js";
import type { PushService } from "./push.service.js";

function asksForPushData(doc: DocumentNode | undefined, source: string | undefined): boolean {
  if (!doc) return typeof source === "string" && /\bpushData\b/.test(source);
  return doc.definitions.some(
    (d) => d.kind === Kind.OPERATION_DEFINITION && d.operation === "mutation" && d.selectionSet.selections.some((f) => f.kind === Kind.FIELD && f.name.value === "pushData"),
  );
}

function stageOf(rc: GraphQLRequestContext<GraphQLContext>): string {
  if (!rc.document) return "parse";
  if (!rc.operation) return "validation";
  return "variables";
}

export function pushAuditPlugin(pushes: PushService, maxTokens: number): ApolloServerPlugin<GraphQLContext> {
  const record = async (ctx: GraphQLContext, stage: string, code: string) => {
    ctx.reached.add("pushData");
    try {
      await pushes.recordRejectedRequest(() => ctx.session(), stage, code);
    } catch (err) {
      ctx.log.error({ err, requestId: ctx.requestId }, "could not audit a refused pushData request");
    }
  };
  return {
    async requestDidStart() {
      return {
        // Only for documents not in Apollo's cache. A parse failure may be raised by
        // graphql-armor's token-limited parser from this same hook, and then Apollo
        // answers without calling willSendResponse, so it is detected (and audited) here.
        async parsingDidStart(rc) {
          if (!rc.source || !/\bpushData\b/.test(rc.source)) return;
          try {
            parse(rc.source, { maxTokens });
          } catch (e) {
            await record(rc.contextValue, "parse", String((e as GraphQLError).extensions?.code ?? "GRAPHQL_PARSE_FAILED"));
          }
        },
        async willSendResponse(rc) {
          if (!rc.errors?.length || rc.contextValue.reached.has("pushData")) return;
          if (!asksForPushData(rc.document, rc.source)) return;
          await record(rc.contextValue, stageOf(rc), String(rc.errors[0].extensions?.code ?? "BAD_USER_INPUT"));
        },
      };
    },
  };
}
