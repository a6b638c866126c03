// The dispatcher: pure functions from (destination, peeked bytes, policy,
// device, the VIP table) to a handler. They never touch sockets; the flow
// shell (handle.ts) peeks and carries the decision out. Two steps, as the
// seed's dispatch table reads:
//
// routeDestination (before any byte is read, from the 5-tuple alone):
//   unknown profile -> deny
//   dst is a VIP (the DNS-VIP responder handed it out for a hostname) ->
//     the endpoint that hostname names, on a port it claims -> peek;
//     anything else -> deny (a VIP is not a real address: nothing to relay to)
//   dst is an IP literal some endpoint claims (direct-IP binding, the conn
//     index; :5432 included) on a port it claims -> peek
//   a port some endpoint claims, or :443 (clawpatrol.internal) -> peek
//   anything else -> relay to the real destination
//   (endpoint types claimed by address, e.g. postgres: a binding above whose
//   type is claimed by address, on a port it claims -> serve, no peek; so is a
//   port only such endpoints claim when the profile sees exactly one of them)
// dispatchTcp (after the peek):
//   TLS to :443 with SNI clawpatrol.internal -> internal (the gateway's own
//     discovery responder; the name is reserved, no endpoint can claim it)
//   TLS whose SNI an endpoint visible to the profile claims on this port -> intercept
//   TLS to a VIP or a bound IP without a claimed SNI -> intercept as that
//     binding's name (clients send no SNI to an IP literal)
//   other TLS -> defaults.unknown_host (passthrough | deny)
//   not TLS -> relay; to a VIP or a bound IP -> deny (the endpoint expects
//     TLS; relaying would skip its rules)
//
// Every decision that hands a flow to an endpoint also says where the flow
// really goes (`upstream`): a VIP's hostname, never the VIP.
import type { Endpoint, Policy } from "../policy/types.ts";
import type { DeviceIdentity, FlowEndpoint } from "./flow.ts";
import { isIP } from "node:net";
import { matchEndpoints, visibleEndpoints } from "../policy/engine.ts";
import { specOf } from "../endpoints/registry.ts";
import type { IndexedEndpoint } from "./conn-index.ts";
import { plainHttpPorts } from "../endpoints/https/decider.ts";

export const DEFAULT_HTTPS_PORT = 443;

/** The name devices reach the gateway's own discovery service at (DNS and TLS). */
export const INTERNAL_HOST = "clawpatrol.internal";
/** The port the discovery service answers on. */
export const INTERNAL_PORT = 443;

/** True for the reserved discovery name (any case, one trailing dot allowed). */
export function isInternalHost(name: string): boolean {
  const n = name.toLowerCase();
  return n === INTERNAL_HOST || n === INTERNAL_HOST + ".";
}

/** What the peek of the agent's first bytes found (mirrors app/tls/clienthello.ts). */
export type Peek =
  | { kind: "hello"; sni?: string }
  | { kind: "not-tls" }
  | { kind: "error"; reason: string };

/** What the gateway knows about addresses beyond the policy. */
export interface DispatchContext {
  /** The hostname the DNS-VIP responder handed this address out for, if it is a VIP. */
  vipHostname?(ip: string): string | undefined;
  /** Endpoints (claimed by address) whose resolved hosts include this address: the conn index. */
  endpointsAt?(ip: string): readonly IndexedEndpoint[];
}

/** An endpoint that owns the destination address itself. */
export interface Binding {
  /**
   * vip: a DNS-VIP; direct-ip: an IP literal in the endpoint's hosts;
   * conn-index: a resolved address of a name in its hosts; name: the capture
   * mode knows only a name (CONNECT, SOCKS5 by name); only: the one endpoint
   * of an address-claimed type the profile sees on that port.
   */
  via: "vip" | "direct-ip" | "conn-index" | "name" | "only";
  /** The name the flow is judged under, and the upstream is dialed by: the VIP's hostname, the host entry, or the IP literal. */
  name: string;
  endpoint: Endpoint;
}

export type DispatchDecision =
  | { kind: "intercept"; endpoint: Endpoint; sni: string; via?: Binding["via"]; upstream: FlowEndpoint }
  | { kind: "serve"; endpoint: Endpoint; via: Binding["via"]; upstream: FlowEndpoint }
  | { kind: "internal"; sni: string }
  | { kind: "passthrough"; sni?: string; reason: string }
  | { kind: "deny"; sni?: string; reason: string }
  | { kind: "relay"; reason: string };

