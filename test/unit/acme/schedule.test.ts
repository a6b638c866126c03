// When the ACME renewer acts, from the clock and a random draw alone.
import { expect, test } from "bun:test";
import { CHECK_MAX_MS, plan, renewalTime, retryDelay, RETRY_BASE_MS, RETRY_MAX_MS } from "../../../app/acme/schedule.ts";

const DAY = 24 * 60 * 60 * 1000;
const cert = { notBefore: 0, notAfter: 90 * DAY };

test("renewal with a third of the lifetime left, earlier by up to 5% of it", () => {
  expect(renewalTime(cert, 0)).toBe(60 * DAY);
  expect(renewalTime(cert, 0.999999)).toBeCloseTo(60 * DAY - 4.5 * DAY, -3);
  for (const r of [0, 0.25, 0.5, 0.75, 0.99]) {
    const t = renewalTime(cert, r);
    expect(t).toBeLessThanOrEqual(60 * DAY);
    expect(t).toBeGreaterThan(55 * DAY);
  }
  // A one-hour pebble certificate: due after 40 minutes at the latest.
  expect(renewalTime({ notBefore: 0, notAfter: 3600_000 }, 0)).toBe(2400_000);
});

test("backoff doubles from one minute to six hours, scaled 0.5-1.0", () => {
  expect([1, 2, 3, 4].map((n) => retryDelay(n, 0.999999))).toEqual([60_000, 120_000, 240_000, 480_000].map((ms) => Math.round(ms * (0.5 + 0.999999 / 2))));
  expect(retryDelay(1, 0)).toBe(RETRY_BASE_MS / 2);
  expect(retryDelay(50, 0.999999)).toBeLessThanOrEqual(RETRY_MAX_MS);
  expect(retryDelay(50, 0)).toBe(RETRY_MAX_MS / 2);
  expect(retryDelay(10_000, 0.5)).toBe(RETRY_MAX_MS * 0.75);
});

test("plan: no certificate or due: issue; else wait, never longer than an hour; a pending retry waits first", () => {
  const c = { ...cert, renewAt: 60 * DAY };
  expect(plan(0, undefined, undefined)).toEqual({ action: "issue" });
  expect(plan(60 * DAY, c, undefined)).toEqual({ action: "issue" });
  expect(plan(60 * DAY - 1000, c, undefined)).toEqual({ action: "wait", ms: 1000 });
  expect(plan(DAY, c, undefined)).toEqual({ action: "wait", ms: CHECK_MAX_MS });
  expect(plan(0, undefined, 30_000)).toEqual({ action: "wait", ms: 30_000 });
  expect(plan(30_000, undefined, 30_000)).toEqual({ action: "issue" });
});
