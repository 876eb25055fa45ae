// Cursor pagination shared by every list query (Relay-style connections):
//   things(first: Int = 20, after: String): ThingConnection!
//   type ThingConnection { edges: [ThingEdge!]! pageInfo: PageInfo! }
//   type ThingEdge { cursor: String! node: Thing! }
// Lists are ordered newest first by (createdAt, id), and a cursor is an opaque
// base64url token of that pair: keyset pagination, so pages stay stable while
// rows are added and cost the same at any depth. Clients must treat cursors as
// opaque; only `after` + `first` are supported (forward paging).
import { Field, ObjectType, type ClassType } from "type-graphql";
import { badInput } from "../errors.js";
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from "./page-size.js";

@ObjectType({ description: "Where a page ends and whether another follows." })
export class PageInfo {
  @Field({ description: "True when a request with `after: endCursor` would return more." })
  hasNextPage!: boolean;

  @Field(() => String, { nullable: true, description: "Cursor of the last edge of this page; pass it as `after` for the next page. Null on an empty page." })
  endCursor!: string | null;
}

/** The position of a row in a (createdAt desc, id desc) ordering. */
export interface Keyset {
  createdAt: Date;
  id: string;
}

export interface PageRequest {
  /** Rows to fetch: one more than the page size, to learn whether a next page exists. */
  take: number;
  /** Page size asked for. */
  first: number;
  /** Decoded `after` cursor, if any. */
  after?: Keyset;
}

export interface Edge<T> {
  cursor: string;
  node: T;
}

export interface Connection<T> {
  edges: Edge<T>[];
  pageInfo: PageInfo;
}

export function encodeCursor(k: Keyset): string {
  return Buffer.from(JSON.stringify([k.createdAt.toISOString(), k.id])).toString("base64url");
}

/** Throws BAD_USER_INPUT naming `field` for anything that is not a cursor this server issued. */
export function decodeCursor(raw: string, field = "after"): Keyset {
  const bad = () => badInput(`${field} is not a valid cursor; pass the endCursor (or an edge's cursor) of a previous page unchanged.`, field);
  if (raw.length > 200 || !/^[A-Za-z0-9_-]+$/.test(raw)) throw bad();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(raw, "base64url").toString("utf8"));
  } catch {
    throw bad();
  }
  if (!Array.isArray(parsed) || parsed.length !== 2 || typeof parsed[0] !== "string" || typeof parsed[1] !== "string") throw bad();
  const createdAt = new Date(parsed[0]);
  if (Number.isNaN(createdAt.getTime()) || parsed[1].length === 0 || parsed[1].length > 64) throw bad();
  return { createdAt, id: parsed[1] };
}

/** Validates `first` (1..MAX_PAGE_SIZE) and decodes `after`. */
export function pageRequest(first: number | null | undefined, after: string | null | undefined): PageRequest {
  const size = first ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(size) || size < 1 || size > MAX_PAGE_SIZE) {
    throw badInput(`first must be a whole number from 1 to ${MAX_PAGE_SIZE}.`, "first");
  }
  return { first: size, take: size + 1, after: after ? decodeCursor(after) : undefined };
}

/** Builds the connection from rows fetched with `take` (= first + 1) in keyset order. */
export function toConnection<R extends Keyset, T>(rows: R[], page: PageRequest, toNode: (row: R) => T): Connection<T> {
  const hasNextPage = rows.length > page.first;
  const kept = hasNextPage ? rows.slice(0, page.first) : rows;
  const edges = kept.map((r) => ({ cursor: encodeCursor(r), node: toNode(r) }));
  return { edges, pageInfo: { hasNextPage, endCursor: edges.length ? edges[edges.length - 1].cursor : null } };
}

/**
 * GraphQL types for a connection of `NodeType`: declare
 *   `@ObjectType() export class ThingConnection extends ConnectionType(Thing, "Thing") {}`
 * which also defines `ThingEdge`.
 */
export function ConnectionType<T extends object>(NodeType: ClassType<T>, name: string) {
  @ObjectType(`${name}Edge`)
  class EdgeType {
    @Field({ description: "Opaque position of this node; pass as `after` to continue after it." })
    cursor!: string;

    @Field(() => NodeType)
    node!: T;
  }

  // Registered under its own name because type-graphql inherits fields only from
  // registered types; it is unreachable from the schema's roots, so never emitted.
  @ObjectType(`${name}ConnectionBase`)
  abstract class ConnectionClass {
    @Field(() => [EdgeType])
    edges!: EdgeType[];

    @Field(() => PageInfo)
    pageInfo!: PageInfo;
  }
  return ConnectionClass;
}
