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
// Endpoint families without a runtime yet (databases, SSH) will plug in at
// the two "bound" branches: the binding already says which endpoint owns the
// flow before a byte is read.
import type { Endpoint, Policy } from "../policy/types.ts";
import type { DeviceIdentity, FlowEndpoint } from "./flow.ts";
import { isIP } from "node:net";
import { matchEndpoint } from "../policy/engine.ts";

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
}

/** An endpoint that owns the destination address itself. */
export interface Binding {
  via: "vip" | "direct-ip";
  /** The name the flow is judged under: the VIP's hostname, or the IP literal. */
  name: string;
  endpoint: Endpoint;
}

export type DispatchDecision =
  | { kind: "intercept"; endpoint: Endpoint; sni: string; via?: Binding["via"] }
  | { kind: "internal"; sni: string }
  | { kind: "passthrough"; sni?: string; reason: string }
  | { kind: "deny"; sni?: string; reason: string }
  | { kind: "relay"; reason: string };

/** Ports on which the first bytes are peeked for a ClientHello. */
export function peekPorts(policy: Policy): Set<number> {
  const ports = new Set<number>();
  for (const ep of policy.endpoints.values()) {
    for (const p of ep.ports ?? [DEFAULT_HTTPS_PORT]) ports.add(p);
  }
  return ports;
}

export function shouldPeek(policy: Policy, dst: FlowEndpoint, ports = peekPorts(policy)): boolean {
  return ports.has(dst.port);
}

const claims = (e: Endpoint, port: number) => (e.ports ?? [DEFAULT_HTTPS_PORT]).includes(port);

/**
 * The endpoint that owns `dst.host` for this profile: through the VIP table,
 * or as an IP literal in an endpoint's hosts. Undefined for ordinary addresses.
 * A VIP whose hostname no visible endpoint names is returned as `unbound`.
 */
export function bindingFor(
  policy: Policy,
  dst: FlowEndpoint,
  device: DeviceIdentity,
  ctx: DispatchContext = {},
): Binding | { unbound: string } | undefined {
  const vipName = ctx.vipHostname?.(dst.host);
  if (vipName !== undefined) {
    const endpoint = matchEndpoint(policy, vipName, device.profile);
    return endpoint ? { via: "vip", name: vipName, endpoint } : { unbound: vipName };
  }
  if (isIP(dst.host) === 0) return undefined;
  const endpoint = matchEndpoint(policy, dst.host, device.profile);
  return endpoint ? { via: "direct-ip", name: dst.host, endpoint } : undefined;
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
  if (b?.via === "vip") {
    if (claims(b.endpoint, dst.port)) return { kind: "peek" };
    return { kind: "deny", reason: `VIP of ${b.name}: endpoint ${b.endpoint.ref} does not serve port ${dst.port}` };
  }
  if (b?.via === "direct-ip" && claims(b.endpoint, dst.port)) return { kind: "peek" };
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
      if (sni) {
        const endpoint = matchEndpoint(policy, sni, device.profile);
        if (endpoint && claims(endpoint, dst.port)) return { kind: "intercept", endpoint, sni };
      }
      if (bound) return { kind: "intercept", endpoint: bound.endpoint, sni: bound.name, via: bound.via };
      const what = sni ? `no endpoint claims ${sni}:${dst.port}` : "no SNI";
      if (policy.defaults.unknownHost === "deny") {
        return sni ? { kind: "deny", sni, reason: `${what} (unknown_host = deny)` } : { kind: "deny", reason: `${what} (unknown_host = deny)` };
      }
      return sni ? { kind: "passthrough", sni, reason: what } : { kind: "passthrough", reason: what };
    }
  }
}
