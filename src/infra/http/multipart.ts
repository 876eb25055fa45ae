// GraphQL multipart requests (https://github.com/jaydenseric/graphql-multipart-request-spec)
// on /graphql, so that a large file reaches its resolver as a stream instead of a
// base64 string inside a JSON body. The `operations` and `map` fields come first;
// as soon as both are read the request goes on to Apollo with an Upload object in
// the variables, and the resolver reads the file part while it is still arriving.
// Nothing is buffered to disk (a temp file would hold plaintext).
//
// Limits: one file per request; `operations` ≤ 1 MiB; the whole body ≤ the body
// limit. CSRF: a multipart form is a "simple" request a browser sends cross-site
// without preflight, so, like Apollo's csrfPrevention, the request must carry
// `Apollo-Require-Preflight` (or `X-Apollo-Operation-Name`); it is checked here,
// before any of the body is read.
import type { IncomingMessage } from "node:http";
import busboy from "busboy";
import type { NextFunction, Request, RequestHandler, Response } from "express";
import { ErrorCode } from "../errors.js";
import { Upload } from "../graphql/upload.js";
import { bodyTooLargeMessage, sendError } from "./http-errors.js";

const MAX_OPERATIONS_BYTES = 1024 * 1024;

/** Why a multipart request, or the file part a resolver is reading, was cut off. */
export class MultipartError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
    this.name = "MultipartError";
  }
}

const bad = (message: string) => new MultipartError(400, "BAD_REQUEST", message);

/** Puts `upload` at a map path such as "variables.input.file" (or "0.variables…" in a batch). */
function place(operations: unknown, path: string, upload: Upload): void {
  const keys = path.split(".");
  const parentKeys = keys.slice(0, -1);
  const last = keys[keys.length - 1];
  if (!keys.includes("variables") || keys.some((k) => k === "__proto__" || k === "constructor" || k === "prototype")) {
    throw bad(`map path "${path}" must point into the operation's variables.`);
  }
  let node = operations as Record<string, unknown> | unknown[] | null;
  for (const k of parentKeys) {
    node = node && typeof node === "object" ? ((node as Record<string, unknown>)[k] as typeof node) : null;
  }
  if (!node || typeof node !== "object" || !(last in node) || (node as Record<string, unknown>)[last] !== null) {
    throw bad(`map path "${path}" must name a variable (or input field) set to null in operations.`);
  }
  (node as Record<string, unknown>)[last] = upload;
}

function parseJson(name: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw bad(`The multipart field "${name}" is not valid JSON.`);
  }
}

export interface MultipartOptions {
  /** Largest request body (and so file part) accepted. */
  maxBodyBytes: number;
}

