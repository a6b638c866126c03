// The gateway as a process of its own for the benchmark: the same
// startGateway `clawpatrol-gateway all` runs, minus the stderr event echo
// (events still go to the state database and the JSON-lines file). Kept
// out of the bench's own process so the gateway's CPU time can be read
// from /proc/PID/stat and does not share an event loop with anything.
//
//   bun test/bench/gateway-proc.ts CONFIG
//
// Prints one JSON line on stdout once listening: { "proxy": "HOST:PORT" }.
// SIGTERM/SIGINT close it cleanly (so `bun --cpu-prof` can write its profile).
import { startGateway } from "../../app/gateway.ts";

const configPath = process.argv[2];
if (!configPath) {
  console.error("usage: bun test/bench/gateway-proc.ts CONFIG");
  process.exit(2);
}

const gw = await startGateway({ configPath, stderrEvents: false });
const p = gw.proxies[0];
if (!p) {
  console.error("gateway-proc: the config has no proxy listener");
  process.exit(2);
}
process.stdout.write(`${JSON.stringify({ proxy: `${p.address.host}:${p.address.port}` })}\n`);

let closing = false;
const stop = async () => {
  if (closing) return;
  closing = true;
  await gw.close().catch(() => {});
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
// The soak asks for a full collection before a sample (SOAK_GC=1): what stays is held, not garbage.
process.on("SIGUSR2", () => Bun.gc(true));
process.on("SIGINT", () => void stop());

// The soak's experiment with a collection on a timer (SOAK_GC_SECONDS):
// Bun.gc(false) asks JSC for a collection without waiting for it.
const gcSeconds = Number(process.env.CLAWPATROL_BENCH_GC_SECONDS ?? 0);
if (gcSeconds > 0) setInterval(() => Bun.gc(false), gcSeconds * 1000).unref();

// The soak's memory trace (SOAK_TRACE=1 sets this): every 10 s, what JSC
// says about its heap (size, capacity, extra memory reported by native
// objects, the most numerous object types) and what mimalloc and libpas
// committed, one JSON line each, to see where RSS goes without forcing a GC.
const tracePath = process.env.CLAWPATROL_BENCH_HEAP_TRACE;
if (tracePath) {
  const jsc = await import("bun:jsc");
  const { appendFileSync } = await import("node:fs");
  const t0 = performance.now();
  setInterval(() => {
    const h = jsc.heapStats();
    const top = Object.entries(h.objectTypeCounts).sort((a, b) => b[1] - a[1]).slice(0, 12);
    const m = jsc.memoryUsage();
    const line = {
      t: Math.round((performance.now() - t0) / 1000),
      rss: process.memoryUsage.rss(),
      heapSize: h.heapSize,
      heapCapacity: h.heapCapacity,
      extraMemorySize: h.extraMemorySize,
      objectCount: h.objectCount,
      protectedObjectCount: h.protectedObjectCount,
      current: m.current,
      currentCommit: m.currentCommit,
      top: Object.fromEntries(top),
    };
    appendFileSync(tracePath, `${JSON.stringify(line)}\n`);
  }, 10_000).unref();
}
