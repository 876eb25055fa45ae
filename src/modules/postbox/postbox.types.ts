import { Field, ID, InputType, Int, ObjectType, registerEnumType } from "type-graphql";
import { GraphQLJSONObject } from "graphql-scalars";
import { ConnectionType } from "../../infra/graphql/pagination.js";

export const PostboxStatus = {
  PENDING: "PENDING",
  READY: "READY",
  DECLINED: "DECLINED",
  EXPIRED: "EXPIRED",
  CLOSED: "CLOSED",
} as const;
export type PostboxStatus = (typeof PostboxStatus)[keyof typeof PostboxStatus];

registerEnumType(PostboxStatus, {
  name: "PostboxStatus",
  description: "PENDING → READY | DECLINED | EXPIRED; READY → CLOSED | EXPIRED. DECLINED, EXPIRED and CLOSED are final.",
  valuesConfig: {
    PENDING: { description: "Created; waiting for the user to accept or decline through the consent link." },
    READY: { description: "The user accepted and registered a public key; pushes are encrypted to it." },
    DECLINED: { description: "The user declined." },
    EXPIRED: { description: "The consent link or the postbox's lifetime ran out." },
    CLOSED: { description: "Closed by the application or by the user." },
  },
});

export const PostboxMode = { ONE_OFF: "ONE_OFF", ONGOING: "ONGOING" } as const;
export type PostboxMode = (typeof PostboxMode)[keyof typeof PostboxMode];
registerEnumType(PostboxMode, {
  name: "PostboxMode",
  description: "ONE_OFF: a short-lived postbox for one exchange. ONGOING: long-lived; the user consents once.",
});

@ObjectType({ description: "The user's public encryption key. Encrypt pushes to `jwk` as compact JWEs with `alg` and `enc`." })
export class PostboxPublicKey {
  @Field({ description: "RFC 7638 SHA-256 thumbprint of the key; also `jwk.kid`." })
  kid!: string;

  @Field({ description: "Key management algorithm: RSA-OAEP-256 or ECDH-ES+A256KW." })
  alg!: string;

  @Field({ description: "Content encryption algorithm (A256GCM)." })
  enc!: string;

  @Field({ description: "RSA, EC or OKP." })
  kty!: string;

  @Field(() => String, { nullable: true, description: "P-256 or X25519 for EC/OKP keys." })
  crv!: string | null;

  @Field(() => GraphQLJSONObject, { description: "The public JWK with alg, use \"enc\" and kid set (for jose importJWK)." })
  jwk!: Record<string, unknown>;
}

@ObjectType({ description: "A postbox: where an application pushes encrypted data to one of its users." })
export class Postbox {
  @Field(() => ID)
  id!: string;

  @Field(() => PostboxStatus)
  status!: PostboxStatus;

  @Field(() => String, { nullable: true, description: "The application's own reference for the user or account (as given to createPostbox)." })
  reference!: string | null;

  @Field(() => String, { nullable: true, description: "Where the user's app sends the user after consent (from the contract's allow-list)." })
  callbackUrl!: string | null;

  @Field(() => String, {
    nullable: true,
    description: "Link to give the user: `<PUBLIC_URL>/consent/<code>`. Returned once, by createPostbox; null everywhere else (the server keeps only a hash of the code).",
  })
  consentUrl!: string | null;

  @Field({ description: "The consent link stops working at this time; a postbox still PENDING then becomes EXPIRED." })
  consentExpiresAt!: Date;

  @Field({ description: "End of the postbox's lifetime." })
  expiresAt!: Date;

  @Field()
  createdAt!: Date;

  @Field(() => Date, { nullable: true })
  readyAt!: Date | null;

  @Field(() => Date, { nullable: true })
  closedAt!: Date | null;

  @Field(() => PostboxPublicKey, { nullable: true, description: "The user's public key; set once the postbox is READY." })
  publicKey!: PostboxPublicKey | null;
}

@ObjectType()
export class PostboxConnection extends ConnectionType(Postbox, "Postbox") {}

@InputType()
export class CreatePostboxInput {
  @Field(() => String, { nullable: true, description: "Your own reference for the user or account (1–200 printable characters). Shown to the user at consent." })
  reference?: string | null;

