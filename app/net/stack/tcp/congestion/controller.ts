// The congestion-control seam (as smoltcp's socket/tcp/congestion/): the
// connection owns loss detection (scoreboard, duplicate ACKs, RTO) and tells
// a controller what happened; the controller owns cwnd and ssthresh and says
// how much may be in flight. An algorithm (NewReno, CUBIC) decides the
// reduction on a congestion event and the growth outside recovery; the
// window arithmetic of recovery itself (RFC 6582 inflation, RFC 6675's
// cwnd = ssthresh, or PRR per RFC 6937) is shared by every algorithm.

import { Prr } from "./prr.ts";

export type CongestionAlgorithm = "cubic" | "newreno";

/** RFC 6928: IW = min(10*MSS, max(2*MSS, 14600)). */
export const RFC6928_IW_SEGMENTS = 10;

export function initialWindow(mss: number): number {
  return Math.min(RFC6928_IW_SEGMENTS * mss, Math.max(2 * mss, 14600));
}

export interface AckSample {
  /** Data bytes newly acknowledged cumulatively (SYN and FIN are not data). */
  acked: number;
  /** The connection's smoothed RTT in ms; null before the first sample. */
  srttMs: number | null;
  now: number;
}

/** What the connection sees of its controller. */
export interface CongestionController {
  readonly algorithm: CongestionAlgorithm;
  /** Congestion window in bytes (may be fractional under CUBIC). */
  cwnd: number;
  ssthresh: number;
  /** The send MSS is known (handshake done): the initial window (RFC 6928). */
  start(mss: number): void;
  /** A cumulative ACK outside recovery: slow start or congestion avoidance. */
  onAck(sample: AckSample): void;
  /**
   * Loss detected: fast recovery begins. ssthresh comes from the
   * algorithm; cwnd follows RFC 6582 (`newreno`: ssthresh + 3 SMSS),
   * RFC 6675 (`sack`: ssthresh) or PRR when enabled (`sack`). The state
   * before is kept for undo.
   */
  enterRecovery(flight: number, now: number, style: "sack" | "newreno"): void;
  /** RFC 6582 §3.2 step 3: a further duplicate ACK inflates cwnd by one SMSS. */
  onRecoveryDupAck(): void;
  /** RFC 6582 §3.2 step 5: a partial ACK deflates cwnd by what it acknowledged. */
  onPartialAck(acked: number): void;
  /** RFC 6582 §3.2 step 5 option 1: the full ACK ends recovery. */
  onFullAck(flight: number): void;
  /**
   * An ACK during SACK recovery (RFC 6937): `delivered` is the change in
   * SND.UNA plus the change in SACKed bytes, `pipe` the RFC 6675 pipe.
   */
  onRecoveryAck(delivered: number, pipe: number): void;
  /** Bytes sent (new or retransmitted) during SACK recovery. */
  onRecoverySent(bytes: number): void;
  /** SACK recovery ends (RecoveryPoint acknowledged): cwnd = ssthresh. */
  exitRecovery(): void;
  /**
   * RFC 6298 §5.5 with RFC 5681 eqn. (4): the loss window. `first`: the
   * first expiry for this data (ssthresh is reduced only then);
   * `undoable`: no reduction is under way, so this one may be undone.
   */
  onRetransmitTimeout(flight: number, first: boolean, undoable: boolean, now: number): void;
  /** New data goes out after `idleMs` with nothing in flight. */
  onIdleRestart(now: number, idleMs: number): void;
  /** A reduction that may still be undone (RFC 3522 / RFC 4015). */
  readonly canUndo: boolean;
  forgetUndo(): void;
  /** The last reduction proved spurious: restore the window from before it. */
  undo(): void;
  /** Bytes the window lets go out beyond `inFlight` now. */
  allowance(inFlight: number): number;
}

