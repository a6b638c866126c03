// The TCP engine, packet by packet, one describe block per RFC 9293 state.
import { describe, expect, test } from "bun:test";
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from "../../../app/net/stack/wire/tcp.ts";
import { PAWS_REORDER_TICKS, TcpConnection } from "../../../app/net/stack/tcp/connection.ts";
import {
  BUF, LOCAL_PORT, LOCAL_SEQ, REMOTE_PORT, REMOTE_SEQ, SETTINGS, SYN, bytes, closeWait, closing, established,
  expectSegments, expectSilence, finWait1, finWait2, lastAck, seg, synReceived, text, timeWait,
} from "./tcp_helpers.ts";

describe("SYN-RECEIVED", () => {
  test("SYN-ACK echoes the options the peer offered", () => {
    const c = TcpConnection.accept(
      { ...SYN, windowScale: 7, sackPermitted: true, timestamp: { tsval: 555, tsecr: 0 } },
      { ...SETTINGS, recvBufferSize: 1 << 20 },
      LOCAL_SEQ,
      0,
    );
    expect(c.state).toBe("SYN-RECEIVED");
    expectSegments(c, 42, [{
      flags: TCP_SYN | TCP_ACK, seq: LOCAL_SEQ, ack: REMOTE_SEQ + 1, srcPort: LOCAL_PORT, dstPort: REMOTE_PORT,
      mss: 1460, windowScale: 5, sackPermitted: true, timestamp: { tsval: 42, tsecr: 555 }, window: 65535,
    }]);
    expect(c.sndShift).toBe(7);
    expect(c.sendMss).toBe(1460 - 12); // timestamps take 12 bytes of every segment
  });

  test("a bare SYN gets a bare SYN-ACK; no MSS option means 536", () => {
    const c = TcpConnection.accept({ ...SYN, mss: null }, SETTINGS, LOCAL_SEQ, 0);
    expectSegments(c, 0, [{ flags: TCP_SYN | TCP_ACK, mss: 1460, windowScale: null, sackPermitted: false, timestamp: null, window: BUF }]);
    expect(c.sendMss).toBe(536);
  });

  test("our MSS bounds the send MSS", () => {
    const c = TcpConnection.accept({ ...SYN, mss: 9000 }, SETTINGS, LOCAL_SEQ, 0);
    expect(c.sendMss).toBe(1460);
  });

  test("a retransmitted SYN gets the SYN-ACK again", () => {
    const c = synReceived();
    c.process({ repr: SYN, payload: new Uint8Array(0) }, 500);
    expectSegments(c, 500, [{ flags: TCP_SYN | TCP_ACK, seq: LOCAL_SEQ, ack: REMOTE_SEQ + 1 }]);
    expect(c.state).toBe("SYN-RECEIVED");
  });

  test("the ACK completes the handshake", () => {
    const c = synReceived();
    c.process(seg(), 10);
    expect(c.state).toBe("ESTABLISHED");
    expectSilence(c, 10);
  });

  test("the ACK may carry data", () => {
    const c = synReceived();
    c.process(seg({ flags: TCP_ACK | TCP_PSH }, "GET /"), 10);
    expect(c.state).toBe("ESTABLISHED");
    expect(text(c.recv())).toBe("GET /");
    expectSegments(c, 10, [{ flags: TCP_ACK, ack: REMOTE_SEQ + 1 + 5 }]);
  });

  test("an unacceptable ACK draws <SEQ=SEG.ACK><CTL=RST>; the state stays", () => {
    const c = synReceived();
    c.process(seg({ ack: LOCAL_SEQ + 1000 }), 10);
    expectSegments(c, 10, [{ flags: TCP_RST, seq: LOCAL_SEQ + 1000 }]);
    expect(c.state).toBe("SYN-RECEIVED");
  });

  test("RST with exact sequence number closes, silently", () => {
    const c = synReceived();
    c.process(seg({ flags: TCP_RST, ack: 0 }), 10);
    expect(c.state).toBe("CLOSED");
    expect(c.closeReason).toBe("reset");
    expectSilence(c, 10);
  });

  test("RST out of window is ignored silently", () => {
    const c = synReceived();
    c.process(seg({ flags: TCP_RST, seq: REMOTE_SEQ + 100_000 }), 10);
    expect(c.state).toBe("SYN-RECEIVED");
    expectSilence(c, 10);
  });

  test("SYN-ACK retransmits with backoff, then gives up", () => {
    const c = synReceived({ synRetries: 2 });
    expectSilence(c, 999);
    expect(c.pollAt()).toBe(1000);
    expectSegments(c, 1000, [{ flags: TCP_SYN | TCP_ACK, seq: LOCAL_SEQ }]);
    expectSilence(c, 2999);
    expectSegments(c, 3000, [{ flags: TCP_SYN | TCP_ACK, seq: LOCAL_SEQ }]);
    expectSilence(c, 6999);
    expectSilence(c, 7000); // a half-open connection vanishes without a RST
    expect(c.state).toBe("CLOSED");
    expect(c.closeReason).toBe("syn-timeout");
  });

  test("close() before the handshake completes sends FIN right after", () => {
    const c = synReceived();
    c.close();
    c.process(seg(), 10);
    expect(c.state).toBe("FIN-WAIT-1");
    expectSegments(c, 10, [{ flags: TCP_FIN | TCP_ACK, seq: LOCAL_SEQ + 1 }]);
  });
});

