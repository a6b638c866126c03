// The dispatcher as a table: (policy, destination, device, peek) -> decision.
// Policies are loaded from HCL the way the gateway loads them; one table row
// per situation, and one pass through the real ClientHello parser so the
// peek the table assumes is the one the shell produces.
import { beforeAll, describe, expect, test } from "bun:test";
import { dispatchTcp, peekPorts, routeDestination, shouldPeek, DEFAULT_HTTPS_PORT, type DispatchContext, type DispatchDecision, type Peek } from "../../../app/dispatch/dispatch.ts";
import type { DeviceIdentity } from "../../../app/dispatch/flow.ts";
import type { Policy } from "../../../app/policy/types.ts";
import { parseClientHello } from "../../../app/tls/clienthello.ts";
import { policyFrom } from "../policy/helpers.ts";
import { clientHelloMessage, inRecords, sniExtension, alpnExtension } from "../tls/helpers/hello.ts";

const BASE = `
schema_version = 1

endpoint "https" "github" {
  hosts      = ["api.github.com", "*.githubusercontent.com"]
  credential = github_token.gh
}
endpoint "https" "anthropic" {
  hosts = ["api.anthropic.com"]
}
endpoint "https" "internal" {
  hosts = ["git.corp.example"]
  ports = [8443, 443]
}
endpoint "https" "altport" {
  hosts = ["alt.example"]
  ports = [9443]
}

credential "github_token" "gh" {}
credential "bearer_token" "ro" {}

profile "default" { credentials = [github_token.gh] }
profile "contractor" {
  credentials = [bearer_token.ro]
  endpoints   = [https.github]
}
`;

const withDefaults = (unknownHost: "passthrough" | "deny") => `defaults {\n  unknown_host = "${unknownHost}"\n}\n${BASE}`;

let passthrough: Policy;
let deny: Policy;
let bare: Policy; // no defaults block at all: the built-in default applies
beforeAll(async () => {
  [passthrough, deny, bare] = await Promise.all([policyFrom(withDefaults("passthrough")), policyFrom(withDefaults("deny")), policyFrom(BASE)]);
});

const dev = (profile = "default"): DeviceIdentity => ({ name: "laptop", profile });
const hello = (sni?: string): Peek => (sni === undefined ? { kind: "hello" } : { kind: "hello", sni });
const dst = (port: number, host = "203.0.113.7") => ({ host, port });

/** The decision reduced to what a row states: kind, endpoint ref, sni, reason. */
function summary(d: DispatchDecision): Record<string, unknown> {
  switch (d.kind) {
    case "intercept":
      return d.via ? { kind: d.kind, endpoint: d.endpoint.ref, sni: d.sni, via: d.via } : { kind: d.kind, endpoint: d.endpoint.ref, sni: d.sni };
    case "passthrough":
    case "deny":
      return { kind: d.kind, sni: d.sni, reason: d.reason };
    case "relay":
      return { kind: d.kind, reason: d.reason };
    case "internal":
      return { kind: d.kind, sni: d.sni };
    case "serve":
      return { kind: d.kind, endpoint: d.endpoint.ref, via: d.via, upstream: `${d.upstream.host}:${d.upstream.port}` };
  }
}

type Row = [name: string, policy: () => Policy, port: number, profile: string, peek: Peek, want: Record<string, unknown>];

