import { describe, expect, test } from "bun:test";
import { AllowedIps, formatIp, innerAddresses, parseIp, parsePrefix } from "../../../app/net/wireguard/allowedips.ts";
import { ipv4Udp, ipv6Udp } from "./helpers.ts";

describe("IP text forms", () => {
  const ok: [string, string][] = [
    ["10.0.0.1", "10.0.0.1"],
    ["0.0.0.0", "0.0.0.0"],
    ["::", "::"],
    ["::1", "::1"],
    ["fd10:100::2", "fd10:100::2"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["FE80::A", "fe80::a"],
    ["::ffff:192.0.2.1", "::ffff:c000:201"],
    ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
  ];
  for (const [input, out] of ok) test(`parses ${input}`, () => expect(formatIp(parseIp(input)!)).toBe(out));
  for (const bad of ["", "1.2.3", "1.2.3.256", "1.2.3.4.5", "01234.1.1.1", "1::2::3", "1:2:3:4:5:6:7:8:9", "g::1", "1:2:3:4:5:6:7::8"]) {
    test(`rejects ${JSON.stringify(bad)}`, () => expect(parseIp(bad)).toBeUndefined());
  }
  test("prefixes", () => {
    expect(parsePrefix("10.0.0.0/8")!.bits).toBe(8);
    expect(parsePrefix("10.0.0.1")!.bits).toBe(32);
    expect(parsePrefix("::/0")!.bits).toBe(0);
    expect(parsePrefix("10.0.0.0/33")).toBeUndefined();
    expect(parsePrefix("::/129")).toBeUndefined();
    expect(parsePrefix("10.0.0.0/x")).toBeUndefined();
  });
});

describe("AllowedIps longest-prefix match", () => {
  const t = new AllowedIps<string>();
  const rows: [string, string][] = [
    ["0.0.0.0/0", "default4"],
    ["10.0.0.0/8", "ten"],
    ["10.1.0.0/16", "ten-one"],
    ["10.1.2.3/32", "host"],
    ["::/0", "default6"],
    ["2001:db8::/32", "doc"],
    ["2001:db8:1::/48", "doc1"],
  ];
  for (const [p, v] of rows) t.insert(parsePrefix(p)!, v);
  const cases: [string, string | undefined][] = [
    ["192.168.0.1", "default4"],
    ["10.200.0.1", "ten"],
    ["10.1.200.1", "ten-one"],
    ["10.1.2.3", "host"],
    ["10.1.2.4", "ten-one"],
    ["2001:db8:2::1", "doc"],
    ["2001:db8:1:ffff::1", "doc1"],
    ["fe80::1", "default6"],
  ];
  for (const [ip, want] of cases) test(`${ip} -> ${want}`, () => expect(t.lookup(parseIp(ip)!)).toBe(want));
  test("removing a value removes all its prefixes", () => {
    const u = new AllowedIps<string>();
    u.insert(parsePrefix("10.0.0.0/8")!, "a");
    u.insert(parsePrefix("10.1.0.0/16")!, "b");
    u.insert(parsePrefix("fd00::/8")!, "b");
    u.removeValue("b");
    expect(u.lookup(parseIp("10.1.0.1")!)).toBe("a");
    expect(u.lookup(parseIp("fd00::1")!)).toBeUndefined();
    expect(u.entriesOf("a").map((p) => `${formatIp(p.address)}/${p.bits}`)).toEqual(["10.0.0.0/8"]);
  });
  test("a later insert of the same prefix replaces the owner", () => {
    const u = new AllowedIps<string>();
    u.insert(parsePrefix("10.0.0.0/24")!, "a");
    u.insert(parsePrefix("10.0.0.0/24")!, "b");
    expect(u.lookup(parseIp("10.0.0.9")!)).toBe("b");
  });
});

describe("innerAddresses", () => {
  test("IPv4 and IPv6 headers", () => {
    const v4 = innerAddresses(ipv4Udp("10.0.0.1", "10.0.0.2", "abc"))!;
    expect([v4.version, formatIp(v4.source), formatIp(v4.destination), v4.totalLength]).toEqual([4, "10.0.0.1", "10.0.0.2", 31]);
    const v6 = innerAddresses(ipv6Udp("fd00::1", "fd00::2", "abc"))!;
    expect([v6.version, formatIp(v6.source), formatIp(v6.destination), v6.totalLength]).toEqual([6, "fd00::1", "fd00::2", 51]);
  });
  test("padding beyond the claimed length is allowed; claiming more than present is not", () => {
    const p = ipv4Udp("10.0.0.1", "10.0.0.2", "abc");
    const padded = new Uint8Array(48);
    padded.set(p);
    expect(innerAddresses(padded)!.totalLength).toBe(31);
    expect(innerAddresses(p.subarray(0, 30))).toBeUndefined();
    expect(innerAddresses(new Uint8Array(19).fill(0x45))).toBeUndefined();
    expect(innerAddresses(new Uint8Array([0x50, 0, 0, 0]))).toBeUndefined();
    expect(innerAddresses(new Uint8Array(0))).toBeUndefined();
  });
});
