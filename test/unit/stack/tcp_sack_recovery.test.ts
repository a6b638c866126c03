// SACK-based loss recovery on the send side (RFC 6675), packet by packet:
// the scoreboard built from the peer's SACK blocks, IsLost / NextSeg order,
// pipe accounting, entry and exit of recovery, RTO with a scoreboard, the
// reordering-adaptive DupThresh, and the NewReno fallback without SACK.
// Segments are 1000 bytes (peer MSS 1000, no timestamps); A(n) is the
// sequence number of our n-th data byte.
import { describe, expect, test } from "bun:test";
import { TCP_ACK, TCP_SYN, tcpRepr } from "../../../app/net/stack/wire/tcp.ts";
import type { TcpConnection } from "../../../app/net/stack/tcp/connection.ts";
import { TcpTable } from "../../../app/net/stack/tcp/table.ts";
import { LOCAL_SEQ, SETTINGS, bytes, established, expectSegments, expectSilence, seg } from "./tcp_helpers.ts";

const A = (n: number) => (LOCAL_SEQ + 1 + n) >>> 0;
const K = 1000;

/** ESTABLISHED with SACK negotiated, `n` bytes queued and the initial window (10 segments) sent. */
function sackSender(n = 20 * K, sack = true): TcpConnection {
  const c = established({ sendBufferSize: 65536 }, { mss: K, sackPermitted: sack });
  expect(c.sackOk).toBe(sack);
  c.send(bytes(n));
  expect(c.dispatch(0).length).toBe(10);
  expect(c.sndMax).toBe(A(10 * K));
  return c;
}

/** A pure ACK from the peer carrying SACK blocks (flattened [left, right, …]). */
function sackAck(ack: number, blocks: number[] | null = null) {
  return seg({ ack, sackBlocks: blocks });
}

describe("SACK scoreboard (RFC 6675 §3)", () => {
  test("blocks merge; D-SACK below SND.UNA and blocks past SND.MAX are ignored", () => {
    const c = sackSender();
    c.process(sackAck(A(0), [A(2 * K), A(3 * K)]), 1);
    expect(c.scoreboard).toEqual([A(2 * K), A(3 * K)]);
    c.process(sackAck(A(0), [A(3 * K), A(4 * K), A(6 * K), A(7 * K)]), 2);
    expect(c.scoreboard).toEqual([A(2 * K), A(4 * K), A(6 * K), A(7 * K)]);
    // D-SACK (RFC 2883) of old data, and a block for data never sent
    c.process(sackAck(A(0), [A(-500), A(0), A(10 * K), A(11 * K)]), 3);
    expect(c.scoreboard).toEqual([A(2 * K), A(4 * K), A(6 * K), A(7 * K)]);
    // the cumulative ACK prunes what it covers
    c.process(sackAck(A(3 * K), [A(6 * K), A(7 * K)]), 4);
    expect(c.scoreboard).toEqual([A(3 * K), A(4 * K), A(6 * K), A(7 * K)]);
    c.process(sackAck(A(4 * K)), 5);
    expect(c.scoreboard).toEqual([A(6 * K), A(7 * K)]);
  });

  test("IsLost: more than (DupThresh-1)*SMSS SACKed bytes or DupThresh ranges above", () => {
    const c = sackSender();
    c.process(sackAck(A(0), [A(K), A(3 * K)]), 1); // 2000 bytes: not more than 2*SMSS
    expect(c.lostBoundary()).toBe(A(0));
    expect(c.recoveryKind).toBeNull();
    const d = sackSender();
    d.process(sackAck(A(0), [A(2 * K), A(2 * K + 10), A(4 * K), A(4 * K + 10), A(6 * K), A(6 * K + 10)]), 1);
    expect(d.lostBoundary()).toBe(A(2 * K)); // three discontiguous ranges above A(2K)
  });
});

