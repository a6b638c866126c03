// The dnsvip role assembled: its own connection to the state database (so
// the gateway's VIP writes show up in data_version even in `all`, where
// both run in one process), the names table, and the responder.
import type { Policy } from "../policy/types.ts";
import { openStateDb } from "../store/db.ts";
import { systemResolver } from "../net/packet-plane.ts";
import { startDnsResponder, type DnsResponder } from "./server.ts";
import { fixedNames, namesFromDb } from "./names.ts";

export interface DnsVip {
  responder: DnsResponder;
  close(): Promise<void>;
}

export class DnsNotConfigured extends Error {}

/** Starts the responder for `policy().gateway.dns`; the policy getter is read per query (it reloads). */
export async function startDnsVip(policy: () => Policy, opts: { timeoutMs?: number; resolvConf?: string } = {}): Promise<DnsVip> {
  const first = policy();
  const dns = first.gateway.dns;
  if (!dns) throw new DnsNotConfigured("no gateway { dns { } } block in the config: the DNS-VIP responder has nothing to serve");
  const upstream = dns.upstream ?? systemResolver(opts.resolvConf);
  if (upstream === dns.listen) throw new DnsNotConfigured(`gateway.dns: upstream ${upstream} is the responder's own listen address`);
  const db = openStateDb(first.gateway.stateDir);
  let fixedFor: Policy | undefined;
  let fixed = new Map<string, string>();
  const names = namesFromDb(db, () => {
    const p = policy();
    if (p !== fixedFor) {
      fixed = fixedNames(p);
      fixedFor = p;
    }
    return fixed;
  });
  let responder: DnsResponder;
  try {
    responder = await startDnsResponder({
      listen: dns.listen,
      upstream,
      names,
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    });
  } catch (e) {
    db.close();
    throw e;
  }
  return {
    responder,
    async close() {
      await responder.close();
      db.close();
    },
  };
}
