// Prometheus metrics, kept from the event stream (the bus delivers every
// decided request and relayed connection, already redacted) plus gauges
// read when scraped. Text exposition format 0.0.4.
import type { EventSink, GatewayEvent } from "./types.ts";

/** Seconds; request and approval latencies. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

class Histogram {
  readonly counts = new Array<number>(LATENCY_BUCKETS.length).fill(0);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    this.sum += seconds;
    this.count += 1;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) if (seconds <= LATENCY_BUCKETS[i]!) this.counts[i]! += 1;
  }

  render(name: string, labels: string): string[] {
    const sep = labels ? `${labels},` : "";
    const lines = LATENCY_BUCKETS.map((b, i) => `${name}_bucket{${sep}le="${b}"} ${this.counts[i]}`);
    lines.push(`${name}_bucket{${sep}le="+Inf"} ${this.count}`);
    lines.push(`${name}_sum${labels ? `{${labels}}` : ""} ${this.sum}`, `${name}_count${labels ? `{${labels}}` : ""} ${this.count}`);
    return lines;
  }
}

export interface MetricGauges {
  approvalsPending(): number;
  flowsOpen(): number;
  devices(): number;
  /** More exposition lines (the process's descriptors, app/net/fds.ts). */
  extra?(): string[];
}

export class Metrics implements EventSink {
  private readonly requests = new Map<string, number>();
  private readonly bytes = { up: 0, down: 0 };
  private readonly requestLatency = new Map<string, Histogram>();
  private readonly approvalLatency = new Histogram();

  constructor(private readonly gauges: MetricGauges) {}

  write(e: GatewayEvent): void {
    // Labels are escaped when scraped, not per event.
    const key = `${e.kind}\0${e.verdict}`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
    this.bytes.up += e.bytesUp;
    this.bytes.down += e.bytesDown;
    if (e.kind === "http") {
      let h = this.requestLatency.get(e.verdict);
      if (!h) this.requestLatency.set(e.verdict, (h = new Histogram()));
      h.observe(e.durationMs / 1000);
    }
    if (e.approvalMs !== undefined && !e.remembered) this.approvalLatency.observe(e.approvalMs / 1000);
  }

  render(): string {
    const out: string[] = [];
    out.push("# HELP clawpatrol_requests_total Requests and relayed connections, by kind and verdict.");
    out.push("# TYPE clawpatrol_requests_total counter");
    const requests = [...this.requests].map(([k, v]) => {
      const cut = k.indexOf("\0"); // kinds are ours and never hold one
      return [`kind="${label(k.slice(0, cut))}",verdict="${label(k.slice(cut + 1))}"`, v] as const;
    });
    for (const [k, v] of requests.sort()) out.push(`clawpatrol_requests_total{${k}} ${v}`);
    out.push("# HELP clawpatrol_request_duration_seconds Time from request to the last byte of the answer.");
    out.push("# TYPE clawpatrol_request_duration_seconds histogram");
    for (const [verdict, h] of [...this.requestLatency].sort()) out.push(...h.render("clawpatrol_request_duration_seconds", `verdict="${label(verdict)}"`));
    out.push("# HELP clawpatrol_bytes_total Body bytes carried, by direction (up: toward upstreams).");
    out.push("# TYPE clawpatrol_bytes_total counter");
    out.push(`clawpatrol_bytes_total{direction="up"} ${this.bytes.up}`, `clawpatrol_bytes_total{direction="down"} ${this.bytes.down}`);
    out.push("# HELP clawpatrol_approval_duration_seconds How long held requests waited for a decision.");
    out.push("# TYPE clawpatrol_approval_duration_seconds histogram");
    out.push(...this.approvalLatency.render("clawpatrol_approval_duration_seconds", ""));
    out.push("# HELP clawpatrol_approvals_pending Requests held for approval now.");
    out.push("# TYPE clawpatrol_approvals_pending gauge");
    out.push(`clawpatrol_approvals_pending ${this.gauges.approvalsPending()}`);
    out.push("# HELP clawpatrol_flows_open Connections from devices open now.");
    out.push("# TYPE clawpatrol_flows_open gauge");
    out.push(`clawpatrol_flows_open ${this.gauges.flowsOpen()}`);
    out.push("# HELP clawpatrol_devices Active devices.");
    out.push("# TYPE clawpatrol_devices gauge");
    out.push(`clawpatrol_devices ${this.gauges.devices()}`);
    if (this.gauges.extra) out.push(...this.gauges.extra());
    return out.join("\n") + "\n";
  }
}

/** Label values are ours (verdicts), but escape anyway: the format breaks on quotes and newlines. */
export function label(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}