describe("SACK loss recovery (RFC 6675 §5)", () => {
  test("one loss: limited transmit, entry on the third duplicate, the hole first, pipe, exit", () => {
    const c = sackSender();
    // segment 0 lost; 1, 2, 3 arrive and are SACKed
    c.process(sackAck(A(0), [A(K), A(2 * K)]), 10);
    // pipe = 9000 < cwnd 10000: limited transmit sends one new segment
    expect(c.pipe()).toBe(9 * K);
    expectSegments(c, 10, [{ seq: A(10 * K), len: K }]);
    c.process(sackAck(A(0), [A(K), A(3 * K)]), 11);
    expectSegments(c, 11, [{ seq: A(11 * K), len: K }]);
    c.process(sackAck(A(0), [A(K), A(4 * K)]), 12);
    expect(c.recoveryKind).toBe("fast");
    expect(c.inRecovery).toBe(true);
    expect(c.ssthresh).toBe(6 * K); // FlightSize 12000 / 2
    expect(c.cwnd).toBe(6 * K);
    // (4.3) the first retransmission goes out although pipe (8000) exceeds cwnd
    expectSegments(c, 12, [{ seq: A(0), len: K }]);
    expect(c.pipe()).toBe(9 * K);
    expect(c.highRxt).toBe(A(K));
    // more SACKs shrink pipe; nothing is sent until cwnd - pipe ≥ SMSS
    c.process(sackAck(A(0), [A(K), A(6 * K)]), 13);
    expect(c.pipe()).toBe(7 * K);
    expectSilence(c, 13);
    c.process(sackAck(A(0), [A(K), A(8 * K)]), 14);
    expect(c.pipe()).toBe(5 * K);
    expectSegments(c, 14, [{ seq: A(12 * K), len: K }]);
    // nothing is retransmitted twice
    c.process(sackAck(A(0), [A(K), A(8 * K)]), 15);
    expectSilence(c, 15);
    // the retransmission arrives: RecoveryPoint (A(12K)) not yet covered
    c.process(sackAck(A(10 * K)), 20);
    expect(c.recoveryKind).toBe("fast");
    // full acknowledgment of RecoveryPoint ends recovery, cwnd = ssthresh
    c.process(sackAck(A(12 * K)), 30);
    expect(c.recoveryKind).toBeNull();
    expect(c.inRecovery).toBe(false);
    expect(c.cwnd).toBe(6 * K);
    expect(c.rtxStats).toEqual({ retransmittedSegments: 1, retransmittedBytes: K, retransmitTimeouts: 0, fastRecoveries: 1, spuriousRecoveries: 0 });
  });

  test("several holes are retransmitted lowest first, each once, then new data while pipe allows", () => {
    const c = sackSender();
    // segments 1 and 3 lost; one ACK reports everything else
    c.process(sackAck(A(K), [A(4 * K), A(10 * K), A(2 * K), A(3 * K)]), 10);
    expect(c.recoveryKind).toBe("fast"); // IsLost(SND.UNA) without three duplicates
    expect(c.lostBoundary()).toBe(A(4 * K));
    expect(c.cwnd).toBe(4500); // FlightSize 9000 / 2
    expect(c.pipe()).toBe(0); // every un-SACKed byte is lost
    expectSegments(c, 10, [
      { seq: A(K), len: K },
      { seq: A(3 * K), len: K },
      { seq: A(10 * K), len: K },
      { seq: A(11 * K), len: K },
    ]);
    expect(c.pipe()).toBe(4 * K);
    c.process(sackAck(A(K), [A(4 * K), A(10 * K), A(2 * K), A(3 * K)]), 11);
    expectSilence(c, 11);
    // partial ACK: hole 1 filled; the retransmission of 3 is still in the pipe
    c.process(sackAck(A(3 * K), [A(4 * K), A(10 * K)]), 20);
    expect(c.pipe()).toBe(3 * K);
    expectSegments(c, 20, [{ seq: A(12 * K), len: K }]);
    c.process(sackAck(A(10 * K)), 30);
    expect(c.recoveryKind).toBeNull();
    expect(c.cwnd).toBe(4500);
    expect(c.rtxStats.retransmittedSegments).toBe(2);
    expect(c.rtxStats.fastRecoveries).toBe(1);
  });

  test("no new recovery before RecoveryPoint is acknowledged", () => {
    const c = sackSender();
    c.process(sackAck(A(K), [A(4 * K), A(10 * K)]), 10);
    expect(c.rtxStats.fastRecoveries).toBe(1);
    c.dispatch(10);
    // the retransmission filled the hole, but RecoveryPoint (A(10K)) is not reached
    c.process(sackAck(A(4 * K), [A(5 * K), A(10 * K)]), 20);
    expect(c.recoveryKind).toBe("fast");
    c.process(sackAck(A(10 * K)), 30);
    expect(c.recoveryKind).toBeNull();
    expect(c.rtxStats.fastRecoveries).toBe(1);
  });

  test("RTO with a scoreboard: slow start from one segment, SACKed data is not resent", () => {
    const c = established({ sendBufferSize: 65536 }, { mss: K, sackPermitted: true });
    c.send(bytes(5 * K));
    expect(c.dispatch(0).length).toBe(5);
    c.process(sackAck(A(0), [A(2 * K), A(3 * K)]), 10);
    expect(c.recoveryKind).toBeNull();
    expectSegments(c, 1000, [{ seq: A(0), len: K }]);
    expect(c.recoveryKind).toBe("rto");
    expect(c.cwnd).toBe(K);
    expect(c.rtxStats.retransmitTimeouts).toBe(1);
    // the retransmission is acknowledged: cwnd 2000, the next holes skip the SACKed segment
    c.process(sackAck(A(K), [A(2 * K), A(3 * K)]), 1010);
    expect(c.cwnd).toBe(2 * K);
    expectSegments(c, 1010, [{ seq: A(K), len: K }, { seq: A(3 * K), len: K }]);
    c.process(sackAck(A(4 * K), []), 1020);
    expectSegments(c, 1020, [{ seq: A(4 * K), len: K }]);
    c.process(sackAck(A(5 * K)), 1030);
    expect(c.recoveryKind).toBeNull();
    expect(c.rtxStats.retransmittedSegments).toBe(4);
    expect(c.sendQueued).toBe(0);
  });

  test("a second timeout without progress forgets the scoreboard (the peer may renege)", () => {
    const c = established({ sendBufferSize: 65536 }, { mss: K, sackPermitted: true });
    c.send(bytes(3 * K));
    c.dispatch(0);
    c.process(sackAck(A(0), [A(K), A(2 * K)]), 10);
    c.dispatch(1000); // first RTO
    expect(c.scoreboard.length).toBe(2);
    const out = c.dispatch(3000); // second RTO (backed off to 2 s)
    expect(c.scoreboard.length).toBe(0);
    expect(out[0]!.repr.seq).toBe(A(0));
  });

  test("reordering seen (a hole filled by an original) raises DupThresh", () => {
    const c = sackSender();
    c.process(sackAck(A(0), [A(K), A(2 * K)]), 10);
    c.process(sackAck(A(0), [A(K), A(3 * K)]), 11);
    expect(c.recoveryKind).toBeNull();
    // segment 0 was only late: nothing was retransmitted, the path reorders by 3 segments
    c.process(sackAck(A(3 * K)), 12);
    expect(c.dupThresh).toBe(4);
    expect(c.rtxStats.retransmittedSegments).toBe(0);
    // with DupThresh 4, three duplicates and 3000 SACKed bytes do not start recovery
    c.dispatch(12);
    c.process(sackAck(A(3 * K), [A(4 * K), A(5 * K)]), 13);
    c.process(sackAck(A(3 * K), [A(4 * K), A(6 * K)]), 14);
    c.process(sackAck(A(3 * K), [A(4 * K), A(7 * K)]), 15);
    expect(c.recoveryKind).toBeNull();
    c.process(sackAck(A(3 * K), [A(4 * K), A(8 * K)]), 16);
    expect(c.recoveryKind).toBe("fast");
  });
});

