import { Field, ID, ObjectType } from "type-graphql";
import { PostboxStatus } from "../postbox/postbox.types.js";

@ObjectType({ description: "The postbox of the user's access token." })
export class UserPostbox {
  @Field(() => ID)
  id!: string;

  @Field(() => PostboxStatus)
  status!: PostboxStatus;

  @Field()
  expiresAt!: Date;

  @Field(() => Date, { nullable: true })
  readyAt!: Date | null;

  @Field({ description: "The application that pushes to this postbox." })
  applicationName!: string;

  @Field(() => ID)
  contractId!: string;

  @Field(() => String, { nullable: true, description: "kid (RFC 7638 thumbprint) of the public key the user registered." })
  publicKeyThumbprint!: string | null;

  @Field(() => String, { nullable: true, description: "RSA-OAEP-256 or ECDH-ES+A256KW." })
  keyAlg!: string | null;
}

@ObjectType({ description: "A proof-of-key challenge for a postbox: decrypt `jwe` with the user's private key and send its plaintext (base64url) to reissueUserCredential." })
export class UserKeyChallenge {
  @Field(() => ID)
  challengeId!: string;

  @Field({ description: "Compact JWE to the postbox key (Postbox.publicKey); its plaintext is 32 random bytes." })
  jwe!: string;

  @Field({ description: "The challenge is single use and must be answered before this time." })
  expiresAt!: Date;
}
