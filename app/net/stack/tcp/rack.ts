// RACK (RFC 8985 §6) for original transmissions: each new segment's send
// time is remembered, and once a segment sent after it has been delivered
// (SACKed or cumulatively acknowledged), one still missing is lost when
// RACK.rtt + reo_wnd have passed since it went out. This finds a hole with
// fewer than DupThresh segments SACKed above it, or below a DupThresh that
// reordering (or SACK reports lost with their ACKs) has raised, without
// waiting for the RTO. Originals go out in sequence order, so the lost ones
// are a prefix: `lostBelow` (un-SACKed original sequence below it is lost)
// only moves right; `rackAt` says when the next one may be due.
// Retransmissions have their own time rule (retransmission-log.ts).
import { seqGe, seqGt, seqLe, seqLt } from "./seq.ts";

/** Bound on segments remembered; past it the newest entry grows (its send time is the later one). */
const MAX_ENTRIES = 1024;
/** Entries: [start, end, sent at (ms)], flattened. */
const STRIDE = 3;

export class RackOriginals {
  private log: number[] = [];
  /** Index (in entries) of the first entry not yet acknowledged. */
  private head = 0;
  /** Index of the first entry not yet known lost. */
  private scan = 0;
  /** RACK.xmit_ts / RACK.end_seq / RACK.rtt: the most recently sent segment known delivered. */
  private xmitTs: number | null = null;
  private endSeq = 0;
  rtt = 0;
  /** Un-SACKed original sequence below this is lost; null until RACK marks any. */
  lostBelow: number | null = null;
  /** When the next segment may become lost by time; null: nothing waits. */
  rackAt: number | null = null;

  private get count(): number {
    return this.log.length / STRIDE;
  }

  /** New data [start, end) went out at `now`. */
  onSend(start: number, end: number, now: number): void {
    const log = this.log;
    const n = this.count;
    if (n - this.head >= MAX_ENTRIES) {
      log[(n - 1) * STRIDE + 1] = end;
      log[(n - 1) * STRIDE + 2] = now;
      return;
    }
    if (this.head > 256 && this.head * 2 > n) {
      log.splice(0, this.head * STRIDE);
      this.scan -= this.head;
      this.head = 0;
    }
    log.push(start, end, now);
  }

  /** Index of the last entry ending at or before `seq`, or -1. */
  private lastEndingBy(seq: number): number {
    const log = this.log;
    let lo = this.head, hi = this.count - 1, found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (seqLe(log[mid * STRIDE + 1]!, seq)) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  /**
   * RFC 8985 §6.2 step 2, on an ACK once the scoreboard took its SACK
   * blocks: RACK.xmit_ts moves to the most recently sent original now known
   * delivered (the highest entry inside a SACKed range, else the last one
   * cumulatively acknowledged), RACK.rtt to its RTT. Data below
   * `ambiguousBelow` may have been delivered by a retransmission, so it
   * moves nothing. Returns the RTT sample taken, or null.
   */
  onAck(sndUna: number, scoreboard: number[], ambiguousBelow: number | null, now: number): number | null {
    const log = this.log;
    let best = -1;
    for (let k = scoreboard.length - 2; k >= 0 && best < 0; k -= 2) {
      const i = this.lastEndingBy(scoreboard[k + 1]!);
      if (i >= 0 && seqGe(log[i * STRIDE]!, scoreboard[k]!)) best = i;
      else if (i < 0) break;
    }
    if (best < 0) best = this.lastEndingBy(sndUna);
    let sample: number | null = null;
    if (best >= 0 && (ambiguousBelow === null || seqGe(log[best * STRIDE]!, ambiguousBelow))) {
      const sentAt = log[best * STRIDE + 2]!, end = log[best * STRIDE + 1]!;
      if (this.xmitTs === null || sentAt > this.xmitTs || (sentAt === this.xmitTs && seqGt(end, this.endSeq))) {
        this.xmitTs = sentAt;
        this.endSeq = end;
        this.rtt = sample = now - sentAt;
      }
    }
    // Acknowledged entries are done with.
    const n = this.count;
    while (this.head < n && seqLe(log[this.head * STRIDE + 1]!, sndUna)) this.head++;
    if (this.scan < this.head) this.scan = this.head;
    return sample;
  }

  /**
   * RFC 8985 §6.2 step 5, after onAck and when `rackAt` comes: every
   * segment sent before RACK's is lost once RACK.rtt + reo_wnd have passed
   * since it went out.
   */
  detectLoss(reoWnd: number, now: number): void {
    const log = this.log;
    this.rackAt = null;
    if (this.xmitTs === null) return;
    const n = this.count;
    for (let i = this.scan; i < n; i++) {
      const end = log[i * STRIDE + 1]!;
      if (!seqLt(end, this.endSeq)) break;
      const due = log[i * STRIDE + 2]! + this.rtt + reoWnd;
      if (now < due) {
        this.rackAt = due;
        break;
      }
      if (this.lostBelow === null || seqGt(end, this.lostBelow)) this.lostBelow = end;
      this.scan = i + 1;
    }
  }

  /** A recovery proved spurious: what was marked lost is looked at again (as Linux's undo clears its loss marks). */
  forgetLosses(): void {
    this.lostBelow = null;
    this.scan = this.head;
  }

  /**
   * Data below `seq` was retransmitted up to `now`: its segments count as
   * sent then (and, to keep send times in sequence order, so do later ones
   * sent before), so an original that arrived late is not taken for lost
   * again by its first send time.
   */
  retime(seq: number, now: number): void {
    const log = this.log;
    for (let i = this.head; i < this.count; i++) {
      if (!seqLt(log[i * STRIDE]!, seq) && log[i * STRIDE + 2]! >= now) break;
      if (log[i * STRIDE + 2]! < now) log[i * STRIDE + 2] = now;
    }
  }

  /** The connection is gone: nothing waits. */
  stop(): void {
    this.rackAt = null;
  }
}
