// `npm run cli -- webhook …`: a contract's webhook endpoint, through the admin API.
import { defineGroup, table, type Ctx } from "../lib.js";

interface Registration {
  contractId: string;
  url: string;
  secret: string;
  createdAt: string;
  previousSecretValidUntil?: string | null;
}

interface Attempt {
  number: number;
  at: string;
  statusCode: number | null;
  error: string | null;
  durationMs: number;
}

interface Delivery {
  id: string;
  eventType: string;
  status: string;
  createdAt: string;
  nextAttemptAt: string | null;
  completedAt: string | null;
  attempts: Attempt[];
}

const contractPath = (ctx: Ctx) => `/contracts/${encodeURIComponent(ctx.args.contractId)}/webhook`;

function showRegistration(r: Registration): string {
  return [
    `Webhook for contract ${r.contractId}: ${r.url}`,
    `Signing secret (shown only now; store it with the receiver): ${r.secret}`,
    `Deliveries are signed per Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature).`,
    ...(r.previousSecretValidUntil ? [`Until ${r.previousSecretValidUntil} they also carry a signature made with the previous secret.`] : []),
  ].join("\n");
}

export default defineGroup({
  summary: "A contract's webhook endpoint: register, rotate its secret, remove, list deliveries.",
  commands: {
    set: {
      summary: "Register (or replace) the contract's webhook URL; prints a new signing secret once.",
      args: ["contractId", "url"],
      help: "The URL must be http(s) and, unless the server runs with ALLOW_PRIVATE_URLS=true, not on a private or loopback address.",
      async run(ctx) {
        const r = await ctx.admin.request<Registration>("PUT", contractPath(ctx), { url: ctx.args.url });
        ctx.print(r, showRegistration);
      },
    },
    show: {
      summary: "Show the contract's webhook URL and whether it is disabled (never the secret).",
      args: ["contractId"],
      async run(ctx) {
        const r = await ctx.admin.get<{ contractId: string; webhook: { url: string; createdAt: string; disabledAt: string | null; disabledReason: string | null } | null }>(contractPath(ctx));
        ctx.print(r, (v) =>
          v.webhook
            ? `Webhook for contract ${v.contractId}: ${v.webhook.url} (registered ${v.webhook.createdAt})${v.webhook.disabledAt ? `\nDisabled at ${v.webhook.disabledAt}: ${v.webhook.disabledReason}` : ""}`
            : `Contract ${v.contractId} has no webhook.`,
        );
      },
    },
    "rotate-secret": {
      summary: "Replace the signing secret; prints the new one once.",
      args: ["contractId"],
      async run(ctx) {
        const r = await ctx.admin.post<Registration>(`${contractPath(ctx)}/rotate-secret`);
        ctx.print(r, showRegistration);
      },
    },
    delete: {
      summary: "Remove the contract's webhook endpoint and its delivery history.",
      args: ["contractId"],
      async run(ctx) {
        const r = await ctx.admin.delete<{ contractId: string; deleted: boolean }>(contractPath(ctx));
        ctx.print(r, (v) => `Webhook of contract ${v.contractId} removed.`);
      },
    },
    deliveries: {
      summary: "List the contract's webhook deliveries and their attempts, newest first.",
      args: ["contractId"],
      options: {
        status: { type: "string", value: "<PENDING|SUCCEEDED|FAILED>", description: "Only deliveries with this status." },
        first: { type: "string", value: "<n>", description: "How many (1–100, default 20)." },
        after: { type: "string", value: "<cursor>", description: "Continue after this cursor (endCursor of the previous page)." },
      },
      async run(ctx) {
        const q = new URLSearchParams();
        for (const k of ["status", "first", "after"]) {
          const v = ctx.string(k);
          if (v !== undefined) q.set(k, v);
        }
        const r = await ctx.admin.get<{ contractId: string; deliveries: Delivery[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } }>(
          `${contractPath(ctx)}/deliveries${q.size ? `?${q}` : ""}`,
        );
        ctx.print(r, (v) => {
          if (!v.deliveries.length) return `No webhook deliveries for contract ${v.contractId}.`;
          const rows = v.deliveries.map((d) => {
            const last = d.attempts[d.attempts.length - 1];
            return [d.id, d.eventType, d.status, String(d.attempts.length), last ? (last.statusCode !== null ? String(last.statusCode) : (last.error ?? "")) : "", d.createdAt, d.nextAttemptAt ?? ""];
          });
          const more = v.pageInfo.hasNextPage ? `\nMore: --after ${v.pageInfo.endCursor}` : "";
          return table(["ID", "EVENT", "STATUS", "ATTEMPTS", "LAST RESULT", "CREATED", "NEXT ATTEMPT"], rows) + more;
        });
      },
    },
  },
});
