// Builds the type-graphql schema from resolver instances that the entry point
// constructed with their services (a minimal container: class → instance).
import { buildSchema, type NonEmptyArray } from "type-graphql";
import type { GraphQLSchema } from "graphql";
import type { AppPubSub } from "../pubsub.js";

export async function buildAppSchema(resolvers: object[], pubSub: AppPubSub, emitSchemaFile?: string): Promise<GraphQLSchema> {
  const byClass = new Map<unknown, object>(resolvers.map((r) => [r.constructor, r]));
  return buildSchema({
    resolvers: resolvers.map((r) => r.constructor) as unknown as NonEmptyArray<Function>,
    container: {
      get(someClass: unknown) {
        const instance = byClass.get(someClass);
        if (!instance) throw new Error(`No instance registered for resolver ${(someClass as { name?: string }).name}`);
        return instance;
      },
    },
    pubSub,
    validate: { forbidUnknownValues: false, stopAtFirstError: false },
    emitSchemaFile: emitSchemaFile ? { path: emitSchemaFile, sortedSchema: true } : false,
  });
}
