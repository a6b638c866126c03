// The names the responder answers itself: clawpatrol.internal (the gateway's
// tunnel address, as the packet plane answers it) and every active VIP
// binding. The VIP table lives in the state database, written by the
// gateway; it is re-read only when the database changed (PRAGMA
// data_version), so a query costs one cheap pragma.
import type { Database } from "bun:sqlite";
import { dataVersion } from "../store/db.ts";
import { VipTable } from "../store/vips.ts";
import { localNameTable, type LocalName } from "../net/stack/local-names.ts";
import { INTERNAL_HOST } from "../dispatch/dispatch.ts";
import { gatewayAddressOf } from "../net/packet-plane.ts";
import type { Policy } from "../policy/types.ts";

/** The fixed names: clawpatrol.internal when the WireGuard capture mode gives the gateway a tunnel address. */
export function fixedNames(policy: Policy): Map<string, string> {
  const wg = policy.gateway.wireguard;
  return wg ? new Map([[INTERNAL_HOST, gatewayAddressOf(wg.subnetCidr)]]) : new Map();
}

export function namesFromDb(db: Database, fixed: () => Map<string, string>): () => Map<string, LocalName> {
  const vips = new VipTable(db);
  let version = -1;
  let fixedSeen: Map<string, string> | undefined;
  let table = new Map<string, LocalName>();
  return () => {
    const v = dataVersion(db);
    const f = fixed();
    if (v !== version || f !== fixedSeen) {
      const all = new Map<string, string>();
      for (const b of vips.active()) all.set(b.hostname, b.address);
      // The gateway's own names win over a VIP of the same name.
      for (const [name, address] of f) all.set(name, address);
      table = localNameTable(all);
      version = v;
      fixedSeen = f;
    }
    return table;
  };
}
