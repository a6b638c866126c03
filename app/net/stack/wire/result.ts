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
