// Proportional Rate Reduction (RFC 6937, the slow-start reduction bound):
// how much may be sent on each ACK during loss recovery, so that the
// window comes down to ssthresh spread over the recovery's round trip
// instead of in a silent half-window (RFC 6675) or a burst, and climbs
// back toward ssthresh by at most one extra SMSS per ACK when losses took
// pipe below it.

export class Prr {
  /** Bytes delivered to the receiver since recovery began. */
  delivered = 0;
  /** Bytes sent since recovery began. */
  out = 0;
  /** FlightSize when recovery began. */
  recoverFs = 1;

  begin(flight: number): void {
    this.delivered = 0;
    this.out = 0;
    this.recoverFs = Math.max(1, flight);
  }

  /** RFC 6937 §3 on every ACK in recovery: sndcnt, never negative. */
  sendCount(deliveredData: number, pipe: number, ssthresh: number, mss: number): number {
    this.delivered += deliveredData;
    let sndcnt: number;
    if (pipe > ssthresh) {
      // Proportional rate reduction.
      sndcnt = Math.ceil((this.delivered * ssthresh) / this.recoverFs) - this.out;
    } else {
      // Slow-start reduction bound (PRR-SSRB).
      const limit = Math.max(this.delivered - this.out, deliveredData) + mss;
      sndcnt = Math.min(ssthresh - pipe, limit);
    }
    return Math.max(0, sndcnt);
  }

  /** Any data sent or retransmitted during recovery. */
  sent(bytes: number): void {
    this.out += bytes;
  }
}
