import { Arg, Ctx, ID, Int, Mutation, Query, Resolver, Root, Subscription } from "type-graphql";
import type { GraphQLContext } from "../../infra/graphql/context.js";
import type { DataRequestStatusPayload } from "./datarequest.events.js";
import type { DataRequestService } from "./datarequest.service.js";
import {
  DataRequest,
  DataRequestConnection,
  DataRequestStatus,
  DataRequestStatusEvent,
  DataResponseContent,
  DataResponseInput,
  RequestDataInput,
  UserDataRequest,
} from "./datarequest.types.js";

@Resolver()
export class DataRequestResolver {
  constructor(private readonly requests: DataRequestService) {}

  // Application side (session required).

  @Mutation(() => DataRequest, {
    description:
      "Ask the user of a READY postbox of this (WRITE) contract for data. The user's app encrypts the answer to your application's READ contract key; register one first (npm run cli -- contract add <appId> --kind READ --generate-key <out-file>).",
  })
  async requestData(@Arg("postboxId", () => ID) postboxId: string, @Arg("input", () => RequestDataInput) input: RequestDataInput, @Ctx() ctx: GraphQLContext): Promise<DataRequest> {
    return this.requests.requestData(() => ctx.session(), postboxId, input);
  }

  @Query(() => DataRequestConnection, {
    description: "Data requests of a postbox, newest first, for the WRITE contract that asked or the application's READ contract. Page with `first` (1–100) and `after`.",
  })
  async dataRequests(
    @Arg("postboxId", () => ID) postboxId: string,
    @Ctx() ctx: GraphQLContext,
    @Arg("status", () => DataRequestStatus, { nullable: true }) status?: DataRequestStatus | null,
    @Arg("first", () => Int, { nullable: true, defaultValue: 20 }) first?: number | null,
    @Arg("after", () => String, { nullable: true }) after?: string | null,
  ): Promise<DataRequestConnection> {
    return this.requests.list(await ctx.session(), postboxId, status ?? undefined, first, after);
  }

  @Query(() => DataRequest, { description: "One data request (for the WRITE contract that asked or the application's READ contract)." })
  async dataRequest(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<DataRequest> {
    return this.requests.get(await ctx.session(), id);
  }

  @Query(() => DataResponseContent, { description: "The user's encrypted answer to a FULFILLED request: decrypt both JWEs with the READ contract's private key." })
  async dataResponse(@Arg("requestId", () => ID) requestId: string, @Ctx() ctx: GraphQLContext): Promise<DataResponseContent> {
    return this.requests.fetchResponse(await ctx.session(), requestId);
  }

  // User side (the user's access token, scoped to its postbox).

  @Query(() => [UserDataRequest], {
    description: "The postbox's data requests (user access token), newest first, 100 at most. Default: PENDING ones still open, each with the key to encrypt the answer to.",
  })
  async myDataRequests(
    @Ctx() ctx: GraphQLContext,
    @Arg("status", () => DataRequestStatus, { nullable: true, defaultValue: DataRequestStatus.PENDING, description: "Null: every status." }) status?: DataRequestStatus | null,
  ): Promise<UserDataRequest[]> {
    return this.requests.listForUser(await ctx.user(), status ?? undefined);
  }

  @Mutation(() => UserDataRequest, { description: "Answer a PENDING data request with a file encrypted on the device to its recipientKey (user access token)." })
  async respondToDataRequest(@Arg("id", () => ID) id: string, @Arg("input", () => DataResponseInput) input: DataResponseInput, @Ctx() ctx: GraphQLContext): Promise<UserDataRequest> {
    return this.requests.respond(await ctx.user(), id, input);
  }

  @Mutation(() => UserDataRequest, { description: "Decline a PENDING data request (user access token)." })
  async declineDataRequest(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<UserDataRequest> {
    return this.requests.decline(await ctx.user(), id);
  }
}

/**
 * Built per server, like the other subscription resolvers: type-graphql calls
 * `subscribe` without a resolver instance, and it needs this server's service.
 */
export function createDataRequestSubscriptionResolver(requests: DataRequestService): object {
  @Resolver()
  class DataRequestSubscriptionResolver {
    @Subscription(() => DataRequestStatusEvent, {
      description:
        "Status changes of data requests (session required): those your WRITE contract asked, or, for a READ contract session, those answered to it. With postboxId: that postbox only. The stream ends when the session expires or is ended (endSession).",
      subscribe: async ({ args, context }) => requests.subscribe(await (context as GraphQLContext).session(), (args as { postboxId?: string | null }).postboxId),
    })
    dataRequestStatusChanged(@Root() event: DataRequestStatusPayload, @Arg("postboxId", () => ID, { nullable: true }) _postboxId?: string | null): DataRequestStatusEvent {
      return { dataRequestId: event.dataRequestId, postboxId: event.postboxId, status: event.status, at: new Date(event.at) };
    }
  }
  return new DataRequestSubscriptionResolver();
}
