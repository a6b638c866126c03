// The conn index: which endpoints live at a destination address, for the
// endpoint types claimed by address (app/endpoints/spec.ts `claim`). Names in
// their hosts are resolved when a policy is loaded and again when their TTL
// runs out, in the background and bounded; IP literals need no lookup. The
// dispatcher reads it synchronously: an address not (yet) resolved is simply
// not in the index.
import { isIP } from "node:net";
import type { Endpoint, Policy } from "../policy/types.ts";
import { specOf } from "../endpoints/registry.ts";
import { log } from "../log.ts";

export interface IndexedEndpoint {
  /** Endpoint ref. */
  endpoint: string;
  /** The host entry (a name or a literal) the address belongs to: the upstream is dialed by it. */
  host: string;
}

/** A name's addresses and how long they hold (seconds). */
export type Resolver = (name: string) => Promise<{ addresses: string[]; ttlS: number }>;

export interface ConnIndexOptions {
  resolve: Resolver;
  now?: () => number;
  /** Bounds on how often a name is looked up again. */
  minTtlS?: number;
  maxTtlS?: number;
  /** Names resolved at once. */
  concurrency?: number;
}

interface NameState {
  addresses: string[];
  /** ms (clock) when it must be looked up again. */
  refreshAt: number;
  inFlight: boolean;
}

const DEFAULT_MIN_TTL_S = 5;
const DEFAULT_MAX_TTL_S = 3600;
/** A failed lookup is tried again this soon; the last good answer is kept meanwhile. */
const RETRY_AFTER_FAILURE_S = 10;

export class ConnIndex {
  private byAddress = new Map<string, IndexedEndpoint[]>();
  private names = new Map<string, NameState>();
  /** name -> the endpoints whose hosts name it. */
  private owners = new Map<string, string[]>();
  private literals = new Map<string, IndexedEndpoint[]>();
  private readonly now: () => number;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  private active = 0;
  private readonly queue: string[] = [];

  constructor(private readonly opts: ConnIndexOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Endpoints at `ip`, in declaration order. */
  lookup(ip: string): readonly IndexedEndpoint[] {
    return this.byAddress.get(normalizeIp(ip)) ?? [];
  }

  /** Takes a new policy: literals at once, names resolved in the background (known ones keep their addresses). */
  update(policy: Policy): void {
    const owners = new Map<string, string[]>();
    const literals = new Map<string, IndexedEndpoint[]>();
    for (const e of addressClaimed(policy)) {
      for (const host of e.hosts) {
        if (isIP(host) !== 0) {
          const key = normalizeIp(host);
          literals.set(key, [...(literals.get(key) ?? []), { endpoint: e.ref, host }]);
        } else {
          owners.set(host, [...(owners.get(host) ?? []), e.ref]);
        }
      }
    }
    this.owners = owners;
    this.literals = literals;
    for (const name of [...this.names.keys()]) if (!owners.has(name)) this.names.delete(name);
    for (const name of owners.keys()) {
      if (!this.names.has(name)) this.names.set(name, { addresses: [], refreshAt: 0, inFlight: false });
    }
    this.rebuild();
    this.refreshDue();
  }

  /** Resolves every name now; for tests and for a first load that must be complete before flows arrive. */
  async settle(): Promise<void> {
    await Promise.all([...this.names.keys()].map((n) => this.resolveOne(n)));
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private rebuild(): void {
    const byAddress = new Map<string, IndexedEndpoint[]>();
    for (const [ip, list] of this.literals) byAddress.set(ip, [...list]);
    for (const [name, refs] of this.owners) {
      for (const ip of this.names.get(name)?.addresses ?? []) {
        const list = byAddress.get(ip) ?? [];
        for (const endpoint of refs) list.push({ endpoint, host: name });
        byAddress.set(ip, list);
      }
    }
    this.byAddress = byAddress;
  }

  private refreshDue(): void {
    if (this.closed) return;
    const now = this.now();
    let next = Infinity;
    for (const [name, st] of this.names) {
      if (st.inFlight) continue;
      if (st.refreshAt <= now) this.enqueue(name);
      else next = Math.min(next, st.refreshAt);
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (next !== Infinity) {
      this.timer = setTimeout(() => this.refreshDue(), Math.max(0, next - now));
      this.timer.unref?.();
    }
  }

  private enqueue(name: string): void {
    if (!this.queue.includes(name)) this.queue.push(name);
    this.pump();
  }

  private pump(): void {
    const limit = this.opts.concurrency ?? 4;
    while (this.active < limit && this.queue.length > 0) {
      const name = this.queue.shift()!;
      this.active++;
      void this.resolveOne(name).finally(() => {
        this.active--;
        this.pump();
        if (this.active === 0 && this.queue.length === 0) this.refreshDue();
      });
    }
  }

  private async resolveOne(name: string): Promise<void> {
    const st = this.names.get(name);
    if (!st || st.inFlight) return;
    st.inFlight = true;
    const min = this.opts.minTtlS ?? DEFAULT_MIN_TTL_S;
    const max = this.opts.maxTtlS ?? DEFAULT_MAX_TTL_S;
    try {
      const r = await this.opts.resolve(name);
      st.addresses = [...new Set(r.addresses.map(normalizeIp))];
      st.refreshAt = this.now() + Math.min(max, Math.max(min, r.ttlS)) * 1000;
    } catch (e) {
      // Keep the last good addresses: a resolver hiccup must not unbind a database.
      log.warn("could not resolve an endpoint host", { host: name, error: (e as Error).message });
      st.refreshAt = this.now() + RETRY_AFTER_FAILURE_S * 1000;
    } finally {
      st.inFlight = false;
    }
    if (this.names.get(name) === st) this.rebuild();
  }
}

/** The endpoints whose type is claimed by address. */
export function addressClaimed(policy: Policy): Endpoint[] {
  return [...policy.endpoints.values()].filter((e) => specOf(e.type).claim === "address");
}

function normalizeIp(ip: string): string {
  const v = ip.toLowerCase();
  // IPv4-mapped IPv6 (::ffff:10.0.0.1) is the IPv4 address.
  return v.startsWith("::ffff:") && isIP(v.slice(7)) === 4 ? v.slice(7) : v;
}

/**
 * The system's resolver: DNS A/AAAA with their TTLs, and where DNS knows
 * nothing (an /etc/hosts name), getaddrinfo, looked up again every minute.
 * Each lookup is bounded to 5 s.
 */
export const systemResolver: Resolver = async (name) => {
  const dns = await import("node:dns/promises");
  const bounded = <T>(p: Promise<T>): Promise<T> =>
    Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error("lookup timed out after 5 s")), 5_000).unref?.())]);
  const [v4, v6] = await Promise.allSettled([bounded(dns.resolve4(name, { ttl: true })), bounded(dns.resolve6(name, { ttl: true }))]);
  const records = [...(v4.status === "fulfilled" ? v4.value : []), ...(v6.status === "fulfilled" ? v6.value : [])];
  if (records.length > 0) return { addresses: records.map((r) => r.address), ttlS: Math.min(...records.map((r) => r.ttl)) };
  const found = await bounded(dns.lookup(name, { all: true }));
  return { addresses: found.map((a) => a.address), ttlS: 60 };
};
