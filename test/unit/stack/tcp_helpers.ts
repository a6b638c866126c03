// Helpers for packet-by-packet TCP tests (smoltcp style): template segments
// with overrides, connections built straight into a state, and assertions
// on what dispatch() sends, silence included.
import { expect } from "bun:test";
import { TCP_ACK, TCP_FIN, TCP_SYN, flagString, tcpRepr, type TcpRepr } from "../../../app/net/stack/wire/tcp.ts";
import { DEFAULT_TCP_SETTINGS, TcpConnection, type TcpSegment, type TcpSettings } from "../../../app/net/stack/tcp/connection.ts";

export const LOCAL_PORT = 443;
export const REMOTE_PORT = 49152;
export const LOCAL_SEQ = 10_000;
export const REMOTE_SEQ = 20_000;
export const BUF = 8192;

export const SETTINGS: TcpSettings = {
  ...DEFAULT_TCP_SETTINGS,
  sendBufferSize: BUF,
  recvBufferSize: BUF,
  mss: 1460,
  windowScaling: true,
  sack: true,
  timestamps: true,
  rtoInitialMs: 1000,
  rtoMinMs: 200,
  // The packet-level tests check RFC 5681 / 6582 / 6675 window arithmetic
  // and RTO timing segment by segment: NewReno without PRR or tail loss
  // probes (CUBIC, PRR and TLP have their own tests).
  congestionControl: "newreno",
  prr: false,
  rackTlp: false,
};

/** A SYN from the peer, no options unless overridden. */
export const SYN: TcpRepr = tcpRepr({
  srcPort: REMOTE_PORT,
  dstPort: LOCAL_PORT,
  seq: REMOTE_SEQ,
  flags: TCP_SYN,
  window: 65535,
  mss: 1460,
});

/** A segment from the peer once established. */
export const SEND_TEMPL: TcpRepr = tcpRepr({
  srcPort: REMOTE_PORT,
  dstPort: LOCAL_PORT,
  seq: REMOTE_SEQ + 1,
  ack: LOCAL_SEQ + 1,
  flags: TCP_ACK,
  window: 65535,
});

export function seg(over: Partial<TcpRepr> = {}, payload: Uint8Array | string = new Uint8Array(0)): TcpSegment {
  const p = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  return { repr: { ...SEND_TEMPL, ...over }, payload: p };
}

export function bytes(n: number, seed = 0): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + 11) & 0xff;
  return b;
}

export function text(b: Uint8Array): string {
  return new TextDecoder().decode(b);
}

export interface Built {
  c: TcpConnection;
}

/** SYN-RECEIVED, SYN-ACK already sent at t=0. */
export function synReceived(settings: Partial<TcpSettings> = {}, syn: Partial<TcpRepr> = {}): TcpConnection {
  const c = TcpConnection.accept({ ...SYN, ...syn }, { ...SETTINGS, ...settings }, LOCAL_SEQ, 0);
  const out = c.dispatch(0);
  expect(out.length).toBe(1);
  expect(out[0]!.repr.flags).toBe(TCP_SYN | TCP_ACK);
  return c;
}

/** ESTABLISHED after a plain handshake (no WS/SACK/TS unless the SYN carries them). */
export function established(settings: Partial<TcpSettings> = {}, syn: Partial<TcpRepr> = {}): TcpConnection {
  const c = synReceived(settings, syn);
  c.process(seg({ timestamp: syn.timestamp ? { tsval: syn.timestamp.tsval + 1, tsecr: 0 } : null }), 0);
  expect(c.state).toBe("ESTABLISHED");
  expectSilence(c, 0);
  return c;
}

/** FIN-WAIT-1: we closed; our FIN (seq LOCAL_SEQ+1) is out, not acknowledged. */
export function finWait1(settings: Partial<TcpSettings> = {}): TcpConnection {
  const c = established(settings);
  c.close();
  expectSegments(c, 0, [{ flags: TCP_FIN | TCP_ACK, seq: LOCAL_SEQ + 1, ack: REMOTE_SEQ + 1 }]);
  expect(c.state).toBe("FIN-WAIT-1");
  return c;
}

export function finWait2(settings: Partial<TcpSettings> = {}): TcpConnection {
  const c = finWait1(settings);
  c.process(seg({ ack: LOCAL_SEQ + 2 }), 0);
  expect(c.state).toBe("FIN-WAIT-2");
  expectSilence(c, 0);
  return c;
}

export function closeWait(settings: Partial<TcpSettings> = {}): TcpConnection {
  const c = established(settings);
  c.process(seg({ flags: TCP_ACK | TCP_FIN }), 0);
  expect(c.state).toBe("CLOSE-WAIT");
  expectSegments(c, 0, [{ flags: TCP_ACK, seq: LOCAL_SEQ + 1, ack: REMOTE_SEQ + 2 }]);
  return c;
}

export function lastAck(settings: Partial<TcpSettings> = {}): TcpConnection {
  const c = closeWait(settings);
  c.close();
  expect(c.state).toBe("LAST-ACK");
  expectSegments(c, 0, [{ flags: TCP_FIN | TCP_ACK, seq: LOCAL_SEQ + 1, ack: REMOTE_SEQ + 2 }]);
  return c;
}

export function timeWait(settings: Partial<TcpSettings> = {}): TcpConnection {
  const c = finWait2(settings);
  c.process(seg({ flags: TCP_ACK | TCP_FIN, ack: LOCAL_SEQ + 2 }), 0);
  expect(c.state).toBe("TIME-WAIT");
  expectSegments(c, 0, [{ flags: TCP_ACK, seq: LOCAL_SEQ + 2, ack: REMOTE_SEQ + 2 }]);
  return c;
}

export function closing(settings: Partial<TcpSettings> = {}): TcpConnection {
  const c = finWait1(settings);
  c.process(seg({ flags: TCP_ACK | TCP_FIN, ack: LOCAL_SEQ + 1 }), 0);
  expect(c.state).toBe("CLOSING");
  expectSegments(c, 0, [{ flags: TCP_ACK, seq: LOCAL_SEQ + 2, ack: REMOTE_SEQ + 2 }]);
  return c;
}

type Expect = Partial<TcpRepr> & { payload?: Uint8Array | string; len?: number };

function describeSeg(s: TcpSegment): string {
  return `${flagString(s.repr.flags)} seq=${s.repr.seq} ack=${s.repr.ack} win=${s.repr.window} len=${s.payload.length}`;
}

/** dispatch(now) must send exactly these segments (fields given are compared). */
export function expectSegments(c: TcpConnection, now: number, want: Expect[]): TcpSegment[] {
  const out = c.dispatch(now);
  const got = out.map(describeSeg);
  expect({ count: out.length, got }).toMatchObject({ count: want.length });
  want.forEach((w, i) => {
    const s = out[i]!;
    const { payload, len, ...fields } = w;
    expect(s.repr).toMatchObject(fields);
    if (payload !== undefined) {
      const p = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
      expect(Array.from(s.payload)).toEqual(Array.from(p));
    }
    if (len !== undefined) expect(s.payload.length).toBe(len);
  });
  return out;
}

/** dispatch(now) sends nothing. */
export function expectSilence(c: TcpConnection, now: number): void {
  const out = c.dispatch(now);
  expect(out.map(describeSeg)).toEqual([]);
}