describe("ESTABLISHED: receiving", () => {
  test("in-order data is delivered and ACKed, window shrinks", () => {
    const c = established();
    c.process(seg({}, "hello"), 1);
    // SWS avoidance keeps the right edge; the window the peer sees is the remaining space to that edge
    expectSegments(c, 1, [{ flags: TCP_ACK, seq: LOCAL_SEQ + 1, ack: REMOTE_SEQ + 6, window: BUF - 5 }]);
    c.process(seg({ seq: REMOTE_SEQ + 6 }, "world"), 2);
    expectSegments(c, 2, [{ ack: REMOTE_SEQ + 11, window: BUF - 10 }]);
    expect(text(c.recv())).toBe("helloworld");
    expectSilence(c, 3); // 10 bytes read: below the SWS threshold, no window update
  });

  test("out-of-order data: immediate duplicate ACK; the hole filled delivers both", () => {
    const c = established();
    c.process(seg({ seq: REMOTE_SEQ + 6 }, "world"), 1);
    expectSegments(c, 1, [{ flags: TCP_ACK, ack: REMOTE_SEQ + 1, sackBlocks: null }]);
    expect(c.recvQueued).toBe(0);
    c.process(seg({}, "hello"), 2);
    expectSegments(c, 2, [{ ack: REMOTE_SEQ + 11 }]);
    expect(text(c.recv())).toBe("helloworld");
  });

  test("SACK blocks report out-of-order data when SACK was permitted", () => {
    const c = established({}, { sackPermitted: true });
    c.process(seg({ seq: REMOTE_SEQ + 6 }, "world"), 1);
    expectSegments(c, 1, [{ ack: REMOTE_SEQ + 1, sackBlocks: [REMOTE_SEQ + 6, REMOTE_SEQ + 11] }]);
    c.process(seg({ seq: REMOTE_SEQ + 21 }, "!!"), 1);
    // RFC 2018 §4: the block holding the most recent segment comes first.
    expectSegments(c, 1, [{ ack: REMOTE_SEQ + 1, sackBlocks: [REMOTE_SEQ + 21, REMOTE_SEQ + 23, REMOTE_SEQ + 6, REMOTE_SEQ + 11] }]);
    // A segment joining the first range makes that range most recent again.
    c.process(seg({ seq: REMOTE_SEQ + 11 }, "....."), 1);
    expectSegments(c, 1, [{ ack: REMOTE_SEQ + 1, sackBlocks: [REMOTE_SEQ + 6, REMOTE_SEQ + 16, REMOTE_SEQ + 21, REMOTE_SEQ + 23] }]);
    // Filling the hole at RCV.NXT drops the merged range; the other remains.
    c.process(seg({}, "hello"), 1);
    expectSegments(c, 1, [{ ack: REMOTE_SEQ + 16, sackBlocks: [REMOTE_SEQ + 21, REMOTE_SEQ + 23] }]);
  });

  test("a batch processed before one dispatch still gets one ACK per out-of-order segment, each with its SACK blocks", () => {
    // The link hands the stack packets in batches; the sender counts these
    // duplicate ACKs and reads each one's SACK blocks.
    const c = established({}, { sackPermitted: true });
    c.process(seg({ seq: REMOTE_SEQ + 6 }, "world"), 1);
    c.process(seg({ seq: REMOTE_SEQ + 21 }, "!!"), 1);
    c.process(seg({}, "hello"), 1); // fills the first hole: still a hole behind, ACK at once
    c.process(seg({ seq: REMOTE_SEQ + 11 }, "....."), 1); // fills the next range up to 16; 16-21 still open
    expectSegments(c, 1, [
      { flags: TCP_ACK, ack: REMOTE_SEQ + 1, sackBlocks: [REMOTE_SEQ + 6, REMOTE_SEQ + 11] },
      { flags: TCP_ACK, ack: REMOTE_SEQ + 1, sackBlocks: [REMOTE_SEQ + 21, REMOTE_SEQ + 23, REMOTE_SEQ + 6, REMOTE_SEQ + 11] },
      { flags: TCP_ACK, ack: REMOTE_SEQ + 11, sackBlocks: [REMOTE_SEQ + 21, REMOTE_SEQ + 23] },
      { flags: TCP_ACK, ack: REMOTE_SEQ + 16, sackBlocks: [REMOTE_SEQ + 21, REMOTE_SEQ + 23] },
    ]);
    expectSilence(c, 2);
  });

  test("in-order data after out-of-order data in one batch: the batch ends with an ACK of everything", () => {
    const c = established({}, { sackPermitted: true });
    c.process(seg({ seq: REMOTE_SEQ + 6 }, "world"), 1);
    c.process(seg({}, "hello"), 1); // fills the hole: ACK 11 at once
    c.process(seg({ seq: REMOTE_SEQ + 11 }, bytes(2000)), 1); // in order again: ACK owed (two full segments' worth)
    expectSegments(c, 1, [
      { ack: REMOTE_SEQ + 1, sackBlocks: [REMOTE_SEQ + 6, REMOTE_SEQ + 11] },
      { ack: REMOTE_SEQ + 11, sackBlocks: null },
      { ack: REMOTE_SEQ + 2011, sackBlocks: null },
    ]);
    expect(c.recvQueued).toBe(2010);
  });

  test("a duplicate of old data is re-ACKed and not delivered twice", () => {
    const c = established();
    c.process(seg({}, "hello"), 1);
    c.dispatch(1);
    c.process(seg({}, "hello"), 2);
    expectSegments(c, 2, [{ ack: REMOTE_SEQ + 6 }]);
    expect(text(c.recv())).toBe("hello");
  });

  test("D-SACK (RFC 2883): a duplicate segment is reported as the first SACK block, once", () => {
    const c = established({}, { sackPermitted: true });
    c.process(seg({}, "hello"), 1);
    c.process(seg({ seq: REMOTE_SEQ + 11 }, "!!"), 1); // a hole at 6..11 keeps a SACK block
    c.dispatch(1);
    c.process(seg({}, "hello"), 2); // the sender retransmitted what had arrived
    expectSegments(c, 2, [{ ack: REMOTE_SEQ + 6, sackBlocks: [REMOTE_SEQ + 1, REMOTE_SEQ + 6, REMOTE_SEQ + 11, REMOTE_SEQ + 13] }]);
    c.process(seg({ seq: REMOTE_SEQ + 6 }, "world"), 3); // fills the hole: plain ACK, no D-SACK any more
    expectSegments(c, 3, [{ ack: REMOTE_SEQ + 13, sackBlocks: null }]);
    expect(text(c.recv())).toBe("helloworld!!");
  });

  test("D-SACK: the old part of a partly new segment is reported, the new part delivered", () => {
    const c = established({}, { sackPermitted: true });
    c.process(seg({}, "hello"), 1);
    c.dispatch(1);
    c.process(seg({ seq: REMOTE_SEQ + 4 }, "loworld"), 2);
    expectSegments(c, 2, [{ ack: REMOTE_SEQ + 11, sackBlocks: [REMOTE_SEQ + 4, REMOTE_SEQ + 6] }]);
    expect(text(c.recv())).toBe("helloworld");
  });

  test("D-SACK: two duplicates in one batch each get their own ACK", () => {
    const c = established({}, { sackPermitted: true });
    c.process(seg({}, "helloworld"), 1);
    c.dispatch(1);
    c.process(seg({}, "hello"), 2);
    c.process(seg({ seq: REMOTE_SEQ + 6 }, "world"), 2);
    expectSegments(c, 2, [
      { ack: REMOTE_SEQ + 11, sackBlocks: [REMOTE_SEQ + 1, REMOTE_SEQ + 6] },
      { ack: REMOTE_SEQ + 11, sackBlocks: [REMOTE_SEQ + 6, REMOTE_SEQ + 11] },
    ]);
  });

  test("no D-SACK without SACK-permitted: a duplicate gets a plain ACK", () => {
    const c = established();
    c.process(seg({}, "hello"), 1);
    c.dispatch(1);
    c.process(seg({}, "hello"), 2);
    expectSegments(c, 2, [{ ack: REMOTE_SEQ + 6, sackBlocks: null }]);
  });

  test("overlapping retransmission delivers only the new part", () => {
    const c = established();
    c.process(seg({}, "hello"), 1);
    c.dispatch(1);
    c.process(seg({ seq: REMOTE_SEQ + 4 }, "loworld"), 2);
    expectSegments(c, 2, [{ ack: REMOTE_SEQ + 11 }]);
    expect(text(c.recv())).toBe("helloworld");
  });

  test("a segment beyond the window is answered with an ACK and dropped", () => {
    const c = established();
    c.process(seg({ seq: REMOTE_SEQ + 1 + BUF + 10 }, "x"), 1);
    expectSegments(c, 1, [{ ack: REMOTE_SEQ + 1 }]);
    expect(c.recvQueued).toBe(0);
  });

  test("data past the buffer is trimmed at the window's right edge", () => {
    const c = established();
    c.process(seg({}, bytes(BUF + 100)), 1);
    expectSegments(c, 1, [{ ack: REMOTE_SEQ + 1 + BUF, window: 0 }]);
    expect(c.recvQueued).toBe(BUF);
  });

  test("bounded out-of-order ranges: past the bound a segment is dropped", () => {
    const c = established({ maxOutOfOrderRanges: 2 });
    c.process(seg({ seq: REMOTE_SEQ + 11 }, "a"), 1);
    c.process(seg({ seq: REMOTE_SEQ + 21 }, "b"), 1);
    c.process(seg({ seq: REMOTE_SEQ + 31 }, "c"), 1);
    c.dispatch(1);
    c.process(seg({}, bytes(40)), 2);
    c.dispatch(2);
    // "a" and "b" were kept (inside the 40 bytes), "c" at offset 30 was dropped but rewritten by the fill
    expect(c.recvQueued).toBe(40);
    expect(c.rcvNxt).toBe(REMOTE_SEQ + 41);
  });

  test("receive window fills to zero, reading opens it with a window update", () => {
    const c = established();
    c.process(seg({}, bytes(BUF)), 1);
    expectSegments(c, 1, [{ ack: REMOTE_SEQ + 1 + BUF, window: 0 }]);
    c.recv(100);
    expectSilence(c, 2); // SWS: 100 bytes is no reason to announce
    c.recv(2000);
    expectSegments(c, 3, [{ flags: TCP_ACK, ack: REMOTE_SEQ + 1 + BUF, window: 2100 }]);
  });

  test("setRecvWindowLimit shrinks what is advertised without moving the edge left", () => {
    const c = established();
    c.setRecvWindowLimit(1000);
    c.process(seg({}, "abc"), 1);
    // the edge advertised at the handshake was BUF past RCV.NXT: it stays
    expectSegments(c, 1, [{ ack: REMOTE_SEQ + 4, window: BUF - 3 }]);
    c.process(seg({ seq: REMOTE_SEQ + 4 }, bytes(BUF - 3)), 2);
    expectSegments(c, 2, [{ window: 0 }]);
    c.recv();
    // after reading everything, only the limit is offered
    expectSegments(c, 3, [{ window: 1000 }]);
  });

  test("zero-window probe from the peer is answered with an ACK", () => {
    const c = established();
    c.process(seg({}, bytes(BUF)), 1);
    c.dispatch(1);
    c.process(seg({ seq: REMOTE_SEQ + 1 + BUF }, "z"), 2);
    expectSegments(c, 2, [{ ack: REMOTE_SEQ + 1 + BUF, window: 0 }]);
  });

  test("ACK delay: every second full segment, or when the delay ends", () => {
    const c = established({ ackDelayMs: 40 });
    c.process(seg({}, bytes(1460)), 1);
    expectSilence(c, 1);
    expect(c.pollAt()).toBe(41);
    c.process(seg({ seq: REMOTE_SEQ + 1461 }, bytes(1460)), 2);
    expectSegments(c, 2, [{ ack: REMOTE_SEQ + 1 + 2920 }]);
    c.process(seg({ seq: REMOTE_SEQ + 2921 }, "x"), 3);
    expectSilence(c, 42);
    expectSegments(c, 43, [{ ack: REMOTE_SEQ + 2922 }]);
  });
});

