// GraphQL over fetch to the same origin's /graphql: a JSON POST, which Apollo's
// CSRF prevention accepts without extra headers. Tokens travel only in the
// Authorization header, never in a URL.
import { BASE } from "./base.js";

/** The server could not be reached, or answered with something that is not GraphQL. */
export class NetworkError extends Error {
  constructor(message = "Could not reach the Postbox server. Check your connection and try again.") {
    super(message);
    this.name = "NetworkError";
  }
}

/** The server answered with a GraphQL error; `code` is its stable extensions.code. */
export class ApiError extends Error {
  /** `reissue`: the server says proving the postbox key (userKeyChallenge) gets a new credential. */
  constructor(readonly code: string, message: string, readonly reissue = false) {
    super(message);
    this.name = "ApiError";
  }
}

export async function gql<T>(query: string, variables: Record<string, unknown> = {}, token?: string): Promise<T> {
  let res: Response;
  try {
    res = await fetch(new URL("graphql", BASE), {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query, variables }),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
  } catch {
    throw new NetworkError();
  }
  let body: { data?: T | null; errors?: { message: string; extensions?: { code?: string; reissue?: boolean } }[] };
  try {
    body = await res.json();
  } catch {
    throw new NetworkError(`The server answered ${res.status} ${res.statusText || ""} without a GraphQL response. Try again in a moment.`.replace(/\s+\./, "."));
  }
  const err = body.errors?.[0];
  if (err) throw new ApiError(err.extensions?.code ?? "INTERNAL_SERVER_ERROR", err.message, err.extensions?.reissue === true);
  if (!body.data) throw new NetworkError("The server's answer had no data. Try again in a moment.");
  return body.data;
}
