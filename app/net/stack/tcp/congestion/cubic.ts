// CUBIC (RFC 9438). Windows in the formulas are in segments and time in
// seconds, as in the RFC; cwnd itself stays in bytes.
//
//   W_cubic(t) = C*(t - K)^3 + W_max                      (§4.2, eq. 1)
//   K = cubic_root((W_max - cwnd_epoch) / C)               (§4.2, eq. 2)
//   W_est += alpha_cubic * segments_acked / cwnd           (§4.3, eq. 4)
//   alpha_cubic = 3 * (1 - beta) / (1 + beta), 1 once W_est >= cwnd_prior
//   target = clamp(W_cubic(t + RTT), cwnd, 1.5 * cwnd)     (§4.4, §4.5)
//   cwnd += (target - cwnd) / cwnd per segment acknowledged
//   on loss: ssthresh = flight_size * beta, cwnd_prior = cwnd  (§4.6)
//            W_max = cwnd * (1 + beta) / 2 if cwnd < W_max   (§4.7 fast convergence)

import { CongestionWindow, type AckSample } from "./controller.ts";

/** RFC 9438 §5: C = 0.4. */
export const CUBIC_C = 0.4;
/** RFC 9438 §4.6: beta_cubic = 0.7. */
export const CUBIC_BETA = 0.7;
/** RFC 9438 §4.3: alpha_cubic = 3 * (1 - beta_cubic) / (1 + beta_cubic). */
export const CUBIC_ALPHA = (3 * (1 - CUBIC_BETA)) / (1 + CUBIC_BETA);

/** eq. 1, in segments at `t` seconds into the epoch. */
export function wCubic(t: number, k: number, wMax: number): number {
  return CUBIC_C * (t - k) ** 3 + wMax;
}

/** eq. 2, in seconds. */
export function cubicK(wMax: number, cwndEpoch: number): number {
  return Math.cbrt((wMax - cwndEpoch) / CUBIC_C);
}

interface CubicState {
  wMax: number;
  cwndPrior: number;
  epochStart: number | null;
  cwndEpoch: number;
  k: number;
  wEst: number;
  afterTimeout: boolean;
}

export class Cubic extends CongestionWindow {
  readonly algorithm = "cubic" as const;
  /** Segments; 0 until the first congestion event. */
  wMax = 0;
  /** cwnd (segments) at the last congestion event. */
  cwndPrior = 0;
  /** t_epoch (ms), null until congestion avoidance begins after an event. */
  epochStart: number | null = null;
  /** cwnd (segments) when the epoch began. */
  cwndEpoch = 0;
  /** Seconds. */
  k = 0;
  /** The Reno-friendly estimate, segments. */
  wEst = 0;
  /** §4.8: the first avoidance after a timeout starts with K = 0, W_max = cwnd. */
  private timedOut = false;
  private saved: CubicState | null = null;

  protected reduce(flight: number): number {
    const cwnd = this.cwnd / this.mss;
    // §4.7 fast convergence: a flow whose W_max shrinks releases bandwidth.
    this.wMax = this.wMax > 0 && cwnd < this.wMax ? (cwnd * (1 + CUBIC_BETA)) / 2 : cwnd;
    this.cwndPrior = cwnd;
    this.epochStart = null;
    return Math.max(Math.floor(flight * CUBIC_BETA), 2 * this.mss);
  }

  protected override afterTimeout(): void {
    this.timedOut = true;
    this.epochStart = null;
  }

  protected avoid(s: AckSample): void {
    const mss = this.mss;
    if (this.epochStart === null) this.beginEpoch(s.now);
    const cwnd = this.cwnd / mss;
    const acked = s.acked / mss;
    const t = (s.now - this.epochStart!) / 1000;
    const alpha = this.wEst >= this.cwndPrior ? 1 : CUBIC_ALPHA;
    this.wEst += (alpha * acked) / cwnd;
    if (wCubic(t, this.k, this.wMax) < this.wEst) {
      // §4.3 Reno-friendly region.
      this.cwnd = Math.max(this.cwnd, this.wEst * mss);
      return;
    }
    // §4.4 concave and §4.5 convex regions.
    const rtt = (s.srttMs ?? 0) / 1000;
    const target = Math.min(Math.max(wCubic(t + rtt, this.k, this.wMax), cwnd), 1.5 * cwnd);
    this.cwnd = (cwnd + ((target - cwnd) / cwnd) * acked) * mss;
  }

  private beginEpoch(now: number): void {
    const cwnd = this.cwnd / this.mss;
    this.epochStart = now;
    this.cwndEpoch = cwnd;
    this.wEst = cwnd;
    if (this.timedOut || this.wMax <= cwnd) {
      // §4.8 after a timeout, and (as Linux) an epoch that starts at or above
      // W_max (no congestion event yet, or an undo): the curve starts here.
      this.wMax = cwnd;
      this.k = 0;
      if (this.cwndPrior < cwnd) this.cwndPrior = cwnd;
    } else {
      this.k = cubicK(this.wMax, cwnd);
    }
    this.timedOut = false;
  }

  /** §5.8: an application-limited pause does not count as epoch time (Linux shifts t_epoch). */
  override onIdleRestart(_now: number, idleMs: number): void {
    if (this.epochStart !== null && idleMs > 0) this.epochStart += idleMs;
  }

  protected saveState(): void {
    this.saved = {
      wMax: this.wMax, cwndPrior: this.cwndPrior, epochStart: this.epochStart,
      cwndEpoch: this.cwndEpoch, k: this.k, wEst: this.wEst, afterTimeout: this.timedOut,
    };
  }

  /** §4.9: a spurious congestion event restores W_max and the epoch as they were. */
  protected restoreState(): void {
    const s = this.saved;
    if (s === null) return;
    this.wMax = s.wMax;
    this.cwndPrior = s.cwndPrior;
    this.epochStart = s.epochStart;
    this.cwndEpoch = s.cwndEpoch;
    this.k = s.k;
    this.wEst = s.wEst;
    this.timedOut = s.afterTimeout;
    this.saved = null;
  }
}
