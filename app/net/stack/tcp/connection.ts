// One TCP connection as a sans-IO state machine (RFC 9293), in the shape of
// smoltcp's socket: `process(segment, now)` in, `dispatch(now)` out,
// `pollAt()` says when it next needs a call. The application side is
// `send`, `recv`, `close` (half-close), `abort`, `setRecvWindowLimit`.
//
// Stages of `process`, in RFC 9293 §3.10.7.4 order:
//   1. SYN-SENT is handled on its own (§3.10.7.3).
//   2. sequence acceptability (+ PAWS, RFC 7323 §5) — else ACK and drop;
//   3. RST (RFC 5961 §3: exact match resets, in-window gets a challenge ACK);
//   4. SYN in a synchronized state: challenge ACK (RFC 5961 §4);
//   5. ACK: SYN-RECEIVED → ESTABLISHED, SND.UNA advance, RTT (RFC 6298),
//      the SACK scoreboard (RFC 2018), congestion control (RFC 5681;
//      SACK-based loss recovery RFC 6675 when SACK was negotiated,
//      NewReno RFC 6582 otherwise), window update;
//   6. text into the receive ring (out of order into the assembler);
//   7. FIN (possibly remembered until the gap before it fills).
//
// Stages of `dispatch`: timers (RTO, persist, keepalive, idle, TIME-WAIT),
// then a queued RST, SYN / SYN-ACK, a fast retransmission (NewReno) or, in
// SACK loss recovery, holes and new data while pipe < cwnd (RFC 6675 §5),
// new data and FIN within min(cwnd, peer window), then a bare ACK if owed.

import {
  TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_MAX_WINDOW_SHIFT,
  segmentLength, type TcpRepr, type TcpTimestamp,
} from "../wire/tcp.ts";
import { Assembler, RingBuffer } from "./buffer.ts";
import { firstLostHole, mergeSackBlocks, pruneScoreboard, sackLostBoundary, sackPipe, sackedBytes } from "./scoreboard.ts";
import { seqAdd, seqDiff, seqGe, seqGt, seqLe, seqLt, seqMax } from "./seq.ts";
import { TailLossProbe, probeTimeout } from "./tail-loss-probe.ts";
import { RetransmissionLog } from "./retransmission-log.ts";
import { RackOriginals } from "./rack.ts";
import { RttEstimator } from "./rtt.ts";
export { CLOCK_GRANULARITY_MS } from "./rtt.ts";
import { createCongestionController, type CongestionAlgorithm, type CongestionController } from "./congestion/index.ts";

export type TcpState =
  | "CLOSED"
  | "LISTEN"
  | "SYN-SENT"
  | "SYN-RECEIVED"
  | "ESTABLISHED"
  | "FIN-WAIT-1"
  | "FIN-WAIT-2"
  | "CLOSING"
  | "TIME-WAIT"
  | "CLOSE-WAIT"
  | "LAST-ACK";

export interface TcpSegment {
  repr: TcpRepr;
  /** For data from dispatch(): a view of the send ring, valid until the next send() or process(). */
  payload: Uint8Array;
}

/** RFC 9293 §3.7.1: default send MSS when the peer sends no MSS option (IPv4). */
export const DEFAULT_MSS_V4 = 536;
/** RFC 9293 §3.7.1 / RFC 8200 §5: IPv6 minimum MTU 1280 - 60. */
export const DEFAULT_MSS_V6 = 1220;
/** RFC 6298 (2.1): initial RTO of one second. */
export const RFC6298_INITIAL_RTO_MS = 1000;
/** RFC 6298 (2.4): RTO minimum of one second (configurable lower, as Linux does). */
export const RFC6298_MIN_RTO_MS = 1000;
/** RFC 6298 (2.5): a maximum may be placed on RTO provided it is at least 60 s. */
export const RFC6298_MAX_RTO_MS = 60_000;
/** RFC 5681 §3.2: fast retransmit after the third duplicate ACK (RFC 6675 DupThresh). */
export const DUPACK_THRESHOLD = 3;
/**
 * Upper bound on the adaptive duplicate threshold, in segments (Linux's
 * tcp_max_reordering is 300; our send buffers hold fewer segments).
 */
export const MAX_REORDERING = 127;
/** RFC 2018 §4: SACK blocks we remember as "most recently reported". */
const MAX_SACK_BLOCKS = 4;
/**
 * Out-of-order ACKs built while one batch of segments is processed, before
 * dispatch() sends them; past this, the batch's later ones collapse into one.
 */
const MAX_IMMEDIATE_ACKS = 64;
export { RFC6928_IW_SEGMENTS } from "./congestion/index.ts";
/** RFC 9293 §3.4.2: MSL, two minutes in the RFC; Linux uses 60 s for 2*MSL. Configurable. */
export const MSL_MS = 30_000;
/** RFC 1122 §4.2.3.6: keepalive idle default no less than two hours. */
export const RFC1122_KEEPALIVE_IDLE_MS = 7_200_000;
/**
 * PAWS (RFC 7323 §5.3) accepts a TSval this many ticks behind TS.Recent: a
 * retransmission that fills the hole at RCV.NXT moves TS.Recent past every
 * original still in flight, and on a reordering path those arrive after it
 * (by a few ms) and would be dropped, turning reordering into loss. An old
 * duplicate from a previous sequence wrap is far older than this.
 */
export const PAWS_REORDER_TICKS = 64;
/** RFC 7323 §2.3: option bytes taken by timestamps on every segment (NOP NOP TS). */
export const TIMESTAMP_OPTION_LEN = 12;

export interface TcpSettings {
  sendBufferSize: number;
  recvBufferSize: number;
  /** The MSS we advertise (link MTU minus IP and TCP headers). */
  mss: number;
  /** Send MSS when the peer sends none: DEFAULT_MSS_V4 or DEFAULT_MSS_V6. */
  defaultPeerMss: number;
  windowScaling: boolean;
  sack: boolean;
  timestamps: boolean;
  rtoInitialMs: number;
  rtoMinMs: number;
  rtoMaxMs: number;
  /** Consecutive RTO expiries before the connection is given up (reset). */
  maxRetransmissions: number;
  /** SYN-ACK (or SYN) retransmissions before a half-open connection is dropped. */
  synRetries: number;
  /** 2*MSL. */
  timeWaitMs: number;
  /** null: keepalive off. */
  keepaliveIdleMs: number | null;
  keepaliveIntervalMs: number;
  keepaliveProbes: number;
  /** null: no idle timeout. Time with nothing received before the connection is reset. */
  idleTimeoutMs: number | null;
  /** 0: ACK every data segment at once. Otherwise ACK every second full segment or after this delay. */
  ackDelayMs: number;
  /** Bound on out-of-order ranges held in the receive assembler. */
  maxOutOfOrderRanges: number;
  /** The congestion controller (congestion/). */
  congestionControl: CongestionAlgorithm;
  /** The window during SACK loss recovery by PRR (RFC 6937) instead of RFC 6675's cwnd = ssthresh. */
  prr: boolean;
  /** RACK-TLP (RFC 8985) on SACK connections: tail loss probes, and lost retransmissions found by time. */
  rackTlp: boolean;
  /**
   * RACK's time rule for original segments too (rack.ts; needs rackTlp). Off:
   * on the 5%-loss bench it cut the gateway's sending 5x (more recoveries,
   * each cutting the window), though it avoids RTOs in simulation.
   */
  rackOriginals: boolean;
}

export const DEFAULT_TCP_SETTINGS: TcpSettings = {
  sendBufferSize: 256 * 1024,
  recvBufferSize: 256 * 1024,
  mss: 1460,
  defaultPeerMss: DEFAULT_MSS_V4,
  windowScaling: true,
  sack: true,
  timestamps: true,
  rtoInitialMs: RFC6298_INITIAL_RTO_MS,
  rtoMinMs: RFC6298_MIN_RTO_MS,
  rtoMaxMs: RFC6298_MAX_RTO_MS,
  maxRetransmissions: 15,
  synRetries: 5,
  timeWaitMs: 2 * MSL_MS,
  keepaliveIdleMs: null,
  keepaliveIntervalMs: 75_000,
  keepaliveProbes: 9,
  idleTimeoutMs: null,
  ackDelayMs: 0,
  maxOutOfOrderRanges: 16,
  congestionControl: "cubic",
  prr: true,
  rackTlp: true,
  rackOriginals: false,
};

/** Retransmission counters, per connection and summed in the table. */
export interface TcpRetransmitStats {
  /** Segments sent again (RTO, fast retransmit, SACK hole, go-back-N). */
  retransmittedSegments: number;
  /** Sequence space sent again (payload bytes, FIN counts one). */
  retransmittedBytes: number;
  /** RTO expiries on data (not SYN, not window probes). */
  retransmitTimeouts: number;
  /** Entries into fast recovery (NewReno or RFC 6675). */
  fastRecoveries: number;
  /** Recoveries (fast or after RTO) found spurious by timestamps and undone (RFC 3522 / RFC 4015). */
  spuriousRecoveries: number;
}

