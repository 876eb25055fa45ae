// Audits pushData requests that GraphQL refuses before the resolver runs (see
// infra/graphql/refusals.ts): the service audits every attempt that reaches it;
// this covers the rest, so that every push attempt is on the log, without content.
import { Kind, type DocumentNode } from "graphql";
import type { RefusalListener } from "../../infra/graphql/refusals.js";
import type { PushService } from "./push.service.js";

function asksForPushData(doc: DocumentNode | undefined, source: string | undefined): boolean {
  if (!doc) return typeof source === "string" && /\bpushData\b/.test(source);
  return doc.definitions.some(
    (d) => d.kind === Kind.OPERATION_DEFINITION && d.operation === "mutation" && d.selectionSet.selections.some((f) => f.kind === Kind.FIELD && f.name.value === "pushData"),
  );
}

export function pushRefusalAudit(pushes: PushService): RefusalListener {
  return async ({ context, document, source, stage, code }) => {
    if (context.reached.has("pushData") || !asksForPushData(document, source)) return;
    context.reached.add("pushData");
    await pushes.recordRejectedRequest(() => context.session(), stage, code);
  };
}
