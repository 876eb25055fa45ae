// Standard Webhooks signing (https://www.standardwebhooks.com): the secret is
// "whsec_" + base64 of random bytes; the signature is base64(HMAC-SHA256(key,
// "<webhook-id>.<webhook-timestamp>.<body>")) with the base64-decoded key, sent
// as "v1,<signature>". Also the retry schedule, so both are unit-testable alone.
import { createHmac, randomBytes } from "node:crypto";

export const SECRET_PREFIX = "whsec_";
/** Standard Webhooks asks for 24–64 bytes of key material. */
export const SECRET_BYTES = 32;

export function newWebhookSecret(): string {
  return SECRET_PREFIX + randomBytes(SECRET_BYTES).toString("base64");
}

export function secretKey(secret: string): Buffer {
  if (!secret.startsWith(SECRET_PREFIX)) throw new Error("webhook secret must start with whsec_");
  return Buffer.from(secret.slice(SECRET_PREFIX.length), "base64");
}

/** The `webhook-signature` header value for one attempt. */
export function signWebhook(secret: string, msgId: string, timestampSeconds: number, body: string): string {
  const mac = createHmac("sha256", secretKey(secret)).update(`${msgId}.${timestampSeconds}.${body}`).digest("base64");
  return `v1,${mac}`;
}

/** A secret replaced by a rotation, still signing until `until` (ISO time). */
export interface RetiredSecret {
  secret: string;
  until: string;
}

/** Retired secrets (as stored: a JSON list) whose overlap has not ended at `now`, oldest first. */
export function liveRetiredSecrets(stored: unknown, now: Date): RetiredSecret[] {
  if (!Array.isArray(stored)) return [];
  return stored.filter(
    (r): r is RetiredSecret => typeof r?.secret === "string" && r.secret.startsWith(SECRET_PREFIX) && typeof r.until === "string" && Date.parse(r.until) > now.getTime(),
  );
}

/** The `webhook-signature` header of an attempt: the current secret's signature, then each live retired one's. */
export function signatureHeader(secret: string, retired: unknown, msgId: string, timestampSeconds: number, body: string, now = new Date()): string {
  return [secret, ...liveRetiredSecrets(retired, now).map((r) => r.secret)].map((k) => signWebhook(k, msgId, timestampSeconds, body)).join(" ");
}

/**
 * Delay before each attempt (Svix's schedule): the first at once, then 5 s, 5 min,
 * 30 min, 2 h, 5 h, 10 h and 10 h. After the eighth failure the delivery is FAILED.
 */
export const RETRY_SCHEDULE_MS = [0, 5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000] as const;
export const MAX_ATTEMPTS = RETRY_SCHEDULE_MS.length;
/** ±20 %, so that deliveries failed together (an endpoint outage) do not all retry in the same instant. */
export const RETRY_JITTER = 0.2;

/**
 * Milliseconds to wait after `attemptsMade` failed attempts, or null when none are left.
 * `random` is injectable so the bounds can be tested.
 */
export function retryDelayMs(attemptsMade: number, random: () => number = Math.random): number | null {
  if (attemptsMade >= MAX_ATTEMPTS) return null;
  const base = RETRY_SCHEDULE_MS[Math.max(0, attemptsMade)];
  return Math.round(base * (1 + (random() * 2 - 1) * RETRY_JITTER));
}
