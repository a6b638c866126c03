// RACK-TLP (RFC 8985) packet by packet: a lost tail is recovered by the
// tail loss probe, not the RTO; a lost retransmission is found by time.
// Segments are 1000 bytes (peer MSS 1000, no timestamps: the RTT comes
// from one timed segment); A(n) is the sequence number of our n-th byte.
import { describe, expect, test } from "bun:test";
import type { TcpConnection } from "../../../app/net/stack/tcp/connection.ts";
import { LOCAL_SEQ, bytes, established, expectSegments, expectSilence, seg } from "./tcp_helpers.ts";

const A = (n: number) => (LOCAL_SEQ + 1 + n) >>> 0;
const K = 1000;

/** SACK, RACK-TLP on, RTO far (1 s minimum) so a probe cannot be confused with it; `n` bytes sent at t=0. */
function sender(n: number): TcpConnection {
  const c = established({ sendBufferSize: 65536, rackTlp: true, rackOriginals: true, rtoMinMs: 1000 }, { mss: K, sackPermitted: true });
  c.send(bytes(n));
  expect(c.dispatch(0).length).toBe(Math.ceil(n / K));
  return c;
}

describe("tail loss probe (RFC 8985 §7)", () => {
  test("the last segment lost: the probe resends it after 2*SRTT + WCDelAckT, the ACK completes, no RTO", () => {
    const c = sender(3 * K);
    c.process(seg({ ack: A(2 * K) }), 10); // RTT 10 ms; segment 3 is lost
    expect(c.srtt).toBe(10);
    expect(c.ptoAt).toBe(10 + 2 * 10 + 200); // one segment in flight: the peer may delay its ACK
    expect(c.rtxExpiresAt).toBeGreaterThan(c.ptoAt!);
    expectSilence(c, 229);
    expectSegments(c, 230, [{ seq: A(2 * K), len: K }]);
    expect(c.rtxStats.retransmittedSegments).toBe(1);
    const cwnd = c.cwnd;
    c.process(seg({ ack: A(3 * K) }), 240);
    expect(c.sndUna).toBe(c.sndMax);
    expect(c.rtxStats.retransmitTimeouts).toBe(0);
    expect(c.cwnd).toBeLessThan(cwnd); // a loss repaired by the probe still reduces the window (§7.4)
    expect(c.rtxExpiresAt).toBeNull();
    expect(c.ptoAt).toBeNull();
  });

  test("two tail segments lost: the probe (the last one) is SACKed, RACK marks the other lost, fast recovery resends it at once, no RTO", () => {
    const c = sender(4 * K);
    c.process(seg({ ack: A(2 * K) }), 10); // segments 3 and 4 lost
    expect(c.ptoAt).toBe(30); // 2*SRTT with two segments in flight
    expectSilence(c, 29);
    expectSegments(c, 30, [{ seq: A(3 * K), len: K }]); // the probe: the last segment again
    c.process(seg({ ack: A(2 * K), sackBlocks: [A(3 * K), A(4 * K)] }), 40);
    expect(c.recoveryKind).toBe("fast");
    expectSegments(c, 40, [{ seq: A(2 * K), len: K }]);
    c.process(seg({ ack: A(4 * K) }), 50);
    expect(c.sndUna).toBe(c.sndMax);
    expect(c.recoveryKind).toBeNull();
    expect(c.rtxStats.retransmitTimeouts).toBe(0);
    expect(c.rtxStats.retransmittedSegments).toBe(2);
  });

  test("new data held back by cwnd: the probe is new data (cwnd aside), and its SACK above the holes starts recovery", () => {
    const c = sender(10 * K); // 10 segments out; 10 more queued
    c.send(bytes(10 * K));
    c.process(seg({ ack: A(2 * K) }), 10); // slow start: cwnd 12000, 4 new segments
    const more = c.dispatch(10);
    expect(more.map((s) => s.repr.seq)).toEqual([A(10 * K), A(11 * K), A(12 * K), A(13 * K)]);
    // every one of them is lost; at 2*SRTT the probe goes out past cwnd
    expectSilence(c, 29);
    expectSegments(c, 30, [{ seq: A(14 * K), len: K }]);
    c.process(seg({ ack: A(2 * K), sackBlocks: [A(14 * K), A(15 * K)] }), 40);
    expect(c.recoveryKind).toBe("fast");
    const rtx = c.dispatch(40);
    expect(rtx[0]!.repr.seq).toBe(A(2 * K));
    for (const s of rtx) expect(s.repr.seq < A(14 * K)).toBe(true);
    expect(c.rtxStats.retransmitTimeouts).toBe(0);
  });

  test("off (rackTlp false): the same tail waits for the RTO", () => {
    const c = established({ sendBufferSize: 65536, rtoMinMs: 1000 }, { mss: K, sackPermitted: true });
    c.send(bytes(3 * K));
    c.dispatch(0);
    c.process(seg({ ack: A(2 * K) }), 10);
    expect(c.ptoAt).toBeNull();
    expectSilence(c, 500);
    expectSegments(c, c.rtxExpiresAt!, [{ seq: A(2 * K), len: K }]);
    expect(c.rtxStats.retransmitTimeouts).toBe(1);
  });
});

