/**
 * BLAKE2s (RFC 7693) with a key and a variable digest length, for
 * WireGuard's MAC (keyed BLAKE2s-128, §5.4.4). node:crypto's blake2s256 has
 * no key parameter and @noble/hashes' keyed path costs ~25 µs per call under
 * Bun; this one is a plain compression loop over a reusable state (~2 µs).
 * mac1 is checked on every handshake message before any DH, so its cost
 * bounds what a flood of junk handshakes can make us spend.
 */

const IV = new Uint32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);

const SIGMA = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
  [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
  [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
  [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
  [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
  [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
  [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
  [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
  [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
].map((r) => Uint8Array.from(r));

const h = new Uint32Array(8);
const v = new Uint32Array(16);
const m = new Uint32Array(16);
const block = new Uint8Array(64);

function rotr(x: number, n: number): number {
  return (x >>> n) | (x << (32 - n));
}

function g(a: number, b: number, c: number, d: number, x: number, y: number): void {
  v[a] = v[a]! + v[b]! + x;
  v[d] = rotr(v[d]! ^ v[a]!, 16);
  v[c] = v[c]! + v[d]!;
  v[b] = rotr(v[b]! ^ v[c]!, 12);
  v[a] = v[a]! + v[b]! + y;
  v[d] = rotr(v[d]! ^ v[a]!, 8);
  v[c] = v[c]! + v[d]!;
  v[b] = rotr(v[b]! ^ v[c]!, 7);
}

function compress(t: number, last: boolean): void {
  for (let i = 0; i < 16; i++) {
    const o = i * 4;
    m[i] = block[o]! | (block[o + 1]! << 8) | (block[o + 2]! << 16) | (block[o + 3]! << 24);
  }
  for (let i = 0; i < 8; i++) {
    v[i] = h[i]!;
    v[i + 8] = IV[i]!;
  }
  v[12] = v[12]! ^ (t >>> 0);
  v[13] = v[13]! ^ Math.floor(t / 0x100000000);
  if (last) v[14] = ~v[14]!;
  for (let r = 0; r < 10; r++) {
    const s = SIGMA[r]!;
    g(0, 4, 8, 12, m[s[0]!]!, m[s[1]!]!);
    g(1, 5, 9, 13, m[s[2]!]!, m[s[3]!]!);
    g(2, 6, 10, 14, m[s[4]!]!, m[s[5]!]!);
    g(3, 7, 11, 15, m[s[6]!]!, m[s[7]!]!);
    g(0, 5, 10, 15, m[s[8]!]!, m[s[9]!]!);
    g(1, 6, 11, 12, m[s[10]!]!, m[s[11]!]!);
    g(2, 7, 8, 13, m[s[12]!]!, m[s[13]!]!);
    g(3, 4, 9, 14, m[s[14]!]!, m[s[15]!]!);
  }
  for (let i = 0; i < 8; i++) h[i] = h[i]! ^ v[i]! ^ v[i + 8]!;
}

/** BLAKE2s(input) with an optional key (<= 32 bytes) and digest length (1..32). */
export function blake2s(input: Uint8Array, key?: Uint8Array, outLen = 32): Uint8Array {
  const keyLen = key?.length ?? 0;
  if (keyLen > 32 || outLen < 1 || outLen > 32) throw new RangeError("blake2s: bad key or output length");
  h.set(IV);
  h[0] = h[0]! ^ (0x01010000 | (keyLen << 8) | outLen);
  let t = 0;
  let fill = 0;
  if (keyLen > 0) {
    block.fill(0);
    block.set(key!);
    fill = 64;
  }
  for (let i = 0; i < input.length; ) {
    if (fill === 64) {
      t += 64;
      compress(t, false);
      fill = 0;
    }
    const n = Math.min(64 - fill, input.length - i);
    block.set(input.subarray(i, i + n), fill);
    fill += n;
    i += n;
  }
  t += fill;
  block.fill(0, fill);
  compress(t, true);
  const out = new Uint8Array(outLen);
  for (let i = 0; i < outLen; i++) out[i] = (h[i >> 2]! >>> (8 * (i & 3))) & 0xff;
  return out;
}
