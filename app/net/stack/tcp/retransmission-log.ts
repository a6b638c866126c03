// The retransmissions of one loss recovery, and which of them were lost in
// turn. A retransmission still missing is lost once data sent after it
// (above its mark, SND.MAX when it went out) is SACKed beyond DupThresh
// segments (Linux's lost-retransmit detection, by sequence), or with RACK
// (RFC 8985 §6.2) once anything sent after it was delivered and SRTT +
// reo_wnd have passed since it went out; until then `rackAt` says when to
// look again. Without this, a lost retransmission waits for the RTO.
import { isSacked } from "./scoreboard.ts";
import { seqDiff, seqGt, seqLe, seqLt, seqMax } from "./seq.ts";

/** Bound on retransmissions remembered per recovery. */
const MAX_ENTRIES = 256;
/** Entries: [start, end, mark, lost (0/1), sent at (ms)], flattened. */
const STRIDE = 5;

export class RetransmissionLog {
  private readonly log: number[] = [];
  /** When the RACK rule may next find one lost; null: nothing waits. */
  rackAt: number | null = null;

  clear(): void {
    this.log.length = 0;
  }

  /** [start, end) went out at `now` with SND.MAX at `mark`; a lost entry sent again is no longer lost. */
  add(start: number, end: number, mark: number, now: number): void {
    const log = this.log;
    for (let i = 0; i < log.length; i += STRIDE) {
      if (log[i + 3] === 1 && seqLe(log[i]!, start) && seqLt(start, log[i + 1]!)) {
        log[i] = start;
        log[i + 2] = mark;
        log[i + 3] = 0;
        log[i + 4] = now;
        return;
      }
    }
    if (log.length < STRIDE * MAX_ENTRIES) log.push(start, end, mark, 0, now);
  }

  /**
   * Drop what is acknowledged or SACKed; mark lost what was overtaken by
   * more than `horizon` SACKed bytes, or (`rackWait` = SRTT + reo_wnd, null
   * without RACK) by anything delivered and `rackWait` ago.
   */
  update(sndUna: number, scoreboard: number[], horizon: number, rackWait: number | null, now: number): void {
    const log = this.log;
    this.rackAt = null;
    if (log.length === 0) return;
    const highestSacked = scoreboard.length > 0 ? scoreboard[scoreboard.length - 1]! : sndUna;
    let w = 0;
    for (let i = 0; i < log.length; i += STRIDE) {
      const st = log[i]!, en = log[i + 1]!, mark = log[i + 2]!, sentAt = log[i + 4]!;
      let lost = log[i + 3]!;
      if (seqLe(en, sndUna) || isSacked(scoreboard, seqMax(st, sndUna), en)) continue;
      if (lost === 0 && seqDiff(highestSacked, mark) > horizon) lost = 1;
      if (lost === 0 && rackWait !== null && seqGt(highestSacked, mark)) {
        if (now >= sentAt + rackWait) lost = 1;
        else if (this.rackAt === null || sentAt + rackWait < this.rackAt) this.rackAt = sentAt + rackWait;
      }
      log[w] = st;
      log[w + 1] = en;
      log[w + 2] = mark;
      log[w + 3] = lost;
      log[w + 4] = sentAt;
      w += STRIDE;
    }
    log.length = w;
  }

  /** Bytes above SND.UNA of retransmissions known lost: they have left the network (pipe). */
  lostBytes(sndUna: number): number {
    const log = this.log;
    let n = 0;
    for (let i = 0; i < log.length; i += STRIDE) {
      if (log[i + 3] === 1 && seqGt(log[i + 1]!, sndUna)) n += seqDiff(log[i + 1]!, seqMax(log[i]!, sndUna));
    }
    return n;
  }

  /** The first retransmission found lost, as [seq, len ≤ mss], to send again. */
  firstLost(sndUna: number, mss: number): [number, number] | null {
    const log = this.log;
    for (let i = 0; i < log.length; i += STRIDE) {
      if (log[i + 3] === 1) {
        const st = seqMax(log[i]!, sndUna);
        return [st, Math.min(seqDiff(log[i + 1]!, st), mss)];
      }
    }
    return null;
  }
}
