// The send side's SACK scoreboard (RFC 6675 §3): the ranges above SND.UNA
// the peer reported holding, as a flattened, sorted [start, end) list of
// sequence numbers. Pure functions over that list; the connection owns it
// and decides what to do with what they say.
import { seqDiff, seqGt, seqLe, seqLt } from "./seq.ts";

/** Bound on SACKed ranges kept (RFC 6675 §3 allows any bound). */
export const MAX_SCOREBOARD_RANGES = 32;

/** Merge the peer's SACK blocks; D-SACK (RFC 2883) and blocks outside (SND.UNA, SND.MAX] are ignored. */
export function mergeSackBlocks(sb: number[], blocks: number[], sndUna: number, sndMax: number): void {
  for (let i = 0; i + 1 < blocks.length; i += 2) {
    let l = blocks[i]! >>> 0;
    const r = blocks[i + 1]! >>> 0;
    if (!seqLt(l, r) || seqLe(r, sndUna) || seqGt(r, sndMax)) continue;
    if (seqLt(l, sndUna)) l = sndUna;
    addRange(sb, l, r);
  }
}

function addRange(sb: number[], l: number, r: number): void {
  let i = 0;
  while (i < sb.length && seqLt(sb[i + 1]!, l)) i += 2;
  let j = i;
  let s = l;
  let e = r;
  while (j < sb.length && seqLe(sb[j]!, e)) {
    if (seqLt(sb[j]!, s)) s = sb[j]!;
    if (seqGt(sb[j + 1]!, e)) e = sb[j + 1]!;
    j += 2;
  }
  if (j === i && sb.length / 2 >= MAX_SCOREBOARD_RANGES) {
    // Full: keep the ranges nearest SND.UNA, which decide what is lost.
    if (i >= sb.length) return;
    sb.length -= 2;
  }
  sb.splice(i, j - i, s, e);
}

/** Forget the ranges at or below SND.UNA. */
export function pruneScoreboard(sb: number[], sndUna: number): void {
  let k = 0;
  while (k < sb.length && seqLe(sb[k + 1]!, sndUna)) k += 2;
  if (k > 0) sb.splice(0, k);
  if (sb.length > 0 && seqLt(sb[0]!, sndUna)) sb[0] = sndUna;
}

/**
 * RFC 6675 IsLost() as a boundary: an un-SACKed sequence number below the
 * result is lost (DupThresh SACKed ranges, or more than (DupThresh-1)*SMSS
 * SACKed bytes, lie above it). SND.UNA when nothing is.
 */
export function sackLostBoundary(sb: number[], sndUna: number, dupThresh: number, mss: number): number {
  const need = (dupThresh - 1) * mss;
  let bytes = 0;
  for (let k = sb.length - 2, n = 1; k >= 0; k -= 2, n++) {
    bytes += seqDiff(sb[k + 1]!, sb[k]!);
    if (bytes > need || n >= dupThresh) return sb[k]!;
  }
  return sndUna;
}

/** [s, e) lies inside one SACKed range. */
export function isSacked(sb: number[], s: number, e: number): boolean {
  for (let k = 0; k < sb.length; k += 2) {
    if (seqLe(sb[k]!, s) && seqLe(e, sb[k + 1]!)) return true;
    if (seqGt(sb[k]!, s)) return false;
  }
  return false;
}

/** SACKd (RFC 6937 §2): the bytes the scoreboard holds as delivered. */
export function sackedBytes(sb: number[]): number {
  let n = 0;
  for (let i = 0; i + 1 < sb.length; i += 2) n += seqDiff(sb[i + 1]!, sb[i]!);
  return n;
}

/**
 * RFC 6675 SetPipe() over [sndUna, sndMax): octets neither SACKed nor
 * below `lost`, plus (in recovery, `highRxt` not null) octets below HighRxt
 * retransmitted and not SACKed.
 */
export function sackPipe(sb: number[], sndUna: number, sndMax: number, lost: number, highRxt: number | null): number {
  let pipe = 0;
  let a = sndUna;
  for (let k = 0; k <= sb.length; k += 2) {
    const b = k < sb.length ? sb[k]! : sndMax;
    if (seqLt(a, b)) {
      pipe += Math.max(0, seqDiff(b, seqGt(a, lost) ? a : lost));
      if (highRxt !== null) pipe += Math.max(0, seqDiff(seqLt(b, highRxt) ? b : highRxt, a));
    }
    if (k < sb.length) a = sb[k + 1]!;
  }
  return pipe;
}

/** RFC 6675 NextSeg() rule 1: the first un-SACKed sequence at or above `highRxt` and below `lost`, as [seq, len ≤ mss]. */
export function firstLostHole(sb: number[], sndUna: number, sndMax: number, lost: number, highRxt: number, mss: number): [number, number] | null {
  let a = sndUna;
  for (let k = 0; k <= sb.length; k += 2) {
    const b = k < sb.length ? sb[k]! : sndMax;
    const s = seqGt(a, highRxt) ? a : highRxt;
    const e = seqLt(b, lost) ? b : lost;
    if (seqLt(s, e)) return [s, Math.min(seqDiff(e, s), mss)];
    if (!seqLt(b, lost)) return null;
    if (k < sb.length) a = sb[k + 1]!;
  }
  return null;
}
