// The unit in which unauthenticated requests are counted and told apart (rate limits,
// open key challenges): an IPv4 address, or an IPv6 address's /64. One subscriber or
// host usually gets a whole /64, so counting single IPv6 addresses would give anyone
// 2^64 fresh identities.
import { isIPv4, isIPv6 } from "node:net";

/** An IPv6 address's eight 16-bit groups (a dotted IPv4 tail as two), or null if `ip` is not IPv6. */
export function ipv6Groups(ip: string): number[] | null {
  const bare = ip.split("%")[0]; // a zone index (fe80::1%eth0) is not part of the address
  if (!isIPv6(bare)) return null;
  const parse = (part: string | undefined): number[] =>
    (part ? part.split(":") : []).flatMap((g) => {
      if (!g.includes(".")) return [parseInt(g, 16)];
      const [a, b, c, d] = g.split(".").map(Number);
      return [(a << 8) | b, (c << 8) | d];
    });
  const [head, tail] = bare.split("::");
  const h = parse(head);
  if (tail === undefined) return h;
  const t = parse(tail);
  return [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t];
}

/** `ip` as its counting group: IPv4 as it is (also when mapped into IPv6), IPv6 as its /64 ("2001:db8:0:1::/64"). */
export function addressGroup(ip: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  if (mapped && isIPv4(mapped[1])) return mapped[1];
  const groups = ipv6Groups(ip);
  if (!groups) return ip;
  return `${groups
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(":")}::/64`;
}
