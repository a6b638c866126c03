// The RTT estimator and retransmission timeout (RFC 6298): SRTT and RTTVAR
// from samples taken by timestamps (RFC 7323 §4.1) or, without them, from
// one timed segment at a time (Karn: never a retransmitted one), the RTO
// they give, bounded and backed off; and the smallest sample, which RACK's
// reordering window uses (RFC 8985 RACK.min_RTT).
import type { TcpTimestamp } from "../wire/tcp.ts";
import { seqGt } from "./seq.ts";

/** RFC 6298: clock granularity G (we tick in milliseconds). */
export const CLOCK_GRANULARITY_MS = 1;

export interface RtoBounds {
  rtoInitialMs: number;
  rtoMinMs: number;
  rtoMaxMs: number;
}

export class RttEstimator {
  srtt: number | null = null;
  rttvar = 0;
  minRtt: number | null = null;
  rto: number;
  /** The segment being timed (without timestamps), and when it went out. */
  private timedSeq: number | null = null;
  private timedAt = 0;

  constructor(private readonly bounds: RtoBounds) {
    this.rto = bounds.rtoInitialMs;
  }

  /** Time the segment at `seq`, sent at `now`, if none is timed. */
  time(seq: number, now: number): void {
    if (this.timedSeq !== null) return;
    this.timedSeq = seq;
    this.timedAt = now;
  }

  /** Karn's rule: what is timed may be retransmitted; it gives no sample. */
  forget(): void {
    this.timedSeq = null;
  }

  /** RFC 6298 §2 (and RFC 7323 §4.1 when `tsOk`), on an ACK up to `ack`. */
  sample(tsOk: boolean, ts: TcpTimestamp | null, ack: number, now: number): void {
    let sample: number | null = null;
    if (tsOk && ts !== null && ts.tsecr !== 0) {
      const d = ((now >>> 0) - ts.tsecr) >>> 0;
      if (d < 0x7fffffff) sample = d;
    } else if (this.timedSeq !== null && seqGt(ack, this.timedSeq)) {
      sample = now - this.timedAt;
    }
    if (sample === null) return;
    this.timedSeq = null;
    if (this.minRtt === null || sample < this.minRtt) this.minRtt = sample;
    if (this.srtt === null) {
      this.srtt = sample; // (2.2)
      this.rttvar = sample / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - sample); // (2.3)
      this.srtt = 0.875 * this.srtt + 0.125 * sample;
    }
    const rto = this.srtt + Math.max(CLOCK_GRANULARITY_MS, 4 * this.rttvar);
    this.rto = Math.min(Math.max(rto, this.bounds.rtoMinMs), this.bounds.rtoMaxMs); // (2.4), (2.5)
  }

  /** RFC 6298 (5.5): the timer expired; back off. */
  backoff(): void {
    this.rto = Math.min(this.rto * 2, this.bounds.rtoMaxMs);
  }
}
