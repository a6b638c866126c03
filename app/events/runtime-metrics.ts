// /metrics lines for what the process holds: its memory, how late its event
// loop runs, and the depth of every bounded queue and pool the gateway
// keeps (handshake slots, the upstream pool, leaves, events waiting for
// their sink). Read when scraped; nothing here is kept per request.
import type { LoopStall } from "../net/loop-stall.ts";

export interface RuntimeSources {
  loop?: LoopStall;
  pool?: () => { idle: number; dialing: number };
  handshakes?: () => { active: number; waiting: number; limit: number; maxWaiting: number };
  leaves?: () => { cached: number; max: number };
  /** Events buffered per sink, waiting to be written. */
  sinkPending?: () => Record<string, number>;
  memory?: () => NodeJS.MemoryUsage;
}

export function runtimeMetrics(src: RuntimeSources): string[] {
  const out: string[] = [];
  const gauge = (name: string, help: string, values: [string, number][]) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const [labels, v] of values) out.push(`${name}${labels} ${v}`);
  };
  const mem = (src.memory ?? (() => process.memoryUsage()))();
  gauge("clawpatrol_resident_memory_bytes", "Resident set size of the process.", [["", mem.rss]]);
  gauge("clawpatrol_heap_used_bytes", "JavaScript heap in use.", [["", mem.heapUsed]]);
  gauge("clawpatrol_heap_total_bytes", "JavaScript heap reserved.", [["", mem.heapTotal]]);
  gauge("clawpatrol_external_memory_bytes", "Memory held outside the JavaScript heap (buffers, TLS).", [["", mem.external]]);
  if (src.loop) {
    gauge("clawpatrol_event_loop_lag_seconds", "The worst lateness of the event loop since the last scrape.", [["", src.loop.takeMaxLag() / 1000]]);
  }
  if (src.pool) {
    const p = src.pool();
    gauge("clawpatrol_upstream_pool_idle", "Idle upstream connections kept for reuse (at most 1024 per upstream, 60 s each).", [["", p.idle]]);
    gauge("clawpatrol_upstream_dials", "Upstream connects and handshakes in progress.", [["", p.dialing]]);
  }
  if (src.handshakes) {
    const h = src.handshakes();
    gauge("clawpatrol_tls_handshakes_active", "Agents' TLS handshakes running now.", [["", h.active]]);
    gauge("clawpatrol_tls_handshakes_waiting", "Agents' TLS handshakes queued for a slot.", [["", h.waiting]]);
    gauge("clawpatrol_tls_handshakes_limit", "Handshake slots, and the most that may wait before a connection is refused.", [
      ['{bound="slots"}', h.limit],
      ['{bound="waiting"}', h.maxWaiting],
    ]);
  }
  if (src.leaves) {
    const l = src.leaves();
    gauge("clawpatrol_leaf_certificates_cached", "Minted leaf certificates kept (an LRU).", [["", l.cached]]);
    gauge("clawpatrol_leaf_certificates_max", "The leaf LRU's bound.", [["", l.max]]);
  }
  if (src.sinkPending) {
    const rows = Object.entries(src.sinkPending()).map(([sink, n]) => [`{sink="${sink}"}`, n] as [string, number]);
    gauge("clawpatrol_event_sink_pending", "Events buffered for a sink, not yet written.", rows);
  }
  return out;
}
