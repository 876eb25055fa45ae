// `npm run cli -- audit …`: the audit log's hash chain, through the admin API.
import { CliError, defineGroup } from "../lib.js";

interface VerifyResult {
  ok: boolean;
  checked: number;
  anchor?: { seq: string; id: string; prunedBy: string };
  firstBroken?: { seq: string; id: string; problem: string };
}

function describeResult(r: VerifyResult): string {
  if (!r.ok) return `The audit chain is BROKEN after ${r.checked} good event(s).`;
  const anchor = r.anchor ? ` It starts at event ${r.anchor.seq} (${r.anchor.id}); older events were pruned by retention (recorded by ${r.anchor.prunedBy}).` : "";
  return `The audit chain verifies: ${r.checked} event(s), each linked to the one before it.${anchor}`;
}

export default defineGroup({
  summary: "The audit log: verify its hash chain.",
  commands: {
    verify: {
      summary: "Check every event's hash and its link to the event before it; name the first broken link.",
      help: [
        "Exit status 0 when the chain verifies, 1 when it does not (stderr names the first broken event: its seq, id and what is wrong).",
        "With --json the result is printed as one JSON object either way: { ok, checked, anchor?, firstBroken? }.",
      ].join("\n"),
      async run(ctx) {
        const r = await ctx.admin.get<VerifyResult>("/audit/verify");
        ctx.print(r, describeResult);
        if (!r.ok) {
          const b = r.firstBroken;
          throw new CliError(b ? `audit chain broken at event seq ${b.seq} (${b.id}): ${b.problem}.` : "audit chain broken.");
        }
      },
    },
  },
});