export function emptyRetransmitStats(): TcpRetransmitStats {
  return { retransmittedSegments: 0, retransmittedBytes: 0, retransmitTimeouts: 0, fastRecoveries: 0, spuriousRecoveries: 0 };
}

/** Why a connection reached CLOSED. */
export type TcpCloseReason =
  | "closed" // orderly: both FINs exchanged and acknowledged
  | "reset" // peer sent an acceptable RST
  | "aborted" // application called abort()
  | "refused" // RST in answer to our SYN
  | "retransmit-timeout"
  | "syn-timeout"
  | "keepalive-timeout"
  | "idle-timeout"
  | "evicted"; // dropped by the table (SYN flood bound)

function windowShiftFor(bufferSize: number): number {
  let s = 0;
  while (s < TCP_MAX_WINDOW_SHIFT && bufferSize >> s > 0xffff) s++;
  return s;
}

export class TcpConnection {
  state: TcpState = "CLOSED";
  closeReason: TcpCloseReason | null = null;
  readonly settings: TcpSettings;
  readonly localPort: number;
  readonly remotePort: number;

  // RFC 9293 §3.3.1 send sequence variables.
  iss = 0;
  sndUna = 0;
  sndNxt = 0;
  /** Highest sequence number sent + 1 (SND.NXT can be pulled back by a timeout). */
  sndMax = 0;
  /** Peer's window, scaled, in bytes. */
  sndWnd = 0;
  sndWl1 = 0;
  sndWl2 = 0;
  // Receive sequence variables.
  irs = 0;
  rcvNxt = 0;
  /** Right edge of the window last advertised; never moved left (RFC 9293 §3.8.6.2.2). */
  rcvAdvRight = 0;

  // Negotiated options.
  /** Shift applied to the peer's window field (peer's WS option). */
  sndShift = 0;
  /** Shift we apply to our window field (our WS option, if the peer offered one). */
  rcvShift = 0;
  /** Payload bytes per segment (peer MSS, less timestamp option bytes). */
  sendMss = DEFAULT_MSS_V4;
  /** Window scaling in use (both sides sent WS). */
  wsOk = false;
  sackOk = false;
  tsOk = false;
  tsRecent = 0;
  lastAckSent = 0;

  // Buffers.
  readonly sendBuf: RingBuffer;
  /** Sequence number of sendBuf's first byte. */
  bufSeq = 0;
  /** close() was called: a FIN follows the queued data. */
  finQueued = false;
  readonly recvBuf: RingBuffer;
  readonly assembler: Assembler;
  /** Sequence number of the peer's FIN, once seen (possibly ahead of RCV.NXT). */
  remoteFinSeq: number | null = null;
  /** The peer's FIN has been consumed in order. */
  remoteFinReceived = false;
  recvWindowLimit: number;

  // Congestion control: the window is the controller's (congestion/); loss
  // detection and recovery state (RFC 6582, RFC 6675) are the connection's.
  readonly cc: CongestionController;
  dupAcks = 0;
  inRecovery = false;
  recover = 0;
  private fastRetransmitPending = false;

  // SACK-based loss recovery (RFC 6675), used when sackOk.
  /**
   * The scoreboard: SACKed ranges above SND.UNA as flattened [start, end)
   * sequence numbers, sorted, disjoint, non-adjacent.
   */
  readonly scoreboard: number[] = [];
  /** RFC 6675 HighRxt: retransmissions continue from here. */
  highRxt = 0;
  /** "fast": RFC 6675 recovery entered on DupThresh / IsLost; "rto": after a timeout. */
  recoveryKind: "fast" | "rto" | null = null;
  /** Un-SACKed sequence below this is taken as lost (the entry segment; everything at RTO). */
  private lostBelow = 0;
  /** This recovery's retransmissions, and which were lost again (retransmission-log.ts). */
  private readonly rtxLog = new RetransmissionLog();
  /** RACK's time rule for original transmissions (rack.ts), with RACK-TLP on. */
  private readonly rack = new RackOriginals();
  /**
   * RFC 8985 RACK.reordering_seen: an original filled a hole after data
   * above it arrived, or a recovery proved spurious. Until then reo_wnd is
   * 0 in recovery and once DupThresh segments are SACKed.
   */
  private reorderingSeen = false;
  /** RFC 8985 RACK.reo_wnd_mult: grows with each recovery found spurious. */
  private reoWndMult = 1;
  /** TSval of the recovery's first retransmission. */
  private firstRtxTs: number | null = null;
  /** SND.UNA when the recovery began. */
  private recoveryUna = 0;
  /** RFC 6675 §5 (4.3): the first retransmission on entry goes out whatever pipe says. */
  private entryRtxPending = false;
  /**
   * RFC 6675 DupThresh, raised when the peer shows reordering (a hole filled
   * by an original, never retransmitted, segment after data above it was
   * SACKed), as Linux does with tp->reordering (cf. RFC 4653).
   */
  dupThresh = DUPACK_THRESHOLD;
  readonly rtxStats: TcpRetransmitStats = emptyRetransmitStats();
  /** Set by the owner (the table) to sum counters across connections. */
  rtxSink: TcpRetransmitStats | null = null;
  /** RFC 2018 §4: a sequence number inside each recently reported block, most recent first. */
  private recentSack: number[] = [];

  /** RTT and RTO (RFC 6298, rtt.ts). */
  readonly rtt: RttEstimator;
  /** When new data last went out (the controller hears of idle periods). */
  private lastSendAt: number | null = null;
  /** Consecutive RTO expiries without progress. */
  retransmits = 0;
  rtxExpiresAt: number | null = null;
  private probePending = false;
  /** Tail loss probe bookkeeping (tail-loss-probe.ts). */
  private readonly tlp = new TailLossProbe();

  // Other timers.
  timeWaitExpiresAt: number | null = null;
  lastRecvAt: number;
  private keepaliveSent = 0;
  private keepalivePending = false;
  private ackPending = false;
  private ackDueAt: number | null = null;
  private unackedSegments = 0;
  private pendingRst: TcpSegment | null = null;
  /**
   * ACKs owed per out-of-order segment (RFC 5681 §4.2), built as each one is
   * processed: the link hands over packets in batches and dispatch() runs
   * once per batch, but a sender counts duplicate ACKs and reads each one's
   * SACK blocks, so a batch must not collapse them into one.
   */
  private immediateAcks: TcpSegment[] = [];
  /** Set while one segment is processed: it owes an immediate ACK, built once its processing ends. */
  private segmentAckOwed = false;
  /**
   * RFC 2883 D-SACK: the duplicate data the next ACK reports first. A sender
   * learns from it that a retransmission was spurious (reordering, not
   * loss), undoes its window reduction and raises its reordering threshold.
   */
  private dsack: [number, number] | null = null;
  /** Set by the owner (the table): called when an application call may have made output due. */
  onWake: (() => void) | null = null;

  constructor(localPort: number, remotePort: number, settings: TcpSettings, now: number) {
    this.settings = settings;
    this.localPort = localPort;
    this.remotePort = remotePort;
    this.sendBuf = new RingBuffer(settings.sendBufferSize);
    this.recvBuf = new RingBuffer(settings.recvBufferSize);
    this.assembler = new Assembler(settings.maxOutOfOrderRanges);
    this.recvWindowLimit = settings.recvBufferSize;
    this.rtt = new RttEstimator(settings);
    this.lastRecvAt = now;
    this.cc = createCongestionController(settings.congestionControl, settings.prr);
  }

  /** When the RACK timer next looks for a lost segment (an original or a retransmission). */
  get rackAt(): number | null {
    const a = this.rtxLog.rackAt, b = this.rack.rackAt;
    return a === null ? b : b === null ? a : Math.min(a, b);
  }

  get srtt(): number | null {
    return this.rtt.srtt;
  }

  get rttvar(): number {
    return this.rtt.rttvar;
  }

  get minRtt(): number | null {
    return this.rtt.minRtt;
  }

  get rto(): number {
    return this.rtt.rto;
  }

  /** When the tail loss probe is due. */
  get ptoAt(): number | null {
    return this.tlp.at;
  }

  get cwnd(): number {
    return this.cc.cwnd;
  }

  get ssthresh(): number {
    return this.cc.ssthresh;
  }

  set ssthresh(bytes: number) {
    this.cc.ssthresh = bytes;
  }

  // ---------------------------------------------------------------- opening

  /**
   * Passive open from a SYN that a listener (the table) accepted: the
   * connection starts in SYN-RECEIVED with the peer's options negotiated.
   */
  static accept(syn: TcpRepr, settings: TcpSettings, iss: number, now: number): TcpConnection {
    const c = new TcpConnection(syn.dstPort, syn.srcPort, settings, now);
    c.state = "SYN-RECEIVED";
    c.irs = syn.seq >>> 0;
    c.rcvNxt = seqAdd(syn.seq, 1);
    c.initSend(iss);
    c.negotiate(syn);
    c.sndWnd = syn.window; // RFC 7323 §2.2: the window in a SYN is never scaled
    c.sndWl1 = syn.seq >>> 0;
    c.sndWl2 = iss;
    c.rcvAdvRight = c.rcvNxt;
    if (c.tsOk && syn.timestamp) c.tsRecent = syn.timestamp.tsval;
    c.lastAckSent = c.rcvNxt;
    return c;
  }

