// The Upload scalar of the GraphQL multipart request spec
// (https://github.com/jaydenseric/graphql-multipart-request-spec). Its values are
// never written by a client as JSON: the multipart middleware (infra/http/multipart.ts)
// puts an Upload object into the variables where the request's `map` says, and the
// resolver reads the file part as a stream while the request is still arriving.
import type { Readable } from "node:stream";
import { GraphQLError, GraphQLScalarType } from "graphql";

export interface FileUpload {
  /** The file name the client gave the part (untrusted; may be empty). */
  filename: string;
  mimeType: string;
  /** The part's bytes. Read it once; an unread stream is drained when the response ends. */
  stream: Readable;
}

/** A file part that may not have arrived yet: parts follow `operations` and `map` in the body. */
export class Upload {
  readonly file: Promise<FileUpload>;
  resolve!: (f: FileUpload) => void;
  reject!: (e: Error) => void;
  /** Set once the part has arrived. */
  value?: FileUpload;

  constructor() {
    this.file = new Promise<FileUpload>((resolve, reject) => {
      this.resolve = (f) => {
        this.value = f;
        resolve(f);
      };
      this.reject = reject;
    });
    // A rejection nobody awaited (the operation never read the file) must not crash the process.
    this.file.catch(() => {});
  }
}

const notMultipart = () =>
  new GraphQLError("Upload values come only from the file parts of a multipart request (GraphQL multipart request spec); they cannot be written inline.", {
    extensions: { code: "BAD_USER_INPUT" },
  });

export const GraphQLUpload = new GraphQLScalarType<Upload, never>({
  name: "Upload",
  description:
    "A file sent as a part of a multipart/form-data request (GraphQL multipart request spec): the variable is null in `operations` and `map` points the part at it. Not available over WebSocket.",
  parseValue(value) {
    if (value instanceof Upload) return value;
    throw notMultipart();
  },
  parseLiteral() {
    throw notMultipart();
  },
  serialize() {
    throw new GraphQLError("Upload is an input-only scalar.");
  },
});
