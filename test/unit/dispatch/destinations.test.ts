// The destination policy both capture modes share: table-driven, one row per
// class, plus the operator's exceptions and names resolved to addresses.
import { describe, expect, test } from "bun:test";
import {
  checkDestination, parseAllowedDestination, pickDestination, type DestinationContext, type AllowedDestination,
} from "../../../app/dispatch/destinations.ts";
import { destinationContextFor } from "../../../app/dispatch/destination-context.ts";
import { hostAddressCache } from "../../../app/net/host-addresses.ts";
import { policyFrom } from "../policy/helpers.ts";

const allow = (...texts: string[]): AllowedDestination[] => texts.map((t) => parseAllowedDestination(t)!);

const CTX: DestinationContext = {
  hostAddresses: new Set(["192.168.1.5", "2001:db8::5"]),
  deviceSubnets: [
    { address: Uint8Array.of(10, 77, 0, 0), bits: 16 },
    { address: Uint8Array.of(0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), bits: 64 },
  ],
  gatewayAddresses: new Set(["10.77.0.1", "fd77::1"]),
  allow: [],
};

describe("checkDestination", () => {
  const rows: [string, number, "allow" | string][] = [
    ["203.0.113.9", 443, "allow"],
    ["2001:db8:1::9", 22, "allow"],
    ["10.1.2.3", 5432, "allow"], // a private network that is not ours: an ordinary upstream
    ["127.0.0.1", 8080, "loopback"],
    ["127.9.9.9", 80, "loopback"],
    ["::1", 8080, "loopback"],
    ["::ffff:127.0.0.1", 8080, "loopback"], // IPv4-mapped is judged as the IPv4 it is
    ["0.0.0.0", 3128, "unspecified"],
    ["::", 3128, "unspecified"],
    ["169.254.169.254", 80, "link-local"],
    ["fe80::1", 80, "link-local"],
    ["224.0.0.1", 5353, "multicast"],
    ["255.255.255.255", 9, "multicast"],
    ["ff02::1", 9, "multicast"],
    ["192.168.1.5", 443, "host"],
    ["2001:db8::5", 8080, "host"],
    ["::ffff:192.168.1.5", 443, "host"],
    ["10.77.0.1", 8080, "gateway"],
    ["fd77::1", 443, "gateway"],
    ["10.77.0.3", 22, "device"],
    ["fd77::3", 22, "device"],
    ["not-an-address", 80, "unspecified"],
  ];
  for (const [ip, port, want] of rows) {
    test(`${ip}:${port} -> ${want}`, () => {
      const v = checkDestination(ip, port, CTX);
      if (want === "allow") expect(v.verdict).toBe("allow");
      else {
        expect(v).toMatchObject({ verdict: "refuse", class: want });
        expect(v.reason).toContain(String(port));
      }
    });
  }

  test("allow_destinations opens loopback, link-local and host addresses, by prefix and port", () => {
    const ctx = { ...CTX, allow: allow("127.0.0.1:8080", "169.254.0.0/16", "[::1]:22", "192.168.1.5") };
    expect(checkDestination("127.0.0.1", 8080, ctx)).toEqual({ verdict: "allow", reason: 'allow_destinations "127.0.0.1:8080"' });
    expect(checkDestination("127.0.0.1", 8081, ctx).verdict).toBe("refuse");
    expect(checkDestination("169.254.169.254", 80, ctx).verdict).toBe("allow");
    expect(checkDestination("::1", 22, ctx).verdict).toBe("allow");
    expect(checkDestination("::1", 23, ctx).verdict).toBe("refuse");
    expect(checkDestination("192.168.1.5", 443, ctx).verdict).toBe("allow");
  });

  test("allow_destinations never opens a device or the gateway's tunnel address", () => {
    const ctx = { ...CTX, allow: allow("10.0.0.0/8", "fd77::/16") };
    expect(checkDestination("10.77.0.3", 22, ctx)).toMatchObject({ verdict: "refuse", class: "device" });
    expect(checkDestination("10.77.0.1", 22, ctx)).toMatchObject({ verdict: "refuse", class: "gateway" });
    expect(checkDestination("fd77::9", 22, ctx)).toMatchObject({ verdict: "refuse", class: "device" });
  });
});

describe("parseAllowedDestination", () => {
  test("addresses, prefixes, ports; bad input undefined", () => {
    expect(parseAllowedDestination("127.0.0.1")?.port).toBeUndefined();
    expect(parseAllowedDestination("127.0.0.1:8080")?.port).toBe(8080);
    expect(parseAllowedDestination("10.0.0.0/8")?.prefix.bits).toBe(8);
    expect(parseAllowedDestination("::1")?.prefix.bits).toBe(128);
    expect(parseAllowedDestination("[::1]:22")?.port).toBe(22);
    expect(parseAllowedDestination("fd00::/8")?.prefix.bits).toBe(8);
    for (const bad of ["", "localhost", "127.0.0.1:0", "127.0.0.1:70000", "10.0.0.0/33", "1.2.3.4/x", "[::1]:x"]) {
      expect(parseAllowedDestination(bad)).toBeUndefined();
    }
  });
});

describe("pickDestination (a proxy client's name, resolved)", () => {
  test("the first address when every address is allowed", () => {
    expect(pickDestination(["203.0.113.9", "2001:db8:1::9"], 443, CTX)).toMatchObject({ verdict: "allow", address: "203.0.113.9" });
  });
  test("a name with any forbidden address is refused (no rebinding to loopback)", () => {
    expect(pickDestination(["203.0.113.9", "127.0.0.1"], 443, CTX)).toMatchObject({ verdict: "refuse", class: "loopback" });
    expect(pickDestination([], 443, CTX)).toMatchObject({ verdict: "refuse" });
  });
});

describe("the context from a policy", () => {
  test("device subnets and tunnel addresses from gateway.wireguard; exceptions from defaults", async () => {
    const policy = await policyFrom(`schema_version = 1
gateway {
  wireguard {
    mode = "userspace"
    listen = "127.0.0.1:51820"
    subnet_cidr = "10.66.0.0/16"
    subnet6_cidr = "fd66::/64"
  }
}
defaults {
  allow_destinations = ["127.0.0.1:9000"]
}
profile "p" {
  credentials = []
}
`);
    const ctx = destinationContextFor(policy, new Set(["192.0.2.1"]));
    expect(checkDestination("10.66.0.1", 80, ctx)).toMatchObject({ class: "gateway" });
    expect(checkDestination("fd66::1", 80, ctx)).toMatchObject({ class: "gateway" });
    expect(checkDestination("10.66.3.4", 80, ctx)).toMatchObject({ class: "device" });
    expect(checkDestination("192.0.2.1", 80, ctx)).toMatchObject({ class: "host" });
    expect(checkDestination("127.0.0.1", 9000, ctx).verdict).toBe("allow");
    expect(checkDestination("127.0.0.1", 9001, ctx).verdict).toBe("refuse");
  });

  test("a malformed allow_destinations entry is a config error with its line", async () => {
    await expect(policyFrom(`schema_version = 1
defaults {
  allow_destinations = ["localhost"]
}
`)).rejects.toThrow(/allow_destinations: not an address/);
  });
});

test("the host's addresses are read at most every 2 s", () => {
  let t = 0;
  let reads = 0;
  const cache = hostAddressCache(() => t, () => (reads++, new Set([`192.0.2.${reads}`])));
  expect([...cache()]).toEqual(["192.0.2.1"]);
  t = 1999;
  expect([...cache()]).toEqual(["192.0.2.1"]);
  t = 2000;
  expect([...cache()]).toEqual(["192.0.2.2"]);
});