/** Ports on which the first bytes are peeked for a ClientHello. */
export function peekPorts(policy: Policy): Set<number> {
  const ports = new Set<number>();
  for (const ep of policy.endpoints.values()) {
    if (byAddress(ep)) continue;
    for (const p of ep.ports ?? specOf(ep.type).defaultPorts) ports.add(p);
  }
  return ports;
}

/** Ports on which an SNI-claimed endpoint also claims its hosts for plain HTTP (80 and its `ports`): peeked for a Host. */
export function plainHttpPeekPorts(policy: Policy): Set<number> {
  const ports = new Set<number>();
  for (const ep of policy.endpoints.values()) if (!byAddress(ep)) for (const p of plainHttpPorts(ep)) ports.add(p);
  return ports;
}

/** The endpoint claiming `host` for plain HTTP on `port` for this profile, if any. */
export function plainHttpEndpoint(policy: Policy, host: string, profile: string, port: number): Endpoint | undefined {
  return matchEndpoints(policy, host, profile).find((e) => !byAddress(e) && plainHttpPorts(e).includes(port));
}

export function shouldPeek(policy: Policy, dst: FlowEndpoint, ports = peekPorts(policy)): boolean {
  return ports.has(dst.port);
}

const claims = (e: Endpoint, port: number) => (e.ports ?? specOf(e.type).defaultPorts).includes(port);
const byAddress = (e: Endpoint) => specOf(e.type).claim === "address";
/** A binding by name to a type reached by name on any port (ssh). */
const anyPort = (b: Binding) => (b.via === "vip" || b.via === "name") && specOf(b.endpoint.type).anyPortByName === true;

/**
 * The endpoint that owns `dst.host` for this profile: through the VIP table,
 * an IP literal in an endpoint's hosts, the conn index, or (for a name the
 * capture mode was given) an address-claimed endpoint naming it. Undefined
 * for ordinary addresses. A VIP whose hostname no visible endpoint names is
 * returned as `unbound`.
 */
export function bindingFor(
  policy: Policy,
  dst: FlowEndpoint,
  device: DeviceIdentity,
  ctx: DispatchContext = {},
): Binding | { unbound: string } | undefined {
  // Endpoints may share a host on different ports: the one claiming the port wins.
  const forPort = (list: Endpoint[]) => list.find((e) => claims(e, dst.port)) ?? list[0];
  const vipName = ctx.vipHostname?.(dst.host);
  if (vipName !== undefined) {
    const endpoint = forPort(matchEndpoints(policy, vipName, device.profile));
    return endpoint ? { via: "vip", name: vipName, endpoint } : { unbound: vipName };
  }
  if (isIP(dst.host) === 0) {
    const endpoint = forPort(matchEndpoints(policy, dst.host, device.profile).filter(byAddress));
    return endpoint ? { via: "name", name: dst.host.toLowerCase().replace(/\.$/, ""), endpoint } : undefined;
  }
  const literal = forPort(matchEndpoints(policy, dst.host, device.profile));
  if (literal) return { via: "direct-ip", name: dst.host, endpoint: literal };
  // Two endpoints at one address: the profile decides, then the port.
  const visible = visibleEndpoints(policy, device.profile);
  const candidates = (ctx.endpointsAt?.(dst.host) ?? []).flatMap((x) => {
    const e = policy.endpoints.get(x.endpoint);
    return e && visible(e) ? [{ e, host: x.host }] : [];
  });
  const chosen = candidates.find((c) => claims(c.e, dst.port)) ?? candidates[0];
  return chosen ? { via: "conn-index", name: chosen.host, endpoint: chosen.e } : undefined;
}

/** The only endpoint claimed by address that this profile sees on `port`, if exactly one. */
function onlyEndpointOn(policy: Policy, port: number, device: DeviceIdentity): Endpoint | undefined {
  const visible = visibleEndpoints(policy, device.profile);
  const found = [...policy.endpoints.values()].filter((e) => byAddress(e) && !specOf(e.type).anyPortByName && visible(e) && claims(e, port));
  return found.length === 1 ? found[0] : undefined;
}

/** Where a flow bound to `b` is dialed: by the bound name (a VIP's hostname, the host entry, the literal), on the port the agent dialed. */
function upstreamOf(b: Binding, dst: FlowEndpoint): FlowEndpoint {
  return { host: b.name, port: dst.port };
}

