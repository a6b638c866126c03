// LZ4 block decompression (the block format, not the frame format): what
// ClickHouse's compressed frames with method 0x82 hold. Sequences of a token
// (literal length high nibble, match length low nibble, 15 = more bytes
// follow), literals, a 2-byte little-endian offset and a match of length+4;
// the last sequence has literals only. Any inconsistency is a WireError.
import { WireError } from "./reader.ts";

export function lz4Decompress(src: Uint8Array, size: number): Uint8Array {
  const dst = new Uint8Array(size);
  let s = 0;
  let d = 0;
  const bad = (why: string): never => {
    throw new WireError(`an LZ4 frame that does not decompress (${why})`);
  };
  const length = (base: number): number => {
    let n = base;
    if (base === 15) {
      for (;;) {
        if (s >= src.length) bad("a length past the end");
        const b = src[s++]!;
        n += b;
        if (b !== 255) break;
      }
    }
    return n;
  };
  while (s < src.length) {
    const token = src[s++]!;
    const literals = length(token >> 4);
    if (s + literals > src.length || d + literals > size) bad("literals past the end");
    dst.set(src.subarray(s, s + literals), d);
    s += literals;
    d += literals;
    if (s === src.length) break;
    if (s + 2 > src.length) bad("an offset past the end");
    const offset = src[s]! | (src[s + 1]! << 8);
    s += 2;
    if (offset === 0 || offset > d) bad("an offset before the start");
    const match = length(token & 0x0f) + 4;
    if (d + match > size) bad("a match past the end");
    // Overlapping copies repeat the pattern: byte by byte.
    for (let i = 0; i < match; i++, d++) dst[d] = dst[d - offset]!;
  }
  if (d !== size) bad("a size that disagrees with the header");
  return dst;
}
