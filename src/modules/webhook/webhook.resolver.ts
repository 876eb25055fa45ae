import { Arg, Ctx, Int, Mutation, Query, Resolver } from "type-graphql";
import type { GraphQLContext, SessionPrincipal } from "../../infra/graphql/context.js";
import type { Connection } from "../../infra/graphql/pagination.js";
import type { WebhookActor, WebhookService } from "./webhook.service.js";
import type { DeliveryWithAttempts } from "./webhook.repository.js";
import { WebhookDelivery, WebhookDeliveryConnection, WebhookDeliveryStatus, WebhookEndpoint, WebhookRegistration } from "./webhook.types.js";

function actor(s: SessionPrincipal): WebhookActor {
  return { actorType: "APP", actorId: s.sessionId, contractId: s.contractId, applicationId: s.applicationId };
}

function toDelivery(r: DeliveryWithAttempts): WebhookDelivery {
  return {
    id: r.id,
    eventType: r.eventType,
    status: r.status as WebhookDeliveryStatus,
    payload: r.payload,
    createdAt: r.createdAt,
    nextAttemptAt: r.status === "PENDING" ? r.nextAttemptAt : null,
    completedAt: r.completedAt,
    attempts: r.attempts.map((a) => ({ number: a.number, at: a.at, statusCode: a.statusCode, error: a.error, durationMs: a.durationMs })),
  };
}

@Resolver()
export class WebhookResolver {
  constructor(private readonly webhooks: WebhookService) {}

  @Mutation(() => WebhookRegistration, { description: "Register (or replace) this contract's webhook URL. Returns a new signing secret, shown only here." })
  async setWebhook(@Arg("url") url: string, @Ctx() ctx: GraphQLContext): Promise<WebhookRegistration> {
    return this.webhooks.setEndpoint(actor(await ctx.session()), url);
  }

  @Mutation(() => WebhookRegistration, { description: "Replace the signing secret; every attempt from now on is signed with the new one." })
  async rotateWebhookSecret(@Ctx() ctx: GraphQLContext): Promise<WebhookRegistration> {
    return this.webhooks.rotateSecret(actor(await ctx.session()));
  }

  @Mutation(() => Boolean, { description: "Remove this contract's webhook endpoint and its delivery history." })
  async deleteWebhook(@Ctx() ctx: GraphQLContext): Promise<boolean> {
    return this.webhooks.deleteEndpoint(actor(await ctx.session()));
  }

  @Query(() => WebhookEndpoint, { nullable: true, description: "This contract's webhook endpoint, or null." })
  async webhook(@Ctx() ctx: GraphQLContext): Promise<WebhookEndpoint | null> {
    return this.webhooks.get((await ctx.session()).contractId);
  }

  @Query(() => WebhookDeliveryConnection, { description: "This contract's webhook deliveries with their attempts, newest first." })
  async webhookDeliveries(
    @Ctx() ctx: GraphQLContext,
    @Arg("first", () => Int, { nullable: true, defaultValue: 20 }) first: number,
    @Arg("after", () => String, { nullable: true }) after?: string | null,
    @Arg("status", () => WebhookDeliveryStatus, { nullable: true }) status?: WebhookDeliveryStatus | null,
  ): Promise<Connection<WebhookDelivery>> {
    const conn = await this.webhooks.deliveries((await ctx.session()).contractId, { first, after, status });
    return { pageInfo: conn.pageInfo, edges: conn.edges.map((e) => ({ cursor: e.cursor, node: toDelivery(e.node) })) };
  }
}
