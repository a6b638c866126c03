// The destination policy's context from a Policy and the host's addresses:
// the device subnets and the gateway's tunnel addresses come from
// `gateway { wireguard {} }`, the exceptions from `defaults.allow_destinations`.
// Parsed once per policy (a reload builds a new one).
import type { Policy } from "../policy/types.ts";
import { parseAllowedDestination, type AddressPrefix, type AllowedDestination, type DestinationContext } from "./destinations.ts";
import { parseIp, formatIp } from "../net/ipaddr.ts";

interface PolicyParts {
  deviceSubnets: AddressPrefix[];
  gatewayAddresses: Set<string>;
  allow: AllowedDestination[];
}

const parsed = new WeakMap<Policy, PolicyParts>();

/** The network of a CIDR and its first host (the gateway's tunnel address). */
function subnetAndGateway(cidr: string): { prefix: AddressPrefix; gateway: string } | undefined {
  const [addr, bitsText] = cidr.split("/");
  const a = parseIp(addr ?? "");
  const bits = Number(bitsText);
  if (!a || !Number.isInteger(bits) || bits < 0 || bits > a.length * 8) return undefined;
  const net = Uint8Array.from(a);
  for (let i = 0; i < net.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    net[i] = net[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  const first = Uint8Array.from(net);
  for (let i = first.length - 1; i >= 0; i--) {
    first[i] = (first[i]! + 1) & 0xff;
    if (first[i] !== 0) break;
  }
  return { prefix: { address: net, bits }, gateway: formatIp(first) };
}

function partsOf(policy: Policy): PolicyParts {
  let p = parsed.get(policy);
  if (p) return p;
  p = { deviceSubnets: [], gatewayAddresses: new Set(), allow: [] };
  const wg = policy.gateway.wireguard;
  for (const cidr of [wg?.subnetCidr, wg?.subnet6Cidr]) {
    const s = cidr === undefined ? undefined : subnetAndGateway(cidr);
    if (!s) continue;
    p.deviceSubnets.push(s.prefix);
    p.gatewayAddresses.add(s.gateway);
  }
  for (const text of policy.defaults.allowDestinations ?? []) {
    const d = parseAllowedDestination(text);
    if (d) p.allow.push(d);
  }
  parsed.set(policy, p);
  return p;
}

export function destinationContextFor(policy: Policy, hostAddresses: ReadonlySet<string>): DestinationContext {
  return { ...partsOf(policy), hostAddresses };
}
