// The one result shape every wire parser returns: a plain representation plus
// a view of the payload, or a reason to drop. Parsers never throw on input.
export type Parsed<R> =
  | { ok: true; repr: R; payload: Uint8Array }
  | { ok: false; reason: string };

export function drop(reason: string): { ok: false; reason: string } {
  return { ok: false, reason };
}

/** A DataView over exactly the bytes of `b` (which may be a subarray). */
export function viewOf(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

// Big-endian reads and writes straight on the bytes: the per-packet paths
// use these rather than a DataView, whose construction makes the engine
// materialise each fresh array's ArrayBuffer (a second allocation).
export function get16(b: Uint8Array, i: number): number {
  return (b[i]! << 8) | b[i + 1]!;
}
export function get32(b: Uint8Array, i: number): number {
  return ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
}
export function put16(b: Uint8Array, i: number, v: number): void {
  b[i] = v >>> 8;
  b[i + 1] = v;
}
export function put32(b: Uint8Array, i: number, v: number): void {
  b[i] = v >>> 24;
  b[i + 1] = v >>> 16;
  b[i + 2] = v >>> 8;
  b[i + 3] = v;
}