  /** Active open (client mode): SYN-SENT; the SYN goes out on the next dispatch. */
  static connect(localPort: number, remotePort: number, settings: TcpSettings, iss: number, now: number): TcpConnection {
    const c = new TcpConnection(localPort, remotePort, settings, now);
    c.state = "SYN-SENT";
    c.initSend(iss);
    c.rcvShift = settings.windowScaling ? windowShiftFor(settings.recvBufferSize) : 0;
    c.sackOk = settings.sack;
    c.tsOk = settings.timestamps;
    return c;
  }

  private initSend(iss: number): void {
    this.iss = iss >>> 0;
    this.sndUna = this.iss;
    this.sndNxt = this.iss;
    this.sndMax = this.iss;
    this.bufSeq = seqAdd(this.iss, 1);
    this.recover = this.iss;
  }

  /** Adopt the options the peer offered in its SYN (or SYN-ACK), as far as we allow them. */
  private negotiate(syn: TcpRepr): void {
    const s = this.settings;
    if (s.windowScaling && syn.windowScale !== null) {
      this.wsOk = true;
      this.sndShift = syn.windowScale;
      this.rcvShift = windowShiftFor(s.recvBufferSize);
    } else {
      this.sndShift = 0;
      this.rcvShift = 0;
    }
    this.sackOk = s.sack && syn.sackPermitted;
    this.tsOk = s.timestamps && syn.timestamp !== null;
    const peerMss = syn.mss !== null && syn.mss > 0 ? syn.mss : s.defaultPeerMss;
    this.sendMss = Math.max(1, Math.min(peerMss, s.mss) - (this.tsOk ? TIMESTAMP_OPTION_LEN : 0));
    this.cc.start(this.sendMss);
  }

  // ---------------------------------------------------------- application

  /** Queue bytes for sending; returns how many the bounded send buffer took. */
  send(data: Uint8Array): number {
    if (!this.canSend) return 0;
    const n = this.sendBuf.enqueue(data);
    if (n > 0) this.onWake?.();
    return n;
  }

  /** Room left in the send buffer. */
  get sendCapacity(): number {
    return this.canSend ? this.sendBuf.free : 0;
  }

  /** Bytes queued and not yet acknowledged. */
  get sendQueued(): number {
    return this.sendBuf.length;
  }

  /** True in states where the application may still queue data. */
  get canSend(): boolean {
    return (
      !this.finQueued &&
      (this.state === "ESTABLISHED" || this.state === "CLOSE-WAIT" ||
        this.state === "SYN-RECEIVED" || this.state === "SYN-SENT")
    );
  }

  /** In-order bytes available to recv(). */
  get recvQueued(): number {
    return this.recvBuf.length;
  }

  /** The peer has closed its side and every byte has been read. */
  get recvEnded(): boolean {
    return this.recvBuf.length === 0 && (this.remoteFinReceived || this.state === "CLOSED");
  }

  /** Pull up to `max` in-order bytes. Reading opens the window; a window update may follow. */
  recv(max = Infinity): Uint8Array {
    const n = Math.min(max, this.recvBuf.length);
    if (n === 0) return new Uint8Array(0);
    const out = this.recvBuf.peek(0, n);
    this.recvBuf.dequeue(n);
    this.maybeWindowUpdate();
    return out;
  }

  /**
   * Cap the receive window (backpressure from a slow consumer). The
   * advertised right edge never moves left; the cap takes effect as data
   * arrives.
   */
  setRecvWindowLimit(bytes: number): void {
    this.recvWindowLimit = Math.max(0, Math.min(bytes, this.settings.recvBufferSize));
    this.maybeWindowUpdate();
  }

  /** Half-close: a FIN follows whatever is queued. */
  close(): void {
    this.onWake?.();
    switch (this.state) {
      case "SYN-SENT":
        this.enterClosed("closed");
        return;
      case "SYN-RECEIVED":
        this.finQueued = true; // FIN-WAIT-1 once the handshake completes
        return;
      case "ESTABLISHED":
        this.finQueued = true;
        this.state = "FIN-WAIT-1";
        return;
      case "CLOSE-WAIT":
        this.finQueued = true;
        this.state = "LAST-ACK";
        return;
      default:
        return; // already closing or closed
    }
  }

  /** Reset the connection: RST to the peer, buffers dropped, CLOSED. */
  abort(): void {
    if (this.state === "CLOSED") return;
    this.onWake?.();
    if (this.state !== "SYN-SENT" && this.state !== "TIME-WAIT" && this.state !== "LISTEN") {
      this.pendingRst = this.segment(this.sndNxt, this.rcvNxt, TCP_RST | TCP_ACK, EMPTY, false);
    }
    this.enterClosed("aborted");
  }

  // -------------------------------------------------------------- timers

  /** The earliest time dispatch() has something to do, or null. Infinity never; ≤ now means "now". */
  pollAt(): number | null {
    if (this.state === "CLOSED") return this.pendingRst ? 0 : null;
    if (this.pendingRst || this.fastRetransmitPending || this.probePending || this.tlp.pending || this.keepalivePending || this.immediateAcks.length > 0) return 0;
    if (this.ackPending && this.ackDueAt === null) return 0;
    if (this.hasSendable()) return 0;
    let t: number | null = null;
    const min = (x: number | null) => {
      if (x !== null && (t === null || x < t)) t = x;
    };
    min(this.ackPending ? this.ackDueAt : null);
    min(this.rtxExpiresAt);
    min(this.tlp.at);
    min(this.rackAt);
    min(this.timeWaitExpiresAt);
    if (this.state !== "TIME-WAIT") {
      if (this.settings.idleTimeoutMs !== null) min(this.lastRecvAt + this.settings.idleTimeoutMs);
      const ka = this.keepaliveAt();
      if (ka !== null) min(ka);
    }
    return t;
  }

  private keepaliveAt(): number | null {
    const idle = this.settings.keepaliveIdleMs;
    if (idle === null) return null;
    if (this.state !== "ESTABLISHED" && this.state !== "CLOSE-WAIT" && this.state !== "FIN-WAIT-2") return null;
    if (this.sndMax !== this.sndUna) return null; // retransmission covers liveness
    return this.lastRecvAt + idle + this.keepaliveSent * this.settings.keepaliveIntervalMs;
  }

  private runTimers(now: number): void {
    if (this.state === "CLOSED") return;
    if (this.timeWaitExpiresAt !== null && now >= this.timeWaitExpiresAt) {
      this.enterClosed("closed");
      return;
    }
    if (this.state !== "TIME-WAIT" && this.settings.idleTimeoutMs !== null && now >= this.lastRecvAt + this.settings.idleTimeoutMs) {
      this.abortWith("idle-timeout");
      return;
    }
    const ka = this.keepaliveAt();
    if (ka !== null && now >= ka) {
      if (this.keepaliveSent >= this.settings.keepaliveProbes) {
        this.abortWith("keepalive-timeout");
        return;
      }
      this.keepaliveSent++;
      this.keepalivePending = true;
    }
    const rackAt = this.rackAt;
    if (rackAt !== null && now >= rackAt) {
      this.detectLossByTime(now, false);
      this.maybeEnterSackRecovery(now);
    }
    if (this.tlp.at !== null && now >= this.tlp.at) {
      this.tlp.at = null;
      this.tlp.pending = true;
    }
    if (this.rtxExpiresAt !== null && now >= this.rtxExpiresAt) this.onRetransmitTimeout(now);
  }

  /** RFC 6298 §5.4–5.7 with RFC 5681 eqn. (4) and RFC 6582 §3.2 step 4. */
  private onRetransmitTimeout(now: number): void {
    const synState = this.state === "SYN-SENT" || this.state === "SYN-RECEIVED";
    this.retransmits++; // reset by any ACK while the peer's window is zero: probes go on while it answers
    this.tlp.reset();
    const limit = synState ? this.settings.synRetries : this.settings.maxRetransmissions;
    if (this.retransmits > limit) {
      this.abortWith(synState ? "syn-timeout" : "retransmit-timeout");
      return;
    }
    if (!synState && this.sndWnd === 0) {
      // Persist timer (RFC 9293 §3.8.6.1): probe with one byte, backing off.
      this.probePending = true;
      this.sndNxt = this.sndUna;
    } else if (this.sackOk && !synState) {
      // RFC 6675 §5.1: after a timeout, retransmit what the scoreboard says is
      // missing (everything un-SACKed up to RecoveryPoint), in slow start.
      this.cc.onRetransmitTimeout(this.flightSize(), this.retransmits === 1, this.recoveryKind === null, now);
      this.firstRtxTs = null;
      this.recoveryUna = this.sndUna;
      // A timeout with DupThresh segments SACKed: the reordering degree was
      // over-estimated (as Linux's tcp_enter_loss; missing SACK reports
      // after lost ACKs look like reordering).
      if (this.settings.rackTlp && sackedBytes(this.scoreboard) >= DUPACK_THRESHOLD * this.sendMss) this.dupThresh = DUPACK_THRESHOLD;
      // A second timeout without progress: the peer may have reneged (RFC 2018 §8).
      if (this.retransmits > 1) this.scoreboard.length = 0;
      this.count("retransmitTimeouts", 1);
      this.inRecovery = false;
      this.dupAcks = 0;
      this.sndNxt = this.sndMax;
      this.recover = this.sndMax;
      this.recoveryKind = "rto";
      this.highRxt = this.sndUna;
      this.rtxLog.clear();
      this.lostBelow = this.sndMax;
      this.rtt.forget();
    } else {
      if (!synState) {
        this.cc.onRetransmitTimeout(this.flightSize(), this.retransmits === 1, false, now);
        this.count("retransmitTimeouts", 1);
      }
      this.inRecovery = false;
      this.dupAcks = 0;
      this.recover = this.sndMax;
      this.sndNxt = this.sndUna; // go back: resend from the oldest unacked byte
      this.rtt.forget(); // Karn: no sample from retransmitted data
    }
    this.rtt.backoff(); // (5.5)
    this.rtxExpiresAt = now + this.rto; // (5.6)
  }

