// Large JSON request bodies without copies of their large strings. A 10 MiB file
// pushed inline is a ~14 MB base64 string inside the JSON body; parsed the usual way
// it exists as the raw body, the decoded body text and the parsed string (and then
// the decoded bytes and the ciphertext): many times the file. For a body over
// `threshold` bytes this middleware reads it into one buffer and parses that itself:
// a string under `variables` whose key is one of `keys` (pushData's content fields),
// at least `minChars` long and free of escapes, is left in the buffer. In its place
// the variables hold a short token (`INLINE_VALUE_PREFIX`, a random tag per body, n)
// that the buffer slice is filed under in `req.inlineValues`; the resolver reads the
// content from there in slices (see PushService). Everything else parses exactly as
// JSON.parse would.
//
// Smaller bodies, other charsets, compressed bodies and bodies without a
// Content-Length are left to express.json; a large body of more than MAX_VALUES values
// (no push has that many) is parsed with JSON.parse, since this parser is several times
// slower per value and the body is read before anyone is authenticated.
import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { NextFunction, Request, RequestHandler, Response } from "express";

/** Starts the token that stands for a value kept in the body buffer (a NUL: no valid base64 or JWE text has one). */
export const INLINE_VALUE_PREFIX = "\u0000inline-value:";

export type InlineValues = ReadonlyMap<string, Buffer>;

/** The keys whose long strings stay in the buffer: pushData's content fields. */
export const INLINE_CONTENT_KEYS: ReadonlySet<string> = new Set(["data", "encryptedData"]);

export interface RequestWithInlineValues extends IncomingMessage {
  inlineValues?: InlineValues;
}

export class JsonSyntaxError extends Error {}

/** The body has more values than a push needs: parse it with JSON.parse instead (see maxValues). */
export class TooManyValues extends Error {}

export interface InlineParseOptions {
  /** Keys whose string values (anywhere under the top-level `variables`) may stay in the buffer. */
  keys: ReadonlySet<string>;
  /** Shorter strings are parsed as usual. */
  minChars: number;
  /**
   * Values (of any kind) after which parsing stops with TooManyValues. This parser is
   * several times slower than JSON.parse per value, so a large body of many small
   * values (no push has many) goes to JSON.parse, and costs no more than it did.
   */
  maxValues?: number;
}

const MAX_DEPTH = 256;
// A pushData request has a few dozen values (descriptor lists are capped at 100 entries).
const MAX_VALUES = 10_000;

/** JSON.parse over UTF-8 bytes, keeping long escape-free strings of the given keys in the buffer (see above). */
export function parseJsonWithInlineValues(buf: Buffer, opts: InlineParseOptions): { value: unknown; values: Map<string, Buffer> } {
  const values = new Map<string, Buffer>();
  // Tokens are exempt from the text check only if they are in `values` (graphql/text-input.ts): the random
  // tag keeps a client from writing one of this body's tokens (an escaped NUL) into another field.
  const prefix = `${INLINE_VALUE_PREFIX}${randomUUID()}:`;
  const n = buf.length;
  const maxValues = opts.maxValues ?? Infinity;
  let count = 0;
  let i = buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf ? 3 : 0; // a UTF-8 byte order mark
  const fail = (what: string): never => {
    throw new JsonSyntaxError(`${what} at byte ${i}`);
  };
  const skipWhitespace = () => {
    for (let c = buf[i]; c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09; c = buf[++i]);
  };

  // buf[i] is the opening quote. Leaves i after the closing one.
  const scanString = (): { start: number; end: number; escaped: boolean } => {
    const start = ++i;
    let escaped = false;
    for (; i < n; i++) {
      const c = buf[i];
      if (c === 0x22) return { start, end: i++, escaped };
      if (c === 0x5c) {
        escaped = true;
        i++;
      } else if (c < 0x20) {
        fail("control character in a string");
      }
    }
    return fail("unterminated string");
  };

  const decodeString = (s: { start: number; end: number; escaped: boolean }): string =>
    // With escapes, JSON.parse of the quoted text decodes (and checks) them.
    s.escaped ? (JSON.parse(buf.toString("utf8", s.start - 1, s.end + 1)) as string) : buf.toString("utf8", s.start, s.end);

  // Where a value sits: the body itself, a request object (the body, or an element of a
  // batch), inside a request's `variables`, or anywhere else.
  type Place = "body" | "request" | "variables" | "other";

  const parseValue = (depth: number, place: Place, key: string | null): unknown => {
    if (depth > MAX_DEPTH) fail("nesting too deep");
    if (++count > maxValues) throw new TooManyValues();
    skipWhitespace();
    const c = buf[i];
    if (c === 0x22) {
      const s = scanString();
      if (place === "variables" && !s.escaped && key !== null && opts.keys.has(key) && s.end - s.start >= opts.minChars) {
        const token = `${prefix}${values.size}`;
        values.set(token, buf.subarray(s.start, s.end));
        return token;
      }
      return decodeString(s);
    }
    if (c === 0x7b) return parseObject(depth, place === "body" ? "request" : place);
    if (c === 0x5b) return parseArray(depth, place, key);
    if (c === 0x74) return literal("true", true);
    if (c === 0x66) return literal("false", false);
    if (c === 0x6e) return literal("null", null);
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return parseNumber();
    return fail(i >= n ? "unexpected end" : "unexpected character");
  };

  const literal = <T>(word: string, value: T): T => {
    if (buf.toString("latin1", i, i + word.length) !== word) fail("unexpected character");
    i += word.length;
    return value;
  };

  const parseNumber = (): number => {
    const start = i;
    for (let c = buf[i]; c === 0x2d || c === 0x2b || c === 0x2e || c === 0x45 || c === 0x65 || (c >= 0x30 && c <= 0x39); c = buf[++i]);
    // JSON.parse checks the number's grammar (no leading zeros, digits after the point, ...).
    try {
      return JSON.parse(buf.toString("latin1", start, i)) as number;
    } catch {
      return fail("malformed number");
    }
  };

  const parseObject = (depth: number, place: Place): Record<string, unknown> => {
    i++; // {
    const obj: Record<string, unknown> = {};
    skipWhitespace();
    if (buf[i] === 0x7d) {
      i++;
      return obj;
    }
    for (;;) {
      skipWhitespace();
      if (buf[i] !== 0x22) fail("expected a key");
      const key = decodeString(scanString());
      skipWhitespace();
      if (buf[i++] !== 0x3a) fail("expected ':'");
      const inner: Place = place === "variables" || (place === "request" && key === "variables") ? "variables" : "other";
      const value = parseValue(depth + 1, inner, key);
      // As JSON.parse does: "__proto__" is an ordinary own property, never the prototype.
      if (key === "__proto__") Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
      else obj[key] = value;
      skipWhitespace();
      const c = buf[i++];
      if (c === 0x7d) return obj;
      if (c !== 0x2c) fail("expected ',' or '}'");
    }
  };

  const parseArray = (depth: number, place: Place, key: string | null): unknown[] => {
    i++; // [
    const arr: unknown[] = [];
    skipWhitespace();
    if (buf[i] === 0x5d) {
      i++;
      return arr;
    }
    for (;;) {
      // A body that is an array is a batch of operations: each element is a request object.
      arr.push(parseValue(depth + 1, place, place === "body" ? null : key));
      skipWhitespace();
      const c = buf[i++];
      if (c === 0x5d) return arr;
      if (c !== 0x2c) fail("expected ',' or ']'");
    }
  };

  const value = parseValue(0, "body", null);
  skipWhitespace();
  if (i < n) fail("unexpected data after the JSON value");
  return { value, values };
}

