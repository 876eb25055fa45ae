// Loads the operations in test/documents/*.graphql by name, with the fragments
// they use, so tests send exactly the documents that codegen typed:
//   t.gql<CreateSessionMutation>(operation("CreateSession"), { input })
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Kind, parse, print, visit, type DefinitionNode, type FragmentDefinitionNode, type OperationDefinitionNode } from "graphql";

const dir = fileURLToPath(new URL(".", import.meta.url));

let cache: { operations: Map<string, OperationDefinitionNode>; fragments: Map<string, FragmentDefinitionNode> } | undefined;

function load() {
  if (cache) return cache;
  const operations = new Map<string, OperationDefinitionNode>();
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".graphql")).sort()) {
    for (const def of parse(readFileSync(`${dir}/${file}`, "utf8")).definitions) {
      if (def.kind === Kind.OPERATION_DEFINITION) {
        if (!def.name) throw new Error(`${file}: every operation needs a name`);
        if (operations.has(def.name.value)) throw new Error(`${file}: operation ${def.name.value} is defined twice`);
        operations.set(def.name.value, def);
      } else if (def.kind === Kind.FRAGMENT_DEFINITION) {
        fragments.set(def.name.value, def);
      }
    }
  }
  return (cache = { operations, fragments });
}

/** The named operation as a GraphQL string, including the fragments it spreads. */
export function operation(name: string): string {
  const { operations, fragments } = load();
  const op = operations.get(name);
  if (!op) throw new Error(`No operation ${name} in test/documents/*.graphql`);
  const needed = new Map<string, FragmentDefinitionNode>();
  const collect = (node: DefinitionNode) =>
    visit(node, {
      FragmentSpread(spread) {
        const f = fragments.get(spread.name.value);
        if (!f) throw new Error(`Operation ${name} uses unknown fragment ${spread.name.value}`);
        if (!needed.has(f.name.value)) {
          needed.set(f.name.value, f);
          collect(f);
        }
      },
    });
  collect(op);
  return [op, ...needed.values()].map((d) => print(d)).join("\n\n");
}
