import { Arg, Ctx, ID, Int, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../../infra/graphql/context.js";
import type { Connection } from "../../infra/graphql/pagination.js";
import type { AuditRow } from "./audit.repository.js";
import type { AuditService } from "./audit.service.js";
import { AuditEvent, AuditEventConnection } from "./audit.types.js";

function toEvent(r: AuditRow): AuditEvent {
  return {
    id: r.id,
    seq: r.seq.toString(),
    at: r.at,
    actorType: r.actorType,
    actorId: r.actorId,
    action: r.action,
    outcome: r.outcome,
    reason: r.reason,
    postboxId: r.postboxId,
    targetId: r.targetId,
    detail: (r.detail as Record<string, unknown> | null) ?? null,
    hash: r.hash,
  };
}

@Resolver()
export class AuditResolver {
  constructor(private readonly audit: AuditService) {}

  @Query(() => AuditEventConnection, {
    description: "This contract's audit log, newest first: every push attempt (accepted, duplicate, refused), fetch, delivery and purge, and the postboxes' lifecycle. With postboxId: that postbox only.",
  })
  async auditLog(
    @Arg("postboxId", () => ID, { nullable: true }) postboxId: string | null | undefined,
    @Arg("first", () => Int, { nullable: true, defaultValue: 20 }) first: number,
    @Arg("after", () => String, { nullable: true }) after: string | null | undefined,
    @Ctx() ctx: GraphQLContext,
  ): Promise<Connection<AuditEvent>> {
    const s = await ctx.session();
    const conn = await this.audit.page(s.contractId, postboxId, first, after);
    return { pageInfo: conn.pageInfo, edges: conn.edges.map((e) => ({ cursor: e.cursor, node: toEvent(e.node) })) };
  }
}