/** The shared part: window variables, slow start, recovery arithmetic, undo. */
export abstract class CongestionWindow implements CongestionController {
  abstract readonly algorithm: CongestionAlgorithm;
  cwnd = 0;
  ssthresh = 0x7fffffff;
  protected mss = 1;
  private undoCwnd = 0;
  private undoSsthresh = 0;
  private readonly prr: Prr | null;

  constructor(prr: boolean) {
    this.prr = prr ? new Prr() : null;
  }

  start(mss: number): void {
    this.mss = mss;
    this.cwnd = initialWindow(mss);
  }

  /** The algorithm's ssthresh after a congestion event (and its own bookkeeping). */
  protected abstract reduce(flight: number, now: number): number;
  /** Growth outside slow start. */
  protected abstract avoid(sample: AckSample): void;
  /** The algorithm's own state for undo. */
  protected abstract saveState(): void;
  protected abstract restoreState(): void;
  /** Slow start left after an RTO (CUBIC starts its next epoch differently). */
  protected afterTimeout(): void {}

  onAck(sample: AckSample): void {
    if (this.cwnd < this.ssthresh) {
      // Slow start by bytes acknowledged, up to 2 SMSS per ACK (RFC 3465 §2.2,
      // L = 2): a receiver that ACKs every second segment, as Linux does,
      // would otherwise halve the growth.
      this.cwnd += Math.min(sample.acked, 2 * this.mss);
      this.slowStarted();
    } else if (sample.acked > 0) {
      this.avoid(sample);
    }
  }

  /** Hook: an ACK grew the window in slow start. */
  protected slowStarted(): void {}

  enterRecovery(flight: number, now: number, style: "sack" | "newreno"): void {
    this.saveUndo();
    this.ssthresh = this.reduce(flight, now);
    if (style === "newreno") this.cwnd = this.ssthresh + 3 * this.mss;
    else if (this.prr !== null) this.prr.begin(flight);
    else this.cwnd = this.ssthresh;
  }

  onRecoveryDupAck(): void {
    this.cwnd += this.mss;
  }

  onPartialAck(acked: number): void {
    this.cwnd = Math.max(this.mss, this.cwnd - acked + (acked >= this.mss ? this.mss : 0));
  }

  onFullAck(flight: number): void {
    this.cwnd = Math.min(this.ssthresh, Math.max(flight, this.mss) + this.mss);
  }

  onRecoveryAck(delivered: number, pipe: number): void {
    if (this.prr === null || delivered <= 0) return; // nothing delivered: the window stands (as Linux)
    this.cwnd = pipe + this.prr.sendCount(delivered, pipe, this.ssthresh, this.mss);
  }

  onRecoverySent(bytes: number): void {
    this.prr?.sent(bytes);
  }

  exitRecovery(): void {
    this.cwnd = this.ssthresh;
  }

  onRetransmitTimeout(flight: number, first: boolean, undoable: boolean, now: number): void {
    if (first) {
      if (undoable) this.saveUndo();
      else this.undoCwnd = 0;
      this.ssthresh = this.reduce(flight, now);
    } else {
      this.undoCwnd = 0;
    }
    this.cwnd = this.mss; // RFC 5681: the loss window
    this.afterTimeout();
  }

  onIdleRestart(_now: number, _idleMs: number): void {}

  get canUndo(): boolean {
    return this.undoCwnd !== 0;
  }

  forgetUndo(): void {
    this.undoCwnd = 0;
  }

  undo(): void {
    if (this.undoCwnd === 0) return;
    this.cwnd = Math.max(this.cwnd, this.undoCwnd);
    this.ssthresh = Math.max(this.ssthresh, this.undoSsthresh);
    this.undoCwnd = 0;
    this.restoreState();
  }

  allowance(inFlight: number): number {
    return Math.max(0, this.cwnd - inFlight);
  }

  private saveUndo(): void {
    this.undoCwnd = this.cwnd;
    this.undoSsthresh = this.ssthresh;
    this.saveState();
  }
}
