// Which outbound URLs (webhooks, consent callbacks) are acceptable: http(s) only,
// and not on loopback, private, link-local or otherwise internal addresses unless
// ALLOW_PRIVATE_URLS is on (development and tests). Webhook delivery re-checks the
// resolved address at connect time, so a public name pointing inwards is refused too.
import { isIP } from "node:net";
import { ipv6Groups } from "./client-address.js";
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
    const g = ipv6Groups(ip);
    if (!g) return true;
    const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
    const zeros = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
    // ::/96 holds ::, ::1 and the old IPv4-compatible form; ::ffff:0:0/96 IPv4-mapped
    // addresses (new URL() writes [::ffff:127.0.0.1] as [::ffff:7f00:1]); 64:ff9b::/96
    // NAT64, which a network with DNS64 translates to the IPv4 address inside: each is
    // judged by the IPv4 address it carries (and :: and ::1 are refused as such).
    if (zeros(0, 6)) return g[6] === 0 && g[7] <= 1 ? true : isPrivateAddress(v4(g[6], g[7]));
    if (zeros(0, 5) && g[5] === 0xffff) return isPrivateAddress(v4(g[6], g[7]));
    if (g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6)) return isPrivateAddress(v4(g[6], g[7]));
    // 6to4 (2002::/16) carries an IPv4 address in its next 32 bits.
    if (g[0] === 0x2002) return isPrivateAddress(v4(g[1], g[2]));
    return (
      (g[0] === 0x64 && g[1] === 0xff9b && g[2] === 1) || // 64:ff9b:1::/48, local-use NAT64
      (g[0] === 0x100 && zeros(1, 4)) || // 100::/64, discard-only
      (g[0] === 0x2001 && g[1] === 0) || // 2001::/32, Teredo (the IPv4 address inside is obscured)
      (g[0] === 0x2001 && g[1] === 0xdb8) || // 2001:db8::/32, documentation
      (g[0] & 0xfe00) === 0xfc00 || // fc00::/7, unique local
      (g[0] & 0xffc0) === 0xfe80 || // fe80::/10, link-local
      (g[0] & 0xffc0) === 0xfec0 || // fec0::/10, the old site-local
      (g[0] & 0xff00) === 0xff00 // ff00::/8, multicast
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
