import { Field, ID, InputType, Int, ObjectType, registerEnumType } from "type-graphql";
import { ConnectionType } from "../../infra/graphql/pagination.js";
import { GraphQLUpload, type Upload } from "../../infra/graphql/upload.js";

export const PushStatus = { PENDING: "PENDING", DELIVERED: "DELIVERED" } as const;
export type PushStatus = (typeof PushStatus)[keyof typeof PushStatus];

registerEnumType(PushStatus, {
  name: "PushStatus",
  description: "PENDING until the user's app has fetched and acknowledged the file; then DELIVERED.",
  valuesConfig: {
    PENDING: { description: "Stored, encrypted to the user's key; not yet acknowledged by the user's app." },
    DELIVERED: { description: "The user's app acknowledged it (acknowledgeFiles)." },
  },
});

// Descriptor fields are nullable in the schema on purpose: a missing field is
// refused by the server with BAD_USER_INPUT *and* a refusal in the audit log,
// which a schema-level rejection could not record.
@InputType({ description: "An account of the user in your system that the file belongs to." })
export class AccountInput {
  @Field(() => String, { nullable: true, description: "Required: the user's account id in your system (1–256 characters)." })
  accountId?: string | null;
}

@InputType({ description: "What the file is (digi.me's fileDescriptor). Encrypted to the user's key together with fileName; the server keeps none of it in clear." })
export class FileDescriptorInput {
  @Field(() => String, { nullable: true, description: "Required: the file's media type, e.g. application/json." })
  mimeType?: string | null;

  @Field(() => [AccountInput], { nullable: true, description: "Required, at least one: the accounts of the user the file is about." })
  accounts?: AccountInput[] | null;

  @Field(() => [String], { nullable: true, description: "Free references (up to 100, 256 characters each). Default: none." })
  reference?: string[] | null;

  @Field(() => [String], { nullable: true, description: "Tags to find the file again (up to 100, 256 characters each). Default: none." })
  tags?: string[] | null;
}

@InputType({ description: "One file for one postbox. Give exactly one of `data`, `encryptedData`, `file` and `encryptedFile`." })
export class PushDataInput {
  @Field(() => ID)
  postboxId!: string;

  @Field(() => String, { nullable: true, description: "Required: the file's name (1–255 characters, no control characters). Encrypted with the descriptor." })
  fileName?: string | null;

  @Field(() => FileDescriptorInput, { nullable: true, description: "Required." })
  fileDescriptor?: FileDescriptorInput | null;

  @Field(() => String, {
    nullable: true,
    description:
      "The file as standard base64 (padded, no line breaks), for applications that cannot encrypt: the server encrypts it to the user's key at once and never stores or logs the plaintext. At most MAX_PUSH_BYTES decoded.",
  })
  data?: string | null;

  @Field(() => String, {
    nullable: true,
    description:
      'The file encrypted by the application: a compact JWE to Postbox.publicKey.jwk with "enc" A256GCM, "alg" RSA-OAEP-256 (RSA keys) or ECDH-ES / ECDH-ES+A256KW (EC and OKP keys) and "kid" = Postbox.publicKey.kid. Stored as is.',
  })
  encryptedData?: string | null;

  @Field(() => GraphQLUpload, {
    nullable: true,
    description:
      "The file as a multipart upload (GraphQL multipart request spec; send the header Apollo-Require-Preflight: true), for large files: like data, encrypted to the user's key as it arrives, in slices, never held whole in memory. At most MAX_PUSH_BYTES.",
  })
  file?: Upload | null;

  @Field(() => GraphQLUpload, {
    nullable: true,
    description: "Like encryptedData (a compact JWE to the postbox key, as bytes), sent as a multipart upload: checked and stored in slices as it arrives.",
  })
  encryptedFile?: Upload | null;

  @Field(() => String, {
    nullable: true,
    description:
      "Makes retries safe (1–255 printable ASCII characters, unique per contract): the same key with the same request returns the original result with duplicate: true and stores nothing; with a different request it is a CONFLICT.",
  })
  idempotencyKey?: string | null;
}

@ObjectType({ description: "The outcome of pushData. Only sizes and hashes of ciphertext: the server cannot read the file." })
export class PushResult {
  @Field(() => ID)
  id!: string;

