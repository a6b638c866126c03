// Byte helpers for the PostgreSQL wire protocol (v3, big-endian): a checked
// reader over one message body that never throws (every accessor returns
// `undefined` past the end and remembers why), and a growable writer.

const utf8Decoder = new TextDecoder("utf-8", { fatal: false });
const utf8Strict = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

/** Decodes UTF-8; invalid sequences become U+FFFD (see `isUtf8` to tell). */
export function decodeUtf8(bytes: Uint8Array): string {
  return utf8Decoder.decode(bytes);
}

/** True when `bytes` is well-formed UTF-8. */
export function isUtf8(bytes: Uint8Array): boolean {
  try {
    utf8Strict.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** Decodes UTF-8 once, saying whether it was well-formed (U+FFFD replaces what was not). */
export function decodeUtf8Checked(bytes: Uint8Array): { text: string; utf8: boolean } {
  try {
    return { text: utf8Strict.decode(bytes), utf8: true };
  } catch {
    return { text: utf8Decoder.decode(bytes), utf8: false };
  }
}

export function encodeUtf8(text: string): Uint8Array {
  return utf8Encoder.encode(text);
}

/**
 * A cursor over one message body. Reads past the end or a C string without
 * its NUL return `undefined` and set `error`; once set, every later read
 * returns `undefined` too, so a decoder can read all fields and check once.
 */
export class Reader {
  private pos = 0;
  error: string | undefined;

  constructor(readonly bytes: Uint8Array) {}

  get remaining(): number {
    return this.bytes.length - this.pos;
  }

  private fail(why: string): undefined {
    this.error ??= why;
    return undefined;
  }

  int8(what: string): number | undefined {
    if (this.error !== undefined) return undefined;
    if (this.remaining < 1) return this.fail(`truncated ${what}`);
    return this.bytes[this.pos++]!;
  }

  int16(what: string): number | undefined {
    if (this.error !== undefined) return undefined;
    if (this.remaining < 2) return this.fail(`truncated ${what}`);
    const b = this.bytes;
    const v = ((b[this.pos]! << 8) | b[this.pos + 1]!) << 16 >> 16;
    this.pos += 2;
    return v;
  }

  int32(what: string): number | undefined {
    if (this.error !== undefined) return undefined;
    if (this.remaining < 4) return this.fail(`truncated ${what}`);
    const b = this.bytes;
    const p = this.pos;
    this.pos += 4;
    return (b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!;
  }

  /** A NUL-terminated string's bytes (without the NUL). */
  cstringBytes(what: string): Uint8Array | undefined {
    if (this.error !== undefined) return undefined;
    const end = this.bytes.indexOf(0, this.pos);
    if (end < 0) return this.fail(`missing NUL after ${what}`);
    const out = this.bytes.subarray(this.pos, end);
    this.pos = end + 1;
    return out;
  }

  cstring(what: string): string | undefined {
    const b = this.cstringBytes(what);
    return b === undefined ? undefined : decodeUtf8(b);
  }

  bytesN(n: number, what: string): Uint8Array | undefined {
    if (this.error !== undefined) return undefined;
    if (n < 0 || this.remaining < n) return this.fail(`truncated ${what}`);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  rest(): Uint8Array {
    const out = this.bytes.subarray(this.pos);
    this.pos = this.bytes.length;
    return out;
  }

  /** Marks trailing bytes as an error (PostgreSQL's pq_getmsgend). */
  end(what: string): void {
    if (this.error === undefined && this.remaining !== 0) this.fail(`${this.remaining} unexpected bytes after ${what}`);
  }
}

/** A growable big-endian writer; `message(code)` frames what was written. */
export class Writer {
  private buf: Uint8Array;
  private len = 0;

  constructor(capacity = 64) {
    this.buf = new Uint8Array(capacity);
  }

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  int8(v: number): this {
    this.ensure(1);
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  int16(v: number): this {
    this.ensure(2);
    this.buf[this.len++] = (v >>> 8) & 0xff;
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  int32(v: number): this {
    this.ensure(4);
    this.buf[this.len++] = (v >>> 24) & 0xff;
    this.buf[this.len++] = (v >>> 16) & 0xff;
    this.buf[this.len++] = (v >>> 8) & 0xff;
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this;
  }

  /** Text as UTF-8 plus a NUL. Throws on an embedded NUL: that is a bug in the caller. */
  cstring(s: string | Uint8Array): this {
    const b = typeof s === "string" ? encodeUtf8(s) : s;
    if (b.includes(0)) throw new Error("C string with an embedded NUL");
    return this.bytes(b).int8(0);
  }

  /** A typed message: code byte, int32 length (itself included), body. */
  message(code: number): Uint8Array {
    const out = new Uint8Array(5 + this.len);
    out[0] = code;
    writeInt32(out, 1, 4 + this.len);
    out.set(this.buf.subarray(0, this.len), 5);
    return out;
  }

  /** An untyped startup-phase packet: int32 length, body. */
  packet(): Uint8Array {
    const out = new Uint8Array(4 + this.len);
    writeInt32(out, 0, 4 + this.len);
    out.set(this.buf.subarray(0, this.len), 4);
    return out;
  }
}

export function writeInt32(out: Uint8Array, at: number, v: number): void {
  out[at] = (v >>> 24) & 0xff;
  out[at + 1] = (v >>> 16) & 0xff;
  out[at + 2] = (v >>> 8) & 0xff;
  out[at + 3] = v & 0xff;
}

export function readInt32(b: Uint8Array, at: number): number {
  return (b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!;
}

/** A message with no body: code + length 4. */
export function emptyMessage(code: number): Uint8Array {
  return new Uint8Array([code, 0, 0, 0, 4]);
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * The parts joined; one view without a copy when they lie back to back in
 * one buffer (messages forwarded from the same read), else concatBytes.
 */
export function joinViews(parts: readonly Uint8Array[]): Uint8Array {
  const first = parts[0];
  if (first === undefined) return new Uint8Array(0);
  if (parts.length === 1) return first;
  let end = first.byteOffset + first.length;
  for (let i = 1; i < parts.length; i++) {
    const p = parts[i]!;
    if (p.buffer !== first.buffer || p.byteOffset !== end) return concatBytes(parts);
    end += p.length;
  }
  return new Uint8Array(first.buffer, first.byteOffset, end - first.byteOffset);
}
