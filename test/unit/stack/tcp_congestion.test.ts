// The congestion controllers (app/net/stack/tcp/congestion/) on their own:
// CUBIC's window trace against RFC 9438's formulas, NewReno's reduction,
// and PRR against RFC 6937's examples. Windows in segments of MSS bytes.
import { describe, expect, test } from "bun:test";
import { Cubic, CUBIC_ALPHA } from "../../../app/net/stack/tcp/congestion/cubic.ts";
import { NewReno } from "../../../app/net/stack/tcp/congestion/newreno.ts";
import { Prr } from "../../../app/net/stack/tcp/congestion/prr.ts";
import { createCongestionController } from "../../../app/net/stack/tcp/congestion/index.ts";
import { DEFAULT_TCP_SETTINGS } from "../../../app/net/stack/tcp/connection.ts";

const MSS = 1000;
const C = 0.4; // RFC 9438 §5
const BETA = 0.7; // RFC 9438 §4.6
/** RFC 9438 eq. 1, written out here rather than imported. */
const W = (t: number, k: number, wMax: number) => C * (t - k) ** 3 + wMax;

/** A CUBIC controller in congestion avoidance at `segs` segments that has just left a recovery entered at `segs`. */
function afterLoss(segs: number, now = 0): Cubic {
  const c = new Cubic(false);
  c.start(MSS);
  c.cwnd = segs * MSS;
  c.ssthresh = segs * MSS; // out of slow start
  c.enterRecovery(segs * MSS, now, "sack");
  c.exitRecovery();
  return c;
}

const ack = (c: Cubic, now: number, srttMs: number, segs = 1) => c.onAck({ acked: segs * MSS, srttMs, now });