/** Step one: decide from the 5-tuple, or ask for a peek at the first bytes. */
export function routeDestination(
  policy: Policy,
  dst: FlowEndpoint,
  device: DeviceIdentity,
  ctx: DispatchContext = {},
  ports = peekPorts(policy),
): { kind: "peek" } | DispatchDecision {
  if (!policy.profiles.has(device.profile)) {
    return { kind: "deny", reason: `profile "${device.profile}" is not configured` };
  }
  const b = bindingFor(policy, dst, device, ctx);
  if (b !== undefined && "unbound" in b) {
    return { kind: "deny", reason: `VIP of ${b.unbound}: no endpoint this profile sees names it` };
  }
  if (b !== undefined && (claims(b.endpoint, dst.port) || anyPort(b))) {
    if (byAddress(b.endpoint)) return { kind: "serve", endpoint: b.endpoint, via: b.via, upstream: upstreamOf(b, dst) };
    if (b.via === "vip" || b.via === "direct-ip") return { kind: "peek" };
  }
  if (b?.via === "vip") {
    return { kind: "deny", reason: `VIP of ${b.name}: endpoint ${b.endpoint.ref} does not serve port ${dst.port}` };
  }
  if (b === undefined) {
    const only = onlyEndpointOn(policy, dst.port, device);
    if (only) {
      const host = only.hosts[0] ?? dst.host;
      return { kind: "serve", endpoint: only, via: "only", upstream: { host, port: dst.port } };
    }
  }
  if (ports.has(dst.port) || dst.port === INTERNAL_PORT) return { kind: "peek" };
  return { kind: "relay", reason: "port not claimed by any endpoint" };
}

/** Step two: decide from the peeked first bytes. */
export function dispatchTcp(
  policy: Policy,
  dst: FlowEndpoint,
  device: DeviceIdentity,
  peek: Peek,
  ctx: DispatchContext = {},
): DispatchDecision {
  // A device whose profile the policy does not know gets nothing it could
  // not get otherwise: fail closed rather than pass its traffic unjudged.
  if (!policy.profiles.has(device.profile)) {
    return { kind: "deny", reason: `profile "${device.profile}" is not configured` };
  }
  const found = bindingFor(policy, dst, device, ctx);
  const bound = found !== undefined && !("unbound" in found) && claims(found.endpoint, dst.port) ? found : undefined;
  if (found !== undefined && "unbound" in found) {
    return { kind: "deny", reason: `VIP of ${found.unbound}: no endpoint this profile sees names it` };
  }
  switch (peek.kind) {
    case "not-tls":
      if (bound) return { kind: "deny", reason: `${bound.endpoint.ref} (${bound.via} ${bound.name}) expects TLS` };
      return { kind: "relay", reason: "not TLS" };
    case "error":
      // A ClientHello we cannot parse is not something we can judge: fail closed.
      return { kind: "deny", reason: `malformed ClientHello: ${peek.reason}` };
    case "hello": {
      const sni = peek.sni;
      if (sni && isInternalHost(sni) && dst.port === INTERNAL_PORT) return { kind: "internal", sni };
      // The upstream is the name the flow is judged under; a VIP is never dialed.
      const upstream = (name: string) => (bound?.via === "vip" || isIP(dst.host) === 0 ? { host: name, port: dst.port } : dst);
      if (sni) {
        // A name may be claimed by address too (clickhouse_native and clickhouse_https on one host): the SNI type on this port.
        const endpoint = matchEndpoints(policy, sni, device.profile).find((e) => !byAddress(e) && claims(e, dst.port));
        if (endpoint) return { kind: "intercept", endpoint, sni, upstream: upstream(sni) };
      }
      if (bound && !byAddress(bound.endpoint)) return { kind: "intercept", endpoint: bound.endpoint, sni: bound.name, via: bound.via, upstream: upstream(bound.name) };
      const what = sni ? `no endpoint claims ${sni}:${dst.port}` : "no SNI";
      if (policy.defaults.unknownHost === "deny") {
        return sni ? { kind: "deny", sni, reason: `${what} (unknown_host = deny)` } : { kind: "deny", reason: `${what} (unknown_host = deny)` };
      }
      return sni ? { kind: "passthrough", sni, reason: what } : { kind: "passthrough", reason: what };
    }
  }
}
