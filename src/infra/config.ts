// Configuration is read and validated once, here, at boot. Every variable is
// declared in SPEC with its documentation (the README table is generated from it
// by `npm run docs:config`); a bad value stops the server with a message naming it.
import path from "node:path";
import proxyaddr from "proxy-addr";

export class ConfigError extends Error {
  constructor(readonly variable: string, message: string) {
    super(`Invalid configuration: ${variable} ${message}`);
    this.name = "ConfigError";
  }
}

type Parser<T> = (raw: string, name: string) => T;

interface VarSpec<T> {
  doc: string;
  /** Shown in the docs; also the value used when the variable is unset (unless `defaultFn`). */
  default?: string;
  parse: Parser<T>;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "30m", "15s", "2h", "7d", "500ms", or a bare number of seconds. Returns milliseconds. */
export function parseDuration(raw: string, name = "duration"): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(raw);
  if (!m) throw new ConfigError(name, `must be a duration such as 30s, 15m, 2h or 7d (got "${raw}")`);
  const ms = Number(m[1]) * DURATION_UNITS[m[2] ?? "s"];
  if (!Number.isFinite(ms) || ms <= 0) throw new ConfigError(name, `must be a positive duration (got "${raw}")`);
  return Math.round(ms);
}

const BYTE_UNITS: Record<string, number> = { b: 1, kb: 1000, kib: 1024, mb: 1e6, mib: 1024 ** 2, gb: 1e9, gib: 1024 ** 3 };

/** "10MiB", "512KiB", "1000000" (bytes). */
export function parseBytes(raw: string, name = "size"): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(raw);
  const unit = BYTE_UNITS[(m?.[2] || "b").toLowerCase()];
  if (!m || unit === undefined) throw new ConfigError(name, `must be a size such as 10MiB or 1048576 (got "${raw}")`);
  const n = Math.floor(Number(m[1]) * unit);
  if (n <= 0) throw new ConfigError(name, `must be positive (got "${raw}")`);
  return n;
}

const str: Parser<string> = (raw) => raw;
const optionalStr: Parser<string | undefined> = (raw) => (raw === "" ? undefined : raw);
const duration: Parser<number> = (raw, name) => parseDuration(raw, name);
const durationOrOff: Parser<number> = (raw, name) => (/^\s*0+\s*(ms|s|m|h|d)?\s*$/.test(raw) ? 0 : parseDuration(raw, name));
const bytesUpTo =
  (max: number, maxText: string): Parser<number> =>
  (raw, name) => {
    const n = parseBytes(raw, name);
    if (n > max) throw new ConfigError(name, `must be at most ${maxText} (got "${raw}")`);
    return n;
  };
const bool: Parser<boolean> = (raw, name) => {
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(name, `must be true or false (got "${raw}")`);
};
/**
 * Which proxies may name the client (X-Forwarded-For): none, the nearest N, or those at
 * the listed addresses and ranges. Never "any": each proxy appends to the header what the
 * client sent, so trusting every hop lets a client pick its own address.
 */
export type TrustProxy = false | number | string[];
const trustProxy: Parser<TrustProxy> = (raw, name) => {
  if (/^(0|false|no|off)$/i.test(raw.trim())) return false;
  if (/^(true|yes|on)$/i.test(raw.trim())) return 1;
  if (/^\d+$/.test(raw.trim())) {
    const n = Number(raw);
    if (n > 10) throw new ConfigError(name, `must count at most 10 proxies (got "${raw}")`);
    return n;
  }
  const list = raw.split(",").map((s) => s.trim()).filter(Boolean);
  try {
    if (list.length === 0) throw new Error("the list is empty");
    proxyaddr.compile(list);
  } catch (e) {
    throw new ConfigError(name, `must be false, true (one proxy), how many proxies are in front (a number), or a comma-separated list of proxy addresses or CIDR ranges (loopback, linklocal and uniquelocal name those ranges); ${(e as Error).message} (got "${raw}")`);
  }
  return list;
};
const int =
  (min: number, max: number): Parser<number> =>
  (raw, name) => {
    const n = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || n < min || n > max)
      throw new ConfigError(name, `must be a whole number from ${min} to ${max} (got "${raw}")`);
    return n;
  };
const oneOf =
  <T extends string>(...values: T[]): Parser<T> =>
  (raw, name) => {
    if (!(values as string[]).includes(raw)) throw new ConfigError(name, `must be one of ${values.join(", ")} (got "${raw}")`);
    return raw as T;
  };
const url =
  (...protocols: string[]): Parser<string | undefined> =>
  (raw, name) => {
    if (raw === "") return undefined;
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw new ConfigError(name, `must be a URL (got a value that does not parse)`);
    }
    if (!protocols.includes(u.protocol)) throw new ConfigError(name, `must start with ${protocols.join(" or ")}`);
    return raw.replace(/\/+$/, "");
  };
const secret =
  (minLength: number): Parser<string | undefined> =>
  (raw, name) => {
    if (raw === "") return undefined;
    if (raw.length < minLength) throw new ConfigError(name, `must be at least ${minLength} characters long`);
    return raw;
  };

