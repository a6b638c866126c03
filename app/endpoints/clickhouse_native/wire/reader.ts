// A checked reader over ClickHouse native-protocol bytes: VarUInt (LEB128,
// at most 10 bytes), String (VarUInt length + bytes), fixed-width little-
// endian integers. Running out of bytes throws NeedMore (the caller waits for
// more and tries the whole packet again); a malformed value throws WireError.

export class NeedMore extends Error {
  constructor() {
    super("need more bytes");
  }
}

export class WireError extends Error {}

/** Strings and counts larger than this are a protocol error, never an allocation. */
export const MAX_STRING = 64 * 1024 * 1024;

const decoder = new TextDecoder("utf-8", { fatal: false });

export class Reader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    start = 0,
  ) {
    this.pos = start;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  need(n: number): void {
    if (this.buf.length - this.pos < n) throw new NeedMore();
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }

  varUInt(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.u8();
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) {
        // Counts and lengths beyond 2^53 are not something a real peer sends.
        if (!Number.isSafeInteger(result)) throw new WireError("a VarUInt beyond 2^53");
        return result;
      }
      mul *= 128;
    }
    throw new WireError("a VarUInt longer than 10 bytes");
  }

  bytes(n: number): Uint8Array {
    this.need(n);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  skip(n: number): void {
    this.need(n);
    this.pos += n;
  }

  stringBytes(): Uint8Array {
    const len = this.varUInt();
    if (len > MAX_STRING) throw new WireError(`a string of ${len} bytes`);
    return this.bytes(len);
  }

  string(): string {
    return decoder.decode(this.stringBytes());
  }

  u32(): number {
    this.need(4);
    const b = this.buf;
    const p = this.pos;
    this.pos += 4;
    return (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16)) + b[p + 3]! * 0x1000000;
  }
}

/** Bytes being built: VarUInt, String, Int32 little-endian. */
export class Writer {
  private parts: number[] = [];
  private chunks: Uint8Array[] = [];

  private flushBytes(): void {
    if (this.parts.length > 0) {
      this.chunks.push(Uint8Array.from(this.parts));
      this.parts = [];
    }
  }

  varUInt(n: number): this {
    let v = n;
    while (v >= 0x80) {
      this.parts.push((v % 128) | 0x80);
      v = Math.floor(v / 128);
    }
    this.parts.push(v);
    return this;
  }

  u8(n: number): this {
    this.parts.push(n & 0xff);
    return this;
  }

  i32(n: number): this {
    const v = n | 0;
    this.parts.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
    return this;
  }

  raw(b: Uint8Array): this {
    this.flushBytes();
    this.chunks.push(b);
    return this;
  }

  string(s: string | Uint8Array): this {
    const b = typeof s === "string" ? new TextEncoder().encode(s) : s;
    this.varUInt(b.length);
    return this.raw(b);
  }

  finish(): Uint8Array {
    this.flushBytes();
    const total = this.chunks.reduce((n, c) => n + c.length, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}