describe("lost retransmissions and spurious recoveries", () => {
  test("a retransmission overtaken by SACKed new data is sent again before the RTO", () => {
    const c = sackSender();
    c.process(sackAck(A(0), [A(K), A(4 * K)]), 10); // 3000 SACKed: segment 0 lost
    expectSegments(c, 10, [{ seq: A(0), len: K }]);
    c.process(sackAck(A(0), [A(K), A(10 * K)]), 11);
    expectSegments(c, 11, [{ seq: A(10 * K) }, { seq: A(11 * K) }, { seq: A(12 * K) }, { seq: A(13 * K) }]);
    // data sent after the retransmission arrives, beyond DupThresh: the retransmission was lost
    c.process(sackAck(A(0), [A(K), A(13 * K)]), 20);
    const out = c.dispatch(20);
    expect(out[0]!.repr.seq).toBe(A(0));
    expect(c.rtxStats.retransmittedSegments).toBe(2);
    expect(c.rtxStats.retransmitTimeouts).toBe(0);
  });

  test("Eifel (RFC 3522): the ACK echoes the original's timestamp, so cwnd is restored and DupThresh raised", () => {
    const c = established({ sendBufferSize: 65536 }, { mss: K + 12, sackPermitted: true, timestamp: { tsval: 7, tsecr: 0 } });
    expect(c.sendMss).toBe(K);
    c.send(bytes(20 * K));
    expect(c.dispatch(5).length).toBe(10); // TSval 5
    const ack = (n: number, blocks: number[] | null, tsval: number, tsecr: number) =>
      seg({ ack: A(n), sackBlocks: blocks, timestamp: { tsval, tsecr } });
    c.process(ack(0, [A(K), A(4 * K)], 9, 5), 10);
    expect(c.recoveryKind).toBe("fast");
    expect(c.cwnd).toBe(5 * K);
    expect(c.dispatch(10)[0]!.repr).toMatchObject({ seq: A(0), timestamp: { tsval: 10 } });
    // segment 0 was only delayed: its own ACK echoes TSval 5, older than the retransmission's 10
    c.process(ack(4 * K, null, 10, 5), 12);
    expect(c.recoveryKind).toBeNull();
    expect(c.cwnd).toBeGreaterThanOrEqual(10 * K);
    expect(c.dupThresh).toBe(5);
    expect(c.rtxStats.spuriousRecoveries).toBe(1);
  });
});

