// The TCP connection table: the LISTEN side for every address and port.
//
//   1. A segment for a known 4-tuple goes to its connection.
//   2. A SYN for an unknown 4-tuple creates a connection in SYN-RECEIVED,
//      bounded: past `maxHalfOpen` the oldest half-open entry is evicted
//      (or the SYN dropped, by setting); past `maxConnections` SYNs drop.
//   3. Anything else for an unknown 4-tuple is answered with RST as RFC
//      9293 §3.10.7.1 says (never a RST to a RST).
//   4. A SYN for a connection in TIME-WAIT with a higher sequence number
//      (or timestamp) reopens it (RFC 6191).
//   5. `dispatch(now)` collects output from connections touched since the
//      last call and from those whose timers are due; CLOSED ones leave.
//   6. Events: "established" when a connection leaves SYN-RECEIVED for a
//      synchronized state, "closed" when an announced connection closes.
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, segmentLength, type TcpRepr } from "../wire/tcp.ts";
import {
  DEFAULT_TCP_SETTINGS, TcpConnection, emptyRetransmitStats,
  type TcpCloseReason, type TcpRetransmitStats, type TcpSegment, type TcpSettings,
} from "./connection.ts";
import { seqAdd, seqGt } from "./seq.ts";

export interface TcpTuple {
  /** The device's address (the connection's remote side). */
  remoteAddr: Uint8Array;
  remotePort: number;
  /** The address the device dialled (our local side). */
  localAddr: Uint8Array;
  localPort: number;
}

export type TcpTableEvent =
  | { type: "established"; conn: TcpConnection; tuple: TcpTuple }
  | { type: "closed"; conn: TcpConnection; tuple: TcpTuple; reason: TcpCloseReason };

/** A segment to send, from `src` (our side) to `dst`. */
export interface TcpOutput {
  src: Uint8Array;
  dst: Uint8Array;
  segment: TcpSegment;
}

export interface TcpTableSettings {
  /** Connection settings for IPv4 peers. */
  tcp: TcpSettings;
  /** Connection settings for IPv6 peers (MSS differs). */
  tcpV6: TcpSettings;
  /** Bound on connections in SYN-RECEIVED. */
  maxHalfOpen: number;
  /**
   * Bound on one source address's connections in SYN-RECEIVED: past it the
   * source's new SYNs are dropped (so one device's SYN flood cannot push out
   * another device's handshakes from the shared bound). Dropped, not the
   * oldest evicted: a client's burst of connects (a parallel download) then
   * retransmits its SYNs and gets through, where an evicted handshake would
   * meet a reset at its final ACK.
   */
  maxHalfOpenPerSource: number;
  maxConnections: number;
  /** At the half-open bound: evict the oldest half-open connection, or drop the new SYN. */
  synFloodPolicy: "evict-oldest" | "drop";
  /** RFC 6528 secret; the shell passes random bytes. */
  issSecret: Uint32Array;
}

export const DEFAULT_TABLE_SETTINGS: TcpTableSettings = {
  tcp: DEFAULT_TCP_SETTINGS,
  tcpV6: { ...DEFAULT_TCP_SETTINGS, mss: 1440, defaultPeerMss: 1220 },
  maxHalfOpen: 1024,
  maxHalfOpenPerSource: 128,
  maxConnections: 65536,
  synFloodPolicy: "evict-oldest",
  issSecret: new Uint32Array([0x9e3779b9, 0x7f4a7c15, 0x85ebca6b, 0xc2b2ae35]),
};

export interface TcpTableStats extends TcpRetransmitStats {
  synAccepted: number;
  synDropped: number;
  halfOpenEvicted: number;
  rstSent: number;
  segmentsIn: number;
  segmentsOut: number;
}

interface Entry {
  key: string;
  tuple: TcpTuple;
  conn: TcpConnection;
  announced: boolean;
}

function addrKey(a: Uint8Array): string {
  let s = "";
  for (let i = 0; i < a.length; i++) s += String.fromCharCode(a[i]!);
  return s;
}

export function tupleKey(remoteAddr: Uint8Array, remotePort: number, localAddr: Uint8Array, localPort: number): string {
  return addrKey(remoteAddr) + String.fromCharCode(remotePort, 0xffff, localPort) + addrKey(localAddr);
}

/** RFC 6528: ISN = M + F(4-tuple, secret); M is a 4 µs clock. F here is a keyed 32-bit mix (murmur3 finalizer rounds). */
export function initialSequenceNumber(t: TcpTuple, secret: Uint32Array, now: number): number {
  let h = secret[0]! ^ 0x811c9dc5;
  const mix = (x: number) => {
    h = Math.imul(h ^ x, 0x5bd1e995);
    h ^= h >>> 15;
  };
  for (let i = 0; i < t.remoteAddr.length; i++) mix(t.remoteAddr[i]!);
  for (let i = 0; i < t.localAddr.length; i++) mix(t.localAddr[i]! ^ (secret[1]! & 0xff00));
  mix(t.remotePort | (t.localPort << 16));
  mix(secret[2]!);
  mix(secret[3]!);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  const m = Math.floor(now * 250) % 0x100000000; // now is ms; one tick per 4 µs
  return (m + (h >>> 0)) >>> 0;
}

