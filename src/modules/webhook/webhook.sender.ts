// Sends one webhook request. Outbound requests are an SSRF risk: the URL was
// checked at registration, but DNS can change, so the address a name resolves
// to is checked again here, in the connector's lookup, which is the address the
// socket actually connects to (no check-then-resolve race).
import dns from "node:dns";
import type { LookupFunction } from "node:net";
import { Agent, request } from "undici";
import { checkOutboundUrl, isPrivateAddress } from "../../infra/url-policy.js";

export interface SendResult {
  /** HTTP status, when the receiver answered. */
  statusCode?: number;
  /** Why there is no 2xx answer (network error, timeout, refused address); never response content. */
  error?: string;
  durationMs: number;
}

export interface SenderOptions {
  timeoutMs: number;
  allowPrivate: boolean;
  userAgent: string;
  /** Test hook: the resolver behind the checked lookup (default dns.lookup). */
  resolve?: typeof dns.lookup;
}

/** Bytes of the receiver's answer read before the connection is dropped (it is not stored). */
export const MAX_RESPONSE_BYTES = 64 * 1024;

export class PrivateAddressError extends Error {
  readonly code = "EPRIVATEADDRESS";
  /**
   * Not in the message: the message is stored with the attempt, which the application
   * reads, and a name that resolves inwards (split-horizon DNS) would tell it the address.
   */
  readonly address: string;
  constructor(host: string, address: string) {
    super(`${host} resolves to a private or loopback address; refused (set ALLOW_PRIVATE_URLS for development).`);
    this.name = "PrivateAddressError";
    this.address = address;
  }
}

/** A dns.lookup replacement that refuses names resolving to any private address. */
export function checkedLookup(resolve: typeof dns.lookup = dns.lookup): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, { ...options, all: true }, (err, addresses) => {
      const list = addresses as unknown as dns.LookupAddress[];
      if (err) return (callback as (e: Error) => void)(err);
      if (!list?.length) return (callback as (e: Error) => void)(Object.assign(new Error(`${hostname} did not resolve`), { code: "ENOTFOUND" }));
      const bad = list.find((a) => isPrivateAddress(a.address));
      if (bad) return (callback as (e: Error) => void)(new PrivateAddressError(hostname, bad.address));
      if (options.all) return (callback as (e: null, a: dns.LookupAddress[]) => void)(null, list);
      callback(null, list[0].address, list[0].family);
    });
  };
}

export class WebhookSender {
  private readonly agent: Agent;

  constructor(private readonly opts: SenderOptions) {
    // With ALLOW_PRIVATE_URLS any address will do; otherwise every resolved address is checked.
    const lookup = opts.allowPrivate ? (opts.resolve as unknown as LookupFunction | undefined) : checkedLookup(opts.resolve);
    this.agent = new Agent({
      connect: { timeout: opts.timeoutMs, ...(lookup ? { lookup } : {}) },
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      keepAliveTimeout: 10_000,
    });
  }

  async send(url: string, headers: Record<string, string>, body: string, signal?: AbortSignal): Promise<SendResult> {
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    // The attempt's own signal: the shutdown signal or the time limit ends it. (Not
    // AbortSignal.any, which on Node 20 keeps every combined signal alive as long as the
    // shutdown signal lives: about 70 bytes per attempt, for the life of the process.)
    const limited = new AbortController();
    const onShutdown = () => limited.abort(signal?.reason);
    signal?.addEventListener("abort", onShutdown, { once: true });
    const timer = setTimeout(() => limited.abort(new DOMException(`no answer within ${this.opts.timeoutMs} ms`, "TimeoutError")), this.opts.timeoutMs);
    try {
      // Literal IPs never reach the lookup, so the URL itself is checked again too
      // (the policy may also have changed since the endpoint was registered).
      const u = new URL(checkOutboundUrl(url, "url", this.opts.allowPrivate));
      const res = await request(u, {
        method: "POST",
        headers: { ...headers, "user-agent": this.opts.userAgent },
        body,
        dispatcher: this.agent,
        signal: limited.signal,
      });
      // The answer is not used; read a little so the connection can be reused, never all of it.
      await res.body.dump({ limit: MAX_RESPONSE_BYTES }).catch(() => {});
      const ok = res.statusCode >= 200 && res.statusCode < 300;
      return { statusCode: res.statusCode, ...(ok ? {} : { error: res.statusCode >= 300 && res.statusCode < 400 ? `redirect (${res.statusCode}) not followed` : `HTTP ${res.statusCode}` }), durationMs: elapsed() };
    } catch (e) {
      return { error: describeError(e, this.opts.timeoutMs), durationMs: elapsed() };
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onShutdown);
    }
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}

/** The attempt record of a send this server aborted to shut down: not the receiver's failure. */
export const INTERRUPTED = "aborted: server shutting down";

/** A short, stable reason for the attempt record (never the response body). */
function describeError(e: unknown, timeoutMs: number): string {
  const err = e as { name?: string; code?: string; message?: string; cause?: unknown };
  if (err?.name === "TimeoutError" || err?.code === "UND_ERR_HEADERS_TIMEOUT" || err?.code === "UND_ERR_BODY_TIMEOUT" || err?.code === "UND_ERR_CONNECT_TIMEOUT") return `timeout: no answer within ${timeoutMs} ms`;
  if (err?.name === "AbortError") return INTERRUPTED;
  if (err instanceof PrivateAddressError || (err?.cause as Error | undefined) instanceof PrivateAddressError) return `refused: ${(err instanceof PrivateAddressError ? err : (err.cause as Error)).message}`;
  if (err?.code === "BAD_USER_INPUT" || (e as { extensions?: { code?: string } })?.extensions?.code === "BAD_USER_INPUT") return `refused: ${err.message}`;
  const msg = `${err?.code ? err.code + ": " : ""}${err?.message ?? String(e)}`;
  return msg.slice(0, 500);
}
