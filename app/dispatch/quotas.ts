// Per-device quotas: what one device may hold of what all devices share.
// Pure bookkeeping with the clock passed in; the capture shells ask before
// they take a resource and give it back when it ends, and carry out the
// refusal in their protocol's own form (TCP reset, ICMP, REFUSED).
//
//   tcp_flows            concurrent TCP flows (relays, interceptions)
//   udp_flows            concurrent relayed UDP flows (the relay table)
//   dns_connections      concurrent DNS-over-TCP connections
//   new_flows_per_second new TCP flows and UDP relay flows, a token bucket
//                        with a burst of two seconds' worth
//   buffered_bytes       what the gateway holds for the device: the storage
//                        the TCP stack allocates for its connections (send
//                        and receive rings) and the bytes its relays and
//                        interceptions have read from one side and not yet
//                        handed to the other (app/dispatch/held-bytes.ts).
//                        One DeviceBudget each of them draws from. At the
//                        quota the rings stop growing (windows close) and the
//                        relays stop reading (backpressure), and a new TCP
//                        flow is refused
//
// A refusal names the device and the quota; `shouldReport` says whether the
// shell should also publish it (once per device and quota every
// REPORT_INTERVAL_MS, so a flood makes a few events, not a flood of them).

import type { BufferAccount } from "../net/stack/tcp/buffer.ts";
import { label } from "../events/metrics.ts";

export type QuotaName = "tcp_flows" | "udp_flows" | "dns_connections" | "new_flows_per_second" | "buffered_bytes";

export interface QuotaLimits {
  tcpFlows: number;
  udpFlows: number;
  dnsConnections: number;
  newFlowsPerSecond: number;
  bufferedBytes: number;
}

/** Generous for one agent (a `npm install` opens tens of connections), small against the process's descriptors. */
export const DEFAULT_QUOTAS: QuotaLimits = {
  tcpFlows: 1024,
  udpFlows: 256,
  dnsConnections: 16,
  newFlowsPerSecond: 200,
  // 128 connections with both rings full (256 KiB each way); rings grow with use
  bufferedBytes: 64 * 1024 * 1024,
};

export const REPORT_INTERVAL_MS = 10_000;

export type QuotaVerdict = { ok: true } | { ok: false; quota: QuotaName; limit: number; reason: string };

interface DeviceUsage {
  tcp: number;
  udp: number;
  dns: number;
  tokens: number;
  refilledAt: number;
  reportedAt: Map<string, number>;
}

/**
 * A device's buffered-bytes budget: the stack's rings draw from it as a
 * BufferAccount; a relay or an interception also waits on it for room
 * before it reads more (`whenRoom`).
 */
export interface DeviceBudget extends BufferAccount {
  /** Calls `fn` once, when bytes are given back and some room is left; returns a cancel. */
  whenRoom(fn: () => void): () => void;
}

/** One device's buffered bytes (see DeviceBudget); kept while the device has TCP flows or holds any. */
class DeviceBuffers implements DeviceBudget {
  held = 0;
  private waiters = new Set<() => void>();
  constructor(
    private readonly limit: () => number,
    private readonly onLimited: () => void,
    private readonly onEmpty: () => void,
  ) {}
  get remaining(): number {
    return Math.max(0, this.limit() - this.held);
  }
  get pressed(): boolean {
    return this.remaining < this.limit() / 4;
  }
  add(bytes: number): void {
    this.held += bytes;
    if (bytes >= 0) return;
    if (this.held <= 0) this.held = 0;
    if (this.waiters.size > 0 && this.remaining > 0) {
      const ws = [...this.waiters];
      this.waiters.clear();
      // later, not inside the release (a ring's dequeue in the stack, a write's callback)
      for (const w of ws) queueMicrotask(w);
    }
    if (this.held === 0) this.onEmpty();
  }
  limited(): void {
    this.onLimited();
  }
  whenRoom(fn: () => void): () => void {
    if (this.remaining > 0) {
      queueMicrotask(fn);
      return () => undefined;
    }
    this.waiters.add(fn);
    return () => this.waiters.delete(fn);
  }
  get idle(): boolean {
    return this.held === 0 && this.waiters.size === 0;
  }
}

export class DeviceQuotas {
  private readonly usage = new Map<string, DeviceUsage>();
  private readonly buffers = new Map<string, DeviceBuffers>();

  constructor(
    private readonly limits: () => QuotaLimits,
    private readonly now: () => number,
    /** A device's rings were clipped by its buffered-bytes quota (the shell reports, rate-limited by shouldReport). */
    private readonly onBuffersLimited: (device: string, verdict: Extract<QuotaVerdict, { ok: false }>) => void = () => {},
  ) {}

  /**
   * The budget a device's TCP connections allocate their buffers from, and
   * its relays and interceptions count their bytes against. One per device
   * for as long as the device has a TCP flow or holds a byte: a second one
   * while the first is in use would double the device's quota.
   */
  bufferAccount(device: string): DeviceBudget {
    let b = this.buffers.get(device);
    if (!b) {
      const acct: DeviceBuffers = new DeviceBuffers(
        () => this.limits().bufferedBytes,
        () => this.onBuffersLimited(device, this.refuse(device, "buffered_bytes", this.limits().bufferedBytes)),
        () => {
          if (this.buffers.get(device) === acct && !this.usage.get(device)?.tcp) this.buffers.delete(device);
        },
      );
      b = acct;
      this.buffers.set(device, b);
    }
    return b;
  }