describe("ESTABLISHED: RST, SYN and sequence checks", () => {
  test("RST at RCV.NXT resets", () => {
    const c = established();
    c.process(seg({ flags: TCP_RST }), 1);
    expect(c.state).toBe("CLOSED");
    expect(c.closeReason).toBe("reset");
    expectSilence(c, 1);
  });
  test("RST in window but not exact draws a challenge ACK (RFC 5961)", () => {
    const c = established();
    c.process(seg({ flags: TCP_RST, seq: REMOTE_SEQ + 100 }), 1);
    expect(c.state).toBe("ESTABLISHED");
    expectSegments(c, 1, [{ flags: TCP_ACK, seq: LOCAL_SEQ + 1, ack: REMOTE_SEQ + 1 }]);
  });
  test("RST outside the window is dropped silently", () => {
    const c = established();
    c.process(seg({ flags: TCP_RST, seq: REMOTE_SEQ - 100 }), 1);
    expect(c.state).toBe("ESTABLISHED");
    expectSilence(c, 1);
  });
  test("SYN in a synchronized state draws a challenge ACK", () => {
    const c = established();
    c.process(seg({ flags: TCP_SYN, seq: REMOTE_SEQ + 50, ack: 0 }), 1);
    expect(c.state).toBe("ESTABLISHED");
    expectSegments(c, 1, [{ flags: TCP_ACK, ack: REMOTE_SEQ + 1 }]);
  });
  test("a segment without ACK is dropped", () => {
    const c = established();
    c.process(seg({ flags: 0 }, "data"), 1);
    expect(c.recvQueued).toBe(0);
    expectSilence(c, 1);
  });
  test("ACK of data never sent is answered with an ACK and dropped", () => {
    const c = established();
    c.process(seg({ ack: LOCAL_SEQ + 500 }, "x"), 1);
    expectSegments(c, 1, [{ flags: TCP_ACK, ack: REMOTE_SEQ + 1 }]);
    expect(c.recvQueued).toBe(0);
  });
  test("PAWS: a segment with an older timestamp is dropped with an ACK", () => {
    const c = established({}, { timestamp: { tsval: 1000, tsecr: 0 } });
    c.process(seg({ timestamp: { tsval: 1002, tsecr: 5 } }, "new"), 1);
    expectSegments(c, 1, [{ ack: REMOTE_SEQ + 4, timestamp: { tsval: 1, tsecr: 1002 } }]);
    c.process(seg({ seq: REMOTE_SEQ + 4, timestamp: { tsval: 900, tsecr: 5 } }, "old"), 2);
    expectSegments(c, 2, [{ ack: REMOTE_SEQ + 4 }]);
    expect(text(c.recv())).toBe("new");
  });
  test("PAWS leaves slack for reordering: an original a few ticks older than the retransmission that moved TS.Recent is taken", () => {
    const c = established({}, { timestamp: { tsval: 1000, tsecr: 0 } });
    // "b" (sent at 1002) overtook "a" (lost, resent at 1010): the retransmission sets TS.Recent to 1010
    c.process(seg({ seq: REMOTE_SEQ + 2, timestamp: { tsval: 1002, tsecr: 5 } }, "b"), 1);
    c.process(seg({ timestamp: { tsval: 1010, tsecr: 5 } }, "a"), 2);
    c.process(seg({ seq: REMOTE_SEQ + 3, timestamp: { tsval: 1003, tsecr: 5 } }, "c"), 3); // sent before the retransmission, arrives after it
    expect(text(c.recv())).toBe("abc");
    c.process(seg({ seq: REMOTE_SEQ + 4, timestamp: { tsval: 1010 - PAWS_REORDER_TICKS - 1, tsecr: 5 } }, "d"), 4);
    expect(c.recvQueued).toBe(0); // beyond the slack: an old duplicate
  });
});