  private flightSize(): number {
    return seqDiff(this.sndMax, this.sndUna);
  }

  // ------------------------------------------------------------- process

  /** Feed one segment addressed to this connection. */
  process(seg: TcpSegment, now: number): void {
    const r = seg.repr;
    if (this.state === "CLOSED" || this.state === "LISTEN") return;
    if (this.state === "SYN-SENT") {
      this.processSynSent(seg, now);
      return;
    }
    const segLen = segmentLength(r.flags, seg.payload.length);
    const seq = r.seq >>> 0;

    // A retransmitted SYN in SYN-RECEIVED: resend the SYN-ACK.
    if (this.state === "SYN-RECEIVED" && r.flags & TCP_SYN && !(r.flags & TCP_ACK) && seq === this.irs) {
      if (!(r.flags & TCP_RST)) this.sndNxt = this.iss;
      return;
    }

    // 2. Acceptability (RFC 9293 §3.10.7.4 first check).
    if (!this.acceptable(seq, segLen)) {
      if (this.sackOk && seg.payload.length > 0 && !(r.flags & (TCP_RST | TCP_SYN)) && seqLe(seqAdd(seq, seg.payload.length), this.rcvNxt)) {
        // Text we already have: the duplicate, reported at once (RFC 2883 §4.1.1).
        this.dsack = [seq, seqAdd(seq, seg.payload.length)];
        this.ackThisSegment(now);
      } else if (!(r.flags & TCP_RST)) {
        this.sendAckNow();
      }
      // TIME-WAIT: a retransmitted FIN restarts the 2*MSL timer (RFC 9293 §3.10.7.4, eighth).
      if (this.state === "TIME-WAIT" && r.flags & TCP_FIN && seqAdd(seq, segLen) === this.rcvNxt) {
        this.timeWaitExpiresAt = now + this.settings.timeWaitMs;
      }
      return;
    }
    // RFC 7323 §5.3 PAWS, with a little slack for reordering (PAWS_REORDER_TICKS).
    if (this.tsOk && r.timestamp !== null && !(r.flags & TCP_RST) && seqLt(r.timestamp.tsval + PAWS_REORDER_TICKS, this.tsRecent)) {
      this.sendAckNow();
      return;
    }
    this.lastRecvAt = now;
    this.keepaliveSent = 0;

    // 3. RST (RFC 5961 §3.2).
    if (r.flags & TCP_RST) {
      if (seq !== this.rcvNxt) {
        this.sendAckNow(); // challenge ACK
        return;
      }
      this.sendBuf.clear();
      this.enterClosed("reset");
      return;
    }
    // 4. SYN in a synchronized state (RFC 5961 §4): challenge ACK.
    if (r.flags & TCP_SYN) {
      this.sendAckNow();
      return;
    }
    // 5. ACK.
    if (!(r.flags & TCP_ACK)) return;
    if (this.tsOk && r.timestamp !== null && seqGe(r.timestamp.tsval, this.tsRecent) && seqLe(seq, this.lastAckSent)) {
      this.tsRecent = r.timestamp.tsval;
    }
    if (this.state === "SYN-RECEIVED") {
      const ack = r.ack >>> 0;
      if (!(seqGt(ack, this.sndUna) && seqLe(ack, this.sndMax))) {
        this.pendingRst = this.segment(ack, 0, TCP_RST, EMPTY, false);
        return;
      }
      this.state = this.finQueued ? "FIN-WAIT-1" : "ESTABLISHED";
      this.retransmits = 0;
    }
    if (!this.processAck(r, seg.payload.length, now)) return;

    // 6. Text.
    if (seg.payload.length > 0) {
      if (this.state === "ESTABLISHED" || this.state === "FIN-WAIT-1" || this.state === "FIN-WAIT-2") {
        this.processText(seq, seg.payload, now);
      }
    }
    // 7. FIN.
    if (r.flags & TCP_FIN && this.remoteFinSeq === null && !this.remoteFinReceived) {
      const finSeq = seqAdd(seq, seg.payload.length);
      // Only a FIN inside what we can take is remembered.
      if (seqLe(finSeq, seqAdd(this.rcvNxt, this.recvBuf.free))) this.remoteFinSeq = finSeq;
    } else if (r.flags & TCP_FIN && this.state === "TIME-WAIT") {
      // Retransmitted FIN: ACK it and restart the 2*MSL timer.
      this.sendAckNow();
      this.timeWaitExpiresAt = now + this.settings.timeWaitMs;
    } else if (r.flags & TCP_FIN && this.remoteFinReceived) {
      this.sendAckNow(); // duplicate FIN: re-ACK
    }
    this.consumeFin(now);
    if (this.segmentAckOwed) {
      this.segmentAckOwed = false;
      this.ackThisSegment(now); // after the FIN step, so the ACK covers a FIN this segment completed
    }
  }

  private processSynSent(seg: TcpSegment, now: number): void {
    const r = seg.repr;
    const ack = r.ack >>> 0;
    if (r.flags & TCP_ACK) {
      if (seqLe(ack, this.iss) || seqGt(ack, this.sndMax)) {
        if (!(r.flags & TCP_RST)) this.pendingRst = this.segment(ack, 0, TCP_RST, EMPTY, false);
        return;
      }
    }
    if (r.flags & TCP_RST) {
      if (r.flags & TCP_ACK) this.enterClosed("refused");
      return;
    }
    if (!(r.flags & TCP_SYN)) return;
    this.irs = r.seq >>> 0;
    this.rcvNxt = seqAdd(r.seq, 1);
    this.rcvAdvRight = this.rcvNxt;
    // Options: only what we offered and the peer echoed.
    const s = this.settings;
    if (!(s.windowScaling && r.windowScale !== null)) {
      this.rcvShift = 0;
      this.sndShift = 0;
    } else {
      this.wsOk = true;
      this.sndShift = r.windowScale;
    }
    this.sackOk = s.sack && r.sackPermitted;
    this.tsOk = s.timestamps && r.timestamp !== null;
    if (this.tsOk && r.timestamp) this.tsRecent = r.timestamp.tsval;
    const peerMss = r.mss !== null && r.mss > 0 ? r.mss : s.defaultPeerMss;
    this.sendMss = Math.max(1, Math.min(peerMss, s.mss) - (this.tsOk ? TIMESTAMP_OPTION_LEN : 0));
    this.cc.start(this.sendMss);
    this.lastRecvAt = now;
    if (!(r.flags & TCP_ACK)) {
      // Simultaneous open (RFC 9293 §3.5 figure 7): answer with SYN-ACK.
      this.state = "SYN-RECEIVED";
      this.sndWnd = r.window;
      this.sndNxt = this.iss;
      return;
    }
    this.sndUna = ack;
    this.sndWnd = r.window; // never scaled in a SYN
    this.sndWl1 = this.irs;
    this.sndWl2 = ack;
    this.rtt.sample(this.tsOk, r.timestamp, ack, now);
    this.rtxExpiresAt = null;
    this.retransmits = 0;
    this.state = "ESTABLISHED";
    this.sendAckNow();
  }

  /** RFC 9293 §3.10.7.4: is seq..seq+len inside the receive window? */
  private acceptable(seq: number, segLen: number): boolean {
    const wnd = Math.max(seqDiff(this.rcvAdvRight, this.rcvNxt), this.recvBuf.free, 0);
    const off = seqDiff(seq, this.rcvNxt);
    if (segLen === 0) return wnd === 0 ? off === 0 : off >= 0 && off < wnd;
    if (wnd === 0) return off === 0; // §3.10.7.4: still take ACK/RST/URG; text is trimmed away
    const lastOff = off + segLen - 1;
    return (off >= 0 && off < wnd) || (lastOff >= 0 && lastOff < wnd);
  }