  private of(device: string): DeviceUsage {
    let u = this.usage.get(device);
    if (!u) {
      u = { tcp: 0, udp: 0, dns: 0, tokens: 2 * this.limits().newFlowsPerSecond, refilledAt: this.now(), reportedAt: new Map() };
      this.usage.set(device, u);
    }
    return u;
  }

  private refuse(device: string, quota: QuotaName, limit: number): Extract<QuotaVerdict, { ok: false }> {
    const what =
      quota === "new_flows_per_second" ? `more than ${limit} new flows per second`
      : quota === "buffered_bytes" ? `${limit} bytes buffered`
      : `${limit} concurrent ${QUOTA_TEXT[quota]}`;
    return { ok: false, quota, limit, reason: `device ${device} is over its quota ${quota}: ${what}` };
  }

  /** Takes one new-flow token (refilled at the configured rate, burst of two seconds). */
  private takeToken(device: string, u: DeviceUsage): QuotaVerdict {
    const rate = this.limits().newFlowsPerSecond;
    const t = this.now();
    u.tokens = Math.min(2 * rate, u.tokens + ((t - u.refilledAt) / 1000) * rate);
    u.refilledAt = t;
    if (u.tokens < 1) return this.refuse(device, "new_flows_per_second", rate);
    u.tokens -= 1;
    return { ok: true };
  }

  /** A new TCP flow (`dns`: one to the DNS responder, which has its own, smaller quota). */
  openTcp(device: string, dns = false): QuotaVerdict {
    const u = this.of(device);
    const l = this.limits();
    if (u.tcp >= l.tcpFlows) return this.refuse(device, "tcp_flows", l.tcpFlows);
    if (dns && u.dns >= l.dnsConnections) return this.refuse(device, "dns_connections", l.dnsConnections);
    // at the buffer quota a new flow could not move a byte: refused rather than stalled
    if ((this.buffers.get(device)?.remaining ?? 1) === 0) return this.refuse(device, "buffered_bytes", l.bufferedBytes);
    const t = this.takeToken(device, u);
    if (!t.ok) return t;
    u.tcp++;
    if (dns) u.dns++;
    return { ok: true };
  }

  closeTcp(device: string, dns = false): void {
    const u = this.usage.get(device);
    if (!u) return;
    u.tcp = Math.max(0, u.tcp - 1);
    if (dns) u.dns = Math.max(0, u.dns - 1);
    this.forgetIfIdle(device, u);
  }

  /** A new relayed UDP flow (a datagram to a destination the device has no relay socket for). */
  openUdp(device: string): QuotaVerdict {
    const u = this.of(device);
    const l = this.limits();
    if (u.udp >= l.udpFlows) return this.refuse(device, "udp_flows", l.udpFlows);
    const t = this.takeToken(device, u);
    if (!t.ok) return t;
    u.udp++;
    return { ok: true };
  }

  closeUdp(device: string): void {
    const u = this.usage.get(device);
    if (!u) return;
    u.udp = Math.max(0, u.udp - 1);
    this.forgetIfIdle(device, u);
  }

  /** True at most once per device and quota (or other refusal, e.g. a destination) every REPORT_INTERVAL_MS. */
  shouldReport(device: string, what: QuotaName | string): boolean {
    const u = this.of(device);
    const t = this.now();
    const last = u.reportedAt.get(what);
    if (last !== undefined && t - last < REPORT_INTERVAL_MS) return false;
    // bounded: a device probing many destinations keeps at most this many report times
    if (u.reportedAt.size >= 256) u.reportedAt.clear();
    u.reportedAt.set(what, t);
    return true;
  }

  /** What a device holds now (for tests and diagnostics). */
  held(device: string): { tcp: number; udp: number; dns: number; buffered: number } {
    const u = this.usage.get(device);
    return { tcp: u?.tcp ?? 0, udp: u?.udp ?? 0, dns: u?.dns ?? 0, buffered: this.buffers.get(device)?.held ?? 0 };
  }

  /** Buffer storage held now, per device holding any (for /metrics). */
  bufferedBytes(): [string, number][] {
    return [...this.buffers].map(([device, b]) => [device, b.held]);
  }

  private forgetIfIdle(device: string, u: DeviceUsage): void {
    if (u.tcp === 0 && this.buffers.get(device)?.idle) this.buffers.delete(device);
    // A device holding nothing with a full bucket and nothing reported lately is forgotten (bounded memory).
    if (u.tcp === 0 && u.udp === 0 && u.dns === 0 && u.reportedAt.size === 0) {
      const rate = this.limits().newFlowsPerSecond;
      if (u.tokens + ((this.now() - u.refilledAt) / 1000) * rate >= 2 * rate) this.usage.delete(device);
    }
  }
}

const QUOTA_TEXT: Record<Exclude<QuotaName, "new_flows_per_second" | "buffered_bytes">, string> = {
  tcp_flows: "TCP flows",
  udp_flows: "UDP flows",
  dns_connections: "DNS-over-TCP connections",
};

/** Prometheus lines: each device's buffer storage now (the buffered_bytes quota's measure). */
export function bufferedMetricLines(quotas: DeviceQuotas): string[] {
  const out = [
    "# HELP clawpatrol_device_buffered_bytes TCP stack buffer storage a device's connections hold (quota_buffered_bytes).",
    "# TYPE clawpatrol_device_buffered_bytes gauge",
  ];
  for (const [device, bytes] of quotas.bufferedBytes()) out.push(`clawpatrol_device_buffered_bytes{device="${label(device)}"} ${bytes}`);
  return out;
}
