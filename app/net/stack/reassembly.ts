// IPv4 fragment reassembly (RFC 791 §3.2, RFC 815 in spirit), bounded and
// sans-IO: fragments and `now` in, a whole payload or a reason out.
//
//   1. A fragment is keyed by (src, dst, protocol, identification).
//   2. Non-last fragments must carry a multiple of 8 octets; the datagram
//      may not exceed 65535 bytes with its header.
//   3. Exact duplicates are ignored; any other overlap drops the whole
//      datagram (as RFC 5722 requires for IPv6 and Linux does for IPv4:
//      overlaps are only ever attacks on middleboxes).
//   4. Bounds: datagrams in flight, fragments per datagram, bytes held in
//      total (the oldest datagram is evicted to make room), and a timer per
//      datagram started by its first fragment.
import type { Ipv4Repr } from "./wire/ipv4.ts";

/** RFC 791: a datagram is at most 65535 octets; payload after a minimal header. */
export const MAX_REASSEMBLED_PAYLOAD = 65535 - 20;
/** RFC 791 §3.2 suggests a reassembly timer of about 15 s; Linux uses 30 s. */
export const REASSEMBLY_TIMEOUT_MS = 30_000;

export interface ReassemblySettings {
  maxDatagrams: number;
  maxFragmentsPerDatagram: number;
  /** Bytes held across every incomplete datagram. */
  maxBufferedBytes: number;
  timeoutMs: number;
}

export const DEFAULT_REASSEMBLY_SETTINGS: ReassemblySettings = {
  maxDatagrams: 64,
  maxFragmentsPerDatagram: 64,
  maxBufferedBytes: 1024 * 1024,
  timeoutMs: REASSEMBLY_TIMEOUT_MS,
};

export type ReassemblyResult =
  | { kind: "incomplete" }
  | { kind: "complete"; payload: Uint8Array }
  | { kind: "drop"; reason: string };

export interface ReassemblyStats {
  completed: number;
  timedOut: number;
  evicted: number;
}

interface Piece {
  off: number;
  data: Uint8Array;
}

interface Entry {
  pieces: Piece[]; // sorted by offset, disjoint
  received: number;
  totalLen: number | null;
  deadline: number;
}

const INCOMPLETE: ReassemblyResult = { kind: "incomplete" };

function key(r: Ipv4Repr): string {
  const s = r.src;
  const d = r.dst;
  return String.fromCharCode(s[0]!, s[1]!, s[2]!, s[3]!, d[0]!, d[1]!, d[2]!, d[3]!, r.protocol, r.ident);
}

export class Ipv4Reassembler {
  readonly settings: ReassemblySettings;
  readonly stats: ReassemblyStats = { completed: 0, timedOut: 0, evicted: 0 };
  /** Insertion order = arrival order of first fragments = deadline order. */
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;

  constructor(settings: Partial<ReassemblySettings> = {}) {
    this.settings = { ...DEFAULT_REASSEMBLY_SETTINGS, ...settings };
  }

  /** Datagrams being reassembled. */
  get size(): number {
    return this.entries.size;
  }

  get bufferedBytes(): number {
    return this.bytes;
  }

  /** Add one fragment (`payload` is borrowed: copied if kept). */
  add(repr: Ipv4Repr, payload: Uint8Array, now: number): ReassemblyResult {
    this.expire(now);
    const off = repr.fragmentOffset;
    const len = payload.length;
    const end = off + len;
    if (repr.moreFragments && (len === 0 || len % 8 !== 0)) return { kind: "drop", reason: "frag: bad-length" };
    if (end > MAX_REASSEMBLED_PAYLOAD) return this.fail(key(repr), "frag: too-big");
    const k = key(repr);
    let e = this.entries.get(k);
    if (e === undefined) {
      if (len > this.settings.maxBufferedBytes) return { kind: "drop", reason: "frag: too-big" };
      while (this.entries.size >= this.settings.maxDatagrams) this.evictOldest();
      e = { pieces: [], received: 0, totalLen: null, deadline: now + this.settings.timeoutMs };
      this.entries.set(k, e);
    }
    if (!repr.moreFragments) {
      if (e.totalLen !== null && e.totalLen !== end) return this.fail(k, "frag: inconsistent");
      const last = e.pieces[e.pieces.length - 1];
      if (last !== undefined && last.off + last.data.length > end) return this.fail(k, "frag: inconsistent");
      e.totalLen = end;
    } else if (e.totalLen !== null && end > e.totalLen) {
      return this.fail(k, "frag: inconsistent");
    }
    // Find the insertion point; check neighbours for overlap.
    const ps = e.pieces;
    let i = 0;
    while (i < ps.length && ps[i]!.off < off) i++;
    const next = ps[i];
    if (next !== undefined && next.off === off && next.data.length === len) return INCOMPLETE; // duplicate
    const prev = ps[i - 1];
    if ((prev !== undefined && prev.off + prev.data.length > off) || (next !== undefined && next.off < end)) {
      return this.fail(k, "frag: overlap");
    }
    if (ps.length >= this.settings.maxFragmentsPerDatagram) return this.fail(k, "frag: too-many");
    while (this.bytes + len > this.settings.maxBufferedBytes && this.entries.size > 1) {
      const oldestKey = this.entries.keys().next().value as string;
      if (oldestKey === k) break;
      this.evictOldest();
    }
    if (this.bytes + len > this.settings.maxBufferedBytes) return this.fail(k, "frag: buffer-full");
    ps.splice(i, 0, { off, data: payload.slice() });
    e.received += len;
    this.bytes += len;
    if (e.totalLen === null || e.received !== e.totalLen) return INCOMPLETE;
    // Disjoint pieces inside [0, totalLen) summing to totalLen cover it.
    const out = new Uint8Array(e.totalLen);
    for (const p of ps) out.set(p.data, p.off);
    this.remove(k, e);
    this.stats.completed++;
    return { kind: "complete", payload: out };
  }

  /** Drop datagrams whose timer ran out. */
  expire(now: number): void {
    for (const [k, e] of this.entries) {
      if (e.deadline > now) break;
      this.remove(k, e);
      this.stats.timedOut++;
    }
  }

  /** When expire() next has work, or null. */
  pollAt(): number | null {
    const first = this.entries.values().next();
    return first.done ? null : first.value.deadline;
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }

  private fail(k: string, reason: string): ReassemblyResult {
    const e = this.entries.get(k);
    if (e !== undefined) this.remove(k, e);
    return { kind: "drop", reason };
  }

  private evictOldest(): void {
    const first = this.entries.entries().next();
    if (first.done) return;
    this.remove(first.value[0], first.value[1]);
    this.stats.evicted++;
  }

  private remove(k: string, e: Entry): void {
    this.entries.delete(k);
    this.bytes -= e.received;
  }
}
