// Contract settings shared by `app create`, `contract add` and `contract update`.
import { ConfigError, parseDuration } from "../infra/config.js";
import { UsageError, type Ctx, type OptionSpec } from "./lib.js";

export const CONTRACT_OPTIONS: Record<string, OptionSpec> = {
  mode: { type: "string", value: "<ONE_OFF|ONGOING>", description: "Postbox mode: one delivery window (ONE_OFF, default) or a long-lived postbox (ONGOING)." },
  ttl: { type: "string", value: "<duration>", description: "Default lifetime of this contract's postboxes, e.g. 7d, 12h, 90m (default: POSTBOX_TTL_ONE_OFF or POSTBOX_TTL_ONGOING)." },
  "callback-url": { type: "string", multiple: true, value: "<url>", description: "A URL the user's browser may be sent back to after consent." },
};

export interface ContractSettingsBody {
  postboxMode?: "ONE_OFF" | "ONGOING";
  postboxTtlSeconds?: number;
  callbackUrls?: string[];
}

export function contractSettings(ctx: Ctx): ContractSettingsBody {
  const out: ContractSettingsBody = {};
  const mode = ctx.string("mode");
  if (mode !== undefined) {
    const m = mode.toUpperCase().replace("-", "_");
    if (m !== "ONE_OFF" && m !== "ONGOING") throw new UsageError(`--mode must be ONE_OFF or ONGOING (got "${mode}").`);
    out.postboxMode = m;
  }
  const ttl = ctx.string("ttl");
  if (ttl !== undefined) {
    try {
      out.postboxTtlSeconds = Math.round(parseDuration(ttl, "--ttl") / 1000);
    } catch (e) {
      if (e instanceof ConfigError) throw new UsageError(`--ttl must be a duration such as 7d, 12h or 90m (got "${ttl}").`);
      throw e;
    }
  }
  const urls = ctx.strings("callback-url");
  if (urls.length) out.callbackUrls = urls;
  return out;
}

export function kindOption(ctx: Ctx, fallback?: "WRITE" | "READ"): "WRITE" | "READ" {
  const raw = ctx.string("kind");
  if (raw === undefined) {
    if (fallback) return fallback;
    throw new UsageError("--kind is required (WRITE or READ).");
  }
  const k = raw.toUpperCase();
  if (k !== "WRITE" && k !== "READ") throw new UsageError(`--kind must be WRITE or READ (got "${raw}").`);
  return k;
}
