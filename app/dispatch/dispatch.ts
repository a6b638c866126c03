// The dispatcher: a pure function from (destination, peeked bytes, policy,
// device) to a handler. It never touches sockets; the flow shell peeks and
// carries the decision out.
//
//   TLS to :443 with SNI clawpatrol.internal -> internal (the gateway's own
//     discovery responder; the name is reserved, no endpoint can claim it)
//   TCP to a port some endpoint claims (443 unless set otherwise):
//     TLS ClientHello, SNI claimed by an endpoint visible to the profile -> intercept
//     TLS with an unclaimed or missing SNI -> defaults.unknown_host (passthrough | deny)
//     not TLS -> relay
//   any other TCP -> relay
import type { Endpoint, Policy } from "../policy/types.ts";
import type { DeviceIdentity, FlowEndpoint } from "./flow.ts";
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

export type DispatchDecision =
  | { kind: "intercept"; endpoint: Endpoint; sni: string }
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

export function dispatchTcp(
  policy: Policy,
  dst: FlowEndpoint,
  device: DeviceIdentity,
  peek: Peek,
): DispatchDecision {
  // A device whose profile the policy does not know gets nothing it could
  // not get otherwise: fail closed rather than pass its traffic unjudged.
  if (!policy.profiles.has(device.profile)) {
    return { kind: "deny", reason: `profile "${device.profile}" is not configured` };
  }
  switch (peek.kind) {
    case "not-tls":
      return { kind: "relay", reason: "not TLS" };
    case "error":
      // A ClientHello we cannot parse is not something we can judge: fail closed.
      return { kind: "deny", reason: `malformed ClientHello: ${peek.reason}` };
    case "hello": {
      const sni = peek.sni;
      if (sni && isInternalHost(sni) && dst.port === INTERNAL_PORT) return { kind: "internal", sni };
      if (sni) {
        const endpoint = matchEndpoint(policy, sni, device.profile);
        if (endpoint && (endpoint.ports ?? [DEFAULT_HTTPS_PORT]).includes(dst.port)) {
          return { kind: "intercept", endpoint, sni };
        }
      }
      const what = sni ? `no endpoint claims ${sni}:${dst.port}` : "no SNI";
      if (policy.defaults.unknownHost === "deny") {
        return sni ? { kind: "deny", sni, reason: `${what} (unknown_host = deny)` } : { kind: "deny", reason: `${what} (unknown_host = deny)` };
      }
      return sni ? { kind: "passthrough", sni, reason: what } : { kind: "passthrough", reason: what };
    }
  }
}
