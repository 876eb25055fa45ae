// Page sizes of every list query (pagination.ts). A module of its own, with no imports,
// so that the user's web app (web/src/inbox.ts) pages with the same numbers.
export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;
