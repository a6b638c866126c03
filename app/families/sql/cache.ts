// A least-recently-used map bounded both by entry count and by total size
// (the caller says what an entry weighs). A Map keeps insertion order, so the
// first key is the least recently used once every hit re-inserts its key.

export interface LruLimits {
  maxEntries: number;
  /** Sum of the weights of all entries kept. */
  maxWeight: number;
  /** An entry heavier than this is not kept at all. */
  maxEntryWeight: number;
}

export class BoundedLru<K, V> {
  private readonly map = new Map<K, { value: V; weight: number }>();
  private weight = 0;

  constructor(private readonly limits: LruLimits) {}

  get size(): number {
    return this.map.size;
  }

  get totalWeight(): number {
    return this.weight;
  }

  get(key: K): V | undefined {
    const hit = this.map.get(key);
    if (hit === undefined) return undefined;
    this.map.delete(key);
    this.map.set(key, hit);
    return hit.value;
  }

  /** Keep `value` unless it alone exceeds maxEntryWeight; evicts the oldest to fit. */
  set(key: K, value: V, weight: number): void {
    this.delete(key);
    if (weight > this.limits.maxEntryWeight || weight > this.limits.maxWeight) return;
    this.map.set(key, { value, weight });
    this.weight += weight;
    while (this.map.size > this.limits.maxEntries || this.weight > this.limits.maxWeight) {
      const oldest = this.map.keys().next();
      if (oldest.done) break;
      this.delete(oldest.value);
    }
  }

  delete(key: K): void {
    const old = this.map.get(key);
    if (old === undefined) return;
    this.map.delete(key);
    this.weight -= old.weight;
  }

  clear(): void {
    this.map.clear();
    this.weight = 0;
  }
}