  /** Step 5. Returns false when the segment must be dropped. */
  private processAck(r: TcpRepr, payloadLen: number, now: number): boolean {
    const ack = r.ack >>> 0;
    if (seqGt(ack, this.sndMax)) {
      this.sendAckNow(); // ACK of something not yet sent
      return false;
    }
    const wnd = r.window << this.sndShift;
    const seq = r.seq >>> 0;
    if (seqLt(ack, this.sndUna)) {
      // Old duplicate ACK: ignore the ACK, still take the text.
      return true;
    }
    const acked = seqDiff(ack, this.sndUna);
    const windowChanged = wnd !== this.sndWnd;
    // Window update (RFC 9293 §3.10.7.4, SND.WL1/WL2 rule).
    if (seqLt(this.sndWl1, seq) || (this.sndWl1 === seq && seqLe(this.sndWl2, ack))) {
      this.sndWnd = wnd;
      this.sndWl1 = seq;
      this.sndWl2 = ack;
    }
    if (this.sndWnd === 0) this.retransmits = 0; // the peer answers probes: it is alive
    const sackedBefore = this.sackOk ? sackedBytes(this.scoreboard) : 0;
    if (acked === 0) {
      // RFC 5681 §2 duplicate ACK definition.
      if (this.sndMax !== this.sndUna && payloadLen === 0 && !(r.flags & (TCP_SYN | TCP_FIN)) && !windowChanged) {
        this.onDupAck(now);
      }
    } else {
      this.onNewAck(ack, acked, r.timestamp, now);
    }
    if (this.sackOk) {
      if (r.sackBlocks !== null) mergeSackBlocks(this.scoreboard, r.sackBlocks, this.sndUna, this.sndMax);
      this.detectLossByTime(now, true);
      if (this.tlp.highSeq !== null) this.checkProbe(ack, r.sackBlocks, now);
      this.maybeEnterSackRecovery(now);
      this.tlp.lostBelow = null;
      // RFC 6937 DeliveredData: the change in SND.UNA plus the change in SACKed bytes.
      if (this.recoveryKind === "fast") this.cc.onRecoveryAck(acked + sackedBytes(this.scoreboard) - sackedBefore, this.pipe());
    }
    return true;
  }

  // ------------------------------------------- SACK loss recovery (RFC 6675)

  /**
   * RFC 6675 IsLost() as a boundary (see scoreboard.ts), or RACK's for
   * originals if it reaches further; in recovery, also everything below lostBelow.
   */
  lostBoundary(): number {
    let lost = sackLostBoundary(this.scoreboard, this.sndUna, this.dupThresh, this.sendMss);
    const rack = this.rack.lostBelow;
    if (rack !== null && seqGt(rack, lost) && seqLe(rack, this.sndMax)) lost = rack;
    return this.recoveryKind !== null && seqGt(this.lostBelow, lost) ? this.lostBelow : lost;
  }

  /**
   * RFC 6675 SetPipe(): octets in [SND.UNA, SND.MAX) neither SACKed nor
   * lost, plus octets retransmitted (below HighRxt) and not SACKed.
   */
  pipe(): number {
    const pipe = sackPipe(this.scoreboard, this.sndUna, this.sndMax, this.lostBoundary(), this.recoveryKind !== null ? this.highRxt : null);
    // A retransmission known lost has left the network.
    return Math.max(0, pipe - this.rtxLog.lostBytes(this.sndUna));
  }

  /**
   * Lost retransmissions by sequence, and with RACK by time (reo_wnd =
   * SRTT/4); with RACK, lost originals by time (RFC 8985 §6.2).
   */
  private detectLossByTime(now: number, fromAck: boolean): void {
    const rackWait = this.settings.rackTlp && this.srtt !== null ? this.srtt * 1.25 : null;
    this.rtxLog.update(this.sndUna, this.scoreboard, (this.dupThresh - 1) * this.sendMss, rackWait, now);
    if (!this.settings.rackTlp) return;
    if (fromAck) this.rack.onAck(this.sndUna, this.scoreboard, this.recoveryKind !== null ? this.highRxt : null, now);
    this.rack.detectLoss(this.reoWnd(), now);
  }

  /** RFC 8985 §6.2 step 4 (RACK_update_reo_wnd), without the D-SACK rounds: a recovery found spurious grows it. */
  private reoWnd(): number {
    if (!this.reorderingSeen && (this.recoveryKind !== null || sackedBytes(this.scoreboard) >= DUPACK_THRESHOLD * this.sendMss)) return 0;
    // Before the first RTT sample, RACK's own (the delivered segment's) stands in.
    return Math.min((this.reoWndMult * (this.minRtt ?? this.rack.rtt)) / 4, this.srtt ?? this.rack.rtt);
  }

  /**
   * RFC 6675 NextSeg() rule 1: a retransmission found lost, else the first
   * lost, un-SACKed sequence at or above HighRxt, as [seq, len].
   */
  private nextLostHole(): [number, number] | null {
    return this.rtxLog.firstLost(this.sndUna, this.sendMss) ??
      firstLostHole(this.scoreboard, this.sndUna, this.sndMax, this.lostBoundary(), this.highRxt, this.sendMss);
  }

  /** RFC 6675 §5 steps (1)–(4): enter loss recovery on DupThresh duplicates or a lost SND.UNA. */
  private maybeEnterSackRecovery(now: number): void {
    if (this.recoveryKind !== null || this.sndMax === this.sndUna || this.sndWnd === 0) return;
    if (this.state === "SYN-RECEIVED" || this.state === "SYN-SENT") return;
    if (this.dupAcks < this.dupThresh && !seqGt(this.lostBoundary(), this.sndUna) && this.tlp.lostBelow === null) return;
    if (seqLt(this.sndUna, this.recover)) return; // §5: not before HighACK reaches RecoveryPoint
    this.count("fastRecoveries", 1);
    this.firstRtxTs = null;
    this.recoveryUna = this.sndUna;
    this.cc.enterRecovery(this.flightSize(), now, "sack");
    this.recover = this.sndMax;
    this.recoveryKind = "fast";
    this.inRecovery = true;
    this.highRxt = this.sndUna;
    this.rtxLog.clear();
    // (4.3): the segment at HighACK+1 is retransmitted even if IsLost() does not say so yet.
    const firstHoleEnd = this.scoreboard.length > 0 ? this.scoreboard[0]! : this.sndMax;
    this.lostBelow = seqAdd(this.sndUna, Math.min(this.sendMss, seqDiff(firstHoleEnd, this.sndUna)));
    const tlpLost = this.tlp.lostBelow;
    if (tlpLost !== null && seqGt(tlpLost, this.lostBelow)) this.lostBelow = tlpLost;
    this.tlp.at = null;
    this.entryRtxPending = true;
    this.rtt.forget();
  }

  /**
   * [from, to) was cumulatively acknowledged. If part of it was never
   * retransmitted although data above it had been SACKed, the original
   * arrived late: the path reorders by (highest SACKed - from) bytes, and
   * DupThresh grows to match.
   */
  private detectReordering(from: number, to: number): void {
    const sb = this.scoreboard;
    if (sb.length === 0) return;
    const highestSacked = sb[sb.length - 1]!;
    if (!seqLt(from, sb[0]!)) return;
    // Bytes below HighRxt may have been filled by our retransmission.
    if (this.recoveryKind !== null && !seqGt(to, this.highRxt)) return;
    const start = this.recoveryKind !== null ? seqMax(from, this.highRxt) : from;
    if (!seqLt(start, sb[0]!)) return;
    const degree = Math.ceil(seqDiff(highestSacked, start) / this.sendMss);
    this.reorderingSeen = true;
    if (degree + 1 > this.dupThresh) this.dupThresh = Math.min(degree + 1, MAX_REORDERING);
  }

  /**
   * RFC 3522 (Eifel detection): the first ACK beyond where the recovery
   * began echoes a timestamp older than our first retransmission, so the
   * original arrived; the recovery was caused by reordering or a delay
   * spike, not loss. Response (RFC 4015 in spirit, as Linux's undo): restore
   * cwnd and ssthresh, leave recovery, and raise DupThresh by the observed
   * reordering so the next spike does not trigger it again.
   */
  private detectSpuriousRecovery(ack: number, ts: TcpTimestamp | null, now: number): void {
    if (this.recoveryKind === null || !this.cc.canUndo || this.firstRtxTs === null) return;
    if (!this.tsOk || ts === null || ts.tsecr === 0 || !seqGt(ack, this.recoveryUna)) return;
    if (!seqLt(ts.tsecr, this.firstRtxTs)) {
      this.cc.forgetUndo(); // the retransmission got there first: real loss
      return;
    }
    const sb = this.scoreboard;
    const highest = sb.length > 0 ? sb[sb.length - 1]! : ack;
    const degree = Math.ceil(Math.max(0, seqDiff(highest, this.recoveryUna)) / this.sendMss);
    if (degree + 1 > this.dupThresh) this.dupThresh = Math.min(degree + 1, MAX_REORDERING);
    this.cc.undo();
    this.reorderingSeen = true;
    this.reoWndMult++;
    this.rack.forgetLosses();
    this.rack.retime(this.highRxt, now);
    this.recoveryKind = null;
    this.inRecovery = false;
    this.rtxLog.clear();
    this.recover = this.sndUna; // a real loss in this window may start recovery again
    this.count("spuriousRecoveries", 1);
  }

