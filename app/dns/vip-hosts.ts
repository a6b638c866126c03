// The VIP allocator's hook at policy build and reload: which hostnames need
// a VIP (the operator's `vip_hosts`, and the exact hosts of endpoints whose
// type requires one), synced into the VIP table.
import type { Database } from "bun:sqlite";
import type { EndpointType, Policy } from "../policy/types.ts";
import { REQUIRES_VIP } from "../policy/refs.ts";
import { VipTable, type VipBinding } from "../store/vips.ts";

export function vipHostnames(policy: Policy, requiresVip: (type: EndpointType) => boolean = (t) => REQUIRES_VIP[t]): string[] {
  const dns = policy.gateway.dns;
  if (!dns) return [];
  const out = new Set(dns.vipHosts);
  for (const e of policy.endpoints.values()) {
    if (!requiresVip(e.type)) continue;
    // A wildcard names no single host to bind; an IP literal needs no VIP.
    for (const h of e.hosts) if (!h.startsWith("*") && !/^[\d.]+$|:/.test(h)) out.add(h);
  }
  return [...out].sort();
}

/** Bind the policy's VIP hostnames; without a `gateway { dns }` block nothing is touched. */
export function syncVips(db: Database, policy: Policy, now: number, requiresVip?: (type: EndpointType) => boolean): VipBinding[] | undefined {
  const dns = policy.gateway.dns;
  if (!dns) return undefined;
  return new VipTable(db).sync(vipHostnames(policy, requiresVip), dns.vipRange, now);
}
