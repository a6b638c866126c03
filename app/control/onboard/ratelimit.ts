// A token bucket per key (the source IP of `POST /api/onboard/start`).
// Time is passed in; buckets that have refilled completely are forgotten, so
// the map holds only keys seen within one refill period.

export interface RateLimit {
  /** Requests allowed at once. */
  burst: number;
  /** Tokens added per minute. */
  perMinute: number;
}

export type RateVerdict = { ok: true } | { ok: false; retryAfterMs: number };

const MAX_KEYS = 100_000;

export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly msPerToken: number;

  constructor(private readonly limit: RateLimit) {
    if (!(limit.burst >= 1) || !(limit.perMinute > 0)) throw new RangeError("rate limit: burst >= 1 and perMinute > 0");
    this.msPerToken = 60_000 / limit.perMinute;
  }

  take(key: string, now: number): RateVerdict {
    const b = this.buckets.get(key);
    let tokens = this.limit.burst;
    if (b) tokens = Math.min(this.limit.burst, b.tokens + (now - b.at) / this.msPerToken);
    if (tokens < 1) {
      return { ok: false, retryAfterMs: Math.ceil((1 - tokens) * this.msPerToken) };
    }
    if (!b && this.buckets.size >= MAX_KEYS) this.prune(now);
    this.buckets.set(key, { tokens: tokens - 1, at: now });
    return { ok: true };
  }

  /** Drop buckets that are full again. */
  prune(now: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + (now - b.at) / this.msPerToken >= this.limit.burst) this.buckets.delete(k);
    }
  }

  get size(): number {
    return this.buckets.size;
  }
}
