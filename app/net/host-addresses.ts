// The gateway host's own addresses (every interface, this network
// namespace), for the destination policy. Read from the kernel through
// os.networkInterfaces() and cached briefly: addresses change (DHCP, an
// operator's edit), a flow must not pay for a syscall each.
import os from "node:os";
import { parseIp, formatIp } from "./ipaddr.ts";

const REFRESH_MS = 2_000;

export function readHostAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) {
      // strip a zone ("fe80::1%eth0") and write the canonical form
      const ip = parseIp(a.address.replace(/%.*$/, ""));
      if (ip) out.add(formatIp(ip));
    }
  }
  return out;
}

/** A cached view of readHostAddresses(), refreshed at most every REFRESH_MS. */
export function hostAddressCache(now: () => number = Date.now, read = readHostAddresses): () => ReadonlySet<string> {
  let at = -Infinity;
  let cached: Set<string> = new Set();
  return () => {
    const t = now();
    if (t - at >= REFRESH_MS) {
      try {
        cached = read();
      } catch {
        /* keep the last known set */
      }
      at = t;
    }
    return cached;
  };
}
