// The one destination policy both capture modes share: what a device's flow
// may be relayed to. Pure: the caller passes in what it knows about the
// gateway host (its addresses, the device subnets, the operator's
// exceptions); the answer is a verdict with a reason, as Tailscale's filter.
//
// Refused, in this order:
//   1. unspecified, loopback, link-local (169.254.0.0/16 holds the cloud
//      metadata address), multicast and broadcast: the gateway itself or its
//      own link, never a remote service
//   2. the device subnets: another device (no peer-to-peer through the
//      gateway), and the gateway's own tunnel address (its documented
//      services, DNS on :53 and clawpatrol.internal on :443, are dispatched
//      before anything is relayed)
//   3. any address of the gateway host (the dashboard, the onboarding API,
//      the proxy port, whatever else listens there)
// `defaults { allow_destinations = [...] }` lets the operator reach a class 1
// or 3 address anyway (e.g. a service on the host's loopback); it never
// opens a device address. Destinations an endpoint claims are intercepted,
// not relayed, and never come here.
import { parseIp, formatIp, type IpBytes } from "../net/ipaddr.ts";

export type DestinationClass = "unspecified" | "loopback" | "link-local" | "multicast" | "device" | "gateway" | "host";

export type DestinationVerdict =
  | { verdict: "allow"; reason: string }
  | { verdict: "refuse"; class: DestinationClass; reason: string };

export interface AddressPrefix {
  address: IpBytes;
  bits: number;
}

/** One `allow_destinations` entry: an address or CIDR, optionally one port. */
export interface AllowedDestination {
  prefix: AddressPrefix;
  port?: number;
  /** As the operator wrote it, for reasons. */
  text: string;
}

export interface DestinationContext {
  /** Every address of the gateway host, canonical text (formatIp). */
  hostAddresses: ReadonlySet<string>;
  /** The device subnets (IPv4 and IPv6). */
  deviceSubnets: readonly AddressPrefix[];
  /** The gateway's own tunnel addresses (inside the device subnets). */
  gatewayAddresses: ReadonlySet<string>;
  /** `defaults.allow_destinations`. */
  allow: readonly AllowedDestination[];
}

export const EMPTY_DESTINATION_CONTEXT: DestinationContext = {
  hostAddresses: new Set(),
  deviceSubnets: [],
  gatewayAddresses: new Set(),
  allow: [],
};

/** "127.0.0.1", "10.0.0.0/8", "[::1]:22", "192.0.2.7:8080", "fd00::/8". Undefined when malformed. */
export function parseAllowedDestination(text: string): AllowedDestination | undefined {
  let s = text.trim();
  let port: number | undefined;
  const bracket = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(s);
  if (bracket) {
    s = bracket[1]!;
    if (bracket[2] !== undefined) port = Number(bracket[2]);
  } else if (!s.includes(":") || /^[^:]+:\d{1,5}$/.test(s)) {
    // IPv4 (a colon can only be its port)
    const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(s);
    if (!m) return undefined;
    s = m[1]!;
    if (m[2] !== undefined) port = Number(m[2]);
  }
  if (port !== undefined && (port < 1 || port > 65535)) return undefined;
  const prefix = parsePrefixText(s);
  if (!prefix) return undefined;
  return port === undefined ? { prefix, text } : { prefix, port, text };
}

function parsePrefixText(s: string): AddressPrefix | undefined {
  const slash = s.indexOf("/");
  const address = parseIp(slash < 0 ? s : s.slice(0, slash));
  if (!address) return undefined;
  const max = address.length * 8;
  if (slash < 0) return { address, bits: max };
  const bitsText = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bitsText) || Number(bitsText) > max) return undefined;
  return { address, bits: Number(bitsText) };
}

export function prefixContains(p: AddressPrefix, a: IpBytes): boolean {
  if (p.address.length !== a.length) return false;
  let bits = p.bits;
  for (let i = 0; i < a.length && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((a[i]! & mask) !== (p.address[i]! & mask)) return false;
  }
  return true;
}