  @Field(() => ID)
  postboxId!: string;

  @Field(() => PushStatus)
  status!: PushStatus;

  @Field(() => Int, { description: "Bytes of the stored ciphertext (the compact JWE text)." })
  size!: number;

  @Field({ description: "sha256 (hex) of the stored ciphertext; the user's app can check what it fetched against it." })
  sha256!: string;

  @Field()
  receivedAt!: Date;

  @Field({ description: "When the content is deleted: the postbox's expiry, brought forward to PUSH_RETENTION after delivery." })
  expiresAt!: Date;

  @Field({ description: "True when this is a retry with an idempotencyKey already used for the same request: nothing new was stored." })
  duplicate!: boolean;
}

// The metadata a push has in clear, shared by the application's view (Push) and
// the user's view (PostboxFile): sizes and hashes are of the ciphertext.
@ObjectType("PushMetadataBase")
abstract class PushMetadata {
  @Field(() => ID)
  id!: string;

  @Field(() => PushStatus)
  status!: PushStatus;

  @Field(() => Int, { description: "Bytes of the stored ciphertext." })
  size!: number;

  @Field({ description: "sha256 (hex) of the stored ciphertext." })
  sha256!: string;

  @Field()
  receivedAt!: Date;

  @Field({ description: "When the content is (or was) deleted: the postbox's expiry, brought forward to PUSH_RETENTION after delivery." })
  expiresAt!: Date;

  @Field(() => Date, { nullable: true })
  deliveredAt!: Date | null;

  @Field(() => Date, { nullable: true, description: "Set once the content has been deleted (retention); it can no longer be fetched." })
  purgedAt!: Date | null;
}

@ObjectType({ description: "A push as the application sees it: status and times. The application can never read the content back." })
export class Push extends PushMetadata {
  @Field(() => ID)
  postboxId!: string;
}

@ObjectType()
export class PushConnection extends ConnectionType(Push, "Push") {}

@ObjectType({ description: "A push changed status." })
export class PushStatusEvent {
  @Field(() => ID)
  pushId!: string;

  @Field(() => ID)
  postboxId!: string;

  @Field(() => PushStatus)
  status!: PushStatus;

  @Field()
  at!: Date;
}

export const FileChange = { ADDED: "ADDED", DELIVERED: "DELIVERED", PURGED: "PURGED" } as const;
export type FileChange = (typeof FileChange)[keyof typeof FileChange];

registerEnumType(FileChange, {
  name: "FileChange",
  description: "What happened to a file of the user's postbox.",
  valuesConfig: {
    ADDED: { description: "The application pushed it: fetch it with postboxFile(id)." },
    DELIVERED: { description: "A device of the user acknowledged it (perhaps another one)." },
    PURGED: { description: "Its content was deleted (expiry, or PUSH_RETENTION after delivery); it can no longer be fetched." },
  },
});

@ObjectType({ description: "A file of the user's postbox changed (myFilesChanged)." })
export class FileChangeEvent {
  @Field(() => ID)
  fileId!: string;

  @Field(() => FileChange)
  change!: FileChange;

  @Field()
  at!: Date;
}

@ObjectType({ description: "A file in the user's postbox (user side, with the access token)." })
export class PostboxFile extends PushMetadata {}

@ObjectType()
export class PostboxFileConnection extends ConnectionType(PostboxFile, "PostboxFile") {}

@ObjectType({ description: "A file's content: two compact JWEs to the user's key, decrypted on the user's device only." })
export class PostboxFileContent {
  @Field(() => ID)
  id!: string;

  @Field({ description: "Compact JWE of the file's bytes. Read only when selected; for large files prefer downloadUrl, which streams." })
  ciphertext!: string;

  @Field({
    description: "Where the same JWE downloads as a stream: GET it with the same Authorization header; the body is the compact JWE (application/jose). Recorded in the audit log like this query.",
  })
  downloadUrl!: string;

  @Field({ description: "Compact JWE of the JSON descriptor { fileName, mimeType, accounts: [{ accountId }], reference, tags }." })
  descriptor!: string;

  @Field({ description: "sha256 (hex) of ciphertext, as listed." })
  sha256!: string;

  @Field(() => Int)
  size!: number;
}
