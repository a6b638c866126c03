// /metrics lines for memory, loop lag and the bounded queues and pools.
import { expect, test } from "bun:test";
import { runtimeMetrics } from "../../../app/events/runtime-metrics.ts";
import { LoopStall } from "../../../app/net/loop-stall.ts";

test("memory, loop lag, pool, handshake queue, leaves and sink queues, each with HELP and TYPE", () => {
  const loop = new LoopStall(25, 0);
  loop.tick(25);
  loop.tick(300); // 250 ms late
  const lines = runtimeMetrics({
    loop,
    pool: () => ({ idle: 7, dialing: 2 }),
    handshakes: () => ({ active: 3, waiting: 11, limit: 256, maxWaiting: 4096 }),
    leaves: () => ({ cached: 5, max: 2000 }),
    sinkPending: () => ({ sqlite: 42 }),
    memory: () => ({ rss: 100, heapUsed: 20, heapTotal: 30, external: 4, arrayBuffers: 1 }),
  });
  const values = new Map(lines.filter((l) => !l.startsWith("#")).map((l) => [l.slice(0, l.lastIndexOf(" ")), Number(l.slice(l.lastIndexOf(" ") + 1))]));
  expect(Object.fromEntries(values)).toEqual({
    clawpatrol_resident_memory_bytes: 100,
    clawpatrol_heap_used_bytes: 20,
    clawpatrol_heap_total_bytes: 30,
    clawpatrol_external_memory_bytes: 4,
    clawpatrol_event_loop_lag_seconds: 0.25,
    clawpatrol_upstream_pool_idle: 7,
    clawpatrol_upstream_dials: 2,
    clawpatrol_tls_handshakes_active: 3,
    clawpatrol_tls_handshakes_waiting: 11,
    'clawpatrol_tls_handshakes_limit{bound="slots"}': 256,
    'clawpatrol_tls_handshakes_limit{bound="waiting"}': 4096,
    clawpatrol_leaf_certificates_cached: 5,
    clawpatrol_leaf_certificates_max: 2000,
    'clawpatrol_event_sink_pending{sink="sqlite"}': 42,
  });
  for (const name of new Set([...values.keys()].map((k) => k.split("{")[0]))) {
    expect(lines).toContain(`# TYPE ${name} gauge`);
    expect(lines.some((l) => l.startsWith(`# HELP ${name} `))).toBe(true);
  }
  // The lag is the worst since the last scrape: read once, then it starts over.
  expect(runtimeMetrics({ loop, memory: () => ({ rss: 1, heapUsed: 1, heapTotal: 1, external: 1, arrayBuffers: 1 }) })).toContain("clawpatrol_event_loop_lag_seconds 0");
});
