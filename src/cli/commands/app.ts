// `app` commands: register applications, list and inspect them, disable/enable,
// rotate a contract's key. All through the admin API (/admin/applications…).
import { calculateJwkThumbprint, type JWK } from "jose";
import { ApiError, certainlyNotDone, CliError, defineGroup, formatSeconds, PROG, table, type Ctx } from "../lib.js";
import { chooseKey, KEY_OPTIONS } from "../keys.js";
import { CONTRACT_OPTIONS, contractSettings, kindOption } from "../contract-options.js";

export interface KeyView {
  keyId: string;
  alg: string;
  createdAt: string;
  revokedAt: string | null;
}

export interface ContractView {
  contractId: string;
  kind: string;
  name: string | null;
  postboxMode: string;
  postboxTtlSeconds: number;
  callbackUrls: string[];
  webhookUrl: string | null;
  keys: KeyView[];
}

export interface AppView {
  appId: string;
  name: string;
  createdAt: string;
  disabledAt: string | null;
  contracts: ContractView[];
}

interface Created {
  appId: string;
  name: string;
  contractId: string;
  kind: string;
  keyId: string;
  alg: string;
}

/**
 * Registers a key-carrying request. A generated private key file is removed only when
 * the request certainly was not carried out (the server refused it, or it never left).
 * When the answer is lost (timeout, dropped connection, 5xx) the server may have
 * registered the key, and revoked the old ones on a rotation: the file may then be the
 * only copy of the contract's private key, so it stays, and the error says how to check.
 * `check` says which command shows whether the key was registered.
 */
export async function withKey<T>(
  ctx: Ctx,
  send: (key: { publicKey: unknown; alg?: string }) => Promise<T>,
  check: string,
): Promise<{ result: T; privateKeyFile?: string }> {
  const key = await chooseKey(ctx);
  try {
    return { result: await send({ publicKey: key.publicKey, alg: key.alg }), privateKeyFile: key.privateKeyFile };
  } catch (e) {
    if (!key.privateKeyFile) throw e;
    if (certainlyNotDone(e)) {
      await key.discard();
      throw e;
    }
    const keyId = await calculateJwkThumbprint(key.publicKey as JWK, "sha256");
    const cause = e instanceof ApiError ? `${e.message} [${e.code}]` : e instanceof Error ? e.message : String(e);
    throw new CliError(
      [
        cause,
        `No clear answer came back, so the server may have registered the new key ${keyId} all the same. Its private key stays in ${key.privateKeyFile}.`,
        `Check with ${check}: if key ${keyId} is listed (not revoked), the request went through and that file is the key to hand over;`,
        `if it is not, delete the file and run the command again.`,
      ].join("\n"),
    );
  }
}

export function privateKeyNote(file: string): string {
  return `Private key written to ${file} (mode 0600). Hand it to the application over a secure channel; the server keeps only the public key.`;
}

export function describeApp(a: AppView): string {
  const lines = [`${a.appId}  ${JSON.stringify(a.name)}  ${a.disabledAt ? `DISABLED since ${a.disabledAt}` : "enabled"}  (created ${a.createdAt})`];
  for (const c of a.contracts) {
    lines.push(`  contract ${c.contractId}  ${c.kind}${c.name ? `  ${JSON.stringify(c.name)}` : ""}  ${c.postboxMode}  postbox ttl ${formatSeconds(c.postboxTtlSeconds)}`);
    lines.push(`    callback URLs: ${c.callbackUrls.length ? c.callbackUrls.join(", ") : "none"}`);
    lines.push(`    webhook: ${c.webhookUrl ?? "none"}`);
    for (const k of c.keys) lines.push(`    key ${k.keyId}  ${k.alg}  ${k.revokedAt ? `revoked ${k.revokedAt}` : `active since ${k.createdAt}`}`);
  }
  return lines.join("\n");
}