  private count(field: keyof TcpRetransmitStats, n: number): void {
    this.rtxStats[field] += n;
    if (this.rtxSink !== null) this.rtxSink[field] += n;
  }

  private onDupAck(now: number): void {
    this.dupAcks++;
    if (this.sackOk) return; // RFC 6675: entry and sending are decided from the scoreboard
    if (this.inRecovery) {
      this.cc.onRecoveryDupAck(); // RFC 6582 §3.2 step 3: inflate
      return;
    }
    if (this.dupAcks === DUPACK_THRESHOLD && seqGt(this.sndUna, this.recover)) {
      // RFC 6582 §3.2 step 2.
      this.cc.enterRecovery(this.flightSize(), now, "newreno");
      this.recover = this.sndMax;
      this.inRecovery = true;
      this.fastRetransmitPending = true;
      this.rtt.forget();
      this.count("fastRecoveries", 1);
    }
  }

  private onNewAck(ack: number, acked: number, ts: TcpTimestamp | null, now: number): void {
    const oldUna = this.sndUna;
    // Remove acknowledged data from the send buffer (SYN and FIN take a sequence number but no byte).
    const dataAcked = Math.max(0, Math.min(seqDiff(ack, this.bufSeq), this.sendBuf.length));
    // SYN and FIN are not data: they do not grow cwnd.
    const grow = Math.min(acked, dataAcked);
    if (dataAcked > 0) {
      this.sendBuf.dequeue(dataAcked);
      this.bufSeq = seqAdd(this.bufSeq, dataAcked);
    }
    this.sndUna = ack;
    if (seqLt(this.sndNxt, ack)) this.sndNxt = ack;
    this.rtt.sample(this.tsOk, ts, ack, now);
    this.retransmits = 0;
    this.probePending = false;

    // Congestion control.
    if (this.sackOk) {
      this.detectReordering(oldUna, ack);
      this.detectSpuriousRecovery(ack, ts, now);
      pruneScoreboard(this.scoreboard, this.sndUna);
    }
    if (this.recoveryKind !== null && seqGe(ack, this.recover)) {
      // RFC 6675: recovery ends once RecoveryPoint is acknowledged.
      if (this.recoveryKind === "fast") this.cc.exitRecovery();
      this.recoveryKind = null;
      this.inRecovery = false;
      this.rtxLog.clear();
    } else if (this.recoveryKind === "fast") {
      // Within RFC 6675 recovery cwnd stays at ssthresh; pipe governs sending.
    } else if (this.inRecovery) {
      if (seqGe(ack, this.recover)) {
        // Full acknowledgment: RFC 6582 §3.2 step 3 (option 1).
        this.cc.onFullAck(this.flightSize());
        this.inRecovery = false;
      } else {
        // Partial acknowledgment: retransmit the next hole, deflate.
        this.fastRetransmitPending = true;
        this.cc.onPartialAck(acked);
      }
    } else {
      this.cc.onAck({ acked: grow, srttMs: this.srtt, now });
    }
    if (!this.inRecovery) this.dupAcks = 0;

    // RFC 6298 (5.2)/(5.3).
    if (this.sndMax === this.sndUna) this.rtxExpiresAt = null;
    else this.rtxExpiresAt = now + this.rto;
    this.armProbe(now);

    // Our FIN acknowledged?
    if (this.finQueued && this.finAcked()) {
      switch (this.state) {
        case "FIN-WAIT-1":
          this.state = "FIN-WAIT-2";
          break;
        case "CLOSING":
          this.enterTimeWait(now);
          break;
        case "LAST-ACK":
          this.enterClosed("closed");
          break;
      }
    }
  }

  private finSeq(): number {
    return seqAdd(this.bufSeq, this.sendBuf.length);
  }

  private finAcked(): boolean {
    return this.finQueued && this.sendBuf.length === 0 && this.sndUna === seqAdd(this.bufSeq, 1);
  }

  /** Step 6: place text in the receive ring; in order advances RCV.NXT. */
  private processText(seq: number, payload: Uint8Array, now: number): void {
    let off = seqDiff(seq, this.rcvNxt);
    let data = payload;
    if (off < 0) {
      if (this.sackOk) {
        // Partly old: the old part is a duplicate (RFC 2883 §4.1.2).
        this.dsack = [seq, this.rcvNxt];
        this.segmentAckOwed = true;
      }
      data = data.subarray(-off);
      off = 0;
    }
    const room = this.recvBuf.free - off;
    if (room <= 0 || data.length === 0) {
      this.sendAckNow(); // nothing fits (e.g. zero-window probe): tell the peer where we are
      return;
    }
    if (data.length > room) data = data.subarray(0, room);
    if (!this.assembler.add(off, data.length)) {
      this.sendAckNow(); // too many holes: drop, re-ACK
      return;
    }
    this.recvBuf.writeUnassembled(off, data);
    if (off > 0 && this.sackOk) {
      const key = seqAdd(this.rcvNxt, off);
      this.recentSack = [key, ...this.recentSack.filter((k) => k !== key)].slice(0, MAX_SACK_BLOCKS);
    }
    const n = this.assembler.popFront();
    if (n > 0) {
      this.recvBuf.commit(n);
      this.rcvNxt = seqAdd(this.rcvNxt, n);
    }
    if (off > 0 || !this.assembler.isEmpty || n > data.length) {
      this.segmentAckOwed = true; // out of order, or filling (part of) a hole: ACK at once (RFC 5681 §4.2)
    } else {
      this.scheduleAck(now, data.length);
    }
  }

  /**
   * RFC 2018 §4: the first block holds the most recently received segment,
   * then the most recently reported other blocks; then the rest, nearest
   * RCV.NXT first. (The wire layer keeps as many as fit with timestamps.)
   */
  private sackBlocks(): number[] {
    const ranges = this.assembler.toArray();
    const used: boolean[] = [];
    const blocks: number[] = [];
    const keep: number[] = [];
    for (const key of this.recentSack) {
      const off = seqDiff(key, this.rcvNxt);
      for (let i = 0; i < ranges.length; i += 2) {
        if (off >= ranges[i]! && off < ranges[i + 1]!) {
          if (!used[i]) {
            used[i] = true;
            blocks.push(seqAdd(this.rcvNxt, ranges[i]!), seqAdd(this.rcvNxt, ranges[i + 1]!));
            keep.push(key);
          }
          break;
        }
      }
    }
    this.recentSack = keep;
    for (let i = 0; i < ranges.length && blocks.length < 2 * MAX_SACK_BLOCKS; i += 2) {
      if (!used[i]) blocks.push(seqAdd(this.rcvNxt, ranges[i]!), seqAdd(this.rcvNxt, ranges[i + 1]!));
    }
    return blocks;
  }

  /** Step 7: the FIN counts once RCV.NXT reaches it. */
  private consumeFin(now: number): void {
    if (this.remoteFinSeq === null || this.remoteFinReceived || this.rcvNxt !== this.remoteFinSeq) return;
    this.remoteFinReceived = true;
    this.rcvNxt = seqAdd(this.rcvNxt, 1);
    this.sendAckNow();
    switch (this.state) {
      case "SYN-RECEIVED":
      case "ESTABLISHED":
        this.state = "CLOSE-WAIT";
        break;
      case "FIN-WAIT-1":
        if (this.finAcked()) this.enterTimeWait(now);
        else this.state = "CLOSING";
        break;
      case "FIN-WAIT-2":
        this.enterTimeWait(now);
        break;
      default:
        break;
    }
  }

  // ------------------------------------------- tail loss probe (RFC 8985 §7)

  /** §7.2: (re)arm the PTO after new data or an ACK, outside recovery, with no probe unanswered. */
  private armProbe(now: number): void {
    const ok = this.settings.rackTlp && this.sackOk && this.srtt !== null && this.recoveryKind === null &&
      this.tlp.highSeq === null && this.sndMax !== this.sndUna && this.sndWnd > 0 &&
      (this.state === "ESTABLISHED" || this.state === "CLOSE-WAIT" || this.state === "FIN-WAIT-1" || this.state === "CLOSING" || this.state === "LAST-ACK");
    this.tlp.at = ok ? now + probeTimeout(this.srtt!, this.flightSize(), this.sendMss, this.rto) : null;
  }

  /** §7.3: one segment of new data if the peer's window takes it (cwnd aside), else the last segment again. */
  private sendTailLossProbe(now: number, out: TcpSegment[]): void {
    if (this.recoveryKind !== null || this.sndMax === this.sndUna || this.sndWnd === 0) return;
    this.tlp.highSeq = this.sndMax; // set first: sendNew must not re-arm the PTO
    const len = this.sndNxt === this.sndMax ? this.nextSegmentLength(this.sendMss) : null;
    let start: number;
    let retransmitted: boolean;
    if (len !== null && len > 0) {
      start = this.sndNxt;
      retransmitted = false;
      this.sendNew(len, now, out);
    } else {
      start = seqMax(this.sndUna, seqAdd(this.sndMax, -this.sendMss));
      const seg = this.dataSegment(start, seqDiff(this.sndMax, start), now);
      const segLen = segmentLength(seg.repr.flags, seg.payload.length);
      if (segLen === 0) {
        this.tlp.highSeq = null;
        return;
      }
      out.push(seg);
      retransmitted = true;
      this.count("retransmittedSegments", 1);
      this.count("retransmittedBytes", segLen);
    }
    this.tlp.sent(start, seqLt(this.sndMax, this.finSeq()) ? this.sndMax : this.finSeq(), this.sndMax, retransmitted);
    this.rtxExpiresAt = now + this.rto;
  }