describe("CUBIC (RFC 9438)", () => {
  test("constants: beta 0.7, C 0.4, alpha = 3(1-beta)/(1+beta)", () => {
    expect(CUBIC_ALPHA).toBeCloseTo((3 * 0.3) / 1.7, 12);
    const c = afterLoss(100);
    expect(c.ssthresh).toBe(70 * MSS); // flight_size * beta (§4.6)
    expect(c.cwnd).toBe(70 * MSS);
    expect(c.wMax).toBe(100);
    expect(c.cwndPrior).toBe(100);
  });

  test("K = cubic_root((W_max - cwnd_epoch) / C) at the first ACK of the epoch, and W_cubic(K) = W_max", () => {
    const c = afterLoss(100);
    ack(c, 1000, 100);
    expect(c.epochStart).toBe(1000);
    expect(c.cwndEpoch).toBe(70);
    expect(c.k).toBeCloseTo(Math.cbrt((100 - 70) / C), 12); // 4.217 s
    expect(W(c.k, c.k, c.wMax)).toBe(100);
  });

  test("each ACK moves cwnd by (target - cwnd) / cwnd, target = W_cubic(t + RTT) clamped to [cwnd, 1.5 cwnd] (§4.4, §4.5)", () => {
    const c = afterLoss(100);
    ack(c, 0, 100); // the epoch starts at t = 0
    for (const at of [300, 1000, 2500, 4200, 5000, 6000]) {
      const before = c.cwnd / MSS;
      const t = at / 1000;
      const target = Math.min(Math.max(W(t + 0.1, c.k, 100), before), 1.5 * before);
      ack(c, at, 100);
      expect(c.cwnd / MSS).toBeCloseTo(before + (target - before) / before, 9);
    }
  });

  test("the window trace over an epoch follows W_cubic(t): concave up to W_max at K, plateau, convex beyond", () => {
    const c = afterLoss(100);
    const rtt = 100;
    let now = 0;
    const trace: [number, number, number][] = [];
    for (let round = 0; round < 80; round++) {
      const n = Math.floor(c.cwnd / MSS);
      for (let i = 0; i < n; i++) ack(c, now, rtt);
      now += rtt;
      trace.push([now / 1000, c.cwnd / MSS, c.wEst]);
    }
    const k = c.k;
    for (const [t, w, wEst] of trace) {
      // One RTT of ACKs closes most of the gap toward W_cubic(t + RTT) at the
      // round's start: cwnd sits between the curve at t - RTT and at t + RTT,
      // or on W_est where that is higher (Reno-friendly, here from ~6 s).
      expect(w).toBeGreaterThanOrEqual(W(t - 0.2, k, 100) - 0.5);
      expect(w).toBeLessThanOrEqual(Math.max(W(t + 0.1, k, 100), wEst) + 1e-9);
    }
    expect(trace.some(([t, w, wEst]) => t > k && w === wEst && W(t, k, 100) < wEst)).toBe(true);
    const at = (s: number) => trace.find(([t]) => t >= s)![1];
    expect(at(k)).toBeGreaterThan(99);
    expect(at(k)).toBeLessThan(100.5); // the plateau around W_max
    expect(at(k + 3) - at(k + 2)).toBeGreaterThan(at(k + 2) - at(k + 1)); // convex: growth speeds up
    expect(at(2) - at(1)).toBeLessThan(at(1) - at(0.1)); // concave: growth slows toward W_max
  });

  test("Reno-friendly region (§4.3): W_est += alpha * acked / cwnd, cwnd = W_est while W_cubic < W_est; alpha becomes 1 at cwnd_prior", () => {
    const c = afterLoss(100);
    const rtt = 1; // a short RTT: Reno's growth per time outruns the cubic curve
    ack(c, 0, rtt); // epoch start
    let wEst = 70 + CUBIC_ALPHA * 1 / 70;
    expect(c.wEst).toBeCloseTo(wEst, 12);
    let now = 0;
    let sawAlphaOne = false;
    for (let round = 0; round < 200; round++) {
      now += rtt;
      const n = Math.floor(c.cwnd / MSS);
      for (let i = 0; i < n; i++) {
        const cwnd = c.cwnd / MSS;
        const alpha = wEst >= 100 ? 1 : CUBIC_ALPHA;
        if (alpha === 1) sawAlphaOne = true;
        wEst += (alpha * 1) / cwnd;
        ack(c, now, rtt);
        expect(c.wEst).toBeCloseTo(wEst, 9);
        if (W(now / 1000, c.k, 100) < wEst) expect(c.cwnd / MSS).toBeCloseTo(Math.max(cwnd, wEst), 9);
      }
    }
    expect(sawAlphaOne).toBe(true);
    expect(c.cwnd / MSS).toBeGreaterThan(100); // past W_max by Reno's rule, long before K (4.2 s)
    expect(now).toBeLessThan(1000);
  });

  test("fast convergence (§4.7): a loss below W_max sets W_max = cwnd * (1 + beta) / 2", () => {
    const c = afterLoss(100);
    c.cwnd = 80 * MSS;
    c.enterRecovery(80 * MSS, 10, "sack");
    expect(c.wMax).toBeCloseTo((80 * (1 + BETA)) / 2, 12); // 68
    expect(c.cwndPrior).toBe(80);
    expect(c.ssthresh).toBe(56 * MSS);
    // a loss at or above W_max keeps W_max = cwnd
    c.exitRecovery();
    c.cwnd = 90 * MSS;
    c.enterRecovery(90 * MSS, 20, "sack");
    expect(c.wMax).toBe(90);
  });

  test("timeout (§4.8): ssthresh = flight * beta, cwnd one segment; the next epoch starts with K = 0 and W_max = cwnd", () => {
    const c = new Cubic(false);
    c.start(MSS);
    c.cwnd = 100 * MSS;
    c.ssthresh = 100 * MSS;
    c.onRetransmitTimeout(100 * MSS, true, true, 0);
    expect(c.cwnd).toBe(MSS);
    expect(c.ssthresh).toBe(70 * MSS);
    let now = 0;
    while (c.cwnd < c.ssthresh) ack(c, (now += 1), 10, 2); // slow start
    ack(c, 500, 10);
    expect(c.k).toBe(0);
    expect(c.wMax).toBe(c.cwndEpoch);
    expect(W(0, c.k, c.wMax)).toBe(c.cwndEpoch);
  });

  test("undo (§4.9): a spurious congestion event restores cwnd, ssthresh and W_max", () => {
    const c = afterLoss(100);
    ack(c, 0, 100);
    const { wMax, k } = c;
    const cwnd = c.cwnd;
    c.enterRecovery(c.cwnd, 50, "sack");
    expect(c.wMax).not.toBe(wMax);
    expect(c.canUndo).toBe(true);
    c.undo();
    expect(c.cwnd).toBe(cwnd);
    expect(c.wMax).toBe(wMax);
    expect(c.k).toBe(k);
    expect(c.canUndo).toBe(false);
  });

  test("an idle period does not count as epoch time", () => {
    const c = afterLoss(100);
    ack(c, 1000, 100);
    c.onIdleRestart(3000, 1500);
    expect(c.epochStart).toBe(2500);
  });
});

