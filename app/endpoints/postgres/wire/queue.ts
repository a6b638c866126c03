// The buffered tail of a byte stream, shared by the frontend and backend
// framing parsers. Chunks are kept as pushed; a message that lies inside one
// chunk leaves as a subarray of it (no copy), one that spans chunks is
// copied once when it is complete. So a 64 MiB CopyData pushed in 64 KiB
// reads costs one copy, not a quadratic series of concatenations.
//
// Ownership: push() takes the chunk; the caller must not write to it again
// (subarrays of it are handed out as messages' raw bytes).

export class ByteQueue {
  private chunks: Uint8Array[] = [];
  private first = 0; // index of the first live chunk
  private head = 0; // read offset inside chunks[first]
  private total = 0;

  get size(): number {
    return this.total;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /** The byte at offset i from the read position; the caller checks i < size. */
  byteAt(i: number): number {
    let off = this.head + i;
    for (let k = this.first; k < this.chunks.length; k++) {
      const c = this.chunks[k]!;
      if (off < c.length) return c[off]!;
      off -= c.length;
    }
    throw new Error("ByteQueue.byteAt past the end");
  }

  /** Big-endian int32 at offset i; the caller checks i + 4 <= size. */
  int32At(i: number): number {
    const c = this.chunks[this.first]!;
    const p = this.head + i;
    if (p + 4 <= c.length) return (c[p]! << 24) | (c[p + 1]! << 16) | (c[p + 2]! << 8) | c[p + 3]!;
    return (this.byteAt(i) << 24) | (this.byteAt(i + 1) << 16) | (this.byteAt(i + 2) << 8) | this.byteAt(i + 3);
  }

  /** Removes and returns the next n bytes (n <= size). */
  take(n: number): Uint8Array {
    if (n > this.total) throw new Error("ByteQueue.take past the end");
    this.total -= n;
    const c = this.chunks[this.first]!;
    if (c.length - this.head >= n) {
      const out = c.subarray(this.head, this.head + n);
      this.advance(n);
      return out;
    }
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const cur = this.chunks[this.first]!;
      const k = Math.min(n - at, cur.length - this.head);
      out.set(cur.subarray(this.head, this.head + k), at);
      at += k;
      this.advance(k);
    }
    return out;
  }

  private advance(n: number): void {
    this.head += n;
    if (this.head === this.chunks[this.first]!.length) {
      this.head = 0;
      this.first++;
      if (this.first === this.chunks.length) {
        this.chunks = [];
        this.first = 0;
      } else if (this.first > 64) {
        this.chunks = this.chunks.slice(this.first);
        this.first = 0;
      }
    }
  }

  /** Removes and returns everything buffered. */
  takeAll(): Uint8Array {
    return this.take(this.total);
  }
}
