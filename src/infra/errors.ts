// Every error a client sees carries a stable `extensions.code` and a message a
// person can act on. Anything else is masked as INTERNAL_SERVER_ERROR (see
// formatError in graphql/server-options.ts).
import { GraphQLError } from "graphql";

export const ErrorCode = {
  UNAUTHENTICATED: "UNAUTHENTICATED",
  FORBIDDEN: "FORBIDDEN",
  NOT_FOUND: "NOT_FOUND",
  BAD_USER_INPUT: "BAD_USER_INPUT",
  CONFLICT: "CONFLICT",
  POSTBOX_NOT_READY: "POSTBOX_NOT_READY",
  POSTBOX_EXPIRED: "POSTBOX_EXPIRED",
  PAYLOAD_TOO_LARGE: "PAYLOAD_TOO_LARGE",
  RATE_LIMITED: "RATE_LIMITED",
  INTERNAL_SERVER_ERROR: "INTERNAL_SERVER_ERROR",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const HTTP_STATUS: Record<ErrorCode, number> = {
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  BAD_USER_INPUT: 400,
  CONFLICT: 409,
  POSTBOX_NOT_READY: 409,
  POSTBOX_EXPIRED: 410,
  PAYLOAD_TOO_LARGE: 413,
  RATE_LIMITED: 429,
  INTERNAL_SERVER_ERROR: 500,
};

export class AppError extends GraphQLError {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, extra: Record<string, unknown> = {}) {
    super(message, { extensions: { code, ...extra } });
    this.code = code;
    this.name = "AppError";
  }
  get httpStatus(): number {
    return HTTP_STATUS[this.code];
  }
}

export const unauthenticated = (msg: string) => new AppError(ErrorCode.UNAUTHENTICATED, msg);
export const forbidden = (msg: string) => new AppError(ErrorCode.FORBIDDEN, msg);
export const notFound = (what: string, id?: string) =>
  new AppError(ErrorCode.NOT_FOUND, id ? `${what} ${id} was not found.` : `${what} was not found.`);
export const badInput = (msg: string, field?: string) =>
  new AppError(ErrorCode.BAD_USER_INPUT, msg, field ? { field } : {});
export const conflict = (msg: string) => new AppError(ErrorCode.CONFLICT, msg);
export const rateLimited = (msg: string, retryAfterSeconds: number) =>
  new AppError(ErrorCode.RATE_LIMITED, msg, { retryAfterSeconds });

export function isAppError(e: unknown): e is AppError {
  return e instanceof AppError;
}