const ROWS: Row[] = [
  // claimed SNI on a claimed port
  ["claimed SNI on 443 -> intercept", () => passthrough, 443, "default", hello("api.github.com"), { kind: "intercept", endpoint: "https.github", sni: "api.github.com" }],
  ["claimed SNI, upper case -> intercept (hosts compare case-insensitively)", () => passthrough, 443, "default", hello("API.GitHub.com"), { kind: "intercept", endpoint: "https.github", sni: "API.GitHub.com" }],
  ["endpoint with ports = [8443, 443]: 8443 -> intercept", () => passthrough, 8443, "default", hello("git.corp.example"), { kind: "intercept", endpoint: "https.internal", sni: "git.corp.example" }],
  ["endpoint with ports = [8443, 443]: 443 -> intercept", () => passthrough, 443, "default", hello("git.corp.example"), { kind: "intercept", endpoint: "https.internal", sni: "git.corp.example" }],
  ["endpoint with ports = [9443]: 9443 -> intercept", () => deny, 9443, "default", hello("alt.example"), { kind: "intercept", endpoint: "https.altport", sni: "alt.example" }],
  // claimed SNI on another port -> unknown_host handling
  ["claimed SNI on 8443 (not its port), passthrough", () => passthrough, 8443, "default", hello("api.github.com"), { kind: "passthrough", sni: "api.github.com", reason: "no endpoint claims api.github.com:8443" }],
  ["claimed SNI on 8443 (not its port), deny", () => deny, 8443, "default", hello("api.github.com"), { kind: "deny", sni: "api.github.com", reason: "no endpoint claims api.github.com:8443 (unknown_host = deny)" }],
  ["ports = [9443] no longer claims 443", () => deny, 443, "default", hello("alt.example"), { kind: "deny", sni: "alt.example", reason: "no endpoint claims alt.example:443 (unknown_host = deny)" }],
  // wildcard hosts
  ["*.githubusercontent.com matches one label", () => deny, 443, "default", hello("raw.githubusercontent.com"), { kind: "intercept", endpoint: "https.github", sni: "raw.githubusercontent.com" }],
  ["*.githubusercontent.com matches deeper names", () => deny, 443, "default", hello("a.b.githubusercontent.com"), { kind: "intercept", endpoint: "https.github", sni: "a.b.githubusercontent.com" }],
  ["*.githubusercontent.com does not match the bare suffix", () => deny, 443, "default", hello("githubusercontent.com"), { kind: "deny", sni: "githubusercontent.com", reason: "no endpoint claims githubusercontent.com:443 (unknown_host = deny)" }],
  ["*.githubusercontent.com does not match a look-alike", () => deny, 443, "default", hello("evilgithubusercontent.com"), { kind: "deny", sni: "evilgithubusercontent.com", reason: "no endpoint claims evilgithubusercontent.com:443 (unknown_host = deny)" }],
  ["exact host does not match a subdomain", () => deny, 443, "default", hello("x.api.github.com"), { kind: "deny", sni: "x.api.github.com", reason: "no endpoint claims x.api.github.com:443 (unknown_host = deny)" }],
  // profiles
  ["contractor sees github -> intercept", () => deny, 443, "contractor", hello("api.github.com"), { kind: "intercept", endpoint: "https.github", sni: "api.github.com" }],
  ["contractor cannot see anthropic: unknown_host (deny)", () => deny, 443, "contractor", hello("api.anthropic.com"), { kind: "deny", sni: "api.anthropic.com", reason: "no endpoint claims api.anthropic.com:443 (unknown_host = deny)" }],
  ["contractor cannot see anthropic: unknown_host (passthrough)", () => passthrough, 443, "contractor", hello("api.anthropic.com"), { kind: "passthrough", sni: "api.anthropic.com", reason: "no endpoint claims api.anthropic.com:443" }],
  ["default profile (no endpoints list) sees every endpoint", () => deny, 443, "default", hello("api.anthropic.com"), { kind: "intercept", endpoint: "https.anthropic", sni: "api.anthropic.com" }],
  ["a profile the policy does not know is denied (unknown_host = deny)", () => deny, 443, "ghost", hello("api.github.com"), { kind: "deny", sni: undefined, reason: 'profile "ghost" is not configured' }],
  ["a profile the policy does not know is denied, even with unknown_host = passthrough", () => passthrough, 443, "ghost", hello("api.github.com"), { kind: "deny", sni: undefined, reason: 'profile "ghost" is not configured' }],
  ["a profile the policy does not know is denied for non-TLS too", () => passthrough, 443, "ghost", { kind: "not-tls" }, { kind: "deny", sni: undefined, reason: 'profile "ghost" is not configured' }],
  // no SNI
  ["no SNI, passthrough", () => passthrough, 443, "default", hello(), { kind: "passthrough", sni: undefined, reason: "no SNI" }],
  ["no SNI, deny", () => deny, 443, "default", hello(), { kind: "deny", sni: undefined, reason: "no SNI (unknown_host = deny)" }],
  ["empty SNI is no SNI", () => deny, 443, "default", hello(""), { kind: "deny", sni: undefined, reason: "no SNI (unknown_host = deny)" }],
  // unknown host
  ["unclaimed SNI, passthrough", () => passthrough, 443, "default", hello("example.org"), { kind: "passthrough", sni: "example.org", reason: "no endpoint claims example.org:443" }],
  ["unclaimed SNI, deny", () => deny, 443, "default", hello("example.org"), { kind: "deny", sni: "example.org", reason: "no endpoint claims example.org:443 (unknown_host = deny)" }],
  ["no defaults block: unknown_host is passthrough", () => bare, 443, "default", hello("example.org"), { kind: "passthrough", sni: "example.org", reason: "no endpoint claims example.org:443" }],
  // the discovery service: clawpatrol.internal on :443, whatever unknown_host says
  ["clawpatrol.internal on 443 -> internal", () => deny, 443, "default", hello("clawpatrol.internal"), { kind: "internal", sni: "clawpatrol.internal" }],
  ["clawpatrol.internal, upper case -> internal", () => passthrough, 443, "default", hello("ClawPatrol.Internal"), { kind: "internal", sni: "ClawPatrol.Internal" }],
  ["clawpatrol.internal for a profile that sees few endpoints -> internal", () => deny, 443, "contractor", hello("clawpatrol.internal"), { kind: "internal", sni: "clawpatrol.internal" }],
  ["clawpatrol.internal without a defaults block -> internal", () => bare, 443, "default", hello("clawpatrol.internal"), { kind: "internal", sni: "clawpatrol.internal" }],
  ["clawpatrol.internal on another port -> unknown_host (deny)", () => deny, 8443, "default", hello("clawpatrol.internal"), { kind: "deny", sni: "clawpatrol.internal", reason: "no endpoint claims clawpatrol.internal:8443 (unknown_host = deny)" }],
  ["a subdomain of clawpatrol.internal is not the service", () => deny, 443, "default", hello("x.clawpatrol.internal"), { kind: "deny", sni: "x.clawpatrol.internal", reason: "no endpoint claims x.clawpatrol.internal:443 (unknown_host = deny)" }],
  ["a look-alike is not the service", () => passthrough, 443, "default", hello("clawpatrol.internal.evil.example"), { kind: "passthrough", sni: "clawpatrol.internal.evil.example", reason: "no endpoint claims clawpatrol.internal.evil.example:443" }],
  ["clawpatrol.internal for an unknown profile is still denied", () => passthrough, 443, "ghost", hello("clawpatrol.internal"), { kind: "deny", sni: undefined, reason: 'profile "ghost" is not configured' }],
  // not TLS, malformed
  ["not TLS on 443 -> relay", () => deny, 443, "default", { kind: "not-tls" }, { kind: "relay", reason: "not TLS" }],
  ["not TLS on a claimed non-443 port -> relay", () => deny, 8443, "default", { kind: "not-tls" }, { kind: "relay", reason: "not TLS" }],
  ["malformed ClientHello -> deny (fail closed), even with passthrough", () => passthrough, 443, "default", { kind: "error", reason: "empty handshake record" }, { kind: "deny", sni: undefined, reason: "malformed ClientHello: empty handshake record" }],
  ["malformed ClientHello -> deny", () => deny, 443, "contractor", { kind: "error", reason: "record longer than 2^14 bytes" }, { kind: "deny", sni: undefined, reason: "malformed ClientHello: record longer than 2^14 bytes" }],
];

