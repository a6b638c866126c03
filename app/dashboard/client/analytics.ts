// Pure numbers behind the Analytics page: events in, series out. No DOM here,
// so the charts' arithmetic is tested without a browser.

export interface EventLike {
  time: string;
  verdict: string;
  host: string;
  durationMs: number;
  kind?: string;
}

export interface TimeBucket {
  start: number;
  counts: Record<string, number>;
  total: number;
}

/** Split [now - spanMs, now) into `n` equal buckets and count verdicts in each. */
export function verdictsOverTime(events: EventLike[], now: number, spanMs: number, n: number): TimeBucket[] {
  const width = spanMs / n;
  const from = now - spanMs;
  const buckets: TimeBucket[] = Array.from({ length: n }, (_, i) => ({ start: from + i * width, counts: {}, total: 0 }));
  for (const e of events) {
    const t = Date.parse(e.time);
    if (!Number.isFinite(t) || t < from || t >= now) continue;
    const b = buckets[Math.min(n - 1, Math.floor((t - from) / width))]!;
    b.counts[e.verdict] = (b.counts[e.verdict] ?? 0) + 1;
    b.total++;
  }
  return buckets;
}

/** Pick a span that covers the events: the smallest of 15 min, 1 h, 6 h, 24 h, 7 d that holds the oldest. */
export function chooseSpan(events: EventLike[], now: number): number {
  const spans = [15 * 60_000, 3_600_000, 6 * 3_600_000, 24 * 3_600_000, 7 * 24 * 3_600_000];
  let oldest = now;
  for (const e of events) {
    const t = Date.parse(e.time);
    if (Number.isFinite(t) && t < oldest) oldest = t;
  }
  return spans.find((s) => now - oldest < s) ?? spans.at(-1)!;
}

/** Latency bins' upper edges in ms (roughly logarithmic); the last bin is open. */
export const LATENCY_EDGES = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000] as const;

export interface Bin {
  label: string;
  count: number;
}

export function latencyHistogram(events: EventLike[]): Bin[] {
  const bins: Bin[] = LATENCY_EDGES.map((edge, i) => ({ label: `${i === 0 ? "<" : "≤"}${fmtMs(edge)}`, count: 0 }));
  bins.push({ label: `>${fmtMs(LATENCY_EDGES.at(-1)!)}`, count: 0 });
  for (const e of events) {
    if (!Number.isFinite(e.durationMs)) continue;
    const i = LATENCY_EDGES.findIndex((edge) => e.durationMs <= edge);
    bins[i === -1 ? bins.length - 1 : i]!.count++;
  }
  return bins;
}

/** The `n` hosts with the most events, most first (ties by name). */
export function topHosts(events: EventLike[], n: number): { host: string; count: number; denied: number }[] {
  const by = new Map<string, { count: number; denied: number }>();
  for (const e of events) {
    const h = by.get(e.host) ?? { count: 0, denied: 0 };
    h.count++;
    if (e.verdict === "deny") h.denied++;
    by.set(e.host, h);
  }
  return [...by.entries()]
    .map(([host, v]) => ({ host, ...v }))
    .sort((a, b) => b.count - a.count || a.host.localeCompare(b.host))
    .slice(0, n);
}

/** p50/p95/p99 of the durations (nearest rank); undefined when there are none. */
export function percentiles(events: EventLike[]): { p50: number; p95: number; p99: number } | undefined {
  const d = events.map((e) => e.durationMs).filter(Number.isFinite).sort((a, b) => a - b);
  if (d.length === 0) return undefined;
  const at = (p: number) => d[Math.min(d.length - 1, Math.max(0, Math.ceil(p * d.length) - 1))]!;
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

export function fmtMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(1)}s`;
}

/**
 * Requests held for approval: the recorded ones that were held (an event is
 * written only once its hold is decided) plus those waiting right now,
 * which have no event yet.
 */
export function heldForApproval(events: readonly { approvers?: string }[], waitingNow: number): { total: number; waiting: number } {
  const decided = events.filter((e) => e.approvers !== undefined && e.approvers !== "").length;
  return { total: decided + waitingNow, waiting: waitingNow };
}