export const SPEC = {
  NODE_ENV: { doc: "`development`, `production` or `test`. Production turns off the Sandbox landing page and, unless `INTROSPECTION` says otherwise, introspection.", default: "development", parse: oneOf("development", "production", "test") },
  HOST: { doc: "Interface to listen on.", default: "0.0.0.0", parse: str },
  PORT: { doc: "HTTP and WebSocket port (GraphQL at `/graphql`).", default: "4000", parse: int(0, 65535) },
  PUBLIC_URL: { doc: "The server's address as users' browsers reach it; consent links are `<PUBLIC_URL>/consent/<code>`. Default `http://localhost:<PORT>`.", default: "", parse: url("http:", "https:") },
  DATA_DIR: { doc: "Folder for the embedded database (`<DATA_DIR>/db`) and server files (the generated admin token and server secret).", default: "./data", parse: (raw) => path.resolve(raw) },
  DATABASE_URL: { doc: "Unset: the embedded database. A `postgresql://` URL: that PostgreSQL server (needed to run several instances).", default: "", parse: url("postgresql:", "postgres:") },
  EMBEDDED_DB_SYNC: {
    doc: "Embedded database only: sync each commit to disk (fsync) before it is acknowledged, as PostgreSQL does, so that an operating-system crash or power loss loses no acknowledged push and cannot damage `<DATA_DIR>/db`. `false` skips the sync: a crash of the server process still loses nothing, but one of the machine may.",
    default: "true",
    parse: bool,
  },
  DATABASE_POOL_SIZE: { doc: "PostgreSQL connections per instance, 2 to 200. At least 2: while starting, one connection holds the migration lock while the migrations run on another.", default: "10", parse: int(2, 200) },
  REDIS_URL: { doc: "Unset: subscriptions are delivered in-process. A `redis://` URL: events cross instances through Redis, and so do rate-limit counts.", default: "", parse: url("redis:", "rediss:") },
  ADMIN_TOKEN: { doc: "Bearer token of the admin API the CLI uses (32+ characters). Unset: generated on first start into `<DATA_DIR>/admin-token` (mode 0600).", default: "", parse: secret(32) },
  SERVER_SECRET: { doc: "Key for the server's keyed hashes (idempotency fingerprints) and sealed key challenges, 32+ characters. Unset: generated into `<DATA_DIR>/server-secret`. Several instances must share one.", default: "", parse: secret(32) },
  LOG_LEVEL: { doc: "`fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`.", default: "info", parse: oneOf("fatal", "error", "warn", "info", "debug", "trace", "silent") },
  INTROSPECTION: { doc: "Allow schema introspection. Default: on, except when `NODE_ENV=production`.", default: "", parse: (raw, name) => (raw === "" ? undefined : bool(raw, name)) },
  TRUST_PROXY: {
    doc: "Behind a reverse proxy, which proxies may name the client in `X-Forwarded-For` (its address counts for rate limits and logs): `false` (none; the peer's address counts), `true` or `1` (the nearest proxy), a number of proxies in a chain, or a comma-separated list of proxy addresses and CIDR ranges (`loopback`, `linklocal`, `uniquelocal` name those ranges). Never every hop: a client could then choose its own address.",
    default: "false",
    parse: trustProxy,
  },
  SESSION_TTL: { doc: "Lifetime of a session key.", default: "30m", parse: duration },
  SESSION_RECHECK: {
    doc: "How long an instance answers from a session key it has verified before reading the session from the database again. `endSession`, disabling an application and rotating a contract's key take effect at once on every instance (through Redis with several); this only bounds the delay if that message is lost. `0`: read on every request.",
    default: "5s",
    parse: durationOrOff,
  },
  ASSERTION_MAX_SKEW: { doc: "How far a session assertion's `timestamp` may be from the server clock, either way.", default: "5m", parse: duration },
  CONSENT_TTL: { doc: "Lifetime of a postbox consent code.", default: "15m", parse: duration },
  POSTBOX_TTL_ONE_OFF: { doc: "Default lifetime of a postbox on a one-off contract.", default: "7d", parse: duration },
  POSTBOX_TTL_ONGOING: { doc: "Default lifetime of a postbox on an ongoing contract.", default: "365d", parse: duration },
  POSTBOX_MAX_TTL: { doc: "Longest lifetime an application may ask for.", default: "730d", parse: duration },
  USER_ACCESS_TTL: { doc: "Lifetime of a user's access token (refresh tokens live as long as the postbox).", default: "1h", parse: duration },
  MAX_PUSH_BYTES: {
    doc: "Largest file a push may carry (decoded size; ciphertext may be slightly larger), at most 1GiB: a push's whole request is held in memory. The HTTP body limit follows from it.",
    default: "10MiB",
    // Above a few GiB the body buffer cannot even be allocated; 1 GiB already needs ~3 GiB of memory per push in flight.
    parse: bytesUpTo(1024 ** 3, "1GiB"),
  },
  PUSH_RETENTION: { doc: "How long pushed content is kept after the user acknowledged it (postbox expiry still applies first).", default: "7d", parse: duration },
  DATA_REQUEST_TTL: { doc: "How long a request for data (`requestData`) waits for the user before it becomes EXPIRED (never beyond the postbox's expiry).", default: "7d", parse: duration },
  DATA_RESPONSE_RETENTION: { doc: "How long the encrypted answer to a data request is kept for the application to fetch (`dataResponse`); its size and hash stay.", default: "30d", parse: duration },
  AUDIT_RETENTION: { doc: "How long push metadata and audit events are kept.", default: "400d", parse: duration },
  SWEEP_INTERVAL: { doc: "How often expiry, purge and webhook work runs.", default: "5s", parse: duration },
  SHUTDOWN_GRACE: {
    doc: "On SIGTERM, how long the server waits for requests, uploads and downloads in flight before it closes their connections and the database. Keep it below your supervisor's kill timeout (Docker's is 10 s, Kubernetes' 30 s). A push cut off by it fails whole; the app retries it with the same `idempotencyKey`.",
    default: "9s",
    parse: duration,
  },
  WEBHOOK_TIMEOUT: { doc: "Time a webhook receiver has to answer.", default: "15s", parse: duration },
  WEBHOOK_RETENTION: { doc: "How long a finished webhook delivery (SUCCEEDED or FAILED) and its attempts stay in `webhookDeliveries`; then they are deleted.", default: "30d", parse: duration },
  WEBHOOK_SECRET_OVERLAP: {
    doc: "After rotateWebhookSecret, how long deliveries also carry a signature with the previous secret, so receivers can switch without rejecting any.",
    default: "24h",
    parse: duration,
  },
  ALLOW_PRIVATE_URLS: { doc: "Allow webhook and callback URLs on loopback and private networks (development and tests only).", default: "false", parse: bool },
  GRAPHQL_MAX_DEPTH: { doc: "Largest query depth.", default: "8", parse: int(1, 100) },
  GRAPHQL_MAX_COST: { doc: "Largest query cost (graphql-armor cost analysis).", default: "5000", parse: int(1, 1_000_000) },
  GRAPHQL_MAX_ALIASES: { doc: "Most aliases in one operation.", default: "15", parse: int(0, 1000) },
  GRAPHQL_MAX_TOKENS: { doc: "Most tokens in one document.", default: "2000", parse: int(10, 100_000) },
  WS_MAX_OPERATIONS: { doc: "Most operations (subscriptions included) one WebSocket connection may have running at once; one more is refused with RATE_LIMITED.", default: "100", parse: int(1, 100_000) },
  RATE_LIMIT_PER_MINUTE: { doc: "Requests per minute per client address on the unauthenticated entry points (createSession, consent, user token renewal), in whole-minute windows; with REDIS_URL counted across all instances. 0 turns it off.", default: "600", parse: int(0, 1_000_000) },
} satisfies Record<string, VarSpec<unknown>>;

