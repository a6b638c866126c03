// Bounded byte buffers for one connection.
//
// RingBuffer: the send queue (unacked + unsent bytes) and the receive queue
// (in-order bytes not yet read). Assembler: the out-of-order ranges written
// past the contiguous end of the receive ring, bounded in count (smoltcp's
// Assembler, in spirit).

export class RingBuffer {
  readonly capacity: number;
  private readonly buf: Uint8Array;
  private start = 0;
  /** Bytes currently held (contiguous from the read position). */
  length = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.buf = new Uint8Array(capacity);
  }

  get free(): number {
    return this.capacity - this.length;
  }

  /** Append as much of `data` as fits; returns bytes taken. */
  enqueue(data: Uint8Array): number {
    const n = Math.min(data.length, this.free);
    this.writeAt(this.length, data.subarray(0, n));
    this.length += n;
    return n;
  }

  /**
   * Write `data` at `offset` past the contiguous end without making it
   * readable (out-of-order data). Caller guarantees offset + len ≤ free.
   */
  writeUnassembled(offset: number, data: Uint8Array): void {
    this.writeAt(this.length + offset, data);
  }

  /** Make `n` more bytes (previously written) readable. */
  commit(n: number): void {
    this.length += n;
  }

  private writeAt(pos: number, data: Uint8Array): void {
    const cap = this.capacity;
    let at = (this.start + pos) % cap;
    const first = Math.min(data.length, cap - at);
    this.buf.set(data.subarray(0, first), at);
    if (first < data.length) this.buf.set(data.subarray(first), 0);
  }

  /** Copy `len` bytes starting `offset` bytes after the read position. */
  peek(offset: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    const cap = this.capacity;
    const at = (this.start + offset) % cap;
    const first = Math.min(len, cap - at);
    out.set(this.buf.subarray(at, at + first), 0);
    if (first < len) out.set(this.buf.subarray(0, len - first), first);
    return out;
  }

  /** Drop `n` bytes from the front. */
  dequeue(n: number): void {
    const k = Math.min(n, this.length);
    this.start = (this.start + k) % this.capacity;
    this.length -= k;
    // No rewind to 0 when empty: out-of-order bytes may sit past the end.
  }

  clear(): void {
    this.start = 0;
    this.length = 0;
  }
}

/** Out-of-order ranges, [start, end) offsets from the contiguous end; sorted, disjoint, non-adjacent. */
export class Assembler {
  private readonly ranges: number[] = []; // flattened [s0, e0, s1, e1, …]
  constructor(readonly maxRanges: number) {}

  get isEmpty(): boolean {
    return this.ranges.length === 0;
  }

  /** Record [off, off+len). False (and nothing recorded) if it would need more than maxRanges ranges. */
  add(off: number, len: number): boolean {
    if (len <= 0) return true;
    let s = off;
    let e = off + len;
    const r = this.ranges;
    // find first range with end >= s
    let i = 0;
    while (i < r.length && r[i + 1]! < s) i += 2;
    let j = i;
    while (j < r.length && r[j]! <= e) {
      s = Math.min(s, r[j]!);
      e = Math.max(e, r[j + 1]!);
      j += 2;
    }
    const removed = (j - i) / 2;
    if (removed === 0 && r.length / 2 >= this.maxRanges) return false;
    r.splice(i, j - i, s, e);
    return true;
  }

  /** If data now starts at offset 0, remove that range and return its length (others shift down). */
  popFront(): number {
    const r = this.ranges;
    if (r.length === 0 || r[0] !== 0) return 0;
    const n = r[1]!;
    r.splice(0, 2);
    for (let i = 0; i < r.length; i++) r[i] = r[i]! - n;
    return n;
  }

  /** Ranges as offsets, ascending (the connection orders SACK blocks most recent first, RFC 2018 §4). */
  toArray(): number[] {
    return this.ranges.slice();
  }

  clear(): void {
    this.ranges.length = 0;
  }
}
