import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { REPLAY_WINDOW_SIZE, ReplayFilter } from "../../../app/net/wireguard/replay.ts";

// Ported in spirit from wireguard-go replay/replay_test.go.
describe("ReplayFilter", () => {
  test("window is at least 2048 counters", () => {
    expect(REPLAY_WINDOW_SIZE).toBeGreaterThanOrEqual(2048);
  });

  test("in order: each counter accepted once", () => {
    const f = new ReplayFilter();
    for (let i = 0; i < 10_000; i++) expect(f.validateCounter(i)).toBe(true);
    for (let i = 9_990; i < 10_000; i++) expect(f.validateCounter(i)).toBe(false);
  });

  test("duplicates rejected, including counter 0", () => {
    const f = new ReplayFilter();
    expect(f.validateCounter(0)).toBe(true);
    expect(f.validateCounter(0)).toBe(false);
    expect(f.validateCounter(1)).toBe(true);
    expect(f.validateCounter(1)).toBe(false);
  });

  test("out of order within the window", () => {
    const f = new ReplayFilter();
    expect(f.validateCounter(100)).toBe(true);
    expect(f.validateCounter(50)).toBe(true);
    expect(f.validateCounter(99)).toBe(true);
    expect(f.validateCounter(50)).toBe(false);
    expect(f.validateCounter(101)).toBe(true);
    expect(f.validateCounter(0)).toBe(true);
  });

  test("too old: exactly the window edge", () => {
    const f = new ReplayFilter();
    const top = REPLAY_WINDOW_SIZE + 1000;
    expect(f.validateCounter(top)).toBe(true);
    expect(f.validateCounter(top - REPLAY_WINDOW_SIZE)).toBe(true); // at the edge
    expect(f.validateCounter(top - REPLAY_WINDOW_SIZE - 1)).toBe(false); // beyond
    expect(f.validateCounter(0)).toBe(false);
  });

  test("a big jump clears the ring", () => {
    const f = new ReplayFilter();
    for (let i = 0; i < 64; i++) f.validateCounter(i);
    const jump = 1_000_000;
    expect(f.validateCounter(jump)).toBe(true);
    // ring slots that held 0..63 must not make jump-relative counters look seen
    for (let i = jump - 63; i < jump; i++) expect(f.validateCounter(i)).toBe(true);
    expect(f.validateCounter(jump)).toBe(false);
  });

  test("counter limit (REJECT_AFTER_MESSAGES): limit-1 accepted, limit and beyond rejected", () => {
    const limit = 2 ** 20;
    const f = new ReplayFilter();
    expect(f.validateCounter(limit - 2, limit)).toBe(true);
    expect(f.validateCounter(limit - 1, limit)).toBe(true);
    expect(f.validateCounter(limit, limit)).toBe(false);
    expect(f.validateCounter(limit + 1, limit)).toBe(false);
    expect(f.validateCounter(limit - 1, limit)).toBe(false);
  });

  test("near the top of the number range", () => {
    const f = new ReplayFilter();
    const hi = Number.MAX_SAFE_INTEGER - 10;
    expect(f.validateCounter(hi)).toBe(true);
    expect(f.validateCounter(hi - 1)).toBe(true);
    expect(f.validateCounter(hi)).toBe(false);
    expect(f.validateCounter(Number.MAX_SAFE_INTEGER)).toBe(false); // the default limit
    expect(f.validateCounter(-1)).toBe(false);
    expect(f.validateCounter(1.5)).toBe(false);
  });

  test("reset forgets everything", () => {
    const f = new ReplayFilter();
    f.validateCounter(5);
    f.reset();
    expect(f.validateCounter(5)).toBe(true);
  });

  test("property: agrees with a naive set-based model", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 12_000 }), { maxLength: 400 }), (counters) => {
        const f = new ReplayFilter();
        const seen = new Set<number>();
        let max = -1;
        for (const n of counters) {
          const expected = !seen.has(n) && !(max >= 0 && max - n > REPLAY_WINDOW_SIZE);
          const got = f.validateCounter(n);
          if (got !== expected) return false;
          if (got) {
            seen.add(n);
            max = Math.max(max, n);
          }
        }
        return true;
      }),
      { numRuns: 300 },
    );
  });
});
