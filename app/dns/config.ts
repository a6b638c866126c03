// `gateway { dns { listen, upstream, vip_range, vip_hosts } }`: the DNS-VIP
// responder's settings, read and checked with FILE:LINE errors.
import type { BlockReader } from "../policy/hcl/reader.ts";
import type { DnsSettings } from "../policy/types.ts";
import { parsePrefix } from "../net/wireguard/allowedips.ts";
import { parseHostPort } from "../net/stack/udp-sockets.ts";

/** Where the responder listens when `listen` is unset (loopback, no privilege needed). */
export const DEFAULT_DNS_LISTEN = "127.0.0.1:5300";
/** 100.64.0.0/10 is CGNAT space: not routed on the Internet, rarely used inside a LAN. */
export const DEFAULT_VIP_RANGE = "100.80.0.0/16";

const HOSTNAME = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/** ip:port with an IP literal; port 0 (any free port) only where `zeroOk` (a listener run in-process, for tests). */
function validAddress(s: string, zeroOk = false): boolean {
  if (!/:\d+$/.test(s)) return false;
  try {
    parseHostPort(zeroOk ? s.replace(/:0$/, ":1") : s);
    return true;
  } catch {
    return false;
  }
}

export function readDnsBlock(r: BlockReader): DnsSettings {
  r.allow(["listen", "upstream", "vip_range", "vip_hosts"]);
  const listen = r.string("listen") ?? DEFAULT_DNS_LISTEN;
  if (!validAddress(listen, true)) r.error(r.line("listen"), `listen must be ip:port (an IP literal, e.g. "127.0.0.1:53"), not "${listen}"`);
  const upstream = r.string("upstream");
  if (upstream !== undefined && !validAddress(upstream)) {
    r.error(r.line("upstream"), `upstream must be ip:port of a DNS resolver (e.g. "10.0.2.3:53"), not "${upstream}"`);
  }
  const vipRange = r.string("vip_range") ?? DEFAULT_VIP_RANGE;
  const prefix = parsePrefix(vipRange);
  if (!prefix || !vipRange.includes("/") || prefix.address.length !== 4 || prefix.bits < 8 || prefix.bits > 30) {
    r.error(r.line("vip_range"), `vip_range must be an IPv4 network between /8 and /30, like "${DEFAULT_VIP_RANGE}", not "${vipRange}"`);
  }
  const vipHosts: string[] = [];
  for (const h of r.list("vip_hosts") ?? []) {
    const name = h.toLowerCase().replace(/\.$/, "");
    if (!HOSTNAME.test(name)) r.error(r.line("vip_hosts"), `vip_hosts: "${h}" is not a hostname (no wildcards, no addresses)`);
    else if (!vipHosts.includes(name)) vipHosts.push(name);
  }
  return { listen, vipRange, vipHosts, ...(upstream !== undefined ? { upstream } : {}) };
}