describe("ESTABLISHED: sending", () => {
  test("send() is bounded by the send buffer", () => {
    const c = established();
    expect(c.send(bytes(BUF + 500))).toBe(BUF);
    expect(c.sendCapacity).toBe(0);
    expect(c.send(bytes(1))).toBe(0);
  });

  test("segments honour the peer's MSS", () => {
    const c = established({}, { mss: 536 });
    c.send(bytes(1200));
    expectSegments(c, 0, [
      { seq: LOCAL_SEQ + 1, len: 536, flags: TCP_ACK },
      { seq: LOCAL_SEQ + 537, len: 536, flags: TCP_ACK },
      { seq: LOCAL_SEQ + 1073, len: 128, flags: TCP_ACK | TCP_PSH },
    ]);
    expectSilence(c, 1);
  });

  test("the peer's window limits sending; window scaling is applied", () => {
    const c = established({}, { windowScale: 2, window: 65535 });
    // handshake ACK carried window 65535 << 2; now the peer offers 250 << 2 = 1000 bytes
    c.process(seg({ window: 250 }), 1);
    c.send(bytes(3000));
    expectSegments(c, 1, [{ len: 1000, seq: LOCAL_SEQ + 1 }]);
    expectSilence(c, 2);
    c.process(seg({ ack: LOCAL_SEQ + 1001, window: 500 }), 3);
    expectSegments(c, 3, [{ len: 1460, seq: LOCAL_SEQ + 1001 }, { len: 540, seq: LOCAL_SEQ + 2461 }]);
  });

  test("the initial congestion window is ten segments (RFC 6928)", () => {
    const c = established({ sendBufferSize: 65536 }, { mss: 1000 });
    c.send(bytes(20_000));
    const out = c.dispatch(0);
    expect(out.length).toBe(10);
    expect(out.every((s) => s.payload.length === 1000)).toBe(true);
  });

  test("slow start: each ACK grows cwnd by what it acknowledges, up to two MSS (RFC 3465, L = 2)", () => {
    const c = established({ sendBufferSize: 65536 }, { mss: 1000 });
    c.send(bytes(30_000));
    c.dispatch(0);
    const cw = c.cwnd;
    c.process(seg({ ack: LOCAL_SEQ + 1 + 2000 }), 10); // a delayed ACK of two segments
    expect(c.cwnd).toBe(cw + 2000);
    expect(c.dispatch(10).length).toBe(4); // 2 freed by the ACK + 2 from growth
    c.process(seg({ ack: LOCAL_SEQ + 1 + 5000 }), 20); // a stretch ACK of three
    expect(c.cwnd).toBe(cw + 4000);
  });

  test("congestion avoidance: one MSS per cwnd of bytes acknowledged, however the ACKs are cut (RFC 3465)", () => {
    const c = established({ sendBufferSize: 65536 }, { mss: 1000 });
    c.send(bytes(60_000));
    c.dispatch(0);
    c.ssthresh = c.cwnd; // in congestion avoidance from here
    const cw = c.cwnd;
    let acked = 0;
    // Stretch ACKs of 3 segments: cwnd grows once a whole cwnd is acknowledged, not before.
    while (acked + 3000 < cw) {
      acked += 3000;
      c.process(seg({ ack: LOCAL_SEQ + 1 + acked }), 10 + acked / 1000);
      c.dispatch(10 + acked / 1000);
      expect(c.cwnd).toBe(cw);
    }
    acked += 3000;
    c.process(seg({ ack: LOCAL_SEQ + 1 + acked }), 100);
    expect(c.cwnd).toBe(cw + 1000);
  });

  test("RTO: retransmission at 1 s, then backing off 2 s, 4 s (RFC 6298 5.5)", () => {
    const c = established();
    c.send(new TextEncoder().encode("abc"));
    expectSegments(c, 0, [{ seq: LOCAL_SEQ + 1, payload: "abc" }]);
    expect(c.pollAt()).toBe(1000);
    expectSilence(c, 999);
    expectSegments(c, 1000, [{ seq: LOCAL_SEQ + 1, payload: "abc" }]);
    expectSilence(c, 2999);
    expectSegments(c, 3000, [{ seq: LOCAL_SEQ + 1, payload: "abc" }]);
    expectSilence(c, 6999);
    expectSegments(c, 7000, [{ seq: LOCAL_SEQ + 1, payload: "abc" }]);
    c.process(seg({ ack: LOCAL_SEQ + 4 }), 7100);
    expect(c.pollAt()).toBeNull();
    expectSilence(c, 20_000);
  });

  test("RTT sample sets SRTT, RTTVAR and RTO (RFC 6298 2.2)", () => {
    const c = established();
    c.send(bytes(10));
    c.dispatch(0);
    c.process(seg({ ack: LOCAL_SEQ + 11 }), 100);
    expect(c.srtt).toBe(100);
    expect(c.rttvar).toBe(50);
    expect(c.rto).toBe(300);
    c.send(bytes(10));
    c.dispatch(200);
    c.process(seg({ ack: LOCAL_SEQ + 21 }), 260); // R = 60
    expect(c.rttvar).toBeCloseTo(0.75 * 50 + 0.25 * 40);
    expect(c.srtt).toBeCloseTo(0.875 * 100 + 0.125 * 60);
  });

  test("Karn: no RTT sample from a retransmitted segment", () => {
    const c = established();
    c.send(bytes(10));
    c.dispatch(0);
    c.dispatch(1000); // retransmit
    c.process(seg({ ack: LOCAL_SEQ + 11 }), 1050);
    expect(c.srtt).toBeNull();
  });

  test("timestamps give RTT samples even for retransmissions (RFC 7323 §4)", () => {
    const c = established({}, { timestamp: { tsval: 7, tsecr: 0 } });
    c.send(bytes(10));
    expectSegments(c, 500, [{ timestamp: { tsval: 500, tsecr: 8 } }]);
    c.process(seg({ ack: LOCAL_SEQ + 11, timestamp: { tsval: 9, tsecr: 500 } }), 580);
    expect(c.srtt).toBe(80);
  });

  test("fast retransmit on the third duplicate ACK, NewReno recovery", () => {
    const c = established({ sendBufferSize: 65536 }, { mss: 1000 });
    c.send(bytes(6000));
    expect(c.dispatch(0).length).toBe(6);
    const A = (n: number) => LOCAL_SEQ + 1 + n;
    c.process(seg({ ack: A(1000) }), 10); // first segment arrives
    c.dispatch(10);
    c.process(seg({ ack: A(1000) }), 11);
    c.process(seg({ ack: A(1000) }), 12);
    expectSilence(c, 12);
    c.process(seg({ ack: A(1000) }), 13); // third duplicate
    expect(c.inRecovery).toBe(true);
    expect(c.ssthresh).toBe(2500); // flight 5000 / 2
    expect(c.cwnd).toBe(2500 + 3000);
    expectSegments(c, 13, [{ seq: A(1000), len: 1000 }]);
    // partial ACK: the next hole is retransmitted at once
    c.process(seg({ ack: A(3000) }), 20);
    expect(c.inRecovery).toBe(true);
    expectSegments(c, 20, [{ seq: A(3000), len: 1000 }]);
    // full ACK ends recovery; cwnd deflates to ssthresh-ish
    c.process(seg({ ack: A(6000) }), 30);
    expect(c.inRecovery).toBe(false);
    expect(c.cwnd).toBeLessThanOrEqual(2500);
    expectSilence(c, 30);
  });

  test("duplicate ACKs that carry data or change the window are not counted", () => {
    const c = established({ sendBufferSize: 65536 }, { mss: 1000 });
    c.send(bytes(5000));
    c.dispatch(0);
    const A = LOCAL_SEQ + 1;
    c.process(seg({ ack: A }, "a"), 1);
    c.process(seg({ ack: A, seq: REMOTE_SEQ + 2 }, "b"), 2);
    c.process(seg({ ack: A, window: 60000 }), 3);
    c.process(seg({ ack: A, window: 50000 }), 4);
    expect(c.inRecovery).toBe(false);
  });

  test("RTO collapses cwnd to one segment and sets ssthresh (RFC 5681 eqn. 4)", () => {
    const c = established({ sendBufferSize: 65536 }, { mss: 1000 });
    c.send(bytes(4000));
    c.dispatch(0);
    expectSegments(c, 1000, [{ seq: LOCAL_SEQ + 1, len: 1000 }]);
    expect(c.cwnd).toBe(1000);
    expect(c.ssthresh).toBe(2000);
  });

  test("zero window: nothing sent; persist probes with one byte, backing off", () => {
    const c = established();
    c.process(seg({ window: 0 }), 0);
    c.send(new TextEncoder().encode("hello"));
    expectSilence(c, 0);
    expect(c.pollAt()).toBe(1000);
    expectSilence(c, 999);
    expectSegments(c, 1000, [{ seq: LOCAL_SEQ + 1, payload: "h" }]);
    c.process(seg({ window: 0 }), 1010); // peer still closed
    expectSilence(c, 2999);
    expectSegments(c, 3000, [{ seq: LOCAL_SEQ + 1, payload: "h" }]);
    c.process(seg({ window: 0 }), 3010);
    expect(c.state).toBe("ESTABLISHED");
    // window update: the rest flows ("h" is in flight since the last probe)
    c.process(seg({ window: 100 }), 3100);
    expectSegments(c, 3100, [{ seq: LOCAL_SEQ + 2, payload: "ello" }]);
  });

  test("zero window then the probe byte is accepted", () => {
    const c = established();
    c.process(seg({ window: 0 }), 0);
    c.send(new TextEncoder().encode("hello"));
    c.dispatch(0);
    expectSegments(c, 1000, [{ payload: "h" }]);
    c.process(seg({ ack: LOCAL_SEQ + 2, window: 100 }), 1010);
    expectSegments(c, 1010, [{ seq: LOCAL_SEQ + 2, payload: "ello" }]);
  });

  test("gives up after maxRetransmissions with a RST", () => {
    const c = established({ maxRetransmissions: 2 });
    c.send(bytes(10));
    c.dispatch(0);
    c.dispatch(1000);
    c.dispatch(3000);
    expectSegments(c, 7000, [{ flags: TCP_RST | TCP_ACK, seq: LOCAL_SEQ + 11 }]);
    expect(c.state).toBe("CLOSED");
    expect(c.closeReason).toBe("retransmit-timeout");
  });

  test("abort() sends RST at SND.NXT and closes", () => {
    const c = established();
    c.send(bytes(10));
    c.dispatch(0);
    c.abort();
    expectSegments(c, 1, [{ flags: TCP_RST | TCP_ACK, seq: LOCAL_SEQ + 11 }]);
    expect(c.state).toBe("CLOSED");
    expect(c.closeReason).toBe("aborted");
    expectSilence(c, 2);
  });

  test("pure ACKs from the peer draw no answer (silence)", () => {
    const c = established();
    c.process(seg(), 1);
    c.process(seg(), 2);
    expectSilence(c, 3);
  });
});