export class TcpTable {
  readonly settings: TcpTableSettings;
  readonly stats: TcpTableStats = {
    synAccepted: 0, synDropped: 0, halfOpenEvicted: 0, rstSent: 0, segmentsIn: 0, segmentsOut: 0,
    ...emptyRetransmitStats(),
  };
  private readonly conns = new Map<string, Entry>();
  /** SYN-RECEIVED entries, oldest first (Map keeps insertion order). */
  private readonly halfOpen = new Map<string, Entry>();
  /** The half-open entries of each source address, oldest first. */
  private readonly halfOpenBySource = new Map<string, Map<string, Entry>>();
  private readonly dirty = new Set<Entry>();
  private readonly pendingOut: TcpOutput[] = [];
  private readonly eventQueue: TcpTableEvent[] = [];
  private nextTimerAt: number | null = null;

  constructor(settings: Partial<TcpTableSettings> = {}) {
    this.settings = { ...DEFAULT_TABLE_SETTINGS, ...settings };
  }

  get size(): number {
    return this.conns.size;
  }

  get halfOpenCount(): number {
    return this.halfOpen.size;
  }

  get(remoteAddr: Uint8Array, remotePort: number, localAddr: Uint8Array, localPort: number): TcpConnection | undefined {
    return this.conns.get(tupleKey(remoteAddr, remotePort, localAddr, localPort))?.conn;
  }

  /** Drain events (established / closed) since the last call. */
  takeEvents(): TcpTableEvent[] {
    return this.eventQueue.splice(0, this.eventQueue.length);
  }

  /** Active open (client mode, used by simulations and an eventual upstream stack). */
  connect(localAddr: Uint8Array, localPort: number, remoteAddr: Uint8Array, remotePort: number, now: number): TcpConnection {
    const tuple: TcpTuple = { remoteAddr, remotePort, localAddr, localPort };
    const s = localAddr.length === 16 ? this.settings.tcpV6 : this.settings.tcp;
    const conn = TcpConnection.connect(localPort, remotePort, s, initialSequenceNumber(tuple, this.settings.issSecret, now), now);
    const e = this.add(tuple, conn);
    e.announced = false;
    return conn;
  }

  /**
   * Feed one parsed TCP segment from `src` (the device) to `dst`. Returns the
   * connection it reached (an existing one, or one a SYN created), so the
   * shell can serve that connection's application side without a second lookup.
   */
  process(src: Uint8Array, dst: Uint8Array, repr: TcpRepr, payload: Uint8Array, now: number): TcpConnection | undefined {
    this.stats.segmentsIn++;
    const key = tupleKey(src, repr.srcPort, dst, repr.dstPort);
    let e = this.conns.get(key);
    const f = repr.flags;
    if (e !== undefined && e.conn.state === "TIME-WAIT" && f & TCP_SYN && !(f & (TCP_ACK | TCP_RST))) {
      // RFC 6191: a new incarnation may reuse a TIME-WAIT 4-tuple if it is clearly newer.
      const c = e.conn;
      const newer = c.tsOk && repr.timestamp !== null ? seqGt(repr.timestamp.tsval, c.tsRecent) : seqGt(repr.seq, c.rcvNxt);
      if (newer) {
        this.remove(e);
        e = undefined;
      }
    }
    if (e === undefined) {
      this.listen(key, src, dst, repr, payload, now);
      return undefined;
    }
    const before = e.conn.state;
    e.conn.process({ repr, payload }, now);
    this.touched(e, before);
    return e.conn;
  }

  /** LISTEN (RFC 9293 §3.10.7.2) and CLOSED (§3.10.7.1) for unknown 4-tuples. */
  private listen(key: string, src: Uint8Array, dst: Uint8Array, repr: TcpRepr, payload: Uint8Array, now: number): void {
    const f = repr.flags;
    if (f & TCP_RST) return;
    if (f & TCP_ACK) {
      this.sendRst(dst, src, repr.dstPort, repr.srcPort, repr.ack, 0, TCP_RST);
      return;
    }
    if (!(f & TCP_SYN) || f & TCP_FIN) {
      if (f & TCP_SYN) return; // SYN+FIN: a scan, drop
      this.sendRst(dst, src, repr.dstPort, repr.srcPort, 0, seqAdd(repr.seq, segmentLength(f, payload.length)), TCP_RST | TCP_ACK);
      return;
    }
    // A SYN.
    if (this.conns.size >= this.settings.maxConnections) {
      this.stats.synDropped++;
      return;
    }
    const mine = this.halfOpenBySource.get(sourceKey(src));
    if (mine !== undefined && mine.size >= this.settings.maxHalfOpenPerSource) {
      this.stats.synDropped++;
      return;
    }
    if (this.halfOpen.size >= this.settings.maxHalfOpen) {
      if (this.settings.synFloodPolicy === "drop") {
        this.stats.synDropped++;
        return;
      }
      this.evictHalfOpen(this.halfOpen.values().next().value as Entry);
    }
    const tuple: TcpTuple = { remoteAddr: src, remotePort: repr.srcPort, localAddr: dst, localPort: repr.dstPort };
    const s = src.length === 16 ? this.settings.tcpV6 : this.settings.tcp;
    const conn = TcpConnection.accept(repr, s, initialSequenceNumber(tuple, this.settings.issSecret, now), now);
    const e = this.add(tuple, conn, key);
    this.halfOpen.set(e.key, e);
    const sk = sourceKey(src);
    let bySource = this.halfOpenBySource.get(sk);
    if (bySource === undefined) this.halfOpenBySource.set(sk, (bySource = new Map()));
    bySource.set(e.key, e);
    this.stats.synAccepted++;
    this.dirty.add(e);
  }

