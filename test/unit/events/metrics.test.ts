// The Prometheus exposition: counters from events, histograms with
// cumulative buckets, gauges read when scraped.
import { expect, test } from "bun:test";
import { Metrics } from "../../../app/events/metrics.ts";
import type { GatewayEvent } from "../../../app/events/types.ts";

const ev = (over: Partial<GatewayEvent>): GatewayEvent => ({
  time: new Date(0).toISOString(),
  kind: "http",
  flowId: "f",
  device: "d",
  profile: "p",
  host: "h",
  port: 443,
  bytesUp: 10,
  bytesDown: 100,
  durationMs: 30,
  verdict: "allow",
  reason: "",
  ...over,
});

test("counters, histograms and gauges", () => {
  let pending = 2;
  const m = new Metrics({ approvalsPending: () => pending, flowsOpen: () => 5, devices: () => 3 });
  m.write(ev({}));
  m.write(ev({ verdict: "deny", durationMs: 2 }));
  m.write(ev({ kind: "connection", verdict: "relay", durationMs: 9000 }));
  m.write(ev({ approvalMs: 1500 }));
  m.write(ev({ approvalMs: 1, remembered: true }));
  pending = 1;
  const text = m.render();
  expect(text).toContain('clawpatrol_requests_total{kind="http",verdict="allow"} 3');
  expect(text).toContain('clawpatrol_requests_total{kind="http",verdict="deny"} 1');
  expect(text).toContain('clawpatrol_requests_total{kind="connection",verdict="relay"} 1');
  expect(text).toContain('clawpatrol_bytes_total{direction="up"} 50');
  expect(text).toContain('clawpatrol_bytes_total{direction="down"} 500');
  // Cumulative: a 30 ms request is counted from the 0.05 s bucket up.
  expect(text).toContain('clawpatrol_request_duration_seconds_bucket{verdict="allow",le="0.025"} 0');
  expect(text).toContain('clawpatrol_request_duration_seconds_bucket{verdict="allow",le="0.05"} 3');
  expect(text).toContain('clawpatrol_request_duration_seconds_bucket{verdict="allow",le="+Inf"} 3');
  // A remembered approval did not wait: only the real one is observed.
  expect(text).toContain("clawpatrol_approval_duration_seconds_count 1");
  expect(text).toContain("clawpatrol_approvals_pending 1");
  expect(text).toContain("clawpatrol_flows_open 5");
  expect(text).toContain("clawpatrol_devices 3");
  // Every sample line is `name{labels} number` or `name number`.
  for (const line of text.trim().split("\n")) {
    if (line.startsWith("#")) continue;
    expect(line).toMatch(/^[a-z_]+(\{[^}]*\})? [0-9.e+-]+$/);
  }
});