export interface LargeJsonOptions extends InlineParseOptions {
  /** Bodies of more bytes than this are read by this middleware (smaller ones: express.json). */
  threshold: number;
  /** The body limit: longer bodies are left to express.json, which refuses them with 413. */
  limit: number;
}

/** Reads and parses large JSON bodies as described above; errors reach the app's body-parser error handler in body-parser's shape. */
export function largeJsonBodies(opts: LargeJsonOptions): RequestHandler {
  return (req: Request, _res: Response, next: NextFunction) => {
    // The length first: it is the cheap test, and almost every request fails it.
    const length = Number(req.headers["content-length"]);
    if (!Number.isSafeInteger(length) || length <= opts.threshold || length > opts.limit) return next();
    if (req.method !== "POST" || !req.is("application/json")) return next();
    const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers["content-type"] ?? "")?.[1]?.toLowerCase();
    if (charset !== undefined && charset !== "utf-8" && charset !== "utf8") return next();
    const encoding = (req.headers["content-encoding"] ?? "identity").toLowerCase();
    if (encoding !== "identity") return next();

    // One buffer of the announced size (Node's parser delivers no more than Content-Length), filled as chunks arrive.
    const body = Buffer.allocUnsafe(length);
    let received = 0;
    let done = false;
    const finish = (err?: unknown) => {
      if (done) return;
      done = true;
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("aborted", onAborted);
      next(err);
    };
    const onData = (chunk: Buffer) => {
      chunk.copy(body, received);
      received += chunk.length;
    };
    const onEnd = () => {
      if (received !== length) return finish(Object.assign(new Error("request body shorter than its Content-Length"), { status: 400, type: "request.size.invalid" }));
      try {
        try {
          const { value, values } = parseJsonWithInlineValues(body, { maxValues: MAX_VALUES, ...opts });
          req.body = value;
          (req as RequestWithInlineValues).inlineValues = values;
        } catch (e) {
          if (!(e instanceof TooManyValues)) throw e;
          req.body = JSON.parse(body.toString("utf8").replace(/^\uFEFF/, ""));
        }
        finish();
      } catch (e) {
        if (!(e instanceof JsonSyntaxError || e instanceof SyntaxError)) return finish(e);
        finish(Object.assign(new Error(e.message), { status: 400, type: "entity.parse.failed" }));
      }
    };
    const onError = (err: Error) => finish(err);
    const onAborted = () => finish(Object.assign(new Error("request aborted"), { status: 400, type: "request.aborted" }));
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("aborted", onAborted);
  };
}
