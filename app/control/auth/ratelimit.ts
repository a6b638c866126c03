// Login failures per key (the source address, the account name): a leaky
// bucket that fills by one per failure and drains `max` per `windowMs`. A
// key is refused while its bucket is full, before any password is hashed.
// Callers record the failure before they verify (and refund it on success),
// so concurrent attempts cannot all pass the check while the first hashes.
// Time is passed in; drained buckets are forgotten.

export interface FailureLimit {
  /** Failures allowed in a row before the key is refused. */
  max: number;
  /** How long a full bucket takes to drain. */
  windowMs: number;
}

const MAX_KEYS = 100_000;

export class FailureLimiter {
  private readonly buckets = new Map<string, { level: number; at: number }>();

  constructor(private readonly limit: FailureLimit) {
    if (!(limit.max >= 1) || !(limit.windowMs > 0)) throw new RangeError("failure limit: max >= 1 and windowMs > 0");
  }

  private level(key: string, now: number): number {
    const b = this.buckets.get(key);
    if (!b) return 0;
    return Math.max(0, b.level - ((now - b.at) * this.limit.max) / this.limit.windowMs);
  }

  /** 0 when the key may try; else how long (ms) until it may. */
  blockedFor(key: string, now: number): number {
    const level = this.level(key, now);
    if (level <= this.limit.max - 1) return 0;
    return Math.ceil(((level - (this.limit.max - 1)) * this.limit.windowMs) / this.limit.max);
  }

  fail(key: string, now: number): void {
    if (!this.buckets.has(key) && this.buckets.size >= MAX_KEYS) this.prune(now);
    this.buckets.set(key, { level: Math.min(this.limit.max, this.level(key, now) + 1), at: now });
  }

  /** Takes back one failure recorded ahead of a check that then succeeded. */
  refund(key: string, now: number): void {
    const level = this.level(key, now) - 1;
    if (level <= 0) this.buckets.delete(key);
    else this.buckets.set(key, { level, at: now });
  }

  reset(key: string): void {
    this.buckets.delete(key);
  }

  prune(now: number): void {
    for (const k of [...this.buckets.keys()]) if (this.level(k, now) === 0) this.buckets.delete(k);
    // Still full of live keys (a flood of sources): drop the oldest.
    while (this.buckets.size >= MAX_KEYS) this.buckets.delete(this.buckets.keys().next().value!);
  }

  get size(): number {
    return this.buckets.size;
  }
}
