import { describe, expect, it } from "@jest/globals";
import { addressGroup } from "../../src/infra/client-address.js";

describe("addressGroup", () => {
  it.each([
    ["198.51.100.7", "198.51.100.7"],
    ["::ffff:198.51.100.7", "198.51.100.7"],
    ["::FFFF:127.0.0.1", "127.0.0.1"],
    ["2001:db8:0:1::5", "2001:db8:0:1::/64"],
    ["2001:db8:0:1:aaaa:bbbb:cccc:dddd", "2001:db8:0:1::/64"],
    ["2001:0db8:0000:0001:0:0:0:1", "2001:db8:0:1::/64"],
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["::1", "0:0:0:0::/64"],
    ["fe80::1%eth0", "fe80:0:0:0::/64"],
    ["64:ff9b::1.2.3.4", "64:ff9b:0:0::/64"],
    ["1:2:3:4:5:6:1.2.3.4", "1:2:3:4::/64"],
    ["unknown", "unknown"],
  ])("%s → %s", (ip, group) => {
    expect(addressGroup(ip)).toBe(group);
  });

  it("puts two addresses of one /64 together, and of neighbouring /64s apart", () => {
    expect(addressGroup("2001:db8:0:1::1")).toBe(addressGroup("2001:db8:0:1:ffff::2"));
    expect(addressGroup("2001:db8:0:1::1")).not.toBe(addressGroup("2001:db8:0:2::1"));
  });
});
