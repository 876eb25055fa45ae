// Per-operation context (HTTP request or WebSocket operation). Credentials are
// resolved lazily, only by resolvers that need them, so an operation that needs
// none is not refused for a stale header.
import type { Logger } from "../logger.js";
import { unauthenticated } from "../errors.js";
import type { InlineValues } from "../http/large-json.js";

/** An application authenticated by its session key. */
export interface SessionPrincipal {
  sessionId: string;
  applicationId: string;
  contractId: string;
  contractKind: "WRITE" | "READ";
  expiresAt: Date;
}

/** A user's device authenticated by the access token it got when accepting a postbox. */
export interface UserPrincipal {
  grantId: string;
  postboxId: string;
  contractId: string;
  applicationId: string;
  /** When the access token stops working (it never outlives its postbox). */
  expiresAt: Date;
}

export interface Authenticators {
  session(key: string): Promise<SessionPrincipal>;
  user(token: string): Promise<UserPrincipal>;
}

export interface GraphQLContext {
  requestId: string;
  ip: string;
  log: Logger;
  /** Throws UNAUTHENTICATED unless the caller sent a valid session key. */
  session(): Promise<SessionPrincipal>;
  /** Throws UNAUTHENTICATED unless the caller sent a valid user access token. */
  user(): Promise<UserPrincipal>;
  /** Resolvers that ran for this request (those that audit their own refusals mark themselves). */
  reached: Set<string>;
  /** Large content values left in the HTTP request body's buffer, by the token that stands for them (infra/http/large-json.ts). */
  inlineValues?: InlineValues;
}

export const SESSION_KEY_PREFIX = "pbs";
export const USER_TOKEN_PREFIX = "pbu";

export function bearerToken(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  return m ? m[1] : undefined;
}

export function createContext(opts: {
  requestId: string;
  ip: string;
  log: Logger;
  authorization: string | undefined;
  auth: Authenticators;
  inlineValues?: InlineValues;
}): GraphQLContext {
  const token = bearerToken(opts.authorization);
  let session: Promise<SessionPrincipal> | undefined;
  let user: Promise<UserPrincipal> | undefined;
  const malformed = opts.authorization !== undefined && token === undefined;
  return {
    requestId: opts.requestId,
    ip: opts.ip,
    log: opts.log,
    reached: new Set(),
    inlineValues: opts.inlineValues,
    session() {
      if (!session) {
        session = (async () => {
          if (malformed) throw unauthenticated("The Authorization header must be `Bearer <session key>`.");
          if (!token) throw unauthenticated("This operation needs a session: send `Authorization: Bearer <session key>` from createSession.");
          if (!token.startsWith(`${SESSION_KEY_PREFIX}_`)) throw unauthenticated("That bearer token is not a session key (session keys start with pbs_).");
          return opts.auth.session(token);
        })();
      }
      return session;
    },
    user() {
      if (!user) {
        user = (async () => {
          if (malformed) throw unauthenticated("The Authorization header must be `Bearer <access token>`.");
          if (!token) throw unauthenticated("This operation needs the user's access token from acceptPostbox: send `Authorization: Bearer <access token>`.");
          if (!token.startsWith(`${USER_TOKEN_PREFIX}_`)) throw unauthenticated("That bearer token is not a user access token (they start with pbu_).");
          return opts.auth.user(token);
        })();
      }
      return user;
    },
  };
}
