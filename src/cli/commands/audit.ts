// `npm run cli -- audit …`: the audit log's hash chain, through the admin API.
import { CliError, defineGroup } from "../lib.js";

/** How long `audit verify` waits for the server's walk of the chain. */
const VERIFY_TIMEOUT_MS = 2 * 60 * 60 * 1000;

interface VerifyResult {
  ok: boolean;
  checked: number;
  anchor?: { seq: string; id: string; prunedBy: string };
  head?: { seq: string; id: string; hash: string; at: string };
  prunedCheckpoints?: string[];
  firstBroken?: { seq: string | null; id: string | null; problem: string };
}

function describeResult(r: VerifyResult): string {
  if (!r.ok) return `The audit chain is BROKEN after ${r.checked} good event(s).`;
  const lines = [`The audit chain verifies: ${r.checked} event(s), each linked to the one before it, up to the head.`];
  if (r.anchor) lines.push(`It starts at event ${r.anchor.seq} (${r.anchor.id}); older events were pruned by retention (recorded by ${r.anchor.prunedBy}).`);
  if (r.prunedCheckpoints?.length) lines.push(`Checkpoints older than the kept log (pruned, not checked): ${r.prunedCheckpoints.join(", ")}.`);
  if (r.head) lines.push(`Checkpoint: ${r.head.seq}:${r.head.hash}@${r.head.at}`, "Keep it outside this server and pass it back with --checkpoint to show that nothing up to it was deleted or rewritten since.");
  return lines.join("\n");
}

export default defineGroup({
  summary: "The audit log: verify its hash chain.",
  commands: {
    verify: {
      summary: "Check every event's hash and its link to the event before it; name the first broken link.",
      options: {
        checkpoint: {
          type: "string",
          multiple: true,
          value: "<seq>:<hash>@<time>",
          description: "A checkpoint an earlier run printed: that event must still be there, with that hash, unless it is older than AUDIT_RETENTION.",
        },
      },
      help: [
        "Exit status 0 when the chain verifies, 1 when it does not (stderr names the first broken event: its seq, id and what is wrong).",
        "The chain must also reach the hash the database's head row records, so deleting the newest events is caught; someone",
        "who can also rewrite the head row is caught by a checkpoint: each run prints one (<seq>:<hash>@<time>, the newest",
        "event); keep it somewhere else and pass it back later with --checkpoint. A checkpoint gone from the log passes only",
        "when it is older than AUDIT_RETENTION (pruned); a younger one fails, whatever audit.prune event claims its removal.",
        "With --json the result is printed as one JSON object either way: { ok, checked, head?, anchor?, prunedCheckpoints?, firstBroken? }.",
      ].join("\n"),
      async run(ctx) {
        const query = ctx.strings("checkpoint").map((c) => `checkpoint=${encodeURIComponent(c)}`).join("&");
        // One walk of the whole chain: about 24 µs an event on PostgreSQL, so 30 s covered only
        // ~1.2 million events. Two hours cover some 300 million.
        const r = await ctx.admin.get<VerifyResult>(`/audit/verify${query ? `?${query}` : ""}`, { timeoutMs: VERIFY_TIMEOUT_MS });
        ctx.print(r, describeResult);
        if (!r.ok) {
          const b = r.firstBroken;
          throw new CliError(!b ? "audit chain broken." : b.seq ? `audit chain broken at event seq ${b.seq} (${b.id}): ${b.problem}.` : `audit chain broken: ${b.problem}.`);
        }
      },
    },
  },
});