  /** §7.4: the probe's answer; a loss it repaired still reduces the window as a recovery would. */
  private checkProbe(ack: number, sackBlocks: number[] | null, now: number): void {
    const repaired = this.tlp.onAck(ack, sackBlocks, this.sndUna, this.scoreboard, this.recoveryKind !== null);
    if (repaired !== null && repaired > 0) {
      this.cc.enterRecovery(this.flightSize() + repaired, now, "sack");
      this.cc.exitRecovery();
    }
  }

  private enterTimeWait(now: number): void {
    this.state = "TIME-WAIT";
    this.timeWaitExpiresAt = now + this.settings.timeWaitMs;
    this.rtxExpiresAt = null;
  }

  private enterClosed(reason: TcpCloseReason): void {
    this.state = "CLOSED";
    if (this.closeReason === null) this.closeReason = reason;
    this.rtxExpiresAt = null;
    this.timeWaitExpiresAt = null;
    this.ackPending = false;
    this.immediateAcks = [];
    this.dsack = null;
    this.fastRetransmitPending = false;
    this.probePending = false;
    this.keepalivePending = false;
    this.tlp.pending = false;
    this.tlp.at = null;
    this.rtxLog.rackAt = null;
    this.rack.stop();
  }

  private abortWith(reason: TcpCloseReason): void {
    // A half-open connection that times out vanishes silently.
    if (this.state !== "SYN-SENT" && this.state !== "SYN-RECEIVED" && this.state !== "TIME-WAIT") {
      this.pendingRst = this.segment(this.sndNxt, this.rcvNxt, TCP_RST | TCP_ACK, EMPTY, false);
    }
    this.enterClosed(reason);
  }

  /** Drop without sending anything (table eviction of a half-open connection). */
  evict(): void {
    this.pendingRst = null;
    this.enterClosed("evicted");
  }

  private sendAckNow(): void {
    this.ackPending = true;
    this.ackDueAt = null;
  }

  /** The ACK for the segment just processed, as it stands now (its SACK blocks included). */
  private ackThisSegment(now: number): void {
    if (this.immediateAcks.length >= MAX_IMMEDIATE_ACKS) return this.sendAckNow();
    this.immediateAcks.push(this.segment(this.sndNxt, this.rcvNxt, TCP_ACK, EMPTY, true, now));
    // it acknowledges everything so far: no delayed ACK is owed for earlier segments
    this.ackPending = false;
    this.ackDueAt = null;
    this.unackedSegments = 0;
  }

  private scheduleAck(now: number, len: number): void {
    const delay = this.settings.ackDelayMs;
    if (delay === 0) return this.sendAckNow();
    if (len >= this.sendMss) this.unackedSegments++;
    if (this.unackedSegments >= 2) return this.sendAckNow(); // RFC 5681 §4.2: every second full segment
    if (!this.ackPending) {
      this.ackPending = true;
      this.ackDueAt = now + delay;
    }
  }

  private maybeWindowUpdate(): void {
    if (this.state === "CLOSED" || this.state === "SYN-SENT" || this.state === "SYN-RECEIVED" || this.remoteFinReceived) return;
    const right = seqAdd(this.rcvNxt, this.windowAvailable());
    const grow = seqDiff(right, this.rcvAdvRight);
    if (grow > 0 && grow >= this.swsThreshold()) {
      this.sendAckNow();
      this.onWake?.();
    }
  }

  /** RFC 9293 §3.8.6.2.2 receiver SWS avoidance: move the right edge by at least min(buffer/2, MSS). */
  private swsThreshold(): number {
    return Math.max(1, Math.min(this.recvWindowLimit >> 1, this.settings.recvBufferSize >> 1, this.settings.mss));
  }

  // ------------------------------------------------------------ dispatch

  private windowAvailable(): number {
    const free = this.recvBuf.free;
    const byLimit = this.recvWindowLimit - this.recvBuf.length;
    return Math.max(0, Math.min(free, byLimit));
  }

  /** The window field to advertise, updating rcvAdvRight. */
  private advertiseWindow(syn: boolean): number {
    if (syn) {
      const w = Math.min(0xffff, this.windowAvailable());
      this.rcvAdvRight = seqAdd(this.rcvNxt, w);
      return w;
    }
    let wnd = this.windowAvailable();
    const current = Math.max(0, seqDiff(this.rcvAdvRight, this.rcvNxt));
    // SWS avoidance: do not creep the right edge forward by small amounts; never shrink it.
    if (wnd < current + this.swsThreshold()) wnd = current;
    let f = Math.min(0xffff, wnd >> this.rcvShift);
    // Scaling rounds down; rounding must not pull the edge left either.
    if (f << this.rcvShift < current) f = Math.min(0xffff, Math.ceil(current / (1 << this.rcvShift)));
    const right = seqAdd(this.rcvNxt, f << this.rcvShift);
    if (seqGt(right, this.rcvAdvRight)) this.rcvAdvRight = right;
    return f;
  }

  private hasSendable(): boolean {
    switch (this.state) {
      case "SYN-SENT":
      case "SYN-RECEIVED":
        return this.sndNxt === this.iss;
      case "ESTABLISHED":
      case "CLOSE-WAIT":
      case "FIN-WAIT-1":
      case "CLOSING":
      case "LAST-ACK":
        if (this.sackDriven()) return this.sackSendable();
        return this.nextSegmentLength() !== null;
      default:
        return false;
    }
  }

  /**
   * With SACK, pipe (not SND.NXT - SND.UNA) is what cwnd bounds, in loss
   * recovery and out of it (SACKed data has left the network; this is also
   * limited transmit, RFC 3042). Not after a window probe pulled SND.NXT back.
   */
  private sackDriven(): boolean {
    return this.sackOk && this.sndWnd > 0 && (this.recoveryKind !== null || this.sndNxt === this.sndMax);
  }

  /** RFC 6675 §5 step (C): cwnd - pipe ≥ 1 SMSS and NextSeg() has something. */
  private sackSendable(): boolean {
    const pipe = this.pipe();
    const room = this.cc.allowance(pipe);
    if (this.recoveryKind !== null && (room >= this.sendMss || this.entryRtxPending) && this.nextLostHole() !== null) return true;
    if (this.recoveryKind !== null && room < this.sendMss) return false;
    const len = this.nextSegmentLength(room);
    return len !== null && !this.runt(len, room, pipe);
  }

  /** Sender SWS avoidance: no segment shorter than SMSS only because cwnd - pipe is (more is queued; ACKs will open room). */
  private runt(len: number, room: number, pipe: number): boolean {
    return len > 0 && len < this.sendMss && len === room && pipe > 0;
  }

  /**
   * Length of the next new-data segment allowed now (0 = a bare FIN), or
   * null. With `recoveryRoom` (SACK recovery), cwnd - pipe bounds it instead
   * of cwnd - flight.
   */
  private nextSegmentLength(recoveryRoom: number | null = null): number | null {
    const off = seqDiff(this.sndNxt, this.bufSeq);
    const unsent = this.sendBuf.length - off;
    const finPending = this.finQueued && unsent >= 0 && seqLe(this.sndNxt, this.finSeq());
    if (unsent <= 0) return finPending && unsent === 0 ? 0 : null;
    let usable: number;
    if (recoveryRoom !== null) {
      usable = Math.min(seqDiff(seqAdd(this.sndUna, this.sndWnd), this.sndNxt), recoveryRoom);
    } else {
      const wnd = Math.min(this.sndWnd, this.cc.cwnd);
      usable = seqDiff(seqAdd(this.sndUna, wnd), this.sndNxt);
    }
    const len = Math.min(unsent, usable, this.sendMss);
    if (len <= 0) return null;
    return len;
  }

