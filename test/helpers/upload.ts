// A GraphQL multipart request (graphql-multipart-request-spec) as a client such as
// apollo-upload-client sends it: operations, map, then the file part.
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { request } from "undici";
import type { GqlResult } from "./server.js";

export interface MultipartOptions {
  token?: string;
  /** Default: Apollo-Require-Preflight: true. */
  headers?: Record<string, string>;
  /** The file part's bytes; an async iterable streams them (and may throw to cut the upload off). */
  body?: AsyncIterable<Uint8Array>;
  /** Field order and content, for malformed requests. Default: operations, map, file. */
  parts?: ("operations" | "map" | "file")[];
  map?: unknown;
}

/** Sends `query` with `variables`, `file` going where `path` (e.g. "variables.input.file") says. */
export async function multipartGql<T = Record<string, any>>(url: string, query: string, variables: Record<string, unknown>, path: string, file: Uint8Array, o: MultipartOptions = {}): Promise<GqlResult<T>> {
  const boundary = `----postbox${randomBytes(8).toString("hex")}`;
  const fields: Record<string, () => AsyncGenerator<Uint8Array>> = {
    operations: async function* () {
      yield Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="operations"\r\n\r\n${JSON.stringify({ query, variables })}\r\n`);
    },
    map: async function* () {
      yield Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="map"\r\n\r\n${JSON.stringify(o.map ?? { 0: [path] })}\r\n`);
    },
    file: async function* () {
      yield Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="0"; filename="upload.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`);
      if (o.body) yield* o.body;
      else yield file;
      yield Buffer.from("\r\n");
    },
  };
  const order = o.parts ?? ["operations", "map", "file"];
  async function* body() {
    for (const p of order) yield* fields[p]();
    yield Buffer.from(`--${boundary}--\r\n`);
  }
  const res = await request(url.replace(/\/$/, "") + "/graphql", {
    method: "POST",
    headers: {
      "content-type": `multipart/form-data; boundary=${boundary}`,
      ...(o.token ? { authorization: `Bearer ${o.token}` } : {}),
      ...(o.headers ?? { "apollo-require-preflight": "true" }),
    },
    body: Readable.from(body()),
  });
  const text = await res.body.text();
  let json: { data?: T; errors?: GqlResult["errors"] };
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`Non-JSON response ${res.statusCode}: ${text.slice(0, 200)}`);
  }
  return { status: res.statusCode, data: json.data, errors: json.errors, headers: res.headers };
}
