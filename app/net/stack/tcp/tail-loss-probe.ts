// Tail loss probe (RFC 8985 §7): when the last segments of a flight are
// lost no duplicate ACKs come back, and only the RTO (200 ms or more)
// would recover them. Two SRTTs after the last transmission or ACK, one
// probe goes out instead (new data if the peer's window allows, else the
// last segment again); its ACK either covers everything (a loss repaired,
// or none) or SACKs the probe above holes, and RACK's rule (RFC 8985 §6.2)
// then marks every un-SACKed segment sent before it lost, starting fast
// recovery at once.

import { isSacked } from "./scoreboard.ts";
import { seqDiff, seqGe, seqLe, seqLt } from "./seq.ts";

/** RFC 8985 §7.2 WCDelAckT: the worst-case delayed-ACK timer a lone segment may wait for. */
export const TLP_DELAYED_ACK_MS = 200;
/** Floor on the PTO, as Linux's: a sub-millisecond SRTT must not make probes of reordering. */
export const TLP_MIN_PTO_MS = 10;

/** RFC 8985 §7.2: PTO = 2*SRTT (+ WCDelAckT with one segment in flight), never past the RTO. */
export function probeTimeout(srtt: number, flight: number, mss: number, rto: number): number {
  let pto = 2 * srtt;
  if (flight <= mss) pto += TLP_DELAYED_ACK_MS;
  return Math.min(Math.max(pto, TLP_MIN_PTO_MS), rto);
}

/**
 * One connection's probe bookkeeping: when the PTO is due, a probe owed,
 * the one out and unanswered (RFC 8985 TLP.end_seq), and what its answer
 * said. The connection arms it and sends the probe; `onAck` reads the answer.
 */
export class TailLossProbe {
  /** When the probe is due (the PTO timer); null: not armed. */
  at: number | null = null;
  /** The PTO fired: dispatch() sends the probe. */
  pending = false;
  /** SND.MAX after the probe went out, while it is unanswered. */
  highSeq: number | null = null;
  /** Where the probe's data starts and ends (a FIN is never SACKed). */
  start = 0;
  dataEnd = 0;
  /** The probe resent the last segment (no new data could go). */
  retransmitted = false;
  /** The probe was SACKed above holes: everything un-SACKed below here is lost (RACK's rule). */
  lostBelow: number | null = null;

  /** Stop the timer and forget an owed or unanswered probe. */
  reset(): void {
    this.at = null;
    this.pending = false;
    this.highSeq = null;
  }

  /** The probe [start, dataEnd) went out with SND.MAX at `highSeq`. */
  sent(start: number, dataEnd: number, highSeq: number, retransmitted: boolean): void {
    this.start = start;
    this.dataEnd = dataEnd;
    this.highSeq = highSeq;
    this.retransmitted = retransmitted;
  }

  /**
   * §7.4: an ACK while the probe is unanswered. Covered by the cumulative
   * ACK: returns the probe's sequence length if it repaired a loss (it was a
   * retransmission and no D-SACK says it was redundant; the window must
   * still be reduced as a recovery would), else 0. SACKed above holes
   * (outside recovery): `lostBelow` is set. Null while unanswered.
   */
  onAck(ack: number, sackBlocks: number[] | null, sndUna: number, scoreboard: number[], inRecovery: boolean): number | null {
    const high = this.highSeq!;
    const dsack = sackBlocks !== null && sackBlocks.length >= 2 && seqLe(sackBlocks[1]!, ack) && seqLe(this.start, sackBlocks[0]!);
    if (seqGe(ack, high)) {
      this.highSeq = null;
      return this.retransmitted && !dsack && !inRecovery ? seqDiff(high, this.start) : 0;
    }
    if (!inRecovery && seqLt(sndUna, this.start) && seqLt(this.start, this.dataEnd) && isSacked(scoreboard, this.start, this.dataEnd)) {
      this.highSeq = null;
      this.lostBelow = this.start;
    }
    return null;
  }
}
