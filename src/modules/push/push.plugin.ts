// Audits pushData requests that GraphQL refuses before the resolver runs (see
// infra/graphql/refusals.ts): the service audits every attempt that reaches it;
// this covers the rest, so that every push attempt is on the log, without content.
import { BREAK, Kind, visit, type DocumentNode } from "graphql";
import type { RefusalListener } from "../../infra/graphql/refusals.js";
import type { PushService } from "./push.service.js";

/**
 * A mutation document that selects pushData anywhere: at the top, or inside an inline
 * fragment or a named fragment (`... on Mutation { pushData }`), which are just as valid.
 * Only Mutation has a field of that name.
 */
function asksForPushData(doc: DocumentNode | undefined, source: string | undefined): boolean {
  if (!doc) return typeof source === "string" && /\bpushData\b/.test(source);
  if (!doc.definitions.some((d) => d.kind === Kind.OPERATION_DEFINITION && d.operation === "mutation")) return false;
  let found = false;
  visit(doc, {
    Field(node) {
      if (node.name.value !== "pushData") return undefined;
      found = true;
      return BREAK;
    },
  });
  return found;
}

export function pushRefusalAudit(pushes: PushService): RefusalListener {
  return async ({ context, document, source, stage, code }) => {
    if (context.reached.has("pushData") || !asksForPushData(document, source)) return;
    context.reached.add("pushData");
    await pushes.recordRejectedRequest(() => context.session(), stage, code);
  };
}
