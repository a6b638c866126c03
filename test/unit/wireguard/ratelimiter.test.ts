// The per-source handshake rate limiter (wireguard-go ratelimiter.go), with
// the clock passed in: 20 per second, bursts of 5, per IPv4 address or IPv6
// /64, forgotten after a second idle, bounded in size.
import { expect, test } from "bun:test";
import { HandshakeRateLimiter, PACKETS_BURSTABLE } from "../../../app/net/wireguard/ratelimiter.ts";
import { parseIp } from "../../../app/net/ipaddr.ts";

const A = parseIp("198.51.100.7")!;
const B = parseIp("198.51.100.8")!;
const allowedIn = (l: HandshakeRateLimiter, addr: Uint8Array, times: number[]) => times.filter((t) => l.allow(addr, t)).length;

test("a burst of 5, then one every 50 ms; another source is unaffected", () => {
  const l = new HandshakeRateLimiter();
  expect(allowedIn(l, A, Array(30).fill(0))).toBe(PACKETS_BURSTABLE);
  expect(allowedIn(l, B, Array(30).fill(0))).toBe(PACKETS_BURSTABLE);
  expect(l.allow(A, 49)).toBe(false);
  expect(l.allow(A, 50)).toBe(true);
  expect(l.allow(A, 50)).toBe(false);
});

test("sustained flooding gets ~20 per second through: 30,000 in 10 s -> about 205", () => {
  const l = new HandshakeRateLimiter();
  const times = Array.from({ length: 30_000 }, (_, i) => i / 3); // 3 per ms for 10 s
  const n = allowedIn(l, A, times);
  expect(n).toBeGreaterThanOrEqual(200);
  expect(n).toBeLessThanOrEqual(206);
});

test("IPv6 sources share a /64", () => {
  const l = new HandshakeRateLimiter();
  const one = parseIp("2001:db8:1:2::1")!;
  const sameNet = parseIp("2001:db8:1:2:ffff::9")!;
  const otherNet = parseIp("2001:db8:1:3::1")!;
  expect(allowedIn(l, one, Array(5).fill(0))).toBe(5);
  expect(l.allow(sameNet, 0)).toBe(false);
  expect(l.allow(otherNet, 0)).toBe(true);
});

test("idle sources are forgotten after a second; the table is bounded", () => {
  const l = new HandshakeRateLimiter(2);
  l.allow(A, 0);
  l.allow(B, 0);
  expect(l.allow(parseIp("198.51.100.9")!, 10)).toBe(false); // full: an unknown source waits for room
  expect(l.size).toBe(2);
  expect(l.allow(parseIp("198.51.100.9")!, 1500)).toBe(true); // the sweep forgot A and B
  expect(l.size).toBe(1);
});
