// The unit in which unauthenticated requests are counted and told apart (rate limits,
// open key challenges): an IPv4 address, or an IPv6 address's /64. One subscriber or
// host usually gets a whole /64, so counting single IPv6 addresses would give anyone
// 2^64 fresh identities.
import { isIPv4, isIPv6 } from "node:net";

/** `ip` as its counting group: IPv4 as it is (also when mapped into IPv6), IPv6 as its /64 ("2001:db8:0:1::/64"). */
export function addressGroup(ip: string): string {
  const bare = ip.split("%")[0]; // a zone index (fe80::1%eth0) is not part of the address
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(bare);
  if (mapped && isIPv4(mapped[1])) return mapped[1];
  if (!isIPv6(bare)) return ip;
  const [head, tail] = bare.split("::");
  const groups = (part: string | undefined) => (part ? part.split(":") : []);
  // A dotted IPv4 tail (::ffff:… aside, e.g. 64:ff9b::1.2.3.4) takes two groups.
  const width = (gs: string[]) => gs.reduce((n, g) => n + (g.includes(".") ? 2 : 1), 0);
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? h : [...h, ...Array(8 - width(h) - width(t)).fill("0"), ...t];
  return `${all
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(":")}::/64`;
}
