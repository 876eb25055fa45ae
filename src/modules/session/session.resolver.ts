import { addressGroup } from "../../infra/client-address.js";
import { Arg, Ctx, Mutation, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../../infra/graphql/context.js";
import type { SessionService } from "./session.service.js";
import { CreateSessionInput, Session, SessionInfo } from "./session.types.js";
import type { RateLimiter } from "../../infra/rate-limit.js";

@Resolver()
export class SessionResolver {
  constructor(
    private readonly sessions: SessionService,
    private readonly limiter: RateLimiter,
  ) {}

  @Mutation(() => Session, { description: "Establish a session with an assertion signed by the contract's private key." })
  async createSession(@Arg("input", () => CreateSessionInput) input: CreateSessionInput, @Ctx() ctx: GraphQLContext): Promise<Session> {
    await this.limiter.check(`session:${addressGroup(ctx.ip)}`);
    return this.sessions.createSession(input);
  }

  @Mutation(() => Boolean, { description: "End the current session; its key stops working at once." })
  async endSession(@Ctx() ctx: GraphQLContext): Promise<boolean> {
    return this.sessions.endSession(await ctx.session());
  }

  @Query(() => SessionInfo, { description: "The session making this request." })
  async currentSession(@Ctx() ctx: GraphQLContext): Promise<SessionInfo> {
    const s = await ctx.session();
    return { appId: s.applicationId, contractId: s.contractId, contractKind: s.contractKind, expiresAt: s.expiresAt };
  }
}
