// Query limits (depth, cost, aliases, directives, tokens) from graphql-armor, and the
// refusal of text that cannot be stored (text-input.ts).
// Apollo gets them as plugins/validation rules; graphql-ws does not run Apollo's
// pipeline, so ws.ts applies the same rules to WebSocket operations.
import { ApolloArmor } from "@escape.tech/graphql-armor";
import type { ApolloServerPlugin } from "@apollo/server";
import type { ValidationRule } from "graphql";
import type { Config } from "../config.js";
import { storableTextPlugin, storableTextRule } from "./text-input.js";

export interface Limits {
  plugins: ApolloServerPlugin[];
  validationRules: ValidationRule[];
  maxTokens: number;
}

export function createLimits(config: Config): Limits {
  const production = config.NODE_ENV === "production";
  const armor = new ApolloArmor({
    maxDepth: { n: config.GRAPHQL_MAX_DEPTH, exposeLimits: !production },
    costLimit: { maxCost: config.GRAPHQL_MAX_COST, exposeLimits: !production },
    maxAliases: { n: config.GRAPHQL_MAX_ALIASES, exposeLimits: !production },
    maxDirectives: { n: 50, exposeLimits: !production },
    // The token limit is graphql-js's own parse option (Apollo's parseOptions, and
    // ws.ts): armor's plugin parses again in a hook Apollo does not expect to throw, so
    // every syntax error became an HTTP 500 whose operation was never counted as ended.
    maxTokens: { enabled: false },
    blockFieldSuggestion: { enabled: production },
  });
  const p = armor.protect();
  return {
    // graphql-armor's plugin types clash with Apollo's ESM typings; they are the same shape.
    plugins: [...(p.plugins as unknown as ApolloServerPlugin[]), storableTextPlugin()],
    validationRules: [...(p.validationRules as unknown as ValidationRule[]), storableTextRule],
    maxTokens: config.GRAPHQL_MAX_TOKENS,
  };
}
