// The VIP table: hostnames that are reached by name only (no SNI, no Host)
// each get a virtual IPv4 address from a configured range, which the DNS-VIP
// responder answers and the dispatcher maps back to the hostname.
//
// Stable: a binding survives restarts and reloads. Never reused while the
// hostname is in the policy: a hostname that leaves it is released, and its
// address goes to another name only when the range has no never-used
// address left (the oldest release first). The gateway writes (sync at
// policy build and reload); dnsvip and the dispatcher read.
import type { Database } from "bun:sqlite";
import { parsePrefix } from "../net/wireguard/allowedips.ts";

export interface VipBinding {
  hostname: string;
  address: string;
  allocatedAt: number;
  releasedAt?: number;
}

interface Row {
  hostname: string;
  address: string;
  allocated_at: number;
  released_at: number | null;
}

export class VipRangeExhausted extends Error {}

/** The usable host addresses of an IPv4 network, as integers [first, last]. */
export function vipRangeBounds(cidr: string): { first: number; last: number } {
  const p = parsePrefix(cidr);
  if (!p || p.address.length !== 4 || p.bits < 8 || p.bits > 30) throw new Error(`vip_range ${cidr} is not an IPv4 network of /8../30`);
  const a = p.address;
  const mask = (0xffffffff << (32 - p.bits)) >>> 0;
  const net = ((((a[0]! << 24) | (a[1]! << 16) | (a[2]! << 8) | a[3]!) >>> 0) & mask) >>> 0;
  const broadcast = (net | (~mask >>> 0)) >>> 0;
  return { first: net + 1, last: broadcast - 1 };
}

function toInt(address: string): number {
  const p = address.split(".").map(Number);
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

function toText(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
}

function binding(r: Row): VipBinding {
  return { hostname: r.hostname, address: r.address, allocatedAt: r.allocated_at, ...(r.released_at !== null ? { releasedAt: r.released_at } : {}) };
}

export class VipTable {
  constructor(private readonly db: Database) {}

  /**
   * Make exactly `hostnames` (canonical: lower case, no trailing dot) bound
   * inside `range`: keep or re-activate existing bindings, allocate the
   * missing ones, release the rest. One write transaction; returns the
   * active bindings. Throws VipRangeExhausted (nothing changed) when the
   * range cannot hold them all.
   */
  sync(hostnames: readonly string[], range: string, now: number): VipBinding[] {
    const { first, last } = vipRangeBounds(range);
    const wanted = new Set(hostnames);
    return this.db
      .transaction((): VipBinding[] => {
        const rows = this.db.query("SELECT * FROM vips").all() as Row[];
        const byName = new Map(rows.map((r) => [r.hostname, r]));
        const used = new Set(rows.map((r) => toInt(r.address)));
        const inRange = (address: string) => {
          const n = toInt(address);
          return n >= first && n <= last;
        };
        // Released bindings whose address may go to a new name, oldest release first.
        const reclaimable = rows
          .filter((r) => r.released_at !== null && !wanted.has(r.hostname) && inRange(r.address))
          .sort((a, b) => a.released_at! - b.released_at! || a.hostname.localeCompare(b.hostname));
        let cursor = first;
        const nextFree = (): number => {
          while (cursor <= last && used.has(cursor)) cursor++;
          if (cursor <= last) {
            used.add(cursor);
            return cursor;
          }
          const old = reclaimable.shift();
          if (!old) throw new VipRangeExhausted(`vip_range ${range} has no free address left for ${wanted.size} hostnames`);
          this.db.query("DELETE FROM vips WHERE hostname = ?").run(old.hostname);
          return toInt(old.address);
        };
        for (const r of rows) {
          if (wanted.has(r.hostname)) {
            if (!inRange(r.address)) {
              // The range changed: move the name into the new one.
              used.delete(toInt(r.address));
              this.db.query("UPDATE vips SET address = ?, allocated_at = ?, released_at = NULL WHERE hostname = ?").run(toText(nextFree()), now, r.hostname);
            } else if (r.released_at !== null) {
              this.db.query("UPDATE vips SET released_at = NULL WHERE hostname = ?").run(r.hostname);
            }
          } else if (r.released_at === null) {
            this.db.query("UPDATE vips SET released_at = ? WHERE hostname = ?").run(now, r.hostname);
          }
        }
        for (const h of [...wanted].sort()) {
          if (byName.has(h)) continue;
          this.db.query("INSERT INTO vips (hostname, address, allocated_at, released_at) VALUES (?, ?, ?, NULL)").run(h, toText(nextFree()), now);
        }
        return this.active();
      })
      .immediate();
  }

  /** Bindings in use (hostname order). */
  active(): VipBinding[] {
    return (this.db.query("SELECT * FROM vips WHERE released_at IS NULL ORDER BY hostname").all() as Row[]).map(binding);
  }

  /** Every binding, released ones too. */
  all(): VipBinding[] {
    return (this.db.query("SELECT * FROM vips ORDER BY hostname").all() as Row[]).map(binding);
  }

  lookup(hostname: string): string | undefined {
    const r = this.db.query("SELECT address FROM vips WHERE hostname = ? AND released_at IS NULL").get(hostname) as { address: string } | null;
    return r?.address;
  }

  /** The hostname an active VIP stands for (the dispatcher's reverse lookup). */
  hostnameOf(address: string): string | undefined {
    const r = this.db.query("SELECT hostname FROM vips WHERE address = ? AND released_at IS NULL").get(address) as { hostname: string } | null;
    return r?.hostname;
  }
}