export default defineGroup({
  summary: "Register and manage applications (and their first contract).",
  commands: {
    create: {
      summary: "Register an application with its first contract and public key.",
      usage:
        "--name <name> (--public-key <file> | --generate-key <out-file>) [--alg PS512|PS256|ES256|EdDSA] [--kind WRITE|READ] [--mode ONE_OFF|ONGOING] [--ttl <duration>] [--callback-url <url>]...",
      options: {
        name: { type: "string", value: "<name>", description: "The application's name (1–200 characters)." },
        ...KEY_OPTIONS,
        kind: { type: "string", value: "<WRITE|READ>", description: "The first contract's kind: WRITE pushes data to users (default), READ receives data from them." },
        ...CONTRACT_OPTIONS,
      },
      help: [
        "Prints appId and contractId (with --json: one JSON object with appId, contractId, keyId, alg,",
        "and privateKeyFile when a key was generated). The application then signs createSession",
        "assertions with its private key; see examples/sign-assertion.mjs.",
        "",
        "Examples:",
        "  npm run cli -- app create --name \"Acme\" --generate-key ./acme-private.pem --json",
        "  npm run cli -- app create --name \"Acme\" --public-key ./acme-public.pem --alg PS256",
      ].join("\n"),
      async run(ctx) {
        const name = ctx.requireString("name");
        const kind = kindOption(ctx, "WRITE");
        const settings = contractSettings(ctx);
        const { result, privateKeyFile } = await withKey(ctx, (key) => ctx.admin.post<Created>("/applications", { name, kind, ...settings, ...key }), `\`${PROG} app list --json\``);
        const out = { appId: result.appId, contractId: result.contractId, name: result.name, kind: result.kind, keyId: result.keyId, alg: result.alg, ...(privateKeyFile ? { privateKeyFile } : {}) };
        ctx.print(out, (o) =>
          [
            `Registered application ${JSON.stringify(o.name)}.`,
            `  appId       ${o.appId}`,
            `  contractId  ${o.contractId} (${o.kind})`,
            `  key         ${o.keyId} (${o.alg})`,
            ...(o.privateKeyFile ? ["", privateKeyNote(o.privateKeyFile)] : []),
          ].join("\n"),
        );
      },
    },

    list: {
      summary: "List applications.",
      async run(ctx) {
        const apps = await ctx.admin.get<AppView[]>("/applications");
        ctx.print(apps, (list) =>
          list.length === 0
            ? "No applications yet. Register one with `npm run cli -- app create --name <name> --generate-key <out-file>`."
            : table(
                ["APP ID", "STATUS", "CONTRACTS", "NAME"],
                list.map((a) => [a.appId, a.disabledAt ? "disabled" : "enabled", a.contracts.map((c) => `${c.contractId} (${c.kind})`).join(", "), a.name]),
              ),
        );
      },
    },

    show: {
      summary: "Show an application with its contracts and keys.",
      args: ["appId"],
      async run(ctx) {
        const app = await ctx.admin.get<AppView>(`/applications/${encodeURIComponent(ctx.args.appId)}`);
        ctx.print(app, describeApp);
      },
    },

    disable: {
      summary: "Disable an application: it can no longer create sessions, and its open sessions end (enabling it again does not bring them back).",
      args: ["appId"],
      async run(ctx) {
        const app = await ctx.admin.post<AppView>(`/applications/${encodeURIComponent(ctx.args.appId)}/disable`);
        ctx.print(app, (a) => `Application ${a.appId} is disabled (since ${a.disabledAt}).`);
      },
    },

    enable: {
      summary: "Enable a disabled application again.",
      args: ["appId"],
      async run(ctx) {
        const app = await ctx.admin.post<AppView>(`/applications/${encodeURIComponent(ctx.args.appId)}/enable`);
        ctx.print(app, (a) => `Application ${a.appId} is enabled.`);
      },
    },

    "rotate-key": {
      summary: "Register a new key for a contract; its previous keys stop being accepted at once.",
      args: ["contractId"],
      usage: "<contractId> (--public-key <file> | --generate-key <out-file>) [--alg PS512|PS256|ES256|EdDSA]",
      options: { ...KEY_OPTIONS },
      help: "The contract's open sessions end too (a rotated key may have leaked): the application signs new ones with the new key.",
      async run(ctx) {
        const contractId = ctx.args.contractId;
        const { result, privateKeyFile } = await withKey(ctx, (key) =>
          ctx.admin.post<{ contractId: string; keyId: string; alg: string; sessionsEnded: number }>(`/contracts/${encodeURIComponent(contractId)}/keys`, key),
          `\`${PROG} app show <appId>\` for the application of contract ${contractId} (\`${PROG} app list\` names it)`,
        );
        const out = { ...result, ...(privateKeyFile ? { privateKeyFile } : {}) };
        ctx.print(out, (o) =>
          [`Contract ${o.contractId} now accepts only key ${o.keyId} (${o.alg}); ${o.sessionsEnded} open session(s) ended.`, ...(o.privateKeyFile ? [privateKeyNote(o.privateKeyFile)] : [])].join("\n"),
        );
      },
    },
  },
});
