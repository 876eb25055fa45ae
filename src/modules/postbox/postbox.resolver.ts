import { addressGroup } from "../../infra/client-address.js";
import { Arg, Ctx, ID, Int, Mutation, Query, Resolver, Root, Subscription } from "type-graphql";
import type { GraphQLContext } from "../../infra/graphql/context.js";
import type { RateLimiter } from "../../infra/rate-limit.js";
import type { PostboxStatusPayload } from "./postbox.events.js";
import type { PostboxService } from "./postbox.service.js";
import {
  AcceptPostboxInput,
  AcceptPostboxResult,
  ConsentRequest,
  CreatePostboxInput,
  DeclinePostboxInput,
  DeclinePostboxResult,
  Postbox,
  PostboxConnection,
  PostboxStatus,
  PostboxStatusEvent,
} from "./postbox.types.js";

@Resolver()
export class PostboxResolver {
  constructor(
    private readonly service: PostboxService,
    private readonly limiter: RateLimiter,
  ) {}

  // Application side (session required, scoped to the session's contract).

  @Mutation(() => Postbox, { description: "Create a postbox for one of your users. Give the user consentUrl (returned only here)." })
  async createPostbox(@Arg("input", () => CreatePostboxInput, { nullable: true }) input: CreatePostboxInput | null, @Ctx() ctx: GraphQLContext): Promise<Postbox> {
    return this.service.create(await ctx.session(), input ?? {});
  }

  @Mutation(() => Postbox, { description: "Close a READY postbox: no more pushes, and the user's credential stops working." })
  async closePostbox(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<Postbox> {
    return this.service.closeByApp(await ctx.session(), id);
  }

  @Query(() => Postbox, { description: "One of your contract's postboxes." })
  async postbox(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<Postbox> {
    return this.service.get(await ctx.session(), id);
  }

  @Query(() => PostboxConnection, { description: "Your contract's postboxes, newest first. Page with `first` (1–100, default 20) and `after: pageInfo.endCursor`." })
  async postboxes(
    @Ctx() ctx: GraphQLContext,
    @Arg("status", () => PostboxStatus, { nullable: true }) status?: PostboxStatus | null,
    @Arg("first", () => Int, { nullable: true }) first?: number | null,
    @Arg("after", () => String, { nullable: true }) after?: string | null,
  ): Promise<PostboxConnection> {
    return this.service.list(await ctx.session(), status ?? undefined, first, after);
  }

  // User side of consent: the consent code is the only credential.

  @Query(() => ConsentRequest, { description: "What the user is asked to consent to (for the user's postbox app). Authenticated by the consent code." })
  async consentRequest(@Arg("code") code: string, @Ctx() ctx: GraphQLContext): Promise<ConsentRequest> {
    await this.limiter.check(`consent:${addressGroup(ctx.ip)}`);
    return this.service.consentRequest(code);
  }

  @Mutation(() => AcceptPostboxResult, { description: "Accept a postbox with a public key made on the user's device. Returns the user's credential (once)." })
  async acceptPostbox(@Arg("input", () => AcceptPostboxInput) input: AcceptPostboxInput, @Ctx() ctx: GraphQLContext): Promise<AcceptPostboxResult> {
    await this.limiter.check(`consent:${addressGroup(ctx.ip)}`);
    return this.service.accept(input);
  }

  @Mutation(() => DeclinePostboxResult, { description: "Decline a postbox." })
  async declinePostbox(@Arg("input", () => DeclinePostboxInput) input: DeclinePostboxInput, @Ctx() ctx: GraphQLContext): Promise<DeclinePostboxResult> {
    await this.limiter.check(`consent:${addressGroup(ctx.ip)}`);
    return this.service.decline(input);
  }
}

/**
 * The subscription resolver is built per server because type-graphql calls
 * `subscribe` without a resolver instance, and it needs this server's service
 * (and through it, this server's pub/sub).
 */
export function createPostboxSubscriptionResolver(postboxes: PostboxService): object {
  @Resolver()
  class PostboxSubscriptionResolver {
    @Subscription(() => PostboxStatusEvent, {
      description:
        "Status changes of your contract's postboxes (session required). With postboxId: that postbox only; the first event is its current status (previousStatus null) and the stream ends after a final status. Every stream ends when the session expires or is ended (endSession).",
      subscribe: async ({ args, context }) => postboxes.subscribe(await (context as GraphQLContext).session(), (args as { postboxId?: string | null }).postboxId),
    })
    postboxStatusChanged(@Root() event: PostboxStatusPayload, @Arg("postboxId", () => ID, { nullable: true }) _postboxId?: string | null): PostboxStatusEvent {
      return { postboxId: event.postboxId, status: event.status, previousStatus: event.previousStatus, at: new Date(event.at) };
    }
  }
  return new PostboxSubscriptionResolver();
}