/** ::ffff:a.b.c.d -> a.b.c.d, so a mapped address is judged as the IPv4 it is. */
export function unmapped(a: IpBytes): IpBytes {
  if (a.length !== 16) return a;
  for (let i = 0; i < 10; i++) if (a[i] !== 0) return a;
  if (a[10] !== 0xff || a[11] !== 0xff) return a;
  return a.subarray(12);
}

/** Class 1: addresses that are the gateway itself or its own link, whoever asks. */
export function specialClass(a: IpBytes): DestinationClass | undefined {
  if (a.length === 4) {
    const [b0, b1] = [a[0]!, a[1]!];
    if (b0 === 0) return "unspecified"; // 0.0.0.0/8: "this host" (a connect to it is local)
    if (b0 === 127) return "loopback";
    if (b0 === 169 && b1 === 254) return "link-local";
    if (b0 >= 224) return "multicast"; // multicast, reserved, limited broadcast
    return undefined;
  }
  if (a.every((b) => b === 0)) return "unspecified";
  if (a.subarray(0, 15).every((b) => b === 0) && a[15] === 1) return "loopback";
  if (a[0] === 0xfe && (a[1]! & 0xc0) === 0x80) return "link-local";
  if (a[0] === 0xff) return "multicast";
  return undefined;
}

const CLASS_TEXT: Record<DestinationClass, string> = {
  unspecified: "an unspecified address (this host)",
  loopback: "the gateway's loopback",
  "link-local": "link-local (the gateway's own link, cloud metadata)",
  multicast: "multicast or broadcast",
  device: "another device (devices are isolated from each other)",
  gateway: "the gateway's tunnel address (only its documented services answer there)",
  host: "an address of the gateway host",
};

/** Whether a flow may be relayed to `ip`:`port`. `ip` must be an IP literal; anything else is refused. */
export function checkDestination(ip: string, port: number, ctx: DestinationContext): DestinationVerdict {
  const raw = parseIp(ip);
  if (!raw) return { verdict: "refuse", class: "unspecified", reason: `destination ${JSON.stringify(ip.slice(0, 80))}:${port} is not an address` };
  const a = unmapped(raw);
  const text = formatIp(a);
  const refuse = (cls: DestinationClass): DestinationVerdict => ({ verdict: "refuse", class: cls, reason: `destination ${text}:${port} is ${CLASS_TEXT[cls]}` });
  // Devices first: allow_destinations never opens one.
  if (ctx.gatewayAddresses.has(text)) return refuse("gateway");
  if (ctx.deviceSubnets.some((p) => prefixContains(p, a))) return refuse("device");
  const cls = specialClass(a) ?? (ctx.hostAddresses.has(text) ? "host" : undefined);
  if (cls === undefined) return { verdict: "allow", reason: "an ordinary address" };
  const allowed = ctx.allow.find((d) => prefixContains(d.prefix, a) && (d.port === undefined || d.port === port));
  if (allowed) return { verdict: "allow", reason: `allow_destinations "${allowed.text}"` };
  return refuse(cls);
}

/**
 * A name resolved to `addresses`: the first one the policy allows, or the
 * refusal of the first (a name that resolves to loopback is loopback, even
 * when another of its addresses would do: a rebinding trick gets nothing).
 */
export function pickDestination(
  addresses: readonly string[],
  port: number,
  ctx: DestinationContext,
): { verdict: "allow"; address: string; reason: string } | Extract<DestinationVerdict, { verdict: "refuse" }> {
  if (addresses.length === 0) return { verdict: "refuse", class: "unspecified", reason: "the name resolved to no address" };
  for (const address of addresses) {
    const v = checkDestination(address, port, ctx);
    if (v.verdict === "refuse") return v;
  }
  return { verdict: "allow", address: addresses[0]!, reason: checkDestination(addresses[0]!, port, ctx).reason };
}