describe("NewReno", () => {
  test("halves on loss (RFC 5681 eqn. 4), one SMSS per window of bytes in avoidance (RFC 3465)", () => {
    const c = new NewReno(false);
    c.start(MSS);
    expect(c.cwnd).toBe(10 * MSS); // RFC 6928
    c.enterRecovery(20 * MSS, 0, "sack");
    expect(c.ssthresh).toBe(10 * MSS);
    expect(c.cwnd).toBe(10 * MSS);
    for (let i = 0; i < 9; i++) c.onAck({ acked: MSS, srttMs: 10, now: i });
    expect(c.cwnd).toBe(10 * MSS);
    c.onAck({ acked: MSS, srttMs: 10, now: 10 });
    expect(c.cwnd).toBe(11 * MSS);
  });

  test("selectable; CUBIC with PRR is the default", () => {
    expect(createCongestionController("newreno", false).algorithm).toBe("newreno");
    expect(DEFAULT_TCP_SETTINGS.congestionControl).toBe("cubic");
    expect(DEFAULT_TCP_SETTINGS.prr).toBe(true);
  });
});

describe("PRR (RFC 6937 §3.1 examples: cwnd = FlightSize = pipe = 20, ssthresh 10, limited transmit)", () => {
  /**
   * Segment 0..lost-1 lost of 20 in flight; ACKs for the others arrive one
   * by one, each SACKing one segment. pipe per RFC 6675 (a segment is lost
   * once DupThresh = 3 segments above it are SACKed). Returns per ACK the
   * pipe before sending and what was sent (N new, R retransmission).
   */
  function run(lost: number): { pipe: number[]; sent: string[]; after: number } {
    const prr = new Prr();
    let newSent = 0;
    let rtx = 0;
    let inRecovery = false;
    const pipes: number[] = [];
    const sent: string[] = [];
    let pipe = 0;
    for (let k = lost; k < 20; k++) {
      const sacked = k - lost + 1;
      const isLost = sacked >= 3 ? lost : 0;
      pipe = 20 + newSent - sacked - isLost + rtx;
      pipes.push(pipe);
      let s = "";
      if (!inRecovery && sacked < 3) {
        newSent++; // limited transmit (RFC 3042)
        s = "N";
      } else {
        if (!inRecovery) {
          inRecovery = true;
          prr.begin(20);
        }
        const sndcnt = prr.sendCount(1, pipe, 10, 1);
        for (let i = 0; i < sndcnt; i++) {
          if (rtx < lost) (rtx++, (s += "R"));
          else (newSent++, (s += "N"));
          prr.sent(1);
        }
      }
      sent.push(s);
      pipe += s.length;
    }
    return { pipe: pipes, sent, after: pipe };
  }

  test("one loss: the retransmission at once, then one segment per two ACKs; pipe comes down to ssthresh exactly", () => {
    const r = run(1);
    expect(r.pipe.slice(0, 4)).toEqual([19, 19, 18, 18]);
    expect(r.sent.slice(0, 3)).toEqual(["N", "N", "R"]);
    // proportional: what went out after entry tracks ceil(delivered * ssthresh / RecoverFS)
    const after = r.sent.slice(2);
    let out = 0;
    after.forEach((s, i) => {
      out += s.length;
      // while pipe > ssthresh; at ssthresh the reduction bound sends ssthresh - pipe = 0
      if (r.pipe[i + 2]! > 10) expect(out).toBe(Math.ceil(((i + 1) * 10) / 20));
    });
    expect(r.sent.join(",")).toBe("N,N,R,,N,,N,,N,,N,,N,,N,,N,,");
    for (let i = 3; i < r.sent.length; i++) expect(r.sent[i]!.length + r.sent[i - 1]!.length).toBeLessThanOrEqual(1 + (i === 3 ? 1 : 0));
    expect(r.after).toBe(10); // RFC: pipe ends at ssthresh
  });

  test("15 lost (PRR-SSRB): pipe 19 19 4 5 6, sent N N 2R 2R 2R", () => {
    const r = run(15);
    expect(r.pipe).toEqual([19, 19, 4, 5, 6]);
    expect(r.sent).toEqual(["N", "N", "RR", "RR", "RR"]);
  });
});