describe("dispatchTcp", () => {
  test.each(ROWS)("%s", (_name, policy, port, profile, peek, want) => {
    expect(summary(dispatchTcp(policy(), dst(port), dev(profile), peek))).toEqual(want);
  });

  test("the destination IP plays no part once the SNI is known", () => {
    for (const host of ["140.82.112.6", "10.0.0.1", "2001:db8::1", "api.github.com", "example.org"]) {
      expect(summary(dispatchTcp(deny, dst(443, host), dev(), hello("api.github.com")))).toEqual({
        kind: "intercept",
        endpoint: "https.github",
        sni: "api.github.com",
      });
    }
  });

  test("intercept carries the endpoint object from the policy", () => {
    const d = dispatchTcp(deny, dst(443), dev(), hello("api.github.com"));
    expect(d.kind).toBe("intercept");
    if (d.kind === "intercept") expect(d.endpoint).toBe(deny.endpoints.get("https.github")!);
  });

  test("a passthrough or deny without SNI carries no sni field", () => {
    expect("sni" in dispatchTcp(passthrough, dst(443), dev(), hello())).toBe(false);
    expect("sni" in dispatchTcp(deny, dst(443), dev(), hello())).toBe(false);
  });
});

describe("dispatchTcp fed by the real ClientHello parser", () => {
  const wire = (sni?: string) =>
    inRecords(clientHelloMessage({ extensions: sni === undefined ? [alpnExtension(["http/1.1"])] : [sniExtension(sni), alpnExtension(["http/1.1"])] }));
  const peekOf = (bytes: Uint8Array): Peek => {
    const r = parseClientHello(bytes);
    if (r.kind === "hello") return r.sni ? { kind: "hello", sni: r.sni } : { kind: "hello" };
    if (r.kind === "not-tls") return { kind: "not-tls" };
    if (r.kind === "error") return { kind: "error", reason: r.reason };
    throw new Error("parser still needs more");
  };

  test.each([
    ["hello for a claimed host", wire("api.github.com"), "intercept"],
    ["hello for clawpatrol.internal", wire("clawpatrol.internal"), "internal"],
    ["hello for an upper-case claimed host", wire("API.GITHUB.COM"), "intercept"],
    ["hello for an unclaimed host", wire("example.org"), "deny"],
    ["hello without SNI", wire(undefined), "deny"],
    ["plain HTTP", new TextEncoder().encode("GET / HTTP/1.1\r\nHost: api.github.com\r\n\r\n"), "relay"],
    ["SSH banner", new TextEncoder().encode("SSH-2.0-OpenSSH_9.6\r\n"), "relay"],
    ["a handshake record of length 0", Uint8Array.of(0x16, 0x03, 0x01, 0x00, 0x00), "deny"],
  ] as const)("%s -> %s", (_name, bytes, kind) => {
    expect(dispatchTcp(deny, dst(443), dev(), peekOf(bytes)).kind).toBe(kind);
  });
});

