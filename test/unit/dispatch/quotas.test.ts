// Per-device quotas: counted per device, released on close, a token bucket
// for new flows with the clock passed in, refusals that name the device and
// the quota, and reports rate-limited per device and quota.
import { describe, expect, test } from "bun:test";
import { DeviceQuotas, REPORT_INTERVAL_MS, bufferedMetricLines, type QuotaLimits } from "../../../app/dispatch/quotas.ts";
import { RingBuffer } from "../../../app/net/stack/tcp/buffer.ts";

function setup(limits: Partial<QuotaLimits> = {}) {
  let t = 0;
  const limited: string[] = [];
  const q = new DeviceQuotas(
    () => ({ tcpFlows: 3, udpFlows: 2, dnsConnections: 1, newFlowsPerSecond: 1000, bufferedBytes: 64 * 1024, ...limits }),
    () => t,
    (device, v) => limited.push(`${device} ${v.quota}`),
  );
  return { q, limited, advance: (ms: number) => (t += ms) };
}

describe("DeviceQuotas", () => {
  test("concurrent TCP flows: the device over its quota is refused, another device is not; a close frees a slot", () => {
    const { q } = setup();
    for (let i = 0; i < 3; i++) expect(q.openTcp("a").ok).toBe(true);
    const v = q.openTcp("a");
    expect(v).toMatchObject({ ok: false, quota: "tcp_flows", limit: 3 });
    if (!v.ok) expect(v.reason).toBe("device a is over its quota tcp_flows: 3 concurrent TCP flows");
    expect(q.openTcp("b").ok).toBe(true);
    q.closeTcp("a");
    expect(q.openTcp("a").ok).toBe(true);
    expect(q.held("a")).toEqual({ tcp: 3, udp: 0, dns: 0, buffered: 0 });
  });

  test("DNS-over-TCP connections have their own, smaller quota inside the TCP one", () => {
    const { q } = setup();
    expect(q.openTcp("a", true).ok).toBe(true);
    expect(q.openTcp("a", true)).toMatchObject({ ok: false, quota: "dns_connections" });
    expect(q.openTcp("a").ok).toBe(true); // other TCP still fine
    q.closeTcp("a", true);
    expect(q.openTcp("a", true).ok).toBe(true);
    expect(q.held("a")).toEqual({ tcp: 2, udp: 0, dns: 1, buffered: 0 });
  });

  test("UDP flows", () => {
    const { q } = setup();
    expect(q.openUdp("a").ok).toBe(true);
    expect(q.openUdp("a").ok).toBe(true);
    expect(q.openUdp("a")).toMatchObject({ ok: false, quota: "udp_flows", limit: 2 });
    expect(q.openUdp("b").ok).toBe(true);
    q.closeUdp("a");
    expect(q.openUdp("a").ok).toBe(true);
  });

  test("new flows per second: a burst of two seconds' worth, then the rate; other devices unaffected", () => {
    const { q, advance } = setup({ tcpFlows: 10_000, newFlowsPerSecond: 10 });
    let opened = 0;
    while (q.openTcp("a").ok) opened++;
    expect(opened).toBe(20);
    expect(q.openTcp("a")).toMatchObject({ ok: false, quota: "new_flows_per_second", limit: 10 });
    expect(q.openTcp("b").ok).toBe(true);
    advance(500); // five tokens back
    opened = 0;
    while (q.openTcp("a").ok) opened++;
    expect(opened).toBe(5);
    // UDP flows draw from the same bucket
    advance(100);
    expect(q.openUdp("a").ok).toBe(true);
    expect(q.openUdp("a")).toMatchObject({ ok: false, quota: "new_flows_per_second" });
  });

  test("a refused flow takes nothing", () => {
    const { q } = setup({ newFlowsPerSecond: 1 });
    q.openTcp("a");
    q.openTcp("a");
    expect(q.openTcp("a").ok).toBe(false);
    expect(q.held("a").tcp).toBe(2);
  });

  test("reports: once per device and quota per interval", () => {
    const { q, advance } = setup();
    expect(q.shouldReport("a", "tcp_flows")).toBe(true);
    expect(q.shouldReport("a", "tcp_flows")).toBe(false);
    expect(q.shouldReport("a", "udp_flows")).toBe(true);
    expect(q.shouldReport("b", "tcp_flows")).toBe(true);
    advance(REPORT_INTERVAL_MS);
    expect(q.shouldReport("a", "tcp_flows")).toBe(true);
  });

  test("a closed flow of an unknown device is ignored; counts never go negative", () => {
    const { q } = setup();
    q.closeTcp("nobody");
    q.closeUdp("nobody");
    q.openTcp("a");
    q.closeTcp("a");
    q.closeTcp("a");
    expect(q.held("a")).toEqual({ tcp: 0, udp: 0, dns: 0, buffered: 0 });
  });
});

