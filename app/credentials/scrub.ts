// Scrubbing: a secret the upstream echoes back (a reflected header, an error
// quoting the request) must never reach the agent. Needles are the plugins'
// revealingForms; every occurrence is replaced, leftmost-longest, exactly as
// if the whole body had been scanned at once, however it is chunked.
//
// StreamScrubber.push, per chunk:
// 1. Join the held-back tail (if any) and the chunk.
// 2. Decided region — start positions that have at least (longest needle)
//    bytes after them: find matches with the native Buffer.indexOf, replace.
// 3. Tail — the last (longest − 1) start positions: walk them; a full match
//    no longer needle could extend is replaced; the first position whose
//    remaining bytes are a proper prefix of some needle stops the walk.
// 4. Emit everything before that position now; hold back only the rest
//    (< longest needle bytes). A tail that cannot start a needle — e.g. an
//    SSE event ending in "\n\n", as secrets hold no line breaks — is emitted
//    at once, so streams still flow event by event.
import type { HeaderList } from "../endpoints/http1/headers.ts";

/** A fixed replacement, or one computed from the matched needle's byte length. */
export type Replacement = string | ((needleBytes: number) => string);

/** Same-length masking: keeps Content-Length valid when a body is scrubbed in flight. */
export const sameLengthMask = (needleBytes: number): string => "*".repeat(needleBytes);

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();

/**
 * A needle list prepared once: deduplicated, empty strings dropped, as
 * bytes, indexed by first byte. The lists are per credential value and the
 * same array comes back for every request, so this is worked out once per
 * list, not per request, per header or per WebSocket frame.
 */
export class NeedleSet {
  /** Unique, non-empty needles. */
  readonly strings: readonly string[];
  readonly bytes: readonly Buffer[];
  /** The longest needle in bytes (0 when there is none). */
  readonly maxLen: number;
  /** The shortest needle in UTF-16 units: shorter text cannot hold one. */
  readonly minChars: number;
  /** Needles by first byte, for the tail walk. */
  readonly byFirst: readonly (readonly Buffer[] | undefined)[];

  constructor(needles: readonly string[]) {
    this.strings = [...new Set(needles.filter((n) => n !== ""))];
    this.bytes = this.strings.map((n) => Buffer.from(n, "utf8"));
    this.maxLen = this.bytes.reduce((m, n) => Math.max(m, n.length), 0);
    this.minChars = this.strings.reduce((m, n) => Math.min(m, n.length), Infinity);
    const byFirst: Buffer[][] = [];
    for (const n of this.bytes) (byFirst[n[0]!] ??= []).push(n);
    this.byFirst = byFirst;
  }
}

/** Prepared sets by list, each with a copy of the list it was made from. */
const prepared = new WeakMap<readonly string[], { source: string[]; set: NeedleSet }>();

/**
 * The prepared form of `needles`, cached by the array. The cache entry is
 * checked against the array's current items (identity compares, ~one per
 * needle), so an array changed after it was first seen is prepared afresh,
 * never scrubbed with a stale set.
 */
export function needleSet(needles: readonly string[]): NeedleSet {
  const hit = prepared.get(needles);
  if (hit && sameItems(hit.source, needles)) return hit.set;
  const set = new NeedleSet(needles);
  prepared.set(needles, { source: [...needles], set });
  return set;
}