describe("peekPorts / shouldPeek", () => {
  test("the union of claimed ports; endpoints without ports claim 443", () => {
    expect([...peekPorts(deny)].sort((a, b) => a - b)).toEqual([443, 8443, 9443]);
  });

  test("a policy whose endpoints all set ports does not peek 443", async () => {
    const p = await policyFrom(`schema_version = 1\nendpoint "https" "a" {\n  hosts = ["a.example"]\n  ports = [8443]\n}\n`);
    expect([...peekPorts(p)]).toEqual([8443]);
    expect(shouldPeek(p, dst(DEFAULT_HTTPS_PORT))).toBe(false);
  });

  test("a policy without endpoints peeks nothing", async () => {
    const p = await policyFrom(`schema_version = 1\n`);
    expect(peekPorts(p).size).toBe(0);
  });

  test.each([
    [443, true],
    [8443, true],
    [9443, true],
    [80, false],
    [22, false],
    [5432, false],
  ] as const)("shouldPeek port %d -> %p", (port, want) => {
    expect(shouldPeek(deny, dst(port))).toBe(want);
  });
});

// The seed's table before and after the peek: VIPs (DNS-VIP answers),
// direct-IP bindings (an endpoint whose hosts name an IP literal: the conn
// index, :5432 included), claimed ports, everything else relayed.
describe("routing by destination: VIPs, direct-IP bindings, claimed ports", () => {
  const BOUND = `
schema_version = 1
defaults {
  unknown_host = "deny"
}
endpoint "https" "vault" {
  hosts = ["vault.corp.example"]
}
endpoint "https" "dbadmin" {
  hosts = ["10.9.8.7"]
  ports = [443, 5432]
}
profile "default" {}
profile "narrow" { endpoints = [https.dbadmin] }
`;
  let p: Policy;
  beforeAll(async () => {
    p = await policyFrom(BOUND);
  });
  const VIPS: Record<string, string> = { "100.80.0.5": "vault.corp.example", "100.80.0.6": "gone.corp.example" };
  const ctx: DispatchContext = { vipHostname: (ip) => VIPS[ip] };
  const route = (host: string, port: number, profile = "default") => {
    const r = routeDestination(p, dst(port, host), dev(profile), ctx);
    return r.kind === "peek" ? { kind: "peek" } : summary(r);
  };

  test.each([
    ["a VIP on a port its endpoint serves -> peek", "100.80.0.5", 443, "default", { kind: "peek" }],
    ["a VIP on another port -> deny (a VIP is not a real address)", "100.80.0.5", 22, "default", { kind: "deny", sni: undefined, reason: "VIP of vault.corp.example: endpoint https.vault does not serve port 22" }],
    ["a VIP whose hostname no endpoint names any more -> deny", "100.80.0.6", 443, "default", { kind: "deny", sni: undefined, reason: "VIP of gone.corp.example: no endpoint this profile sees names it" }],
    ["a VIP of an endpoint the profile cannot see -> deny", "100.80.0.5", 443, "narrow", { kind: "deny", sni: undefined, reason: "VIP of vault.corp.example: no endpoint this profile sees names it" }],
    ["a bound IP on its port 443 -> peek", "10.9.8.7", 443, "narrow", { kind: "peek" }],
    ["a bound IP on :5432 (the conn index) -> peek", "10.9.8.7", 5432, "default", { kind: "peek" }],
    ["a bound IP on a port it does not claim -> relay", "10.9.8.7", 22, "default", { kind: "relay", reason: "port not claimed by any endpoint" }],
    [":5432 to an address nothing binds is still peeked: an endpoint claims the port (an SNI may name it)", "10.9.8.8", 5432, "default", { kind: "peek" }],
    ["an ordinary address on a claimed port -> peek", "203.0.113.7", 443, "default", { kind: "peek" }],
    ["an ordinary address elsewhere -> relay", "203.0.113.7", 8080, "default", { kind: "relay", reason: "port not claimed by any endpoint" }],
    ["an unknown profile -> deny before anything else", "100.80.0.5", 443, "ghost", { kind: "deny", sni: undefined, reason: 'profile "ghost" is not configured' }],
  ] as const)("%s", (_name, host, port, profile, want) => {
    expect(route(host, port, profile)).toEqual(want);
  });

  test.each([
    ["TLS without SNI to a VIP -> intercept as the VIP's hostname", "100.80.0.5", 443, hello(), { kind: "intercept", endpoint: "https.vault", sni: "vault.corp.example", via: "vip" }],
    ["TLS with the VIP's own SNI -> intercept", "100.80.0.5", 443, hello("vault.corp.example"), { kind: "intercept", endpoint: "https.vault", sni: "vault.corp.example" }],
    ["TLS with another, unclaimed SNI to a VIP -> still the VIP's endpoint", "100.80.0.5", 443, hello("example.org"), { kind: "intercept", endpoint: "https.vault", sni: "vault.corp.example", via: "vip" }],
    ["not TLS to a VIP -> deny (its endpoint expects TLS)", "100.80.0.5", 443, { kind: "not-tls" } as Peek, { kind: "deny", sni: undefined, reason: "https.vault (vip vault.corp.example) expects TLS" }],
    ["TLS without SNI to a bound IP -> intercept as the IP", "10.9.8.7", 443, hello(), { kind: "intercept", endpoint: "https.dbadmin", sni: "10.9.8.7", via: "direct-ip" }],
    ["not TLS to a bound IP on :5432 -> deny (no relay around its rules)", "10.9.8.7", 5432, { kind: "not-tls" } as Peek, { kind: "deny", sni: undefined, reason: "https.dbadmin (direct-ip 10.9.8.7) expects TLS" }],
    ["TLS without SNI to an unbound IP -> unknown_host", "10.9.8.8", 443, hello(), { kind: "deny", sni: undefined, reason: "no SNI (unknown_host = deny)" }],
    ["a claimed SNI wins over the IP it was sent to", "10.9.8.7", 443, hello("vault.corp.example"), { kind: "intercept", endpoint: "https.vault", sni: "vault.corp.example" }],
  ] as const)("%s", (_name, host, port, peek, want) => {
    expect(summary(dispatchTcp(p, dst(port, host), dev(), peek, ctx))).toEqual(want);
  });

  test("without a VIP table, VIP addresses are ordinary addresses", () => {
    expect(routeDestination(p, dst(22, "100.80.0.5"), dev()).kind).toBe("relay");
  });
});