describe("RACK for retransmissions (RFC 8985 §6.2)", () => {
  test("a lost retransmission: once a segment sent after it is SACKed and SRTT + reo_wnd have passed, it goes again, no RTO", () => {
    const c = established({ sendBufferSize: 65536, rackTlp: true, rackOriginals: true, rtoMinMs: 1000 }, { mss: K, sackPermitted: true });
    c.send(bytes(30 * K));
    c.dispatch(0); // segments 0-9
    c.process(seg({ ack: A(K) }), 10); // RTT 10 ms; segment 1 lost
    c.dispatch(10); // 10, 11
    for (const [t, hi] of [[12, 3], [13, 4], [14, 5]] as const) {
      c.process(seg({ ack: A(K), sackBlocks: [A(2 * K), A(hi * K)] }), t);
      c.dispatch(t); // 12, 13; then at the third SACK the retransmission of 1
    }
    expect(c.recoveryKind).toBe("fast");
    // the retransmission (sent at 14) is lost too; everything else sent before it arrives
    c.process(seg({ ack: A(K), sackBlocks: [A(2 * K), A(14 * K)] }), 24);
    expect(c.rackAt).toBeNull(); // nothing sent after the retransmission has arrived yet
    const fresh = c.dispatch(24);
    expect(fresh[0]!.repr.seq).toBe(A(14 * K));
    // a segment sent after it is SACKed: it is lost once SRTT + SRTT/4 have passed since it went out
    c.process(seg({ ack: A(K), sackBlocks: [A(2 * K), A(15 * K)] }), 25);
    expect(c.rackAt).toBe(14 + 12.5);
    expect(c.dispatch(25).some((s) => s.repr.seq === A(K))).toBe(false);
    expect(c.pollAt()).toBeLessThanOrEqual(26.5);
    expect(c.dispatch(26.5).some((s) => s.repr.seq === A(K))).toBe(true);
    expect(c.rtxStats.retransmitTimeouts).toBe(0);
  });
});

