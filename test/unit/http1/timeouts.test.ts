// ClientTimeouts as a playbook: events with the time in, deadline and
// verdict out. No clock runs; every time is a number.
import { describe, expect, test } from "bun:test";
import { ClientTimeouts } from "../../../app/endpoints/http1/timeouts.ts";

const S = { headerMs: 10_000, idleMs: 60_000, minRateBytesPerSec: 1000 };

describe("idle", () => {
  test("a connection with no request is out of time after idleMs", () => {
    const t = new ClientTimeouts(S, 0);
    t.awaitRequest(0);
    t.waiting(0);
    expect(t.deadline()).toBe(60_000);
    expect(t.expired(59_999)).toBeUndefined();
    expect(t.expired(60_000)).toBe("idle");
  });

  test("the first byte of a head switches to the header time", () => {
    const t = new ClientTimeouts(S, 0);
    t.awaitRequest(0);
    t.received(50_000, 1);
    expect(t.deadline()).toBe(60_000);
    expect(t.expired(59_000)).toBeUndefined();
    expect(t.expired(60_000)).toBe("header");
  });
});

describe("head", () => {
  test("trickled bytes do not extend the header time", () => {
    const t = new ClientTimeouts(S, 0);
    t.awaitRequest(0);
    for (let ms = 0; ms < 10_000; ms += 500) t.received(ms, 1);
    expect(t.expired(10_000)).toBe("header");
  });

  test("a head without a body: the client owes nothing while the gateway answers", () => {
    const t = new ClientTimeouts(S, 0);
    t.awaitRequest(0);
    t.received(0, 100);
    t.headParsed(5, false);
    expect(t.deadline()).toBeUndefined();
    expect(t.expired(1_000_000)).toBeUndefined();
    t.awaitRequest(1_000_000);
    expect(t.deadline()).toBe(1_060_000);
  });
});

describe("body rate", () => {
  test("grace of headerMs, then each byte buys 1/minRate s", () => {
    const t = new ClientTimeouts(S, 0);
    t.received(0, 50);
    t.headParsed(0, true);
    t.waiting(0);
    expect(t.deadline()).toBe(10_000);
    t.received(4_000, 2_000); // +2 s of allowance
    t.waiting(4_000);
    expect(t.deadline()).toBe(4_000 + 12_000 - 4_000);
    expect(t.expired(11_999)).toBeUndefined();
    expect(t.expired(12_000)).toBe("slow_body");
  });

  test("time not spent waiting on the client (upstream backpressure) does not count", () => {
    const t = new ClientTimeouts(S, 0);
    t.headParsed(0, true);
    t.waiting(0);
    t.received(9_000, 1); // waited 9 s
    // The upstream stalls us for a minute: no read is pending, no deadline.
    expect(t.deadline()).toBeUndefined();
    expect(t.expired(69_000)).toBeUndefined();
    t.waiting(69_000);
    expect(t.deadline()).toBe(69_000 + 10_001 - 9_000);
  });

  test("min rate 0 turns the check off; the body's end ends it", () => {
    const off = new ClientTimeouts({ ...S, minRateBytesPerSec: 0 }, 0);
    off.headParsed(0, true);
    off.waiting(0);
    expect(off.deadline()).toBeUndefined();
    const t = new ClientTimeouts(S, 0);
    t.headParsed(0, true);
    t.waiting(0);
    t.bodyEnded(5);
    expect(t.expired(1_000_000)).toBeUndefined();
  });

  test("stop: an upgraded connection owes nothing", () => {
    const t = new ClientTimeouts(S, 0);
    t.awaitRequest(0);
    t.stop(1);
    t.waiting(1);
    expect(t.expired(10_000_000)).toBeUndefined();
  });
});
