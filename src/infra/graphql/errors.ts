// formatError: keep our coded errors and GraphQL's own request errors; map Prisma
// errors (one place, infra/db/prisma-errors.ts); mask everything else.
import { unwrapResolverError } from "@apollo/server/errors";
import { GraphQLError, type GraphQLFormattedError } from "graphql";
import { ArgumentValidationError } from "type-graphql";
import { mapPrismaError } from "../db/prisma-errors.js";
import { ErrorCode, isAppError } from "../errors.js";
import type { Logger } from "../logger.js";

// Codes GraphQL/Apollo/armor attach to problems with the request itself: safe to show.
const REQUEST_CODES = new Set([
  "GRAPHQL_PARSE_FAILED",
  "GRAPHQL_VALIDATION_FAILED",
  "BAD_USER_INPUT",
  "BAD_REQUEST",
  "PERSISTED_QUERY_NOT_FOUND",
  "PERSISTED_QUERY_NOT_SUPPORTED",
  "OPERATION_RESOLUTION_FAILURE",
  "INTROSPECTION_DISABLED",
  "MAX_RECURSIVE_SELECTIONS_EXCEEDED",
]);

export function makeFormatError(log: Logger) {
  return (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    const original = mapPrismaError(unwrapResolverError(error));
    if (isAppError(original)) {
      return { message: original.message, path: formatted.path, locations: formatted.locations, extensions: { ...original.extensions } };
    }
    if (original instanceof ArgumentValidationError) {
      const problems = original.extensions.validationErrors
        ?.flatMap((v: { property: string; constraints?: Record<string, string> }) => Object.values(v.constraints ?? {}).map((c) => c))
        .join("; ");
      return { message: `Invalid input: ${problems || "see the schema"}.`, path: formatted.path, locations: formatted.locations, extensions: { code: ErrorCode.BAD_USER_INPUT } };
    }
    const code = formatted.extensions?.code;
    if (typeof code === "string" && REQUEST_CODES.has(code)) {
      return { message: formatted.message, locations: formatted.locations, path: formatted.path, extensions: { code } };
    }
    if (!formatted.path && !code && original instanceof GraphQLError) {
      // Errors raised before execution without a code (e.g. graphql-armor rejections).
      return { message: formatted.message, locations: formatted.locations, extensions: { code: "GRAPHQL_VALIDATION_FAILED" } };
    }
    log.error({ err: original }, "internal error in GraphQL operation");
    return { message: "Internal server error.", path: formatted.path, extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR } };
  };
}
