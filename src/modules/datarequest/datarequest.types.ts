import { ArrayMaxSize, IsOptional, IsString, Length, MaxLength } from "class-validator";
import { GraphQLJSONObject } from "graphql-scalars";
import { Field, ID, InputType, Int, ObjectType, registerEnumType } from "type-graphql";
import { ConnectionType } from "../../infra/graphql/pagination.js";

export const DataRequestStatus = {
  PENDING: "PENDING",
  FULFILLED: "FULFILLED",
  DECLINED: "DECLINED",
  EXPIRED: "EXPIRED",
} as const;
export type DataRequestStatus = (typeof DataRequestStatus)[keyof typeof DataRequestStatus];

registerEnumType(DataRequestStatus, {
  name: "DataRequestStatus",
  description: "PENDING → FULFILLED | DECLINED | EXPIRED; the last three are final.",
  valuesConfig: {
    PENDING: { description: "Waiting for the user to answer." },
    FULFILLED: { description: "The user sent data, encrypted to the application's READ contract key." },
    DECLINED: { description: "The user declined." },
    EXPIRED: { description: "The user did not answer in time (DATA_REQUEST_TTL), or the postbox ended." },
  },
});

@ObjectType({ description: "The stored answer to a data request: ciphertext metadata only." })
export class DataResponseInfo {
  @Field(() => ID)
  id!: string;

  @Field(() => Int, { description: "Size of the stored ciphertext JWE text in bytes." })
  size!: number;

  @Field({ description: "sha256 (hex) of the ciphertext JWE text." })
  sha256!: string;

  @Field()
  createdAt!: Date;

  @Field(() => Date, { nullable: true, description: "When the ciphertext was deleted (DATA_RESPONSE_RETENTION); null while dataResponse can fetch it." })
  purgedAt!: Date | null;
}

@ObjectType({ description: "A request for data sent to the user of a postbox; the answer is encrypted to the application's READ contract key." })
export class DataRequest {
  @Field(() => ID)
  id!: string;

  @Field(() => ID)
  postboxId!: string;

  @Field(() => ID, { description: "The WRITE contract (the postbox's) that asked." })
  contractId!: string;

  @Field(() => ID, { description: "The application's READ contract; its private key decrypts the answer." })
  readContractId!: string;

  @Field({ description: "kid (RFC 7638 thumbprint) of the READ contract key the answer is, or is to be, encrypted to." })
  readKeyKid!: string;

  @Field()
  title!: string;

  @Field(() => String, { nullable: true })
  description!: string | null;

  @Field(() => [String], { description: "MIME types the application accepts (type/subtype or type/*); empty means any." })
  acceptedMimeTypes!: string[];

  @Field(() => DataRequestStatus)
  status!: DataRequestStatus;

  @Field()
  createdAt!: Date;

  @Field({ description: "A request still PENDING at this time becomes EXPIRED." })
  expiresAt!: Date;

  @Field(() => Date, { nullable: true })
  respondedAt!: Date | null;

  @Field(() => DataResponseInfo, { nullable: true, description: "Set once FULFILLED; fetch the ciphertext with dataResponse(requestId)." })
  response!: DataResponseInfo | null;
}

@ObjectType()
export class DataRequestConnection extends ConnectionType(DataRequest, "DataRequest") {}

@ObjectType({ description: "The user's answer: compact JWEs encrypted to the READ contract key (decrypt with its private key)." })
export class DataResponseContent {
  @Field(() => ID)
  requestId!: string;

  @Field({ description: "Compact JWE of the file (enc A256GCM; alg RSA-OAEP-256 or ECDH-ES+A256KW; kid = readKeyKid)." })
  ciphertext!: string;

  @Field({ description: "Compact JWE of the descriptor: JSON { fileName, mimeType, size }." })
  descriptor!: string;

  @Field({ description: "kid of the READ contract key the JWEs are encrypted to." })
  kid!: string;

  @Field(() => Int)
  size!: number;

  @Field()
  sha256!: string;

  @Field()
  createdAt!: Date;
}

@InputType()
export class RequestDataInput {
  @Field({ description: "What you ask for, shown to the user (1–200 characters)." })
  @IsString()
  @Length(1, 200)
  title!: string;

  @Field(() => String, { nullable: true, description: "Why you ask and what you will do with it (up to 2000 characters)." })
  @IsOptional()
  @IsString()
  @MaxLength(2000)
  description?: string | null;

  @Field(() => [String], { nullable: true, description: "MIME types you accept, e.g. [\"application/pdf\", \"image/*\"] (up to 20). Empty or omitted: any file or text." })
  @IsOptional()
  @ArrayMaxSize(20)
  acceptedMimeTypes?: string[] | null;

  @Field(() => Int, { nullable: true, description: "Seconds the user has to answer (60 to DATA_REQUEST_TTL). Default DATA_REQUEST_TTL; never beyond the postbox's expiry." })
  @IsOptional()
  expiresInSeconds?: number | null;
}

@ObjectType({ description: "A data request changed status (ids and status only, never content)." })
export class DataRequestStatusEvent {
  @Field(() => ID)
  dataRequestId!: string;

  @Field(() => ID)
  postboxId!: string;

  @Field(() => DataRequestStatus)
  status!: DataRequestStatus;

  @Field()
  at!: Date;
}

@ObjectType({ description: "The public key to encrypt an answer to: the application's READ contract key." })
export class DataRequestRecipientKey {
  @Field({ description: "RFC 7638 thumbprint; put it in the JWE header as kid." })
  kid!: string;

  @Field({ description: "Key management algorithm: RSA-OAEP-256 (RSA keys) or ECDH-ES+A256KW (P-256 keys)." })
  alg!: string;

  @Field({ description: "Content encryption algorithm (A256GCM)." })
  enc!: string;

  @Field(() => GraphQLJSONObject, { description: "The public JWK with alg, use \"enc\" and kid set (for jose importJWK or WebCrypto)." })
  jwk!: Record<string, unknown>;
}

@ObjectType({ description: "A request for data, as the user's device sees it." })
export class UserDataRequest {
  @Field(() => ID)
  id!: string;

  @Field(() => ID)
  postboxId!: string;

  @Field({ description: "Name of the application asking." })
  applicationName!: string;

  @Field()
  title!: string;

  @Field(() => String, { nullable: true })
  description!: string | null;

  @Field(() => [String], { description: "MIME types the application accepts (type/subtype or type/*); empty means any." })
  acceptedMimeTypes!: string[];

  @Field(() => DataRequestStatus)
  status!: DataRequestStatus;

  @Field()
  createdAt!: Date;

  @Field()
  expiresAt!: Date;

  @Field(() => Date, { nullable: true })
  respondedAt!: Date | null;

  @Field(() => DataRequestRecipientKey, { nullable: true, description: "Encrypt the answer to this key; null unless PENDING." })
  recipientKey!: DataRequestRecipientKey | null;

  @Field(() => Int, { description: "Largest file the server accepts as an answer, in bytes (MAX_PUSH_BYTES)." })
  maxBytes!: number;
}

@InputType({ description: "The user's answer, encrypted on the device to recipientKey." })
export class DataResponseInput {
  @Field({ description: "Compact JWE of the file: alg = recipientKey.alg, enc A256GCM, kid = recipientKey.kid." })
  @IsString()
  ciphertext!: string;

  @Field({ description: "Compact JWE (same key and algorithms) of JSON { fileName, mimeType, size }; 16 KiB at most." })
  @IsString()
  descriptor!: string;
}
