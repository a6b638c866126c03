// The connection table: LISTEN for any address, RSTs for unknown tuples
// (RFC 9293 §3.10.7.1), the half-open bound, events, TIME-WAIT reuse.
import { describe, expect, test } from "bun:test";
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, tcpRepr, type TcpRepr } from "../../../app/net/stack/wire/tcp.ts";
import { TcpTable } from "../../../app/net/stack/tcp/table.ts";
import { SETTINGS } from "./tcp_helpers.ts";

const DEV = new Uint8Array([10, 0, 0, 2]);
const DST = new Uint8Array([93, 184, 216, 34]);
const DEV6 = new Uint8Array(16).fill(0xfd, 0, 1);
const DST6 = new Uint8Array(16).fill(0x20, 0, 1);
const SYN = tcpRepr({ srcPort: 40000, dstPort: 443, seq: 1000, flags: TCP_SYN, window: 65535, mss: 1460 });

function table(over: ConstructorParameters<typeof TcpTable>[0] = {}) {
  return new TcpTable({ tcp: SETTINGS, tcpV6: { ...SETTINGS, mss: 1440 }, ...over });
}

function handshake(t: TcpTable, port = 40000, now = 0) {
  t.process(DEV, DST, { ...SYN, srcPort: port }, new Uint8Array(0), now);
  const out = t.dispatch(now);
  expect(out.length).toBe(1);
  const synAck = out[0]!.segment.repr;
  t.process(DEV, DST, tcpRepr({ srcPort: port, dstPort: 443, seq: 1001, ack: synAck.seq + 1, flags: TCP_ACK, window: 65535 }), new Uint8Array(0), now);
  return synAck;
}