export function graphqlMultipart({ maxBodyBytes }: MultipartOptions): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    if (req.method !== "POST" || !req.is("multipart/form-data")) return next();
    if (!req.get("apollo-require-preflight") && !req.get("x-apollo-operation-name")) {
      res.setHeader("connection", "close");
      return sendError(res, 400, "BAD_REQUEST", "Multipart requests must carry the header `Apollo-Require-Preflight: true` (CSRF protection: a plain form cannot send it).");
    }
    const declared = Number(req.get("content-length") ?? NaN);
    if (declared > maxBodyBytes) return tooLarge(res, maxBodyBytes);

    let bb: busboy.Busboy;
    try {
      bb = busboy({ headers: req.headers, limits: { fields: 2, fieldSize: MAX_OPERATIONS_BYTES, files: 1, fileSize: maxBodyBytes, parts: 3 } });
    } catch {
      return sendError(res, 400, "BAD_REQUEST", "The multipart/form-data request has no boundary.");
    }
    let operations: unknown;
    const uploads = new Map<string, Upload>();
    let handedOn = false;
    let received = 0;

    const failAll = (e: Error) => {
      for (const u of uploads.values()) {
        if (u.value) u.value.stream.destroy(e);
        else u.reject(e);
      }
    };
    const fail = (e: unknown) => {
      const err = e instanceof MultipartError ? e : bad("The multipart/form-data body is malformed.");
      failAll(err);
      stopReading(req, bb);
      // Whoever answers (here, or the resolver that was reading), the connection then closes
      // instead of reading the rest of a body this server will not use.
      if (!res.headersSent) res.setHeader("connection", "close");
      if (!handedOn && !res.headersSent) {
        handedOn = true;
        res.setHeader("connection", "close");
        sendError(res, err.status, err.code, err.message);
      }
    };

    req.on("data", (chunk: Buffer) => {
      received += chunk.length;
      if (received > maxBodyBytes) fail(new MultipartError(413, ErrorCode.PAYLOAD_TOO_LARGE, bodyTooLargeMessage(maxBodyBytes)));
    });
    // The client went away mid-upload: whoever reads the file sees an error, not a short file.
    req.on("close", () => {
      if (!req.complete) failAll(new Error("The client closed the connection before the upload completed."));
    });

    bb.on("field", (name, value, info) => {
      try {
        if (handedOn) throw bad(`Unexpected multipart field "${name}" after the map.`);
        if (info.valueTruncated) throw new MultipartError(413, ErrorCode.PAYLOAD_TOO_LARGE, `The multipart field "${name}" is larger than ${MAX_OPERATIONS_BYTES} bytes.`);
        if (name === "operations") {
          operations = parseJson(name, value);
          if (!operations || typeof operations !== "object") throw bad("operations must be a JSON object (or an array of them).");
          return;
        }
        if (name !== "map") throw bad(`Unexpected multipart field "${name}": the fields are operations, map, then the file.`);
        if (operations === undefined) throw bad("The operations field must come before map.");
        const map = parseJson(name, value);
        if (!map || typeof map !== "object" || Array.isArray(map)) throw bad('map must be a JSON object such as {"0": ["variables.input.file"]}.');
        const entries = Object.entries(map as Record<string, unknown>);
        if (entries.length > 1) throw bad("This server takes one file per request.");
        for (const [key, paths] of entries) {
          if (!Array.isArray(paths) || paths.length === 0 || paths.some((p) => typeof p !== "string")) throw bad(`map["${key}"] must be a non-empty array of paths.`);
          const upload = new Upload();
          uploads.set(key, upload);
          for (const p of paths as string[]) place(operations, p, upload);
        }
        handedOn = true;
        req.body = operations;
        // When the operation is answered before its file was read (refused, or it never
        // asked for it), the rest of the body is read and discarded.
        res.once("finish", () => {
          for (const u of uploads.values()) {
            if (u.value) u.value.stream.resume();
            else u.reject(new Error("The response was sent before the file part arrived."));
          }
        });
        next();
      } catch (e) {
        fail(e);
      }
    });
    bb.on("file", (name, stream, info) => {
      const upload = uploads.get(name);
      if (!upload) {
        stream.resume();
        if (!handedOn) fail(bad(`The file part "${name}" arrived before map, or map does not name it.`));
        return;
      }
      // Answered already (refused before its file arrived): nobody will read it, so discard
      // it here; left paused, it would stop the body and hold the connection open.
      if (res.writableEnded) {
        stream.resume();
        return;
      }
      stream.once("limit", () => stream.destroy(new MultipartError(413, ErrorCode.PAYLOAD_TOO_LARGE, bodyTooLargeMessage(maxBodyBytes))));
      upload.resolve({ filename: info.filename ?? "", mimeType: info.mimeType, stream });
    });
    bb.once("close", () => {
      for (const [key, u] of uploads) if (!u.value) u.reject(bad(`The request ended without the file part "${key}" that map names.`));
      if (!handedOn) fail(bad("A multipart GraphQL request needs the fields operations and map."));
    });
    bb.once("error", (e) => fail(e instanceof MultipartError ? e : bad(`The multipart/form-data body is malformed: ${(e as Error).message}.`)));
    req.pipe(bb);
  };
}

/** Stops parsing; what is left of the body is read and discarded so the response can still be sent. */
function stopReading(req: IncomingMessage, bb: busboy.Busboy): void {
  req.unpipe(bb);
  req.resume();
}

function tooLarge(res: Response, max: number): void {
  res.setHeader("connection", "close");
  sendError(res, 413, ErrorCode.PAYLOAD_TOO_LARGE, bodyTooLargeMessage(max));
}