describe("ESTABLISHED: keepalive and idle timeout", () => {
  test("keepalive probes at SND.NXT-1, then reset after the probe budget", () => {
    const c = established({ keepaliveIdleMs: 10_000, keepaliveIntervalMs: 1000, keepaliveProbes: 2 });
    expect(c.pollAt()).toBe(10_000);
    expectSilence(c, 9999);
    expectSegments(c, 10_000, [{ flags: TCP_ACK, seq: LOCAL_SEQ, ack: REMOTE_SEQ + 1 }]);
    expectSegments(c, 11_000, [{ flags: TCP_ACK, seq: LOCAL_SEQ }]);
    expectSegments(c, 12_000, [{ flags: TCP_RST | TCP_ACK }]);
    expect(c.closeReason).toBe("keepalive-timeout");
  });
  test("an answer to a keepalive resets the count", () => {
    const c = established({ keepaliveIdleMs: 10_000, keepaliveIntervalMs: 1000, keepaliveProbes: 2 });
    c.dispatch(10_000);
    c.process(seg(), 10_050);
    expectSilence(c, 11_000);
    expect(c.pollAt()).toBe(20_050);
  });
  test("idle timeout resets the connection", () => {
    const c = established({ idleTimeoutMs: 5000 });
    c.process(seg({}, "x"), 1000);
    c.dispatch(1000);
    expectSilence(c, 5999);
    expectSegments(c, 6000, [{ flags: TCP_RST | TCP_ACK }]);
    expect(c.closeReason).toBe("idle-timeout");
  });
});

