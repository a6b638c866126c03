// Where a client's Data block ends, so the packet after it is read as a
// packet (a Query must never hide in bytes taken for data). The bytes are
// forwarded untouched; this only measures them.
//
//  1. compressed (the Query asked for it): frames of [checksum 16][method 1]
//     [compressed size 4 (incl. the 9-byte header)][decompressed size 4]
//     [payload]; LZ4 (0x82), ZSTD (0x90) or none (0x02). A block ends at a
//     frame's end: frames are decompressed until the block inside parses;
//  2. the Native block: BlockInfo fields (1: is_overflows UInt8, 2: bucket_num
//     Int32, 0: end), VarUInt columns, VarUInt rows, then per column its name,
//     its type and rows of data, whose size the type decides.
// Types measured: (U)Int8..256, Float32/64, Bool, Date, Date32, DateTime[64],
// Decimal*, UUID, IPv4/6, Enum8/16, FixedString(N), String, Nothing,
// Nullable, Array, Tuple. Anything else (LowCardinality, AggregateFunction,
// Map, ...) is a WireError: the session closes rather than guess.
import { NeedMore, Reader, WireError } from "./reader.ts";
import { lz4Decompress } from "./lz4.ts";

/** One decompressed frame may not exceed this; nor may the frames of one block together. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;
export const MAX_BLOCK_BYTES = 256 * 1024 * 1024;

const CHECKSUM_BYTES = 16;
const FRAME_HEADER_BYTES = 9;
const METHOD_NONE = 0x02;
const METHOD_LZ4 = 0x82;
const METHOD_ZSTD = 0x90;

/** Reads one Native block at r.pos (uncompressed), leaving r.pos after it. */
export function skipNativeBlock(r: Reader): void {
  for (;;) {
    const field = r.varUInt();
    if (field === 0) break;
    if (field === 1) r.skip(1);
    else if (field === 2) r.skip(4);
    else throw new WireError(`an unknown BlockInfo field ${field}`);
  }
  const columns = r.varUInt();
  const rows = r.varUInt();
  if (columns > 100_000) throw new WireError(`a block of ${columns} columns`);
  for (let c = 0; c < columns; c++) {
    r.stringBytes();
    const type = parseType(r.string());
    if (rows > 0) skipColumn(r, type, rows);
  }
}

/** Reads one compressed block at r.pos (its frames), leaving r.pos after its last frame. */
export function skipCompressedBlock(r: Reader): void {
  const plain: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    r.skip(CHECKSUM_BYTES);
    const method = r.u8();
    const compressedSize = r.u32();
    const size = r.u32();
    if (compressedSize < FRAME_HEADER_BYTES) throw new WireError("a compressed frame shorter than its header");
    if (size > MAX_FRAME_BYTES || compressedSize > MAX_FRAME_BYTES + FRAME_HEADER_BYTES) throw new WireError(`a compressed frame of ${size} bytes`);
    const payload = r.bytes(compressedSize - FRAME_HEADER_BYTES);
    plain.push(decompress(method, payload, size));
    total += size;
    if (total > MAX_BLOCK_BYTES) throw new WireError("a block larger than the gateway measures");
    const joined = plain.length === 1 ? plain[0]! : concat(plain, total);
    const inner = new Reader(joined);
    try {
      skipNativeBlock(inner);
    } catch (e) {
      // The block goes on in the next frame.
      if (e instanceof NeedMore) continue;
      throw e;
    }
    if (inner.remaining !== 0) throw new WireError("bytes after a block inside its compressed frame");
    return;
  }
}

