// Push GraphQL operations. Application side (session key): pushData, pushes, push,
// pushStatusChanged. User side (access token): postboxFiles, postboxFile, myFilesChanged,
// acknowledgeFiles. Content is reachable only through PostboxFileContent, which
// only the user's token can read.
import { Arg, Ctx, ID, Int, Mutation, Query, Resolver, Root, Subscription } from "type-graphql";
import type { GraphQLContext } from "../../infra/graphql/context.js";
import type { Connection } from "../../infra/graphql/pagination.js";
import type { UserService } from "../user/user.service.js";
import type { FileContent, UserFilesService } from "./push.files.service.js";
import type { PushService, PushStatusPayload, PushView } from "./push.service.js";
import { PostboxFile, PostboxFileConnection, PostboxFileContent, Push, PushConnection, PushDataInput, PushResult, PushStatusEvent, FileChangeEvent, type FileChange } from "./push.types.js";

@Resolver()
export class PushResolver {
  constructor(private readonly service: PushService) {}

  @Mutation(() => PushResult, {
    description:
      "Push one file to a READY postbox of this contract. The file is stored only encrypted to the user's key (yours via encryptedData, or the server's encryption of data), with its descriptor likewise encrypted.",
  })
  async pushData(
    // No class-validator pass: PushDataInput has no rules for it, and the service checks
    // every field itself so that each refusal is audited. (The pass costs every push a
    // dynamic import and an async validation of the whole input.)
    @Arg("input", () => PushDataInput, { validate: false }) input: PushDataInput, @Ctx() ctx: GraphQLContext): Promise<PushResult> {
    ctx.reached.add("pushData"); // from here on the service audits the attempt (see push.plugin.ts)
    return this.service.push(() => ctx.session(), input, ctx.inlineValues);
  }

  @Query(() => PushConnection, { description: "Pushes to one of this contract's postboxes, newest first: status and times, never content." })
  async pushes(
    @Arg("postboxId", () => ID) postboxId: string,
    @Arg("first", () => Int, { nullable: true, defaultValue: 20 }) first: number,
    @Arg("after", () => String, { nullable: true }) after: string | null | undefined,
    @Ctx() ctx: GraphQLContext,
  ): Promise<Connection<PushView>> {
    return this.service.listPushes(await ctx.session(), postboxId, first, after);
  }

  @Query(() => Push, { description: "One push of this contract: status and times, never content." })
  async push(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<PushView> {
    return this.service.getPush(await ctx.session(), id);
  }
}

@Resolver()
export class UserFilesResolver {
  constructor(private readonly service: UserFilesService) {}

  @Query(() => PostboxFileConnection, { description: "User side: the files in the access token's postbox, newest first." })
  async postboxFiles(
    @Arg("first", () => Int, { nullable: true, defaultValue: 20 }) first: number,
    @Arg("after", () => String, { nullable: true }) after: string | null | undefined,
    @Ctx() ctx: GraphQLContext,
  ): Promise<Connection<PushView>> {
    return this.service.listFiles(await ctx.user(), first, after);
  }

  @Query(() => PostboxFileContent, {
    description:
      "User side: one file's content as compact JWEs (file and descriptor), to decrypt on the device with the user's private key. Recorded in the audit log. For large files, leave out `ciphertext` and download it from `downloadUrl` instead.",
  })
  async postboxFile(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<FileContent> {
    return this.service.getFile(await ctx.user(), id);
  }

  @Mutation(() => [PostboxFile], { description: "User side: acknowledge receipt of files; they become DELIVERED. Acknowledging again changes nothing." })
  async acknowledgeFiles(@Arg("ids", () => [ID]) ids: string[], @Ctx() ctx: GraphQLContext): Promise<PushView[]> {
    return this.service.acknowledge(await ctx.user(), ids);
  }
}

/**
 * Built per server, like the postbox status subscription: type-graphql calls
 * `subscribe` without a resolver instance, and it needs this server's service.
 */
export function createPushSubscriptionResolver(pushes: PushService, files: UserFilesService, users: UserService): object {
  @Resolver()
  class PushSubscriptionResolver {
    @Subscription(() => PushStatusEvent, {
      description:
        "Status changes of your contract's pushes (session required): DELIVERED when the user's app acknowledges a file. With postboxId: that postbox's pushes only. The stream ends when the session expires or is ended (endSession).",
      subscribe: async ({ args, context }) => pushes.subscribe(await (context as GraphQLContext).session(), (args as { postboxId?: string | null }).postboxId),
    })
    pushStatusChanged(@Root() event: PushStatusPayload, @Arg("postboxId", () => ID, { nullable: true }) _postboxId?: string | null): PushStatusEvent {
      return { pushId: event.pushId, postboxId: event.postboxId, status: event.status, at: new Date(event.at) };
    }

    @Subscription(() => FileChangeEvent, {
      description:
        "User side (Authorization: Bearer pbu_… in the connection's params): changes to the files of the access token's postbox as they happen — ADDED when the application pushes one, DELIVERED when a device acknowledges it, PURGED when its content is deleted. The stream ends when the access token expires (refresh it and subscribe again), or when the credential is revoked or the postbox closes or expires. Changes made while no stream was open are not replayed: subscribe with includeCurrent to learn them.",
      subscribe: async ({ args, context }) => {
        const u = await (context as GraphQLContext).user();
        const a = args as { includeCurrent?: boolean; changedSince?: Date | null };
        return files.subscribeFiles(u, () => users.grantLive(u.grantId), { includeCurrent: a.includeCurrent === true, changedSince: a.changedSince ?? null });
      },
    })
    myFilesChanged(
      @Root() event: { fileId: string; change: FileChange; at: string },
      @Arg("includeCurrent", {
        defaultValue: false,
        description:
          "Start with one event per file of the postbox giving where it stands now (ADDED: still pending, DELIVERED, or PURGED, with that change's time), oldest file first, then go on with live changes. A change those first events already show is not sent again. Resubscribe with it after a lost connection to catch up on what happened meanwhile.",
      })
      _includeCurrent: boolean,
      @Arg("changedSince", () => Date, {
        nullable: true,
        description:
          "With includeCurrent: open only with the files whose latest change is at or after this time, give or take a minute (a few already seen may come again). Pass the `at` of the last event received before the stream ended, so that a reconnect does not resend every file of the postbox.",
      })
      _changedSince?: Date | null,
    ): FileChangeEvent {
      return { fileId: event.fileId, change: event.change, at: new Date(event.at) };
    }
  }
  return new PushSubscriptionResolver();
}
