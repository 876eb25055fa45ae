// Which outbound URLs (webhooks, consent callbacks) are acceptable: http(s) only,
// and not on loopback, private, link-local or otherwise internal addresses unless
// ALLOW_PRIVATE_URLS is on (development and tests). Webhook delivery re-checks the
// resolved address at connect time, so a public name pointing inwards is refused too.
import { isIP } from "node:net";
import { badInput } from "./errors.js";

function ipv4ToInt(ip: string): number {
  return ip.split(".").reduce((acc, o) => (acc << 8) + Number(o), 0) >>> 0;
}

const V4_BLOCKED: [string, number][] = [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
];

export function isPrivateAddress(ip: string): boolean {
  const kind = isIP(ip);
  if (kind === 4) {
    const n = ipv4ToInt(ip);
    return V4_BLOCKED.some(([base, bits]) => (n >>> (32 - bits)) === (ipv4ToInt(base) >>> (32 - bits)));
  }
  if (kind === 6) {
    const lower = ip.toLowerCase();
    const mapped = /^::(?:ffff:)?(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
    if (mapped) return isPrivateAddress(mapped[1]);
    // new URL() rewrites [::ffff:127.0.0.1] as [::ffff:7f00:1]: judge the embedded IPv4 address.
    const hexMapped = /^::(?:ffff:)?([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower);
    if (hexMapped) {
      const [hi, lo] = [parseInt(hexMapped[1], 16), parseInt(hexMapped[2], 16)];
      return isPrivateAddress(`${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`);
    }
    return (
      lower === "::" ||
      lower === "::1" ||
      lower.startsWith("fc") ||
      lower.startsWith("fd") ||
      /^fe[89ab]/.test(lower) ||
      lower.startsWith("ff")
    );
  }
  return false;
}

function isInternalName(host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, "");
  return h === "localhost" || h.endsWith(".localhost") || h.endsWith(".local") || h.endsWith(".internal") || !h.includes(".");
}

/** Throws BAD_USER_INPUT naming `field` unless `raw` is an acceptable outbound URL. Returns it normalised. */
export function checkOutboundUrl(raw: string, field: string, allowPrivate: boolean): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw badInput(`${field} must be an absolute http(s) URL.`, field);
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") throw badInput(`${field} must use http or https, not ${u.protocol.replace(":", "")}.`, field);
  if (u.username || u.password) throw badInput(`${field} must not contain credentials.`, field);
  const host = u.hostname.replace(/^\[|\]$/g, "");
  if (!allowPrivate && (isPrivateAddress(host) || (!isIP(host) && isInternalName(host)))) {
    throw badInput(`${field} points at a private or loopback address, which is not allowed on this server.`, field);
  }
  return u.toString();
}
