// Where this app lives. The bundle is served from <base>/app/assets/, so the
// base (the server's PUBLIC_URL, which may include a path behind a reverse
// proxy) follows from the script's own URL; every link and the GraphQL endpoint
// are built from it rather than assumed to be at the origin's root.
export const BASE = new URL("../../", import.meta.url);

/** An absolute path under the base, e.g. path("app") → "/prefix/app". */
export function path(rel: string): string {
  return new URL(rel, BASE).pathname;
}

/** This server's address (origin plus any prefix), without a trailing slash. */
export const SERVER = BASE.href.replace(/\/$/, "");

/** The path below the base: "app", "consent/<code>", … */
export function route(): string {
  const p = location.pathname;
  return p.startsWith(BASE.pathname) ? p.slice(BASE.pathname.length) : p.replace(/^\//, "");
}
