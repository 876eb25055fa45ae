// Outbound URL policy (webhooks, consent callbacks): http(s) only, no credentials,
// nothing internal unless ALLOW_PRIVATE_URLS.
import { describe, expect, it } from "@jest/globals";
import { AppError } from "../../src/infra/errors.js";
import { checkOutboundUrl, isPrivateAddress } from "../../src/infra/url-policy.js";

describe("isPrivateAddress", () => {
  it.each([
    "0.0.0.0",
    "10.0.0.1",
    "10.255.255.255",
    "100.64.0.1",
    "127.0.0.1",
    "127.8.9.10",
    "169.254.169.254",
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.8",
    "192.168.1.1",
    "198.18.0.1",
    "224.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "febf::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.1.2.3",
    "::ffff:7f00:1",
    "::127.0.0.1", // IPv4-compatible (deprecated)
    "::a00:1",
    "64:ff9b::10.0.0.1", // NAT64 of a private IPv4 address
    "64:ff9b::7f00:1",
    "64:ff9b:1::1", // local-use NAT64
    "2002:a00:1::1", // 6to4 of 10.0.0.1
    "2002:c0a8:101::1", // 6to4 of 192.168.1.1
    "2001:0:4136:e378::1", // Teredo
    "2001:db8::1", // documentation
    "100::1", // discard-only
    "fec0::1", // the old site-local
    "fe80::1%eth0",
  ])("%s is private", (ip) => {
    expect(isPrivateAddress(ip)).toBe(true);
  });

  it.each(["8.8.8.8", "1.1.1.1", "9.255.255.255", "11.0.0.1", "100.63.255.255", "100.128.0.1", "172.15.255.255", "172.32.0.1", "192.167.1.1", "198.20.0.1", "223.255.255.255", "2606:4700:4700::1111", "2a00:1450::1", "::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:808:808::1", "fc0::1"])(
    "%s is public",
    (ip) => {
      expect(isPrivateAddress(ip)).toBe(false);
    },
  );

  it("is false for names (they are judged by checkOutboundUrl and at connect time)", () => {
    expect(isPrivateAddress("example.com")).toBe(false);
  });
});

function refusal(raw: string, allowPrivate = false): AppError {
  try {
    checkOutboundUrl(raw, "webhookUrl", allowPrivate);
  } catch (e) {
    if (e instanceof AppError) return e;
    throw e;
  }
  throw new Error(`expected ${raw} to be refused`);
}

describe("checkOutboundUrl", () => {
  it("accepts public http(s) URLs and returns them normalised", () => {
    expect(checkOutboundUrl("https://hooks.example.com/postbox", "webhookUrl", false)).toBe("https://hooks.example.com/postbox");
    expect(checkOutboundUrl("HTTPS://Example.COM", "webhookUrl", false)).toBe("https://example.com/");
    expect(checkOutboundUrl("http://93.184.216.34:8080/x?y=1", "webhookUrl", false)).toBe("http://93.184.216.34:8080/x?y=1");
  });

  it.each([
    ["not a url", /absolute http\(s\) URL/],
    ["/relative/path", /absolute http\(s\) URL/],
    ["ftp://example.com/x", /http or https, not ftp/],
    ["javascript:alert(1)", /http or https/],
    ["file:///etc/passwd", /http or https/],
    ["https://user:pass@example.com/", /credentials/],
    ["https://token@example.com/", /credentials/],
  ])("refuses %j", (raw, message) => {
    const e = refusal(raw);
    expect(e.code).toBe("BAD_USER_INPUT");
    expect(e.extensions.field).toBe("webhookUrl");
    expect(e.message).toMatch(message);
  });

  it.each([
    "http://localhost:3000/cb",
    "http://app.localhost/cb",
    "http://127.0.0.1/cb",
    "http://[::1]:8080/cb",
    "http://[::ffff:127.0.0.1]/cb",
    "http://10.1.2.3/cb",
    "http://169.254.169.254/latest/meta-data",
    "http://printer.local/",
    "http://db.internal/",
    "http://intranet/",
    "http://0.0.0.0/",
  ])("refuses the internal address %s unless private URLs are allowed", (raw) => {
    const e = refusal(raw);
    expect(e.code).toBe("BAD_USER_INPUT");
    expect(e.message).toMatch(/private or loopback/);
    expect(checkOutboundUrl(raw, "webhookUrl", true)).toBe(new URL(raw).toString());
  });

  it("still refuses other schemes and credentials when private URLs are allowed", () => {
    expect(refusal("ftp://localhost/", true).message).toMatch(/http or https/);
    expect(refusal("http://a:b@localhost/", true).message).toMatch(/credentials/);
  });
});
