import { Field, ID, InputType, ObjectType } from "type-graphql";
import { IsString, Length, MaxLength } from "class-validator";

@InputType({ description: "A session request signed by the application's contract key." })
export class CreateSessionInput {
  @Field(() => ID)
  @IsString()
  @Length(1, 64)
  appId!: string;

  @Field(() => ID)
  @IsString()
  @Length(1, 64)
  contractId!: string;

  @Field({ description: 'Compact JWS (typ "JWT") signed with the contract\'s private key; claims client_id = "<appId>_<contractId>", nonce (16–128 random characters, single use) and timestamp (Unix milliseconds).' })
  @IsString()
  @MaxLength(16_384)
  assertion!: string;
}

@ObjectType({ description: "An application session. Send the key as `Authorization: Bearer <key>` (HTTP) or connectionParams.authorization (WebSocket)." })
export class Session {
  @Field({ description: "Shown once; the server stores only its hash." })
  key!: string;

  @Field()
  expiresAt!: Date;

  @Field(() => ID)
  appId!: string;

  @Field(() => ID)
  contractId!: string;
}

@ObjectType({ description: "The session making this request." })
export class SessionInfo {
  @Field(() => ID)
  appId!: string;

  @Field(() => ID)
  contractId!: string;

  @Field()
  contractKind!: string;

  @Field()
  expiresAt!: Date;
}