// Endpoint types claimed by address (postgres): decided from the destination
// alone, before any byte; the decision carries the real upstream.
describe("endpoints claimed by address: VIPs, literals, the conn index, names, the profile's only one", () => {
  const PG = `
schema_version = 1
endpoint "postgres" "main" {
  host = "db.corp.example:5432"
  credential = postgres_password.main
}
endpoint "postgres" "replica" {
  hosts = ["10.1.2.3:5432", "10.1.2.3:6432"]
  credential = postgres_password.main
}
endpoint "postgres" "side" {
  host = "10.1.2.3:7432"
  credential = postgres_password.main
}
credential "postgres_password" "main" {
  user = "app"
}
profile "default" { credentials = [postgres_password.main] }
profile "one" {
  credentials = [postgres_password.main]
  endpoints   = [postgres.main]
}
`;
  let p: Policy;
  beforeAll(async () => {
    p = await policyFrom(PG);
  });
  const VIPS: Record<string, string> = { "100.80.0.9": "db.corp.example" };
  // The conn index resolved db.corp.example to 192.0.2.50.
  const ctx: DispatchContext = { vipHostname: (ip) => VIPS[ip], endpointsAt: (ip) => (ip === "192.0.2.50" ? [{ endpoint: "postgres.main", host: "db.corp.example" }] : []) };
  const route = (host: string, port: number, profile = "default") => {
    const r = routeDestination(p, dst(port, host), dev(profile), ctx);
    return r.kind === "peek" ? { kind: "peek" } : summary(r);
  };

  test.each([
    ["a VIP -> serve, dialed by the VIP's hostname", "100.80.0.9", 5432, "default", { kind: "serve", endpoint: "postgres.main", via: "vip", upstream: "db.corp.example:5432" }],
    ["a resolved address (the conn index) -> serve by its name", "192.0.2.50", 5432, "default", { kind: "serve", endpoint: "postgres.main", via: "conn-index", upstream: "db.corp.example:5432" }],
    ["a name the capture mode was given (SOCKS5, CONNECT) -> serve", "db.corp.example", 5432, "default", { kind: "serve", endpoint: "postgres.main", via: "name", upstream: "db.corp.example:5432" }],
    ["an IP literal in hosts -> serve", "10.1.2.3", 6432, "default", { kind: "serve", endpoint: "postgres.replica", via: "direct-ip", upstream: "10.1.2.3:6432" }],
    ["two endpoints on one address: the one claiming the port", "10.1.2.3", 7432, "default", { kind: "serve", endpoint: "postgres.side", via: "direct-ip", upstream: "10.1.2.3:7432" }],
    ["a bound address on a port no endpoint there claims -> relay", "10.1.2.3", 22, "default", { kind: "relay", reason: "port not claimed by any endpoint" }],
    ["an unknown address on :5432 with two endpoints visible -> relay", "198.51.100.1", 5432, "default", { kind: "relay", reason: "port not claimed by any endpoint" }],
    ["an unknown address on :5432 when the profile sees exactly one -> that one, without DNS", "198.51.100.1", 5432, "one", { kind: "serve", endpoint: "postgres.main", via: "only", upstream: "db.corp.example:5432" }],
    ["a conn-index address the profile cannot see -> not bound", "10.1.2.3", 6432, "one", { kind: "relay", reason: "port not claimed by any endpoint" }],
  ] as const)("%s", (_name, host, port, profile, want) => {
    expect(route(host, port, profile)).toEqual(want);
  });

  test("postgres ports are not peeked for a ClientHello", () => {
    expect(peekPorts(p).has(5432)).toBe(false);
  });
});
