// A bounds-checked cursor over untrusted bytes. Every read either succeeds
// or returns null; nothing here throws, so a parser built on it can only
// fail by returning a value. TLS vectors (RFC 8446 §3.4) carry a 1-, 2- or
// 3-byte length prefix; `vector()` checks that length against the container
// before handing out a cursor confined to the vector's contents.

export class ByteCursor {
  readonly #bytes: Uint8Array;
  #pos: number;
  readonly #end: number;

  private constructor(bytes: Uint8Array, pos: number, end: number) {
    this.#bytes = bytes;
    this.#pos = pos;
    this.#end = end;
  }

  /** A cursor over the whole of `bytes`. */
  static over(bytes: Uint8Array): ByteCursor {
    return new ByteCursor(bytes, 0, bytes.length);
  }

  get remaining(): number {
    return this.#end - this.#pos;
  }

  get atEnd(): boolean {
    return this.#pos === this.#end;
  }

  u8(): number | null {
    if (this.remaining < 1) return null;
    return this.#bytes[this.#pos++]!;
  }

  u16(): number | null {
    if (this.remaining < 2) return null;
    const b = this.#bytes;
    const p = this.#pos;
    this.#pos += 2;
    return (b[p]! << 8) | b[p + 1]!;
  }

  u24(): number | null {
    if (this.remaining < 3) return null;
    const b = this.#bytes;
    const p = this.#pos;
    this.#pos += 3;
    return (b[p]! << 16) | (b[p + 1]! << 8) | b[p + 2]!;
  }

  /** The next `n` bytes as a view (no copy), or null when fewer remain. */
  bytes(n: number): Uint8Array | null {
    if (n < 0 || this.remaining < n) return null;
    const view = this.#bytes.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return view;
  }

  skip(n: number): boolean {
    if (n < 0 || this.remaining < n) return false;
    this.#pos += n;
    return true;
  }

  /**
   * Reads a length-prefixed vector and returns a cursor over its contents,
   * or null when the prefix or the contents run past this cursor's end.
   */
  vector(lengthBytes: 1 | 2 | 3): ByteCursor | null {
    const length = lengthBytes === 1 ? this.u8() : lengthBytes === 2 ? this.u16() : this.u24();
    if (length === null || this.remaining < length) return null;
    const inner = new ByteCursor(this.#bytes, this.#pos, this.#pos + length);
    this.#pos += length;
    return inner;
  }
}