  private add(tuple: TcpTuple, conn: TcpConnection, key?: string): Entry {
    const k = key ?? tupleKey(tuple.remoteAddr, tuple.remotePort, tuple.localAddr, tuple.localPort);
    const e: Entry = { key: k, tuple, conn, announced: false };
    this.conns.set(k, e);
    conn.onWake = () => this.dirty.add(e);
    conn.rtxSink = this.stats;
    this.dirty.add(e);
    return e;
  }

  private evictHalfOpen(e: Entry): void {
    e.conn.evict();
    this.remove(e);
    this.stats.halfOpenEvicted++;
  }

  /** No longer half-open (established, closed, evicted). */
  private leaveHalfOpen(e: Entry): void {
    if (!this.halfOpen.delete(e.key)) return;
    const sk = sourceKey(e.tuple.remoteAddr);
    const bySource = this.halfOpenBySource.get(sk);
    bySource?.delete(e.key);
    if (bySource?.size === 0) this.halfOpenBySource.delete(sk);
  }

  private remove(e: Entry): void {
    this.conns.delete(e.key);
    this.leaveHalfOpen(e);
    this.dirty.delete(e);
    e.conn.onWake = null;
    e.conn.rtxSink = null;
  }

  private touched(e: Entry, before: string): void {
    const c = e.conn;
    if (before === "SYN-RECEIVED" && c.state !== "SYN-RECEIVED") {
      this.leaveHalfOpen(e);
      if (c.state !== "CLOSED") {
        e.announced = true;
        this.eventQueue.push({ type: "established", conn: c, tuple: e.tuple });
      }
    } else if (before === "SYN-SENT" && c.state !== "SYN-SENT" && c.state !== "CLOSED" && !e.announced) {
      e.announced = true;
      this.eventQueue.push({ type: "established", conn: c, tuple: e.tuple });
    }
    this.dirty.add(e);
  }

  private sendRst(src: Uint8Array, dst: Uint8Array, srcPort: number, dstPort: number, seq: number, ack: number, flags: number): void {
    this.stats.rstSent++;
    this.pendingOut.push({
      src,
      dst,
      segment: {
        repr: {
          srcPort, dstPort, seq: seq >>> 0, ack: ack >>> 0, flags, window: 0, urgent: 0,
          mss: null, windowScale: null, sackPermitted: false, sackBlocks: null, timestamp: null,
        },
        payload: new Uint8Array(0),
      },
    });
  }

  /** The earliest time dispatch() is needed, or null. */
  pollAt(): number | null {
    if (this.pendingOut.length > 0 || this.dirty.size > 0) return 0;
    return this.nextTimerAt;
  }

  /** Output from every connection that has something due at `now`. */
  dispatch(now: number): TcpOutput[] {
    const out = this.pendingOut.splice(0, this.pendingOut.length);
    const fullScan = this.nextTimerAt !== null && now >= this.nextTimerAt;
    const work: Iterable<Entry> = fullScan ? Array.from(this.conns.values()) : Array.from(this.dirty);
    this.dirty.clear();
    if (fullScan) this.nextTimerAt = null;
    for (const e of work) {
      if (this.conns.get(e.key) !== e) continue; // removed earlier in this pass
      const c = e.conn;
      const before = c.state;
      const segs = c.dispatch(now);
      for (const segment of segs) out.push({ src: e.tuple.localAddr, dst: e.tuple.remoteAddr, segment });
      if (before !== c.state) this.touched(e, before);
      this.dirty.delete(e);
      if (c.state === "CLOSED") {
        const rest = c.dispatch(now); // a RST queued by a timer abort
        for (const segment of rest) out.push({ src: e.tuple.localAddr, dst: e.tuple.remoteAddr, segment });
        if (e.announced) this.eventQueue.push({ type: "closed", conn: c, tuple: e.tuple, reason: c.closeReason ?? "closed" });
        this.remove(e);
        continue;
      }
      const t = c.pollAt();
      if (t !== null && (this.nextTimerAt === null || t < this.nextTimerAt)) this.nextTimerAt = t;
    }
    this.stats.segmentsOut += out.length;
    return out;
  }
}

/** A source address as a map key. */
function sourceKey(a: Uint8Array): string {
  return String.fromCharCode(...a);
}