function sameItems(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// A plain loop: tail candidates usually differ within a byte or two, where
// a call into native Buffer.compare costs more than it saves.
function sameBytes(data: Uint8Array, at: number, needle: Uint8Array, len: number): boolean {
  for (let i = 1; i < len; i++) if (data[at + i] !== needle[i]) return false;
  return true; // byte 0 already matched through byFirst
}

export class StreamScrubber {
  private readonly needles: readonly Buffer[];
  private readonly maxLen: number;
  /** Needles by first byte, for the tail walk. */
  private readonly byFirst: readonly (readonly Buffer[] | undefined)[];
  private readonly replacement: Replacement;
  /** Encoded replacements by needle length, made on the first match. */
  private replacementBytes: Map<number, Uint8Array> | undefined;
  private pending: Uint8Array = EMPTY;

  constructor(needles: readonly string[] | NeedleSet, replacement: Replacement = "[REDACTED]") {
    const set = needles instanceof NeedleSet ? needles : needleSet(needles);
    this.needles = set.bytes;
    this.maxLen = set.maxLen;
    this.byFirst = set.byFirst;
    this.replacement = replacement;
  }

  /** Bytes held back so far (always < the longest needle's length). */
  get held(): number {
    return this.pending.length;
  }

  /** Bytes safe to emit now. The result may be a view of `chunk`; do not reuse `chunk`'s buffer while it is in use. */
  push(chunk: Uint8Array): Uint8Array {
    if (this.needles.length === 0) return chunk;
    let data = chunk;
    if (this.pending.length > 0) {
      data = new Uint8Array(this.pending.length + chunk.length);
      data.set(this.pending, 0);
      data.set(chunk, this.pending.length);
    }
    return this.scan(data, false);
  }

  /** The held-back tail, scrubbed; call once at end of stream. */
  flush(): Uint8Array {
    if (this.pending.length === 0) return EMPTY;
    const data = this.pending;
    this.pending = EMPTY;
    return this.scan(data, true);
  }

  private replacementFor(len: number): Uint8Array {
    this.replacementBytes ??= new Map();
    let r = this.replacementBytes.get(len);
    if (!r) {
      r = encoder.encode(typeof this.replacement === "string" ? this.replacement : this.replacement(len));
      this.replacementBytes.set(len, r);
    }
    return r;
  }

  private scan(data: Uint8Array, final: boolean): Uint8Array {
    const end = data.length;
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const out: Uint8Array[] = [];
    let pos = 0;

    // Decided region: a needle starting before safeEnd lies wholly in data.
    const safeEnd = final ? end : Math.max(0, end - (this.maxLen - 1));
    const next = this.needles.map((n) => buf.indexOf(n, 0));
    for (;;) {
      let at = -1;
      let len = 0;
      for (let k = 0; k < this.needles.length; k++) {
        let i = next[k]!;
        if (i !== -1 && i < pos) next[k] = i = buf.indexOf(this.needles[k]!, pos);
        if (i === -1) continue;
        const l = this.needles[k]!.length;
        if (at === -1 || i < at || (i === at && l > len)) {
          at = i;
          len = l;
        }
      }
      if (at === -1 || at >= safeEnd) break;
      if (at > pos) out.push(data.subarray(pos, at));
      out.push(this.replacementFor(len));
      pos = at + len;
    }

    let p = end;
    if (!final) {
      // Tail walk: at most maxLen − 1 start positions.
      p = Math.max(pos, safeEnd);
      while (p < end) {
        const candidates = this.byFirst[data[p]!];
        let full = 0;
        let partial = false;
        if (candidates) {
          const rest = end - p;
          for (const n of candidates) {
            if (n.length > rest) {
              if (sameBytes(data, p, n, rest)) {
                partial = true;
                break;
              }
            } else if (n.length > full && sameBytes(data, p, n, n.length)) {
              full = n.length;
            }
          }
        }
        if (partial) break;
        if (full > 0) {
          if (p > pos) out.push(data.subarray(pos, p));
          out.push(this.replacementFor(full));
          pos = p += full;
        } else {
          p++;
        }
      }
      // Copy: the caller may reuse the chunk's buffer once we return.
      this.pending = p < end ? data.slice(p) : EMPTY;
    }
    // Nothing replaced or held: hand back the chunk itself, no copy, no view.
    if (out.length === 0 && pos === 0 && p === end) return data;
    if (p > pos) out.push(data.subarray(pos, p));

    if (out.length === 0) return EMPTY;
    if (out.length === 1) return out[0]!;
    let total = 0;
    for (const o of out) total += o.length;
    const joined = new Uint8Array(total);
    let w = 0;
    for (const o of out) {
      joined.set(o, w);
      w += o.length;
    }
    return joined;
  }
}

/** `text` with every needle replaced, leftmost-longest (the string twin of StreamScrubber). */
export function scrubText(text: string, needles: readonly string[] | NeedleSet, replacement: Replacement = "[REDACTED]"): string {
  const set = needles instanceof NeedleSet ? needles : needleSet(needles);
  // Shorter than every needle (most header values): nothing to find.
  if (text.length < set.minChars) return text;
  const ns = set.strings;
  const next = ns.map((n) => text.indexOf(n));
  let out = "";
  let pos = 0;
  for (;;) {
    let at = -1;
    let needle = "";
    for (let k = 0; k < ns.length; k++) {
      let i = next[k]!;
      if (i !== -1 && i < pos) next[k] = i = text.indexOf(ns[k]!, pos);
      if (i === -1) continue;
      if (at === -1 || i < at || (i === at && ns[k]!.length > needle.length)) {
        at = i;
        needle = ns[k]!;
      }
    }
    if (at === -1) break;
    out += text.slice(pos, at);
    out += typeof replacement === "string" ? replacement : replacement(Buffer.byteLength(needle, "utf8"));
    pos = at + needle.length;
  }
  return pos === 0 ? text : out + text.slice(pos);
}

/** A copy of `headers` with every needle replaced in the values (names are never secrets). */
export function scrubHeaders(headers: HeaderList, needles: readonly string[] | NeedleSet, replacement: Replacement = "[REDACTED]"): HeaderList {
  const set = needles instanceof NeedleSet ? needles : needleSet(needles);
  return headers.map(([n, v]) => [n, scrubText(v, set, replacement)]);
}
