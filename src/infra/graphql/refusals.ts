// GraphQL operations refused before any resolver ran: the document does not parse,
// fails validation or a limit, or its variables do not fit. Modules that must
// record every attempt of an operation (pushData's audit trail) listen here; the
// HTTP pipeline (refusalPlugin, for Apollo) and the WebSocket server both report.
import type { ApolloServerPlugin } from "@apollo/server";
import type { DocumentNode, GraphQLError } from "graphql";
import type { GraphQLContext } from "./context.js";

export interface RefusedOperation {
  context: GraphQLContext;
  /** Unset when it did not parse. */
  document?: DocumentNode;
  source?: string;
  stage: "parse" | "validation" | "variables";
  /** The first error's extensions.code. */
  code: string;
}

export type RefusalListener = (r: RefusedOperation) => Promise<void>;

export async function reportRefusal(listeners: RefusalListener[], r: RefusedOperation): Promise<void> {
  for (const l of listeners) {
    try {
      await l(r);
    } catch (err) {
      r.context.log.error({ err, requestId: r.context.requestId }, "a refused-operation listener failed");
    }
  }
}

const codeOf = (e: unknown, fallback: string) => String((e as GraphQLError | undefined)?.extensions?.code ?? fallback);

/** Reports Apollo requests that end with errors before execution reached a resolver. */
export function refusalPlugin(listeners: RefusalListener[]): ApolloServerPlugin<GraphQLContext> {
  return {
    async requestDidStart() {
      return {
        async willSendResponse(rc) {
          if (!rc.errors?.length) return;
          // With an operation and errors, execution may have run resolvers (listeners tell by context.reached).
          const stage: RefusedOperation["stage"] = !rc.document ? "parse" : !rc.operation ? "validation" : "variables";
          await reportRefusal(listeners, { context: rc.contextValue, document: rc.document, source: rc.source, stage, code: codeOf(rc.errors[0], "BAD_USER_INPUT") });
        },
      };
    },
  };
}
