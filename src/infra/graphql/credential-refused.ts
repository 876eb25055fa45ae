// How a subscription client tells that the server refused its credential (and should
// renew it) from any other failure. A module of its own, with no imports, shared by
// the CLI (`user watch`) and the user's web app (web/src/live.ts).

/**
 * Whether a graphql-ws error means the credential was refused: GraphQL errors with
 * code UNAUTHENTICATED, or the socket closed with 4403 Forbidden at connect (what
 * graphql-ws does when the server's onConnect refuses; see infra/http/ws.ts).
 */
export function credentialRefused(e: unknown): boolean {
  if (Array.isArray(e)) return e.some((x) => (x as { extensions?: { code?: string } })?.extensions?.code === "UNAUTHENTICATED");
  return (e as { code?: number } | null)?.code === 4403;
}
