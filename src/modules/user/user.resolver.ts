import { addressGroup } from "../../infra/client-address.js";
import { Arg, Ctx, ID, Mutation, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../../infra/graphql/context.js";
import type { RateLimiter } from "../../infra/rate-limit.js";
import type { PostboxService } from "../postbox/postbox.service.js";
import { UserCredential } from "../postbox/postbox.types.js";
import type { UserService } from "./user.service.js";
import { UserKeyChallenge, UserPostbox } from "./user.types.js";

@Resolver()
export class UserResolver {
  constructor(
    private readonly users: UserService,
    private readonly postboxes: PostboxService,
    private readonly limiter: RateLimiter,
  ) {}

  @Mutation(() => UserCredential, { description: "Exchange a refresh token (pbr_…) for a new access token and refresh token. The old refresh token stops working." })
  async refreshUserToken(@Arg("refreshToken") refreshToken: string, @Ctx() ctx: GraphQLContext): Promise<UserCredential> {
    await this.limiter.check(`user:${addressGroup(ctx.ip)}`);
    return this.users.refresh(refreshToken);
  }

  @Mutation(() => UserKeyChallenge, {
    description:
      "No credential needed: a challenge that only the holder of the postbox's private key can answer. For a device whose credential was revoked (its refresh token was used twice) or is stale (restored from an old backup).",
  })
  async userKeyChallenge(@Arg("postboxId", () => ID) postboxId: string, @Ctx() ctx: GraphQLContext): Promise<UserKeyChallenge> {
    await this.limiter.check(`user:${addressGroup(ctx.ip)}`);
    return this.users.keyChallenge(postboxId);
  }

  @Mutation(() => UserCredential, {
    description: "Answer a userKeyChallenge (the JWE's plaintext, base64url) to get a new access and refresh token for its postbox. Each challenge takes one answer.",
  })
  async reissueUserCredential(@Arg("challengeId", () => ID) challengeId: string, @Arg("answer") answer: string, @Ctx() ctx: GraphQLContext): Promise<UserCredential> {
    await this.limiter.check(`user:${addressGroup(ctx.ip)}`);
    return this.users.reissue(challengeId, answer);
  }

  @Query(() => UserPostbox, { description: "The postbox of the user's access token (Authorization: Bearer pbu_…)." })
  async myPostbox(@Ctx() ctx: GraphQLContext): Promise<UserPostbox> {
    return this.postboxes.getForUser(await ctx.user());
  }

  @Mutation(() => UserPostbox, { description: "The user closes their postbox: the application can push no more, and this credential stops working." })
  async closeMyPostbox(@Ctx() ctx: GraphQLContext): Promise<UserPostbox> {
    return this.postboxes.closeByUser(await ctx.user());
  }
}
