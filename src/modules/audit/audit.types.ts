import { Field, ID, ObjectType } from "type-graphql";
import { GraphQLJSONObject } from "graphql-scalars";
import { ConnectionType } from "../../infra/graphql/pagination.js";

@ObjectType({ description: "One entry of the append-only, hash-chained audit log. Ids, outcomes and reasons only: never payloads, keys or tokens." })
export class AuditEvent {
  @Field(() => ID)
  id!: string;

  @Field({ description: "Position in the server-wide chain (a decimal string: it can exceed 2^53)." })
  seq!: string;

  @Field()
  at!: Date;

  @Field({ description: "APP, USER, ADMIN or SYSTEM." })
  actorType!: string;

  @Field(() => String, { nullable: true, description: "The application, user grant or session that acted, when known." })
  actorId!: string | null;

  @Field({ description: "e.g. push.create, push.fetch, push.deliver, push.purge, postbox.accept." })
  action!: string;

  @Field({ description: "SUCCESS or REFUSED." })
  outcome!: string;

  @Field(() => String, { nullable: true, description: "For refusals: the error code and a short reason, e.g. BAD_USER_INPUT:wrong_kid." })
  reason!: string | null;

  @Field(() => ID, { nullable: true })
  postboxId!: string | null;

  @Field(() => ID, { nullable: true, description: "The object acted on (a push, session, …)." })
  targetId!: string | null;

  @Field(() => GraphQLJSONObject, { nullable: true, description: "Small facts about the event (sizes, kinds, flags)." })
  detail!: Record<string, unknown> | null;

  @Field({ description: "sha256 of the previous event's hash and this event: the chain link." })
  hash!: string;
}

@ObjectType()
export class AuditEventConnection extends ConnectionType(AuditEvent, "AuditEvent") {}
