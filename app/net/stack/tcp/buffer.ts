// Bounded byte buffers for one connection.
//
// RingBuffer: the send queue (unacked + unsent bytes) and the receive queue
// (in-order bytes not yet read). Assembler: the out-of-order ranges written
// past the contiguous end of the receive ring, bounded in count (smoltcp's
// Assembler, in spirit).

/** The first allocation of a buffer that is written at all. */
const INITIAL_ALLOCATION = 4096;

/**
 * A device's share of buffer storage (the buffered-bytes quota,
 * app/dispatch/quotas.ts): every ring of its connections allocates from it,
 * so the sum of their storage never passes the quota. A ring that cannot
 * grow reports less `free` space: the receive window closes, send() takes
 * fewer bytes (backpressure, not a drop).
 */
export interface BufferAccount {
  /** Bytes of storage it may still allocate (0 at the quota). */
  readonly remaining: number;
  /** Less than a quarter left: empty rings give their storage back. */
  readonly pressed: boolean;
  /** Storage allocated (positive) or released (negative). */
  add(bytes: number): void;
  /** A ring's free space was clipped by the quota. */
  limited(): void;
}

/**
 * A ring of at most `capacity` bytes whose storage grows with use: nothing
 * is allocated until the first write (a half-open connection holds no
 * buffers), then it doubles as needed up to `capacity`.
 */
export class RingBuffer {
  readonly capacity: number;
  private buf: Uint8Array = new Uint8Array(0);
  private start = 0;
  /** Bytes currently held (contiguous from the read position). */
  length = 0;
  /** Extent of out-of-order bytes written past `length` (0: none). */
  private pastEnd = 0;
  private account: BufferAccount | null = null;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  /** Bytes of storage allocated now (grows with use, never past capacity). */
  get allocated(): number {
    return this.buf.length;
  }

  /** Room for more bytes: up to capacity, and within the account's quota when attached. */
  get free(): number {
    const room = this.capacity - this.length;
    const a = this.account;
    if (a === null) return room;
    const reachable = this.buf.length + a.remaining - this.length;
    if (reachable >= room) return room;
    a.limited();
    return Math.max(0, reachable);
  }

  /** Draw storage from `account` from now on (what is allocated already counts at once). */
  attach(account: BufferAccount): void {
    this.detach();
    this.account = account;
    account.add(this.buf.length);
  }

  /** Give this ring's storage back to its account (the connection ended). */
  detach(): void {
    if (this.account === null) return;
    this.account.add(-this.buf.length);
    this.account = null;
  }

  /** Append as much of `data` as fits; returns bytes taken. */
  enqueue(data: Uint8Array): number {
    const n = Math.min(data.length, this.free);
    this.writeAt(this.length, data.subarray(0, n));
    this.length += n;
    this.pastEnd = Math.max(0, this.pastEnd - n);
    return n;
  }

  /**
   * Write `data` at `offset` past the contiguous end without making it
   * readable (out-of-order data). Caller guarantees offset + len ≤ free.
   */
  writeUnassembled(offset: number, data: Uint8Array): void {
    this.writeAt(this.length + offset, data);
    this.pastEnd = Math.max(this.pastEnd, offset + data.length);
  }

  /** Make `n` more bytes (previously written) readable. */
  commit(n: number): void {
    this.length += n;
    this.pastEnd = Math.max(0, this.pastEnd - n);
  }

  /** Storage for logical positions [0, end): grown (the ring laid out from 0 again) when short. */
  private reserve(end: number): void {
    const old = this.buf;
    if (end <= old.length) return;
    let size = Math.max(INITIAL_ALLOCATION, old.length);
    while (size < end) size *= 2;
    size = Math.min(size, this.capacity);
    // within the account's quota (callers stay within `free`, so `end` always fits)
    if (this.account !== null) size = Math.max(end, Math.min(size, old.length + this.account.remaining));
    const next = new Uint8Array(size);
    this.account?.add(size - old.length);
    // logical position i lives at (start + i) % old.length; out-of-order bytes past `length` included
    const first = old.length - this.start;
    next.set(old.subarray(this.start), 0);
    next.set(old.subarray(0, this.start), first);
    this.buf = next;
    this.start = 0;
  }

  private writeAt(pos: number, data: Uint8Array): void {
    if (data.length === 0) return;
    this.reserve(pos + data.length);
    const cap = this.buf.length;
    let at = (this.start + pos) % cap;
    const first = Math.min(data.length, cap - at);
    this.buf.set(data.subarray(0, first), at);
    if (first < data.length) this.buf.set(data.subarray(first), 0);
  }

  /** Copy `len` bytes starting `offset` bytes after the read position. */
  peek(offset: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    if (len === 0) return out;
    const cap = this.buf.length;
    const at = (this.start + offset) % cap;
    const first = Math.min(len, cap - at);
    out.set(this.buf.subarray(at, at + first), 0);
    if (first < len) out.set(this.buf.subarray(0, len - first), first);
    return out;
  }

  /**
   * `len` bytes starting `offset` bytes after the read position, as a view
   * of the ring when they do not wrap (else a copy). Valid until the ring
   * is next written: for a segment emitted at once, not for the application.
   */
  view(offset: number, len: number): Uint8Array {
    if (len === 0) return new Uint8Array(0);
    const at = (this.start + offset) % this.buf.length;
    return at + len <= this.buf.length ? this.buf.subarray(at, at + len) : this.peek(offset, len);
  }

  /** Drop `n` bytes from the front. */
  dequeue(n: number): void {
    const k = Math.min(n, this.length);
    if (k === 0) return;
    this.start = (this.start + k) % this.buf.length;
    this.length -= k;
    // No rewind to 0 when empty: out-of-order bytes may sit past the end.
    // Empty with none: a ring that never grew past its first allocation (an
    // idle or request-sized flow: 10k of them held 80 MB), or any under a
    // pressed quota, gives its storage back; it grows again with use.
    if (this.length === 0 && this.pastEnd === 0 && (this.buf.length <= INITIAL_ALLOCATION || this.account?.pressed)) this.release();
  }

  clear(): void {
    this.start = 0;
    this.length = 0;
    this.pastEnd = 0;
    if (this.account !== null) this.release();
  }

  private release(): void {
    this.account?.add(-this.buf.length);
    this.buf = new Uint8Array(0);
    this.start = 0;
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