  /** Segments to send now. */
  dispatch(now: number): TcpSegment[] {
    const out: TcpSegment[] = [];
    this.runTimers(now);
    if (this.pendingRst) {
      out.push(this.pendingRst);
      this.pendingRst = null;
    }
    if (this.state === "CLOSED" || this.state === "LISTEN") return out;
    if (this.immediateAcks.length > 0) {
      for (const a of this.immediateAcks) out.push(a);
      this.immediateAcks = [];
    }
    // Segments from here on carry the current RCV.NXT: one of them is the owed ACK.
    const firstCurrent = out.length;

    if (this.state === "SYN-SENT" || this.state === "SYN-RECEIVED") {
      if (this.sndNxt === this.iss) {
        const flags = this.state === "SYN-SENT" ? TCP_SYN : TCP_SYN | TCP_ACK;
        out.push(this.synSegment(flags, now));
        this.sndNxt = seqAdd(this.iss, 1);
        this.sndMax = this.sndNxt;
        if (this.rtxExpiresAt === null) this.rtxExpiresAt = now + this.rto;
        this.ackPending = false;
      }
      return out;
    }

    if (this.fastRetransmitPending) {
      this.fastRetransmitPending = false;
      const len = Math.min(this.sendMss, Math.max(0, Math.min(seqDiff(this.sndMax, this.sndUna), this.sendBuf.length - seqDiff(this.sndUna, this.bufSeq))));
      const seg = this.dataSegment(this.sndUna, len, now);
      out.push(seg);
      this.count("retransmittedSegments", 1);
      this.count("retransmittedBytes", segmentLength(seg.repr.flags, seg.payload.length));
      this.rtxExpiresAt = now + this.rto;
    }

    if (this.tlp.pending) {
      this.tlp.pending = false;
      this.sendTailLossProbe(now, out);
    }

    // A window probe is owed only while the peer's window is zero.
    if (this.probePending && this.sndWnd > 0) this.probePending = false;

    if (this.state !== "TIME-WAIT" && this.state !== "FIN-WAIT-2" && this.sackDriven()) {
      // RFC 6675 §5 step (C): while cwnd - pipe ≥ 1 SMSS, send NextSeg():
      // lost holes from HighRxt upward first (in recovery), then new data.
      let pipe = this.pipe();
      for (let guard = 0; guard < 1024; guard++) {
        const room = this.cc.allowance(pipe);
        const inRecovery = this.recoveryKind !== null;
        const hole = inRecovery && (room >= this.sendMss || this.entryRtxPending) ? this.nextLostHole() : null;
        this.entryRtxPending = false;
        if (hole !== null) {
          const seg = this.dataSegment(hole[0], hole[1], now);
          const segLen = segmentLength(seg.repr.flags, seg.payload.length);
          if (segLen === 0) break;
          out.push(seg);
          const end = seqAdd(hole[0], segLen);
          if (seqGt(end, this.highRxt)) this.highRxt = end;
          this.rtxLog.add(hole[0], end, this.sndMax, now);
          if (this.firstRtxTs === null) this.firstRtxTs = now >>> 0;
          pipe += segLen;
          if (inRecovery) this.cc.onRecoverySent(segLen);
          this.count("retransmittedSegments", 1);
          this.count("retransmittedBytes", segLen);
          this.rtxExpiresAt = now + this.rto;
          continue;
        }
        if (inRecovery && room < this.sendMss) break;
        const len = this.nextSegmentLength(room);
        if (len === null) break;
        // Sender SWS avoidance: no runt segment because pipe left less than
        // SMSS of cwnd, while more is queued; SACKs or ACKs will open room.
        if (this.runt(len, room, pipe)) break;
        const segLen = this.sendNew(len, now, out);
        pipe += segLen;
        if (inRecovery) this.cc.onRecoverySent(segLen);
        if (segLen === 0) break;
      }
    } else if (this.state !== "TIME-WAIT" && this.state !== "FIN-WAIT-2") {
      for (let guard = 0; guard < 1024; guard++) {
        let len = this.nextSegmentLength();
        if (len === null) {
          // Zero window with data waiting: persist timer (RFC 9293 §3.8.6.1).
          const off = seqDiff(this.sndNxt, this.bufSeq);
          const unsent = this.sendBuf.length - off;
          if (unsent > 0 && this.sndWnd === 0 && this.sndNxt === this.sndUna) {
            if (this.probePending) {
              this.probePending = false;
              len = 1; // one byte beyond the window
            } else if (this.rtxExpiresAt === null) {
              this.rtxExpiresAt = now + this.rto;
            }
          }
          if (len === null) break;
        }
        if (this.sendNew(len, now, out) === 0) break;
      }
    }

    if (this.keepalivePending) {
      this.keepalivePending = false;
      // RFC 1122 §4.2.3.6: SEG.SEQ = SND.NXT - 1, no data.
      out.push(this.segment(seqAdd(this.sndNxt, -1), this.rcvNxt, TCP_ACK, EMPTY, true, now));
    }

    if (this.ackPending && (this.ackDueAt === null || now >= this.ackDueAt)) {
      if (out.length === firstCurrent || out[out.length - 1]!.repr.flags & TCP_RST) {
        out.push(this.segment(this.sndNxt, this.rcvNxt, TCP_ACK, EMPTY, true, now));
      }
      this.ackPending = false;
      this.ackDueAt = null;
      this.unackedSegments = 0;
    }
    return out;
  }

  /** Send `len` bytes (and a FIN if due) at SND.NXT; returns the sequence space used. */
  private sendNew(len: number, now: number, out: TcpSegment[]): number {
    const seq = this.sndNxt;
    if (this.sndUna === this.sndMax && this.lastSendAt !== null) this.cc.onIdleRestart(now, now - this.lastSendAt);
    this.lastSendAt = now;
    const seg = this.dataSegment(seq, len, now);
    out.push(seg);
    const segLen = segmentLength(seg.repr.flags, seg.payload.length);
    if (seqLt(seq, this.sndMax)) {
      // Go-back-N after a timeout (NewReno), or a repeated window probe.
      this.count("retransmittedSegments", 1);
      this.count("retransmittedBytes", Math.min(segLen, seqDiff(this.sndMax, seq)));
    }
    if (seqGe(seq, this.sndMax) && !this.tsOk) this.rtt.time(seq, now);
    if (this.sackOk && this.settings.rackTlp && this.settings.rackOriginals && seqGe(seq, this.sndMax) && segLen > 0) this.rack.onSend(seq, seqAdd(seq, segLen), now);
    this.sndNxt = seqAdd(seq, segLen);
    if (seqGt(this.sndNxt, this.sndMax)) this.sndMax = this.sndNxt;
    if (this.rtxExpiresAt === null) this.rtxExpiresAt = now + this.rto; // (5.1)
    this.armProbe(now);
    return segLen;
  }

  private synSegment(flags: number, now: number): TcpSegment {
    const s = this.settings;
    const repr: TcpRepr = {
      srcPort: this.localPort,
      dstPort: this.remotePort,
      seq: this.iss,
      ack: flags & TCP_ACK ? this.rcvNxt : 0,
      flags,
      window: this.advertiseWindow(true),
      urgent: 0,
      mss: s.mss,
      // Echo only what the peer offered (SYN-ACK); offer what we support (SYN).
      windowScale: flags & TCP_ACK ? (this.wsOk ? this.rcvShift : null) : s.windowScaling ? this.rcvShift : null,
      sackPermitted: this.sackOk,
      sackBlocks: null,
      timestamp: this.tsOk ? { tsval: now >>> 0, tsecr: flags & TCP_ACK ? this.tsRecent : 0 } : null,
    };
    if (flags & TCP_ACK) this.lastAckSent = this.rcvNxt;
    return { repr, payload: EMPTY };
  }

  /** A data (and/or FIN) segment at `seq` carrying `len` bytes from the send buffer. */
  private dataSegment(seq: number, len: number, now: number): TcpSegment {
    const off = seqDiff(seq, this.bufSeq);
    const dataLen = Math.max(0, Math.min(len, this.sendBuf.length - off));
    // A view of the send ring: the owner emits the segment before anything writes the ring again.
    const payload = dataLen > 0 ? this.sendBuf.view(off, dataLen) : EMPTY;
    let flags = TCP_ACK;
    const end = seqAdd(seq, dataLen);
    if (this.finQueued && end === this.finSeq() && (this.state === "FIN-WAIT-1" || this.state === "CLOSING" || this.state === "LAST-ACK")) {
      flags |= TCP_FIN;
    }
    if (dataLen > 0 && off + dataLen === this.sendBuf.length) flags |= TCP_PSH;
    return this.segment(seq, this.rcvNxt, flags, payload, true, now);
  }

  /** Build a segment; with `withOptions`, ACK segments carry timestamps and SACK blocks. */
  private segment(seq: number, ack: number, flags: number, payload: Uint8Array, withOptions: boolean, now = 0): TcpSegment {
    const isAck = (flags & TCP_ACK) !== 0;
    let sackBlocks: number[] | null = null;
    if (withOptions && this.sackOk && isAck && !(flags & TCP_RST)) {
      if (!this.assembler.isEmpty) sackBlocks = this.sackBlocks();
      if (this.dsack !== null) {
        // Reported once, as the first block (RFC 2883 §4).
        sackBlocks = [this.dsack[0], this.dsack[1], ...(sackBlocks ?? [])];
        this.dsack = null;
      }
    }
    const rst = (flags & TCP_RST) !== 0;
    const window = rst ? 0 : this.advertiseWindow(false);
    if (isAck && !rst) this.lastAckSent = ack;
    return {
      repr: {
        srcPort: this.localPort,
        dstPort: this.remotePort,
        seq: seq >>> 0,
        ack: isAck ? ack >>> 0 : 0,
        flags,
        window,
        urgent: 0,
        mss: null,
        windowScale: null,
        sackPermitted: false,
        sackBlocks,
        timestamp: withOptions && this.tsOk && !rst ? { tsval: now >>> 0, tsecr: this.tsRecent } : null,
      },
      payload,
    };
  }
}

const EMPTY = new Uint8Array(0);
