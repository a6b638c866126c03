// The Analytics page's arithmetic, without a browser.
import { describe, expect, test } from "bun:test";
import { chooseSpan, fmtMs, heldForApproval, latencyHistogram, percentiles, topHosts, verdictsOverTime, type EventLike } from "./analytics.ts";

const NOW = Date.parse("2026-01-01T12:00:00Z");
const ev = (secondsAgo: number, verdict: string, host = "a.test", durationMs = 10): EventLike => ({
  time: new Date(NOW - secondsAgo * 1000).toISOString(),
  verdict,
  host,
  durationMs,
});

describe("verdictsOverTime", () => {
  test("counts each verdict in its bucket; the edges are [from, now)", () => {
    const b = verdictsOverTime([ev(1, "allow"), ev(2, "deny"), ev(59, "allow"), ev(60, "allow"), ev(0, "allow"), ev(-5, "allow")], NOW, 60_000, 6);
    expect(b).toHaveLength(6);
    expect(b[5]!.counts).toEqual({ allow: 1, deny: 1 });
    expect(b[0]!.counts).toEqual({ allow: 2 }); // 59 s and exactly 60 s ago
    expect(b.reduce((n, x) => n + x.total, 0)).toBe(4); // "now" and the future are out
  });

  test("an unparsable time is skipped", () => {
    expect(verdictsOverTime([{ time: "x", verdict: "allow", host: "h", durationMs: 1 }], NOW, 60_000, 3).every((x) => x.total === 0)).toBe(true);
  });
});

test("chooseSpan takes the smallest span that holds the oldest event", () => {
  expect(chooseSpan([], NOW)).toBe(15 * 60_000);
  expect(chooseSpan([ev(20 * 60, "allow")], NOW)).toBe(3_600_000);
  expect(chooseSpan([ev(30 * 86_400, "allow")], NOW)).toBe(7 * 86_400_000);
});

test("latencyHistogram: inclusive upper edges, an open last bin", () => {
  const bins = latencyHistogram([ev(1, "allow", "h", 5), ev(1, "allow", "h", 6), ev(1, "allow", "h", 5000), ev(1, "allow", "h", 5001), ev(1, "allow", "h", NaN)]);
  expect(bins[0]).toEqual({ label: "<5ms", count: 1 });
  expect(bins[1]).toEqual({ label: "≤10ms", count: 1 });
  expect(bins.at(-2)).toEqual({ label: "≤5s", count: 1 });
  expect(bins.at(-1)).toEqual({ label: ">5s", count: 1 });
});

test("topHosts orders by count, then name, and counts denials", () => {
  const t = topHosts([ev(1, "allow", "b"), ev(1, "deny", "b"), ev(1, "allow", "a"), ev(1, "allow", "c"), ev(1, "allow", "c")], 2);
  expect(t).toEqual([
    { host: "b", count: 2, denied: 1 },
    { host: "c", count: 2, denied: 0 },
  ]);
});

test("percentiles use the nearest rank", () => {
  const xs = Array.from({ length: 100 }, (_, i) => ev(1, "allow", "h", i + 1));
  expect(percentiles(xs)).toEqual({ p50: 50, p95: 95, p99: 99 });
  expect(percentiles([])).toBeUndefined();
  expect(fmtMs(1500)).toBe("1.5s");
  expect(fmtMs(2000)).toBe("2s");
  expect(fmtMs(12.4)).toBe("12ms");
});

test("heldForApproval counts decided holds and the requests waiting now (they have no event yet)", () => {
  const events = [{ approvers: "dashboard" }, {}, { approvers: "" }, { approvers: "dashboard,human_approver.ops" }];
  expect(heldForApproval(events, 0)).toEqual({ total: 2, waiting: 0 });
  expect(heldForApproval([], 1)).toEqual({ total: 1, waiting: 1 });
  expect(heldForApproval(events, 3)).toEqual({ total: 5, waiting: 3 });
});