describe("FIN handling from ESTABLISHED", () => {
  test("FIN moves to CLOSE-WAIT; recv ends after the data", () => {
    const c = established();
    c.process(seg({ flags: TCP_ACK | TCP_FIN }, "bye"), 1);
    expect(c.state).toBe("CLOSE-WAIT");
    expectSegments(c, 1, [{ ack: REMOTE_SEQ + 5 }]);
    expect(c.recvEnded).toBe(false);
    expect(text(c.recv())).toBe("bye");
    expect(c.recvEnded).toBe(true);
  });
  test("a FIN ahead of a gap waits for the gap", () => {
    const c = established();
    c.process(seg({ flags: TCP_ACK | TCP_FIN, seq: REMOTE_SEQ + 6 }, "world"), 1);
    expect(c.state).toBe("ESTABLISHED");
    expectSegments(c, 1, [{ ack: REMOTE_SEQ + 1 }]);
    c.process(seg({}, "hello"), 2);
    expect(c.state).toBe("CLOSE-WAIT");
    expectSegments(c, 2, [{ ack: REMOTE_SEQ + 12 }]);
    expect(text(c.recv())).toBe("helloworld");
  });
  test("close() sends FIN after queued data", () => {
    const c = established();
    c.send(new TextEncoder().encode("last words"));
    c.close();
    expect(c.state).toBe("FIN-WAIT-1");
    expect(c.send(bytes(1))).toBe(0);
    expectSegments(c, 0, [{ flags: TCP_ACK | TCP_PSH | TCP_FIN, seq: LOCAL_SEQ + 1, payload: "last words" }]);
  });
  test("close() with data held back by the window: FIN waits for the data", () => {
    const c = established();
    c.process(seg({ window: 4 }), 0);
    c.send(new TextEncoder().encode("abcdefgh"));
    c.close();
    expectSegments(c, 0, [{ flags: TCP_ACK, payload: "abcd" }]);
    c.process(seg({ ack: LOCAL_SEQ + 5, window: 100 }), 1);
    expectSegments(c, 1, [{ flags: TCP_ACK | TCP_PSH | TCP_FIN, seq: LOCAL_SEQ + 5, payload: "efgh" }]);
  });
});