describe("TcpTable", () => {
  test("a SYN to any address and port is answered from that address", () => {
    const t = table();
    t.process(DEV, DST, SYN, new Uint8Array(0), 0);
    const out = t.dispatch(0);
    expect(out.length).toBe(1);
    expect(Array.from(out[0]!.src)).toEqual(Array.from(DST));
    expect(Array.from(out[0]!.dst)).toEqual(Array.from(DEV));
    expect(out[0]!.segment.repr).toMatchObject({ flags: TCP_SYN | TCP_ACK, ack: 1001, srcPort: 443, dstPort: 40000 });
    expect(t.halfOpenCount).toBe(1);
    expect(t.takeEvents()).toEqual([]);
  });

  test("the handshake's ACK yields one established event", () => {
    const t = table();
    handshake(t);
    const ev = t.takeEvents();
    expect(ev.length).toBe(1);
    expect(ev[0]!.type).toBe("established");
    expect(ev[0]!.tuple.localPort).toBe(443);
    expect(t.halfOpenCount).toBe(0);
    expect(t.dispatch(0)).toEqual([]); // silence
    expect(t.takeEvents()).toEqual([]);
  });

  test("ISNs differ per tuple", () => {
    const t = table();
    const a = handshake(t, 40000).seq;
    const b = handshake(t, 40001).seq;
    expect(a).not.toBe(b);
  });

  test("unknown tuple, ACK set: <SEQ=SEG.ACK><CTL=RST>", () => {
    const t = table();
    t.process(DEV, DST, tcpRepr({ srcPort: 1, dstPort: 2, seq: 5, ack: 777, flags: TCP_ACK }), new Uint8Array(3), 0);
    const out = t.dispatch(0);
    expect(out.map((o) => o.segment.repr)).toMatchObject([{ flags: TCP_RST, seq: 777, srcPort: 2, dstPort: 1 }]);
  });

  test("unknown tuple, no ACK: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>", () => {
    const t = table();
    t.process(DEV, DST, tcpRepr({ srcPort: 1, dstPort: 2, seq: 5, flags: TCP_FIN }), new Uint8Array(3), 0);
    expect(t.dispatch(0).map((o) => o.segment.repr)).toMatchObject([{ flags: TCP_RST | TCP_ACK, seq: 0, ack: 9 }]);
  });

  test("unknown tuple, RST: silence; SYN+FIN: silence", () => {
    const t = table();
    t.process(DEV, DST, tcpRepr({ srcPort: 1, dstPort: 2, flags: TCP_RST }), new Uint8Array(0), 0);
    t.process(DEV, DST, tcpRepr({ srcPort: 1, dstPort: 2, flags: TCP_SYN | TCP_FIN }), new Uint8Array(0), 0);
    expect(t.dispatch(0)).toEqual([]);
    expect(t.size).toBe(0);
  });

  test("half-open bound: the oldest half-open entry is evicted silently", () => {
    const t = table({ maxHalfOpen: 2 });
    for (const p of [1, 2, 3]) t.process(DEV, DST, { ...SYN, srcPort: p }, new Uint8Array(0), p);
    expect(t.halfOpenCount).toBe(2);
    expect(t.stats.halfOpenEvicted).toBe(1);
    expect(t.get(DEV, 1, DST, 443)).toBeUndefined();
    expect(t.get(DEV, 3, DST, 443)?.state).toBe("SYN-RECEIVED");
    expect(t.dispatch(3).length).toBe(2); // SYN-ACKs for 2 and 3 only
  });

  test("half-open bound with the drop policy: new SYNs are dropped", () => {
    const t = table({ maxHalfOpen: 2, synFloodPolicy: "drop" });
    for (const p of [1, 2, 3]) t.process(DEV, DST, { ...SYN, srcPort: p }, new Uint8Array(0), p);
    expect(t.stats.synDropped).toBe(1);
    expect(t.get(DEV, 1, DST, 443)?.state).toBe("SYN-RECEIVED");
    expect(t.get(DEV, 3, DST, 443)).toBeUndefined();
  });

  test("a SYN flood never grows the table past the bound", () => {
    const t = table({ maxHalfOpen: 64 });
    for (let p = 0; p < 10_000; p++) t.process(DEV, DST, { ...SYN, srcPort: p & 0xffff, seq: p }, new Uint8Array(0), p);
    expect(t.size).toBe(64);
    t.dispatch(10_000);
  });

  test("established connections do not count as half-open", () => {
    const t = table({ maxHalfOpen: 1 });
    handshake(t, 1);
    handshake(t, 2);
    expect(t.size).toBe(2);
    expect(t.halfOpenCount).toBe(0);
  });

  test("an application send wakes the connection for the next dispatch", () => {
    const t = table();
    handshake(t);
    const [ev] = t.takeEvents();
    expect(t.dispatch(0)).toEqual([]);
    expect(t.pollAt()).not.toBe(0); // may be a stale earlier time: a harmless extra scan
    ev!.conn.send(new TextEncoder().encode("hi"));
    expect(t.pollAt()).toBe(0);
    expect(t.dispatch(1).map((o) => o.segment.payload.length)).toEqual([2]);
  });

  test("timers fire through the table: RTO retransmission", () => {
    const t = table();
    handshake(t);
    const [ev] = t.takeEvents();
    ev!.conn.send(new TextEncoder().encode("hi"));
    t.dispatch(0);
    expect(t.pollAt()).toBe(1000);
    expect(t.dispatch(999)).toEqual([]);
    expect(t.dispatch(1000).length).toBe(1);
  });

  test("orderly close: closed event, entry removed after TIME-WAIT", () => {
    const t = table({ tcp: { ...SETTINGS, timeWaitMs: 100 } });
    const synAck = handshake(t);
    const [ev] = t.takeEvents();
    ev!.conn.close();
    const fin = t.dispatch(0);
    expect(fin[0]!.segment.repr.flags).toBe(TCP_FIN | TCP_ACK);
    t.process(DEV, DST, tcpRepr({ srcPort: 40000, dstPort: 443, seq: 1001, ack: synAck.seq + 2, flags: TCP_ACK | TCP_FIN, window: 100 }), new Uint8Array(0), 1);
    expect(t.dispatch(1).length).toBe(1);
    expect(ev!.conn.state).toBe("TIME-WAIT");
    expect(t.pollAt()).toBe(101);
    t.dispatch(101);
    expect(t.size).toBe(0);
    expect(t.takeEvents()).toMatchObject([{ type: "closed", reason: "closed" }]);
  });

  test("a newer SYN reuses a TIME-WAIT tuple (RFC 6191)", () => {
    const t = table();
    const synAck = handshake(t);
    const [ev] = t.takeEvents();
    ev!.conn.close();
    t.dispatch(0);
    t.process(DEV, DST, tcpRepr({ srcPort: 40000, dstPort: 443, seq: 1001, ack: synAck.seq + 2, flags: TCP_ACK | TCP_FIN, window: 100 }), new Uint8Array(0), 1);
    t.dispatch(1);
    t.process(DEV, DST, { ...SYN, seq: 50_000 }, new Uint8Array(0), 2);
    const c = t.get(DEV, 40000, DST, 443)!;
    expect(c.state).toBe("SYN-RECEIVED");
    expect(t.dispatch(2)[0]!.segment.repr).toMatchObject({ flags: TCP_SYN | TCP_ACK, ack: 50_001 });
  });

  test("IPv6 tuples use the IPv6 settings", () => {
    const t = table();
    t.process(DEV6, DST6, SYN, new Uint8Array(0), 0);
    const out = t.dispatch(0);
    expect(out[0]!.segment.repr.mss).toBe(1440);
    expect(out[0]!.src.length).toBe(16);
  });

  test("RST from the peer: closed event with reason reset", () => {
    const t = table();
    handshake(t);
    t.takeEvents();
    t.process(DEV, DST, tcpRepr({ srcPort: 40000, dstPort: 443, seq: 1001, flags: TCP_RST }), new Uint8Array(0), 5);
    t.dispatch(5);
    expect(t.takeEvents()).toMatchObject([{ type: "closed", reason: "reset" }]);
    expect(t.size).toBe(0);
  });

  test("garbage segments never throw and never grow the table beyond its bounds", () => {
    const t = table({ maxHalfOpen: 8, maxConnections: 16 });
    let x = 12345;
    const rnd = () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0);
    for (let i = 0; i < 20_000; i++) {
      const r: TcpRepr = tcpRepr({
        srcPort: rnd() & 7, dstPort: 443, seq: rnd(), ack: rnd(), flags: rnd() & 0xff, window: rnd() & 0xffff,
        windowScale: rnd() & 1 ? rnd() % 15 : null, mss: rnd() & 1 ? rnd() & 0xffff : null,
        timestamp: rnd() & 1 ? { tsval: rnd(), tsecr: rnd() } : null,
      });
      t.process(DEV, DST, r, new Uint8Array(rnd() & 63), i);
      if (i % 7 === 0) t.dispatch(i);
    }
    expect(t.size).toBeLessThanOrEqual(16);
  });

  test("a half-open connection holds no buffers; they are allocated with use and grow up to their capacity (issue 22: 20k SYNs took 126 -> 459 MB)", () => {
    const big64k = { ...SETTINGS, recvBufferSize: 65536, sendBufferSize: 65536 };
    const t = table({ tcp: big64k, tcpV6: big64k });
    const conns = [];
    for (let port = 41000; port < 41100; port++) {
      t.process(DEV, DST, { ...SYN, srcPort: port }, new Uint8Array(0), 0);
      conns.push(t.get(DEV, port, DST, 443)!);
    }
    t.dispatch(0);
    expect(t.halfOpenCount).toBe(100);
    for (const c of conns) {
      expect(c.state).toBe("SYN-RECEIVED");
      expect(c.recvBuf.allocated + c.sendBuf.allocated).toBe(0);
    }
    // established and carrying a little data: a small allocation, not the capacity
    const synAck = handshake(t, 40000);
    const c = t.get(DEV, 40000, DST, 443)!;
    expect(c.state).toBe("ESTABLISHED");
    expect(c.recvBuf.allocated).toBe(0);
    t.process(DEV, DST, tcpRepr({ srcPort: 40000, dstPort: 443, seq: 1001, ack: synAck.seq + 1, flags: TCP_ACK, window: 65535 }), new Uint8Array(100).fill(7), 0);
    expect(c.recvBuf.length).toBe(100);
    expect(c.recvBuf.allocated).toBe(4096);
    expect(c.recvBuf.capacity).toBe(65536);
    // more data than the allocation: it grows (doubling), the bytes read back in order
    const big = new Uint8Array(10_000).map((_, i) => i & 0xff);
    t.process(DEV, DST, tcpRepr({ srcPort: 40000, dstPort: 443, seq: 1101, ack: synAck.seq + 1, flags: TCP_ACK, window: 65535 }), big, 0);
    expect(c.recvBuf.length).toBe(10_100);
    expect(c.recvBuf.allocated).toBe(16_384);
    const read = c.recv(20_000);
    expect(read.length).toBe(10_100);
    expect(Array.from(read.subarray(100, 110))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  test("one source's SYN flood fills only its own half-open bound (its new SYNs dropped), never another source's", () => {
    const t = table({ maxHalfOpen: 64, maxHalfOpenPerSource: 16 });
    const OTHER = new Uint8Array([10, 0, 0, 3]);
    t.process(OTHER, DST, SYN, new Uint8Array(0), 0);
    const otherSynAck = t.dispatch(0)[0]!.segment.repr;
    for (let port = 20000; port < 20200; port++) t.process(DEV, DST, { ...SYN, srcPort: port }, new Uint8Array(0), 0);
    t.dispatch(0);
    expect(t.halfOpenCount).toBe(17);
    expect(t.stats.synDropped).toBe(184);
    expect(t.stats.halfOpenEvicted).toBe(0);
    expect(t.get(OTHER, 40000, DST, 443)?.state).toBe("SYN-RECEIVED");
    // the flood's first handshakes stay (they may complete); its later SYNs went (a real client retransmits them)
    expect(t.get(DEV, 20000, DST, 443)?.state).toBe("SYN-RECEIVED");
    expect(t.get(DEV, 20199, DST, 443)).toBeUndefined();
    // the other source completes its handshake
    t.process(OTHER, DST, tcpRepr({ srcPort: 40000, dstPort: 443, seq: 1001, ack: otherSynAck.seq + 1, flags: TCP_ACK, window: 65535 }), new Uint8Array(0), 0);
    expect(t.takeEvents().map((e) => [e.type, Array.from(e.tuple.remoteAddr).join(".")])).toEqual([["established", "10.0.0.3"]]);
    expect(t.halfOpenCount).toBe(16);
  });
});