function decompress(method: number, payload: Uint8Array, size: number): Uint8Array {
  switch (method) {
    case METHOD_NONE:
      if (payload.length !== size) throw new WireError("an uncompressed frame whose sizes disagree");
      return payload;
    case METHOD_LZ4:
      return lz4Decompress(payload, size);
    case METHOD_ZSTD: {
      let out: Uint8Array;
      try {
        out = Bun.zstdDecompressSync(payload);
      } catch {
        throw new WireError("a ZSTD frame that does not decompress");
      }
      if (out.length !== size) throw new WireError("a ZSTD frame whose size disagrees with its header");
      return out;
    }
    default:
      throw new WireError(`an unknown compression method 0x${method.toString(16)}`);
  }
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ------------------------------------------------------------------ types

export interface TypeNode {
  name: string;
  args: (TypeNode | string)[];
}

/** `Array(Nullable(String))`, `Decimal(9, 2)`, `DateTime('UTC')`, `Tuple(a UInt8, b String)`. */
export function parseType(text: string): TypeNode {
  let i = 0;
  const ws = () => {
    while (text[i] === " ") i++;
  };
  const node = (depth: number): TypeNode => {
    if (depth > 32) throw new WireError("a type nested too deep");
    ws();
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i));
    if (!m) throw new WireError(`a type this gateway cannot read: ${JSON.stringify(text.slice(0, 80))}`);
    i += m[0].length;
    ws();
    // A named tuple element: `name Type`.
    if (/^[A-Za-z_]/.test(text.slice(i)) && depth > 0) return node(depth);
    const args: (TypeNode | string)[] = [];
    if (text[i] === "(") {
      i++;
      for (;;) {
        ws();
        const c = text[i];
        if (c === "'") {
          const end = text.indexOf("'", i + 1);
          if (end < 0) throw new WireError("an unterminated quote in a type");
          args.push(text.slice(i + 1, end));
          i = end + 1;
          // Enum values: 'a' = 1
          ws();
          if (text[i] === "=") {
            i++;
            ws();
            const n = /^-?[0-9]+/.exec(text.slice(i));
            if (!n) throw new WireError("an Enum value without a number");
            i += n[0].length;
          }
        } else if (c !== undefined && /[0-9]/.test(c)) {
          const n = /^[0-9]+/.exec(text.slice(i))!;
          args.push(n[0]);
          i += n[0].length;
        } else args.push(node(depth + 1));
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === ")") {
          i++;
          break;
        }
        throw new WireError(`a type this gateway cannot read: ${JSON.stringify(text.slice(0, 80))}`);
      }
    }
    return { name: m[0], args };
  };
  const t = node(0);
  ws();
  if (i !== text.length) throw new WireError(`a type this gateway cannot read: ${JSON.stringify(text.slice(0, 80))}`);
  return t;
}

const FIXED: Record<string, number> = {
  UInt8: 1, Int8: 1, Bool: 1, Enum8: 1, Nothing: 1,
  UInt16: 2, Int16: 2, Enum16: 2, Date: 2,
  UInt32: 4, Int32: 4, Float32: 4, DateTime: 4, IPv4: 4, Decimal32: 4, Date32: 4,
  UInt64: 8, Int64: 8, Float64: 8, Decimal64: 8, DateTime64: 8,
  UInt128: 16, Int128: 16, UUID: 16, IPv6: 16, Decimal128: 16,
  UInt256: 32, Int256: 32, Decimal256: 32,
};

function widthOf(t: TypeNode): number | undefined {
  if (t.name === "FixedString") {
    const n = Number(t.args[0]);
    if (!Number.isInteger(n) || n <= 0 || n > 1 << 20) throw new WireError("a FixedString without a size");
    return n;
  }
  if (t.name === "Decimal") {
    const p = Number(t.args[0]);
    if (!Number.isInteger(p) || p < 1 || p > 76) throw new WireError("a Decimal without a precision");
    return p <= 9 ? 4 : p <= 18 ? 8 : p <= 38 ? 16 : 32;
  }
  return FIXED[t.name];
}

function child(t: TypeNode, i: number): TypeNode {
  const c = t.args[i];
  if (c === undefined || typeof c === "string") throw new WireError(`${t.name} without an element type`);
  return c;
}

function skipColumn(r: Reader, t: TypeNode, rows: number): void {
  const width = widthOf(t);
  if (width !== undefined) {
    r.skip(width * rows);
    return;
  }
  switch (t.name) {
    case "String":
      for (let i = 0; i < rows; i++) r.skip(r.varUInt());
      return;
    case "Nullable":
      r.skip(rows);
      skipColumn(r, child(t, 0), rows);
      return;
    case "Array": {
      r.need(rows * 8);
      // Offsets are cumulative: the last one is the nested column's row count.
      const last = r.pos + (rows - 1) * 8;
      const lo = r.buf[last]! | (r.buf[last + 1]! << 8) | (r.buf[last + 2]! << 16);
      const total = lo + r.buf[last + 3]! * 0x1000000 + (r.buf[last + 4]! + r.buf[last + 5]! * 256) * 0x100000000;
      if (r.buf[last + 6] !== 0 || r.buf[last + 7] !== 0 || total > MAX_BLOCK_BYTES) throw new WireError("an Array column with too many elements");
      r.skip(rows * 8);
      if (total > 0) skipColumn(r, child(t, 0), total);
      return;
    }
    case "Tuple":
      for (let i = 0; i < t.args.length; i++) skipColumn(r, child(t, i), rows);
      return;
    default:
      throw new WireError(`a column of type ${t.name}, which this gateway cannot measure`);
  }
}