describe("FIN-WAIT-1", () => {
  test("ACK of our FIN moves to FIN-WAIT-2", () => {
    finWait2();
  });
  test("FIN without ACK of ours: CLOSING (simultaneous close)", () => {
    closing();
  });
  test("FIN with ACK of ours: TIME-WAIT", () => {
    const c = finWait1();
    c.process(seg({ flags: TCP_ACK | TCP_FIN, ack: LOCAL_SEQ + 2 }), 1);
    expect(c.state).toBe("TIME-WAIT");
    expectSegments(c, 1, [{ flags: TCP_ACK, seq: LOCAL_SEQ + 2, ack: REMOTE_SEQ + 2 }]);
  });
  test("data still arrives and is delivered", () => {
    const c = finWait1();
    c.process(seg({}, "more"), 1);
    expectSegments(c, 1, [{ flags: TCP_ACK, seq: LOCAL_SEQ + 2, ack: REMOTE_SEQ + 5 }]);
    expect(text(c.recv())).toBe("more");
  });
  test("the FIN is retransmitted on RTO", () => {
    const c = finWait1();
    expectSilence(c, 999);
    expectSegments(c, 1000, [{ flags: TCP_ACK | TCP_FIN, seq: LOCAL_SEQ + 1 }]);
  });
  test("RST closes", () => {
    const c = finWait1();
    c.process(seg({ flags: TCP_RST }), 1);
    expect(c.state).toBe("CLOSED");
    expectSilence(c, 1);
  });
});

describe("FIN-WAIT-2", () => {
  test("data arrives, then FIN: TIME-WAIT", () => {
    const c = finWait2();
    c.process(seg({ ack: LOCAL_SEQ + 2 }, "tail"), 1);
    expectSegments(c, 1, [{ ack: REMOTE_SEQ + 5 }]);
    c.process(seg({ flags: TCP_ACK | TCP_FIN, seq: REMOTE_SEQ + 5, ack: LOCAL_SEQ + 2 }), 2);
    expect(c.state).toBe("TIME-WAIT");
    expectSegments(c, 2, [{ ack: REMOTE_SEQ + 6 }]);
    expect(text(c.recv())).toBe("tail");
  });
  test("silence while waiting; no retransmission timer", () => {
    const c = finWait2();
    expect(c.pollAt()).toBeNull();
    expectSilence(c, 100_000);
  });
  test("RST at RCV.NXT closes", () => {
    const c = finWait2();
    c.process(seg({ flags: TCP_RST, ack: LOCAL_SEQ + 2 }), 1);
    expect(c.state).toBe("CLOSED");
  });
});

describe("CLOSING", () => {
  test("ACK of our FIN: TIME-WAIT", () => {
    const c = closing();
    c.process(seg({ seq: REMOTE_SEQ + 2, ack: LOCAL_SEQ + 2 }), 1);
    expect(c.state).toBe("TIME-WAIT");
    expectSilence(c, 1);
  });
  test("our FIN is retransmitted until acknowledged", () => {
    const c = closing();
    expectSegments(c, 1000, [{ flags: TCP_ACK | TCP_FIN, seq: LOCAL_SEQ + 1, ack: REMOTE_SEQ + 2 }]);
  });
});