  @Field(() => String, { nullable: true, description: "Where the user's app redirects after consent; must match the contract's callbackUrls allow-list." })
  callbackUrl?: string | null;

  @Field(() => Int, { nullable: true, description: "Lifetime in seconds (60 to POSTBOX_MAX_TTL). Default: the contract's postbox lifetime." })
  expiresInSeconds?: number | null;
}

@ObjectType({ description: "What the user is asked to consent to." })
export class ConsentRequest {
  @Field(() => ID)
  postboxId!: string;

  @Field()
  applicationName!: string;

  @Field(() => ID)
  contractId!: string;

  @Field({ description: "WRITE (the application pushes data to the user)." })
  contractKind!: string;

  @Field(() => PostboxMode)
  postboxMode!: PostboxMode;

  @Field(() => String, { nullable: true, description: "The application's reference for the user's account." })
  reference!: string | null;

  @Field(() => PostboxStatus)
  status!: PostboxStatus;

  @Field({ description: "True while the link can still be accepted or declined (PENDING and not expired)." })
  canRespond!: boolean;

  @Field()
  consentExpiresAt!: Date;

  @Field()
  expiresAt!: Date;

  @Field({ description: "True when accepting or declining returns a redirectUrl back to the application." })
  hasCallback!: boolean;

  @Field(() => [String], { description: "Key management algorithms the server accepts for publicKey." })
  acceptedAlgorithms!: string[];
}

@InputType()
export class AcceptPostboxInput {
  @Field({ description: "The consent code: the last path segment of consentUrl." })
  code!: string;

  @Field(() => GraphQLJSONObject, {
    description: "Public JWK generated on the user's device: RSA ≥ 2048 bits (RSA-OAEP-256), EC P-256 or X25519 (ECDH-ES+A256KW). Never the private key.",
  })
  publicKey!: Record<string, unknown>;
}

@InputType()
export class DeclinePostboxInput {
  @Field({ description: "The consent code: the last path segment of consentUrl." })
  code!: string;
}

@ObjectType({ description: "The user's credential for one postbox. Send `Authorization: Bearer <accessToken>`; renew with refreshUserToken." })
export class UserCredential {
  @Field({ description: "Bearer token (pbu_…). Shown once; the server stores only its hash." })
  accessToken!: string;

  @Field()
  accessTokenExpiresAt!: Date;

  @Field({ description: "Refresh token (pbr_…); single use, rotated by refreshUserToken. Lives until the postbox expires." })
  refreshToken!: string;

  @Field()
  refreshTokenExpiresAt!: Date;

  @Field({ description: "Always \"Bearer\"." })
  tokenType!: string;

  @Field(() => ID)
  postboxId!: string;
}

@ObjectType()
export class AcceptPostboxResult {
  @Field(() => ID)
  postboxId!: string;

  @Field(() => PostboxStatus)
  status!: PostboxStatus;

  @Field({ description: "kid of the accepted public key (RFC 7638 thumbprint)." })
  publicKeyThumbprint!: string;

  @Field(() => UserCredential)
  credential!: UserCredential;

  @Field(() => String, { nullable: true, description: "callbackUrl with postboxId and result=ACCEPTED added; null when the postbox has no callbackUrl." })
  redirectUrl!: string | null;
}

@ObjectType()
export class DeclinePostboxResult {
  @Field(() => ID)
  postboxId!: string;

  @Field(() => PostboxStatus)
  status!: PostboxStatus;

  @Field(() => String, { nullable: true, description: "callbackUrl with postboxId and result=DECLINED added; null when the postbox has no callbackUrl." })
  redirectUrl!: string | null;
}

@ObjectType({ description: "A postbox changed status." })
export class PostboxStatusEvent {
  @Field(() => ID)
  postboxId!: string;

  @Field(() => PostboxStatus)
  status!: PostboxStatus;

  @Field(() => PostboxStatus, { nullable: true, description: "Null on the first event of a postboxId subscription, which reports the current status." })
  previousStatus!: PostboxStatus | null;

  @Field()
  at!: Date;
}