describe("the quotas in defaults", () => {
  test("quota_* set only what the operator wrote; a non-positive or fractional value is a config error", async () => {
    const { policyFrom } = await import("../policy/helpers.ts");
    const p = await policyFrom(`schema_version = 1
defaults {
  quota_tcp_flows = 10
  quota_new_flows_per_second = 5
  quota_buffered_bytes = "16MiB"
}
`);
    expect(p.defaults.quotas).toEqual({ tcpFlows: 10, newFlowsPerSecond: 5, bufferedBytes: 16 * 1024 * 1024 });
    expect((await policyFrom("schema_version = 1\n")).defaults.quotas).toBeUndefined();
    await expect(policyFrom(`schema_version = 1\ndefaults {\n  quota_udp_flows = 0\n}\n`)).rejects.toThrow(/quota_udp_flows must be a whole number of at least 1/);
    await expect(policyFrom(`schema_version = 1\ndefaults {\n  quota_dns_connections = 1.5\n}\n`)).rejects.toThrow(/quota_dns_connections/);
    await expect(policyFrom(`schema_version = 1\ndefaults {\n  quota_buffered_bytes = "1KiB"\n}\n`)).rejects.toThrow(/quota_buffered_bytes must be a size like "64MiB", at least 64KiB/);
  });
});

describe("DeviceQuotas: buffered bytes", () => {
  const chunk = new Uint8Array(16 * 1024);
  /** Fill a ring as a device pushing into a stalled flow would: as much as it takes. */
  const fill = (r: RingBuffer) => {
    let n = 0;
    for (let k = r.enqueue(chunk); k > 0; k = r.enqueue(chunk)) n += k;
    return n;
  };

  test("a device's rings together never allocate past its quota; another device's rings are unaffected", () => {
    const { q, limited } = setup();
    const rings = Array.from({ length: 4 }, () => new RingBuffer(256 * 1024));
    for (const r of rings) r.attach(q.bufferAccount("a"));
    const taken = rings.map(fill);
    expect(taken.reduce((x, y) => x + y, 0)).toBe(64 * 1024);
    expect(rings.reduce((x, r) => x + r.allocated, 0)).toBeLessThanOrEqual(64 * 1024);
    expect(q.held("a").buffered).toBe(rings.reduce((x, r) => x + r.allocated, 0));
    expect(rings.every((r) => r.free === 0)).toBe(true); // windows closed
    expect(limited).toContain("a buffered_bytes");
    const b = new RingBuffer(256 * 1024);
    b.attach(q.bufferAccount("b"));
    expect(fill(b)).toBe(64 * 1024);
    expect(bufferedMetricLines(q)).toContain('clawpatrol_device_buffered_bytes{device="a"} 65536');
  });

  test("at the quota a new TCP flow is refused by name; reading frees room, a closed flow's storage goes back", () => {
    const { q } = setup();
    const [r1, r2] = [new RingBuffer(256 * 1024), new RingBuffer(256 * 1024)];
    r1.attach(q.bufferAccount("a"));
    r2.attach(q.bufferAccount("a"));
    fill(r1);
    const v = q.openTcp("a");
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.reason).toBe("device a is over its quota buffered_bytes: 65536 bytes buffered");
    expect(q.openTcp("b").ok).toBe(true);
    // the consumer reads everything: the empty ring gives its storage back (the quota is pressed), r2 may grow
    r1.dequeue(r1.length);
    expect(r1.allocated).toBe(0);
    expect(fill(r2)).toBe(64 * 1024);
    r2.detach();
    expect(q.held("a").buffered).toBe(0);
    expect(q.openTcp("a").ok).toBe(true);
  });

  test("out-of-order bytes past the end keep the storage of an emptied ring", () => {
    const { q } = setup({ bufferedBytes: 16 * 1024 });
    const r = new RingBuffer(256 * 1024);
    r.attach(q.bufferAccount("a"));
    r.writeUnassembled(100, new Uint8Array(50));
    r.enqueue(new Uint8Array(10));
    r.dequeue(10);
    expect(r.allocated).toBeGreaterThan(0);
    expect(r.peek(90, 50)).toEqual(new Uint8Array(50));
  });
});
