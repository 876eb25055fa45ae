// `contract` commands: add a contract (e.g. the READ contract) to an application,
// and change a contract's postbox settings.
import { defineGroup, formatSeconds, PROG, UsageError } from "../lib.js";
import { KEY_OPTIONS } from "../keys.js";
import { CONTRACT_OPTIONS, contractSettings, kindOption } from "../contract-options.js";
import { privateKeyNote, withKey } from "./app.js";

export default defineGroup({
  summary: "Add contracts to an application and change their settings.",
  commands: {
    add: {
      summary: "Add a contract with its own key to an application (e.g. a READ contract for data users send back).",
      args: ["appId"],
      usage:
        "<appId> --kind WRITE|READ (--public-key <file> | --generate-key <out-file>) [--alg PS512|PS256|ES256] [--name <name>] [--mode ONE_OFF|ONGOING] [--ttl <duration>] [--callback-url <url>]...",
      options: {
        kind: { type: "string", value: "<WRITE|READ>", description: "WRITE pushes data to users; READ receives data users send back (its key must be RSA or P-256, as users encrypt to it)." },
        ...KEY_OPTIONS,
        name: { type: "string", value: "<name>", description: "A label for the contract." },
        ...CONTRACT_OPTIONS,
      },
      async run(ctx) {
        const appId = ctx.args.appId;
        const kind = kindOption(ctx);
        const name = ctx.string("name");
        const settings = contractSettings(ctx);
        const { result, privateKeyFile } = await withKey(ctx, (key) =>
          ctx.admin.post<{ contractId: string; kind: string; keyId: string; alg: string }>(`/applications/${encodeURIComponent(appId)}/contracts`, {
            kind,
            ...(name ? { name } : {}),
            ...settings,
            ...key,
          }),
          `\`${PROG} app show ${appId}\``,
        );
        const out = { appId, ...result, ...(privateKeyFile ? { privateKeyFile } : {}) };
        ctx.print(out, (o) =>
          [`Added ${o.kind} contract ${o.contractId} to ${o.appId}, key ${o.keyId} (${o.alg}).`, ...(o.privateKeyFile ? [privateKeyNote(o.privateKeyFile)] : [])].join("\n"),
        );
      },
    },

    update: {
      summary: "Change a contract's postbox mode, default postbox lifetime or callback URLs.",
      args: ["contractId"],
      usage: "<contractId> [--mode ONE_OFF|ONGOING] [--ttl <duration>] [--callback-url <url>]... [--clear-callback-urls]",
      options: {
        ...CONTRACT_OPTIONS,
        "clear-callback-urls": { type: "boolean", description: "Remove every callback URL." },
      },
      help: "--callback-url replaces the whole list with the URLs given.",
      async run(ctx) {
        const settings = contractSettings(ctx);
        if (ctx.flag("clear-callback-urls")) {
          if (settings.callbackUrls) throw new UsageError("Give --callback-url or --clear-callback-urls, not both.");
          settings.callbackUrls = [];
        }
        if (Object.keys(settings).length === 0) throw new UsageError("Nothing to change: give --mode, --ttl, --callback-url or --clear-callback-urls.");
        const updated = await ctx.admin.patch<{ contractId: string; postboxMode: string; postboxTtlSeconds: number; callbackUrls: string[] }>(
          `/contracts/${encodeURIComponent(ctx.args.contractId)}`,
          settings,
        );
        ctx.print(updated, (c) =>
          [`Updated contract ${c.contractId}.`, `  mode           ${c.postboxMode}`, `  postbox ttl    ${formatSeconds(c.postboxTtlSeconds)}`, `  callback URLs  ${c.callbackUrls.join(", ") || "none"}`].join("\n"),
        );
      },
    },
  },
});