describe("RACK for original transmissions (RFC 8985 §6.2)", () => {
  /** SRTT and min RTT 10 ms from 2 segments sent at 0 and acknowledged at 10; nothing in flight after. */
  function measured(): TcpConnection {
    const c = sender(2 * K);
    c.process(seg({ ack: A(2 * K) }), 10);
    expect(c.minRtt).toBe(10);
    return c;
  }

  test("two segments SACKed above a hole (below DupThresh): it is lost RACK.rtt + min_RTT/4 after it went out, resent then, before the probe, no RTO", () => {
    const c = measured();
    c.send(bytes(3 * K));
    expect(c.dispatch(20).length).toBe(3); // A(2K) is lost, A(3K) and A(4K) arrive
    c.process(seg({ ack: A(2 * K), sackBlocks: [A(3 * K), A(5 * K)] }), 30);
    expect(c.recoveryKind).toBeNull(); // 2 of DupThresh 3: RFC 6675 does not call it lost
    expect(c.rackAt).toBe(20 + 10 + 2.5); // sent with the delivered ones; RACK.rtt 10, reo_wnd 10/4
    expect(c.ptoAt).toBe(40);
    expectSilence(c, 32);
    expectSegments(c, 32.5, [{ seq: A(2 * K), len: K }]);
    expect(c.recoveryKind).toBe("fast");
    c.process(seg({ ack: A(5 * K) }), 43);
    expect(c.sndUna).toBe(c.sndMax);
    expect(c.recoveryKind).toBeNull();
    expect(c.rtxStats.retransmitTimeouts).toBe(0);
    expect(c.rtxStats.retransmittedSegments).toBe(1);
  });

  test("a segment sent more than reo_wnd before one now SACKed is lost on that ACK, at once", () => {
    const c = measured();
    c.send(bytes(K));
    c.dispatch(20); // A(2K), lost
    c.send(bytes(K));
    c.dispatch(25); // A(3K)
    c.process(seg({ ack: A(2 * K), sackBlocks: [A(3 * K), A(4 * K)] }), 35);
    expect(c.recoveryKind).toBe("fast"); // 20 + RACK.rtt 10 + 2.5 <= 35
    expectSegments(c, 35, [{ seq: A(2 * K), len: K }]);
  });

  test("a hole filled by the late original before its time: no retransmission", () => {
    const c = measured();
    c.send(bytes(3 * K));
    c.dispatch(20);
    c.process(seg({ ack: A(2 * K), sackBlocks: [A(3 * K), A(5 * K)] }), 30);
    expect(c.rackAt).toBe(32.5);
    c.process(seg({ ack: A(5 * K) }), 31); // reordered, not lost
    expect(c.rackAt).toBeNull();
    expectSilence(c, 32.5);
    expect(c.rtxStats.retransmittedSegments).toBe(0);
  });

  test("off (rackTlp false): the same hole waits for DupThresh or the RTO", () => {
    const c = established({ sendBufferSize: 65536, rtoMinMs: 1000 }, { mss: K, sackPermitted: true });
    c.send(bytes(2 * K));
    c.dispatch(0);
    c.process(seg({ ack: A(2 * K) }), 10);
    c.send(bytes(3 * K));
    c.dispatch(20);
    c.process(seg({ ack: A(2 * K), sackBlocks: [A(3 * K), A(5 * K)] }), 30);
    expect(c.rackAt).toBeNull();
    expectSilence(c, 500);
    expectSegments(c, c.rtxExpiresAt!, [{ seq: A(2 * K), len: K }]);
    expect(c.rtxStats.retransmitTimeouts).toBe(1);
  });
});

describe("reordering estimate", () => {
  /** 20 segments out at 0; segment 0 arrives late (after 1 and 2 were SACKed): DupThresh 4, RTT 11. */
  function reordered(): TcpConnection {
    const c = established({ sendBufferSize: 65536, rackTlp: true, rackOriginals: true, rtoMinMs: 1000 }, { mss: K, sackPermitted: true });
    c.send(bytes(20 * K));
    c.dispatch(0);
    c.process(seg({ ack: A(0), sackBlocks: [A(K), A(3 * K)] }), 10);
    c.process(seg({ ack: A(3 * K) }), 11); // segment 0 was late, not lost: the path seems to reorder
    expect(c.dupThresh).toBe(4);
    c.dispatch(11);
    return c;
  }

  test("a hole below a raised DupThresh is still found lost by time (reo_wnd min_RTT/4 once reordering was seen), no RTO", () => {
    const c = reordered();
    // 3 segments SACKed above the next loss: below DupThresh 4
    c.process(seg({ ack: A(3 * K), sackBlocks: [A(4 * K), A(7 * K)] }), 12);
    expect(c.recoveryKind).toBeNull();
    expect(c.rackAt).toBe(0 + 12 + 11 / 4); // sent at 0; RACK.rtt 12; reo_wnd min_RTT/4
    expect(c.dispatch(12).some((s) => s.repr.seq === A(3 * K))).toBe(false); // new data only
    expectSilence(c, 14.5);
    expect(c.dispatch(14.75)[0]!.repr.seq).toBe(A(3 * K));
    expect(c.recoveryKind).toBe("fast");
    expect(c.rtxStats.retransmitTimeouts).toBe(0);
  });

  test("an RTO with DupThresh segments SACKed puts a raised DupThresh back to 3 (as Linux's tcp_enter_loss)", () => {
    const c = reordered();
    c.process(seg({ ack: A(3 * K), sackBlocks: [A(4 * K), A(7 * K)] }), 12);
    c.dispatch(12);
    expect(c.dispatch(14.75)[0]!.repr.seq).toBe(A(3 * K)); // RACK's retransmission, lost too; nothing sent after it is SACKed
    c.dispatch(c.rtxExpiresAt!);
    expect(c.rtxStats.retransmitTimeouts).toBe(1);
    expect(c.dupThresh).toBe(3);
  });
});
