// The DNS forwarder's per-source share: one device flooding queries (to a
// resolver that does not answer, or faster than its rate) is dropped past
// its pending bound and its rate, while another device's queries still go
// to the resolver; the clock is passed in.
import { afterEach, expect, test } from "bun:test";
import dgram from "node:dgram";
import { DnsForwarder, type UdpTuple } from "../../../app/net/stack/udp-sockets.ts";

const sockets: dgram.Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.close();
});

/** A resolver that counts the queries it gets and answers none. */
async function silentResolver(): Promise<{ port: number; received: () => number }> {
  const s = dgram.createSocket("udp4");
  sockets.push(s);
  let n = 0;
  s.on("message", () => n++);
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  return { port: s.address().port, received: () => n };
}

function query(id: number): Uint8Array {
  const q = new Uint8Array(17);
  q[0] = id >> 8;
  q[1] = id & 0xff;
  q[5] = 1; // one question (the root name, type A)
  q[14] = 1;
  q[16] = 1;
  return q;
}

const from = (last: number, port = 5000): UdpTuple => ({ src: new Uint8Array([10, 9, 0, last]), srcPort: port, dst: new Uint8Array([10, 9, 0, 1]), dstPort: 53 });

const until = async (cond: () => boolean) => {
  const end = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await Bun.sleep(5);
  }
};

test("a device past its pending bound is dropped; another device's queries still go out", async () => {
  const r = await silentResolver();
  const drops: string[] = [];
  let now = 0;
  const f = new DnsForwarder({ resolver: `127.0.0.1:${r.port}`, maxPending: 4096, timeoutMs: 5000, maxPendingPerSource: 8, queriesPerSecondPerSource: 1000, now: () => now, drop: (why) => drops.push(why), reply: () => undefined });
  for (let i = 0; i < 20; i++) f.query(from(2, 5000 + i), query(i), now);
  expect(f.pendingCount).toBe(8);
  expect(drops.filter((d) => d === "dns: source-pending-full").length).toBe(12);
  f.query(from(3), query(1), now);
  expect(f.pendingCount).toBe(9);
  await until(() => r.received() === 9);
  // timed out, A's share is free again
  now += 5001;
  f.expire(now);
  expect(f.pendingCount).toBe(0);
  f.query(from(2), query(99), now);
  expect(f.pendingCount).toBe(1);
  f.close();
});

test("a device past its rate is dropped (a burst of two seconds' worth, then the rate); the others are not", async () => {
  const r = await silentResolver();
  const drops: string[] = [];
  let now = 0;
  const f = new DnsForwarder({ resolver: `127.0.0.1:${r.port}`, maxPending: 4096, timeoutMs: 100, maxPendingPerSource: 4096, queriesPerSecondPerSource: 10, now: () => now, drop: (why) => drops.push(why), reply: () => undefined });
  for (let i = 0; i < 30; i++) f.query(from(2), query(i), now);
  expect(f.pendingCount).toBe(20);
  expect(drops.filter((d) => d === "dns: source-rate").length).toBe(10);
  f.query(from(3), query(1), now);
  expect(f.pendingCount).toBe(21);
  // every query timed out (nothing pending): A is not forgotten with an empty bucket, so no new burst
  now += 200;
  f.expire(now);
  expect(f.pendingCount).toBe(0);
  for (let i = 0; i < 5; i++) f.query(from(2), query(i), now);
  expect(f.pendingCount).toBe(2); // 0.2 s at 10/s
  // a second later: ten more
  now += 1000;
  f.expire(now);
  for (let i = 0; i < 20; i++) f.query(from(2), query(i), now);
  expect(f.pendingCount).toBe(10);
  f.close();
});
