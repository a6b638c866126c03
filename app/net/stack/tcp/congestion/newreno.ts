// NewReno's window (RFC 5681 with RFC 3465 byte counting): halve on a
// congestion event, one SMSS per window of bytes acknowledged in
// congestion avoidance.

import { CongestionWindow, type AckSample } from "./controller.ts";

export class NewReno extends CongestionWindow {
  readonly algorithm = "newreno" as const;
  /** Bytes acknowledged in congestion avoidance since cwnd last grew (RFC 3465 byte counting). */
  private caBytesAcked = 0;

  /** RFC 5681 eqn. (4): ssthresh = max(FlightSize / 2, 2*SMSS). */
  protected reduce(flight: number): number {
    return Math.max(flight >> 1, 2 * this.mss);
  }

  protected override slowStarted(): void {
    this.caBytesAcked = 0;
  }

  /** RFC 3465 §2.1: one SMSS per cwnd of data acknowledged, however many segments each ACK covers. */
  protected avoid(sample: AckSample): void {
    this.caBytesAcked += sample.acked;
    if (this.caBytesAcked >= this.cwnd) {
      this.caBytesAcked -= this.cwnd;
      this.cwnd += this.mss;
    }
  }

  protected saveState(): void {}
  protected restoreState(): void {}
}