describe("without SACK: NewReno (RFC 6582) remains", () => {
  test("SACK blocks from a peer that did not negotiate SACK are ignored; the third duplicate retransmits", () => {
    const c = sackSender(20 * K, false);
    c.process(sackAck(A(K), [A(2 * K), A(3 * K)]), 10);
    c.dispatch(10);
    c.process(sackAck(A(K), [A(2 * K), A(4 * K)]), 11);
    expectSilence(c, 11); // no limited transmit, no pipe
    c.process(sackAck(A(K), [A(2 * K), A(5 * K)]), 12);
    c.process(sackAck(A(K), [A(2 * K), A(6 * K)]), 13);
    expect(c.scoreboard).toEqual([]);
    expect(c.recoveryKind).toBeNull();
    expect(c.inRecovery).toBe(true);
    expectSegments(c, 13, [{ seq: A(K), len: K }]);
    expect(c.rtxStats.fastRecoveries).toBe(1);
    expect(c.rtxStats.retransmittedSegments).toBe(1);
  });
});

describe("TcpTable timers and counters", () => {
  const DEV = new Uint8Array([10, 0, 0, 2]);
  const DST = new Uint8Array([93, 184, 216, 34]);

  function open(t: TcpTable, port: number): TcpConnection {
    t.process(DEV, DST, tcpRepr({ srcPort: port, dstPort: 443, seq: 1000, flags: TCP_SYN, window: 65535, mss: K, sackPermitted: true }), new Uint8Array(0), 0);
    const synAck = t.dispatch(0)[0]!.segment.repr;
    t.process(DEV, DST, tcpRepr({ srcPort: port, dstPort: 443, seq: 1001, ack: synAck.seq + 1, flags: TCP_ACK, window: 65535 }), new Uint8Array(0), 0);
    t.dispatch(0);
    return t.takeEvents()[0]!.conn;
  }

  test("retransmission timeouts of several connections are counted in the table's stats", () => {
    const t = new TcpTable({ tcp: SETTINGS, tcpV6: SETTINGS });
    const conns: TcpConnection[] = [];
    for (let i = 0; i < 20; i++) conns.push(open(t, 40000 + i));
    t.dispatch(2000); // the handshake's timers are past: idle connections hold none
    expect(t.pollAt()).toBeNull();
    conns[7]!.send(bytes(100));
    t.dispatch(2005);
    conns[9]!.send(bytes(100));
    t.dispatch(2010);
    conns[15]!.send(bytes(100));
    t.dispatch(2020);
    expect(t.pollAt()).toBe(3005); // RTO 1 s after the earliest send
    const out = t.dispatch(3005);
    expect(out.map((o) => o.segment.repr.dstPort)).toEqual([40007]);
    t.dispatch(3020);
    expect(t.stats.retransmitTimeouts).toBe(3);
    expect(t.stats.retransmittedSegments).toBe(3);
    expect(t.stats.retransmittedBytes).toBe(300);
    // acknowledged and aborted connections hold no timer; the last one's is next
    const c = conns[7]!;
    t.process(DEV, DST, tcpRepr({ srcPort: 40007, dstPort: 443, seq: 1001, ack: c.sndMax, flags: TCP_ACK, window: 65535 }), new Uint8Array(0), 3030);
    t.dispatch(3030);
    conns[9]!.abort();
    t.dispatch(3040);
    t.dispatch(t.pollAt()!); // a scan at the earliest deadline it knew leaves the true next one
    expect(t.pollAt()).toBe(conns[15]!.rtxExpiresAt);
  });
});