type Spec = typeof SPEC;
type Parsed = { [K in keyof Spec]: ReturnType<Spec[K]["parse"]> };

/** SERVER_SECRET, which createApp fills in (from DATA_DIR) when it is unset; throws if it is still missing. */
export function requireServerSecret(secret: string | undefined): string {
  if (!secret) throw new Error("SERVER_SECRET is not set (createApp generates it into DATA_DIR when unset)");
  return secret;
}

/** Room in the HTTP body limit for everything but the file (see loadConfig). */
export const BODY_MARGIN_BYTES = 1024 * 1024;

export interface Config extends Omit<Parsed, "PUBLIC_URL" | "INTROSPECTION"> {
  PUBLIC_URL: string;
  INTROSPECTION: boolean;
  /** Largest HTTP request body, derived from MAX_PUSH_BYTES (base64 adds a third, plus BODY_MARGIN_BYTES). */
  BODY_LIMIT_BYTES: number;
}

export type Env = Record<string, string | undefined>;

/** Parses and validates the environment; throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(SPEC) as [string, VarSpec<unknown>][]) {
    const raw = env[name];
    out[name] = spec.parse(raw === undefined || raw.trim() === "" ? (spec.default ?? "") : raw.trim(), name);
  }
  const parsed = out as Parsed;
  const publicUrl = parsed.PUBLIC_URL ?? `http://localhost:${parsed.PORT}`;
  return {
    ...parsed,
    PUBLIC_URL: publicUrl,
    INTROSPECTION: parsed.INTROSPECTION ?? parsed.NODE_ENV !== "production",
    // The file as base64, plus the rest of the request: the largest descriptor (3 lists of
    // 100 entries of 256 characters, push.service.ts) is ~470 KB once a JSON encoder writes
    // every character as a \u escape (6 bytes), which some do for all non-ASCII text.
    BODY_LIMIT_BYTES: Math.ceil((parsed.MAX_PUSH_BYTES * 4) / 3) + BODY_MARGIN_BYTES,
  };
}
