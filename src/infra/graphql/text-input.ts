// Requests with text that cannot be stored as sent (a NUL, an unpaired surrogate:
// see infra/text.ts) are refused, for every operation and on both transports, before
// any resolver sees them: in the document's string literals (a validation rule) and in
// the variables.
import type { ApolloServerPlugin } from "@apollo/server";
import { GraphQLError, Kind, visit, type ASTNode, type ASTVisitor, type DocumentNode, type ValidationContext, type ValidationRule } from "graphql";
import { INLINE_CONTENT_KEYS, type InlineValues } from "../http/large-json.js";
import { isStorableText } from "../text.js";

const MESSAGE = "contains a NUL character or an unpaired UTF-16 surrogate, which cannot be stored; send well-formed Unicode text";

function refusal(where: string): GraphQLError {
  return new GraphQLError(`${where} ${MESSAGE}.`, { extensions: { code: "BAD_USER_INPUT", http: { status: 400 } } });
}

/**
 * The path of the first string in `value` that isStorableText refuses (its keys as well), or null.
 * The large-body parser's stand-ins for content it kept in the body buffer (`inlineValues`'
 * keys) start with a NUL on purpose and are not text of the caller's; only this request's
 * own are exempt, never one a client wrote.
 */
export function unstorableTextPath(value: unknown, path = "", inlineValues?: InlineValues): string | null {
  if (typeof value === "string") return isStorableText(value) || inlineValues?.has(value) ? null : path;
  if (value === null || typeof value !== "object") return null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const p = unstorableTextPath(value[i], `${path}[${i}]`, inlineValues);
      if (p !== null) return p;
    }
    return null;
  }
  // Plain objects only: anything else (the large-body parser's buffer tokens) is not text.
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return null;
  for (const [k, v] of Object.entries(value)) {
    const here = path ? `${path}.${k}` : k;
    if (!isStorableText(k)) return here;
    const p = unstorableTextPath(v, here, inlineValues);
    if (p !== null) return p;
  }
  return null;
}

/** Refuses variables with unstorable text: the error to answer with, or null. */
export function checkVariables(variables: Record<string, unknown> | null | undefined, inlineValues?: InlineValues): GraphQLError | null {
  const path = variables ? unstorableTextPath(variables, "", inlineValues) : null;
  return path === null ? null : refusal(`Variable $${path}`);
}

/**
 * A top-level variable the large-body parser replaced with a stand-in (`$data`, for
 * instance) may be used only where the stand-in is read: as an input field of the same
 * kind (`{ data: $data }`). Used anywhere else (`postboxId: $data`), the stand-in would
 * pass for text: the error to answer with, or null.
 */
export function checkInlineVariables(document: DocumentNode, variables: Record<string, unknown> | null | undefined, inlineValues?: InlineValues): GraphQLError | null {
  if (!variables || !inlineValues?.size) return null;
  const standIns = new Set(Object.keys(variables).filter((name) => typeof variables[name] === "string" && inlineValues.has(variables[name] as string)));
  if (standIns.size === 0) return null;
  let misused: string | null = null;
  visit(document, {
    Variable(node, _key, parent) {
      if (!standIns.has(node.name.value)) return;
      const p = parent as ASTNode | readonly ASTNode[] | undefined;
      if (p && !Array.isArray(p) && "kind" in p) {
        if (p.kind === Kind.VARIABLE_DEFINITION) return;
        if (p.kind === Kind.OBJECT_FIELD && INLINE_CONTENT_KEYS.has(p.name.value)) return;
      }
      misused = node.name.value;
    },
  });
  if (misused === null) return null;
  return new GraphQLError(`Variable $${misused} holds a file's content (a long data or encryptedData value) and may be passed only as a push's data or encryptedData.`, {
    extensions: { code: "BAD_USER_INPUT", http: { status: 400 } },
  });
}

/** Refuses string literals with unstorable text. */
export const storableTextRule: ValidationRule = (context: ValidationContext): ASTVisitor => ({
  StringValue(node) {
    if (!isStorableText(node.value)) context.reportError(new GraphQLError(`A string in the query ${MESSAGE}.`, { nodes: [node], extensions: { code: "BAD_USER_INPUT" } }));
  },
});

/** For Apollo (HTTP): the variables check, once the operation is known. */
export function storableTextPlugin<T extends { inlineValues?: InlineValues }>(): ApolloServerPlugin<T> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation(rc) {
          const error = checkVariables(rc.request.variables, rc.contextValue.inlineValues) ?? checkInlineVariables(rc.document, rc.request.variables, rc.contextValue.inlineValues);
          if (error) throw error;
        },
      };
    },
  };
}
