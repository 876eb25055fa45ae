// Identifiers are a type prefix plus 128 random bits (base32, lower case), e.g.
// "pbx_7k2m…": readable in logs, unguessable, and safe in URLs.
import { randomBytesPooled } from "./crypto.js";

const ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";

export function base32(buf: Uint8Array): string {
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of buf) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

export type IdPrefix = "app" | "ctr" | "key" | "ses" | "evt" | "pbx" | "grt" | "psh" | "drq" | "drs" | "whe" | "msg" | "wha" | "uch";

export function newId(prefix: IdPrefix): string {
  return `${prefix}_${base32(randomBytesPooled(16))}`;
}