describe("TIME-WAIT", () => {
  test("expires after 2*MSL into CLOSED", () => {
    const c = timeWait({ timeWaitMs: 500 });
    expect(c.pollAt()).toBe(500);
    expectSilence(c, 499);
    expect(c.state).toBe("TIME-WAIT");
    expectSilence(c, 500);
    expect(c.state).toBe("CLOSED");
    expect(c.closeReason).toBe("closed");
  });
  test("a retransmitted FIN is ACKed and restarts the timer", () => {
    const c = timeWait({ timeWaitMs: 500 });
    c.process(seg({ flags: TCP_ACK | TCP_FIN, ack: LOCAL_SEQ + 2 }), 300);
    expectSegments(c, 300, [{ flags: TCP_ACK, ack: REMOTE_SEQ + 2 }]);
    expect(c.pollAt()).toBe(800);
  });
  test("RST closes", () => {
    const c = timeWait();
    c.process(seg({ flags: TCP_RST, seq: REMOTE_SEQ + 2, ack: LOCAL_SEQ + 2 }), 1);
    expect(c.state).toBe("CLOSED");
  });
});

describe("CLOSE-WAIT", () => {
  test("we can still send", () => {
    const c = closeWait();
    c.send(new TextEncoder().encode("reply"));
    expectSegments(c, 1, [{ seq: LOCAL_SEQ + 1, ack: REMOTE_SEQ + 2, payload: "reply" }]);
  });
  test("a duplicate FIN is re-ACKed", () => {
    const c = closeWait();
    c.process(seg({ flags: TCP_ACK | TCP_FIN }), 1);
    expectSegments(c, 1, [{ ack: REMOTE_SEQ + 2 }]);
  });
  test("close() moves to LAST-ACK with FIN", () => {
    lastAck();
  });
});

describe("LAST-ACK", () => {
  test("ACK of the FIN: CLOSED, orderly", () => {
    const c = lastAck();
    c.process(seg({ seq: REMOTE_SEQ + 2, ack: LOCAL_SEQ + 2 }), 1);
    expect(c.state).toBe("CLOSED");
    expect(c.closeReason).toBe("closed");
    expectSilence(c, 1);
  });
  test("FIN retransmitted on RTO", () => {
    const c = lastAck();
    expectSegments(c, 1000, [{ flags: TCP_ACK | TCP_FIN, seq: LOCAL_SEQ + 1 }]);
  });
  test("RST closes", () => {
    const c = lastAck();
    c.process(seg({ flags: TCP_RST, seq: REMOTE_SEQ + 2 }), 1);
    expect(c.state).toBe("CLOSED");
    expect(c.closeReason).toBe("reset");
  });
});

describe("SYN-SENT (client mode)", () => {
  const connect = () => {
    const c = TcpConnection.connect(REMOTE_PORT, LOCAL_PORT, SETTINGS, 5000, 0);
    expectSegments(c, 0, [{ flags: TCP_SYN, seq: 5000, mss: 1460, sackPermitted: true, windowScale: 0, timestamp: { tsval: 0, tsecr: 0 } }]);
    return c;
  };
  const synAck = (over = {}) => ({
    repr: { ...SYN, srcPort: LOCAL_PORT, dstPort: REMOTE_PORT, flags: TCP_SYN | TCP_ACK, ack: 5001, seq: 9000, ...over },
    payload: new Uint8Array(0),
  });
  test("SYN-ACK: ESTABLISHED and an ACK", () => {
    const c = connect();
    c.process(synAck(), 10);
    expect(c.state).toBe("ESTABLISHED");
    expectSegments(c, 10, [{ flags: TCP_ACK, seq: 5001, ack: 9001, timestamp: null }]);
  });
  test("RST with an acceptable ACK: refused", () => {
    const c = connect();
    c.process(synAck({ flags: TCP_RST | TCP_ACK }), 10);
    expect(c.closeReason).toBe("refused");
  });
  test("an unacceptable ACK draws a RST", () => {
    const c = connect();
    c.process(synAck({ ack: 77 }), 10);
    expectSegments(c, 10, [{ flags: TCP_RST, seq: 77 }]);
    expect(c.state).toBe("SYN-SENT");
  });
  test("SYN retransmits on RTO", () => {
    const c = connect();
    expectSegments(c, 1000, [{ flags: TCP_SYN, seq: 5000 }]);
  });
});

describe("buffers", () => {
  test("out-of-order bytes survive the readable part draining to empty (regression found by netsim)", async () => {
    const { RingBuffer, Assembler } = await import("../../../app/net/stack/tcp/buffer.ts");
    const r = new RingBuffer(16);
    const a = new Assembler(4);
    r.enqueue(new Uint8Array([1, 2, 3]));
    r.writeUnassembled(2, new Uint8Array([9, 9]));
    a.add(2, 2);
    r.dequeue(3); // readable part now empty
    r.writeUnassembled(0, new Uint8Array([7, 7]));
    a.add(0, 2);
    r.commit(a.popFront());
    expect(Array.from(r.peek(0, r.length))).toEqual([7, 7, 9, 9]);
  });
  test("assembler merges and bounds ranges", async () => {
    const { Assembler } = await import("../../../app/net/stack/tcp/buffer.ts");
    const a = new Assembler(2);
    expect(a.add(10, 5)).toBe(true);
    expect(a.add(20, 5)).toBe(true);
    expect(a.add(30, 5)).toBe(false);
    expect(a.add(15, 5)).toBe(true); // bridges both
    expect(a.toArray()).toEqual([10, 25]);
    expect(a.popFront()).toBe(0);
    expect(a.add(0, 10)).toBe(true);
    expect(a.popFront()).toBe(25);
    expect(a.isEmpty).toBe(true);
  });
});
