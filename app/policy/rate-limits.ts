// Rate limits on rules (`rate = "60/m"`, `burst`, `per`): one token bucket
// per rule and key (the device, profile, endpoint or credential the rule is
// counted per). Pure bookkeeping with the clock passed in; the buckets are
// kept across reloads (they are keyed by the rule's name, not its text) and
// can be saved and restored so a restart within the window keeps the count.

export type RatePer = "device" | "profile" | "endpoint" | "credential";

export interface RateSpec {
  /** Requests allowed per `periodMs`. */
  count: number;
  periodMs: number;
  /** Bucket size: how many may come at once after a quiet spell (default `count`). */
  burst: number;
  per: RatePer;
  /** As written (`60/m`), for reasons and events. */
  text: string;
}

const PERIODS: Record<string, number> = { s: 1000, sec: 1000, second: 1000, m: 60_000, min: 60_000, minute: 60_000, h: 3_600_000, hour: 3_600_000, d: 86_400_000, day: 86_400_000 };

/** `"60/m"`, `"10/s"`, `"1000/h"`, `"500/day"`; undefined when malformed. */
export function parseRate(text: string): { count: number; periodMs: number } | undefined {
  const m = /^\s*(\d+)\s*\/\s*([a-z]+)\s*$/i.exec(text);
  if (!m) return undefined;
  const count = Number(m[1]);
  const periodMs = PERIODS[m[2]!.toLowerCase()];
  if (periodMs === undefined || !Number.isSafeInteger(count) || count < 1) return undefined;
  return { count, periodMs };
}

export type RateVerdict = { ok: true } | { ok: false; retryAfterMs: number };

interface Bucket {
  tokens: number;
  at: number;
}

/** A saved bucket (see RateLimiter.save / restore). */
export interface SavedBucket {
  key: string;
  tokens: number;
  at: number;
}

/** The most buckets kept; past it the fullest (least informative) are dropped first. */
const MAX_BUCKETS = 100_000;

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private dirty = false;

  constructor(private readonly now: () => number = Date.now) {}

  /** Takes one token from the bucket of `rule` for `key`, refilled at spec's rate up to its burst. */
  take(rule: string, key: string, spec: RateSpec): RateVerdict {
    const id = `${rule}\0${key}`;
    const t = this.now();
    const rate = spec.count / spec.periodMs; // tokens per ms
    let b = this.buckets.get(id);
    if (!b) {
      if (this.buckets.size >= MAX_BUCKETS) this.evictFull(t, rate, spec.burst);
      b = { tokens: spec.burst, at: t };
      this.buckets.set(id, b);
    }
    // A reload may have lowered the burst: never hold more than the current one.
    b.tokens = Math.min(spec.burst, b.tokens + Math.max(0, t - b.at) * rate);
    b.at = t;
    this.dirty = true;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryAfterMs: Math.ceil((1 - b.tokens) / rate) };
  }

  /** Buckets worth keeping across a restart (those not yet full again), and whether anything changed since the last save. */
  save(): { changed: boolean; buckets: SavedBucket[] } {
    const changed = this.dirty;
    this.dirty = false;
    return { changed, buckets: [...this.buckets].map(([key, b]) => ({ key, tokens: b.tokens, at: b.at })) };
  }

  /** Restores saved buckets (a restart within the window keeps the count). */
  restore(saved: SavedBucket[]): void {
    for (const s of saved) {
      if (Number.isFinite(s.tokens) && Number.isFinite(s.at) && s.key.includes("\0")) this.buckets.set(s.key, { tokens: s.tokens, at: s.at });
    }
  }

  /** Forgets buckets of rules that no longer exist (after a reload). */
  retain(rules: Set<string>): void {
    for (const id of this.buckets.keys()) {
      if (!rules.has(id.slice(0, id.indexOf("\0")))) this.buckets.delete(id);
    }
  }

  get size(): number {
    return this.buckets.size;
  }

  private evictFull(t: number, rate: number, burst: number): void {
    // Buckets idle long enough to be full again carry no state: drop them. If none, drop the oldest.
    for (const [id, b] of this.buckets) {
      if (b.tokens + (t - b.at) * rate >= burst) this.buckets.delete(id);
    }
    if (this.buckets.size >= MAX_BUCKETS) this.buckets.delete(this.buckets.keys().next().value!);
  }
}

/** The gateway's buckets: one per process, kept across reloads. Tests and previews pass their own or none. */
let processLimiter = new RateLimiter();

export function rateLimiter(): RateLimiter {
  return processLimiter;
}

/** Installs the process's limiter (the gateway restores saved buckets into it at start). */
export function setRateLimiter(limiter: RateLimiter): void {
  processLimiter = limiter;
}
