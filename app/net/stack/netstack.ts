// The packet shell: the one place IP packets from a device meet the
// protocol engines, the clock, and the gateway's own sockets.
//
//   1. The link hands over batches of whole IP packets (IPv4 or IPv6).
//      Each is parsed through the checked wire views; anything malformed
//      is dropped and counted by reason, never thrown.
//   2. IPv4 fragments are reassembled (bounded, reassembly.ts); IPv6
//      fragments are dropped. Packets to or from addresses no router
//      forwards (loopback, multicast, broadcast, link-local, unspecified,
//      IPv4-mapped) are dropped: the gateway must not become a way into its
//      own loopback or link.
//   3. TCP goes to the TcpTable, which terminates every destination. A
//      connection that completes its handshake becomes a TcpFlowInit (a
//      node Duplex over the connection, tcp-duplex.ts) for the pipeline.
//   4. UDP: :443 (QUIC) is refused with ICMP port unreachable so clients
//      fall back to TCP at once; `onUdp` may take any other datagram; :53
//      queries for `localNames` are answered here (local-names.ts), other
//      :53 goes to the DNS forwarder when a resolver is configured; the rest is
//      relayed through per-flow sockets or dropped, per `udpPolicy()`.
//   5. ICMP/ICMPv6 echo requests are answered for the gateway's own
//      addresses only (`ownAddresses`); a ping to any other destination is
//      dropped rather than answered, so a device never sees a reachable
//      host the gateway did not actually reach.
//   6. pump(): table events → Flows, service the Duplexes the batch
//      touched, then everything the table dispatches goes to the link.
//   7. One timer, armed at the earliest deadline of the TCP table, the
//      reassembler, the DNS forwarder and the UDP relay.
import type { Duplex } from "node:stream";
import type { PacketLink } from "../tun/link.ts";
import type { FlowEndpoint } from "../../dispatch/flow.ts";
import { dispatchUdp } from "../../dispatch/udp.ts";
import { formatIp, parseIp } from "../ipaddr.ts";
import { log } from "../../log.ts";
import { emitTcpPacket } from "./ip.ts";
import * as ipv4 from "./wire/ipv4.ts";
import * as ipv6 from "./wire/ipv6.ts";
import * as tcp from "./wire/tcp.ts";
import * as udp from "./wire/udp.ts";
import * as icmp from "./wire/icmp.ts";
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP } from "./wire/checksum.ts";
import { DEFAULT_TABLE_SETTINGS, TcpTable, type TcpTableEvent, type TcpTableSettings } from "./tcp/table.ts";
import type { TcpConnection } from "./tcp/connection.ts";
import { Ipv4Reassembler, type ReassemblySettings } from "./reassembly.ts";
import { TcpDuplex } from "./tcp-duplex.ts";
import type { BufferAccount } from "./tcp/buffer.ts";
import { emitDestUnreachable, emitEchoReply, emitUdpPackets } from "./replies.ts";
import {
  DNS_QUERY_TIMEOUT_MS, DnsForwarder, UDP_FLOW_IDLE_MS, UdpRelay, type UdpTuple,
} from "./udp-sockets.ts";
import { localAnswer, localNameTable, type LocalName } from "./local-names.ts";

export interface TcpFlowInit {
  /** The device's address and port. */
  src: FlowEndpoint;
  /** The address and port the device dialled. */
  dst: FlowEndpoint;
  /** Readable bytes are what the device sent; writes go to the device. */
  conn: Duplex;
  ipVersion: 4 | 6;
}

export interface UdpDatagram {
  src: FlowEndpoint;
  dst: FlowEndpoint;
  /** Borrowed: valid during the call only. */
  payload: Uint8Array;
}

export interface NetStackSettings {
  /** The gateway's own addresses on the tunnel: echo requests to these are answered. */
  ownAddresses: string[];
  /** TcpTable settings; MSS defaults follow the link MTU. */
  tcp: Partial<TcpTableSettings>;
  fragments: Partial<ReassemblySettings>;
  udpIdleMs: number;
  maxUdpFlows: number;
  dnsTimeoutMs: number;
  maxDnsPending: number;
}

export const DEFAULT_NETSTACK_SETTINGS: NetStackSettings = {
  ownAddresses: [],
  tcp: {},
  fragments: {},
  udpIdleMs: UDP_FLOW_IDLE_MS,
  maxUdpFlows: 4096,
  dnsTimeoutMs: DNS_QUERY_TIMEOUT_MS,
  maxDnsPending: 4096,
};

export interface NetStackOptions {
  link: PacketLink;
  /** Milliseconds, monotonic. Default performance.now(). */
  now?: () => number;
  settings?: Partial<NetStackSettings>;
  onTcpFlow(flow: TcpFlowInit): void;
  /**
   * Offered every UDP datagram except QUIC (:443) before the built-in
   * handling; return true to take it (answer with NetStack.sendUdp).
   */
  onUdp?(datagram: UdpDatagram): boolean;
  /** Forward :53 to this resolver ("ip:port"). Without it, :53 follows udpPolicy. */
  dns?: { resolver: string };
  /** Names answered by the stack itself in :53 queries (name -> IP literal), before any forwarding. */
  localNames?: Map<string, string>;
  /** What happens to other UDP. Default "drop". */
  udpPolicy?: () => "relay" | "drop";
  /**
   * The destination policy for relayed UDP (app/dispatch/destinations.ts):
   * true when `dst` may be reached. A refused datagram gets ICMP
   * "administratively prohibited". Default: everything (the martian filter still applies).
   */
  udpDestinationAllowed?: (dst: FlowEndpoint, src: FlowEndpoint) => boolean;
  /**
   * Admission of new relayed UDP flows by source address (the per-device
   * quota): open() false refuses the flow with ICMP "administratively
   * prohibited"; close() when a flow admitted for `src` ends.
   */
  udpFlowQuota?: { open(src: string, dst: FlowEndpoint): boolean; close(src: string): void };
  /**
   * The buffered-bytes quota: the account a TCP connection's send and
   * receive rings allocate from, by source address (none: unbounded but
   * each ring's own capacity). Attached when the connection is established.
   */
  tcpBufferAccount?: (src: string) => BufferAccount | undefined;
}

export interface NetStackStats {
  packetsIn: number;
  bytesIn: number;
  packetsOut: number;
  bytesOut: number;
  /** link.write() returned false (queue full or closed). */
  linkWriteFailed: number;
  /** Packets (or datagrams) dropped, by reason. */
  drops: Record<string, number>;
  tcp: TcpTable["stats"] & { connections: number; halfOpen: number; flows: number; flowsOpened: number };
  udp: {
    quicRefused: number; dnsForwarded: number; dnsAnswered: number; dnsPending: number; dnsLocal: number;
    relayed: number; relayReplies: number; relayFlows: number; handedOff: number;
  };
  icmp: { echoReplied: number };
  fragments: Ipv4Reassembler["stats"] & { inFlight: number; bufferedBytes: number };
}

/**
 * RTO floor for the device side. RFC 6298 (2.4) says one second; a tunnel
 * RTT is milliseconds, and with a one-second floor every lost
 * retransmission stalled a download for a second or more (5% loss on the
 * underlay: ~1 Mbit/s). 200 ms, as Linux (TCP_RTO_MIN), which the RFC allows.
 */
export const TUNNEL_RTO_MIN_MS = 200;

/** Pump rounds per call before the rest is left to a fresh macrotask. */
const MAX_PUMP_ROUNDS = 16;

function isMartian(a: Uint8Array, asDestination: boolean): boolean {
  if (a.length === 4) {
    const b0 = a[0]!;
    if (b0 === 0 || b0 === 127 || b0 >= 224) return true; // this-network, loopback, multicast, reserved/broadcast
    return asDestination && b0 === 169 && a[1] === 254; // link-local (RFC 3927 §7: never forwarded)
  }
  if (a[0] === 0xff) return true; // multicast
  if (asDestination && a[0] === 0xfe && (a[1]! & 0xc0) === 0x80) return true; // fe80::/10 link-local
  let zeros = 0;
  while (zeros < 15 && a[zeros] === 0) zeros++;
  if (zeros === 15 && (a[15] === 0 || a[15] === 1)) return true; // :: and ::1
  if (zeros >= 10 && a[10] === 0xff && a[11] === 0xff) return true; // ::ffff:0:0/96 (IPv4-mapped)
  return false;
}

function addrKey(a: Uint8Array): string {
  return String.fromCharCode(...a);
}

export class NetStack {
  private readonly link: PacketLink;
  private readonly now: () => number;
  readonly settings: NetStackSettings;
  private readonly onTcpFlow: (flow: TcpFlowInit) => void;
  private readonly onUdp: ((d: UdpDatagram) => boolean) | undefined;
  private readonly udpPolicy: () => "relay" | "drop";
  private readonly udpDestinationAllowed: ((dst: FlowEndpoint, src: FlowEndpoint) => boolean) | undefined;
  private readonly tcpBufferAccount: ((src: string) => BufferAccount | undefined) | undefined;
  private readonly table: TcpTable;
  private readonly reassembler: Ipv4Reassembler;
  private readonly dns: DnsForwarder | null;
  private readonly relay: UdpRelay;
  private readonly own: Set<string>;
  private readonly localNames: Map<string, LocalName>;
  private readonly duplexes = new Map<TcpConnection, TcpDuplex>();
  private readonly dirty = new Set<TcpDuplex>();
  private readonly drops: Record<string, number> = Object.create(null);
  private readonly counters = {
    packetsIn: 0, bytesIn: 0, packetsOut: 0, bytesOut: 0, linkWriteFailed: 0, flowsOpened: 0,
    quicRefused: 0, dnsForwarded: 0, dnsAnswered: 0, dnsLocal: 0, relayed: 0, relayReplies: 0, handedOff: 0, echoReplied: 0,
  };
  private pumping = false;
  private pumpAgain = false;
  private pumpScheduled = false;
  /** A pump deferred to setImmediate after MAX_PUMP_ROUNDS is pending. */
  private pumpDeferred = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private timerAt = 0;
  private closed = false;

  constructor(opts: NetStackOptions) {
    this.link = opts.link;
    this.now = opts.now ?? (() => performance.now());
    this.settings = { ...DEFAULT_NETSTACK_SETTINGS, ...opts.settings };
    this.onTcpFlow = opts.onTcpFlow;
    this.onUdp = opts.onUdp;
    this.udpPolicy = opts.udpPolicy ?? (() => "drop");
    this.udpDestinationAllowed = opts.udpDestinationAllowed;
    this.tcpBufferAccount = opts.tcpBufferAccount;
    this.own = new Set();
    this.localNames = localNameTable(opts.localNames ?? new Map());
    for (const a of this.settings.ownAddresses) {
      const b = parseIp(a);
      if (b === undefined) throw new Error(`netstack: invalid own address "${a}"`);
      this.own.add(addrKey(b));
    }
    const mtu = this.link.mtu;
    const t = this.settings.tcp;
    const secret = new Uint32Array(4);
    crypto.getRandomValues(secret);
    this.table = new TcpTable({
      issSecret: secret,
      ...t,
      tcp: { ...DEFAULT_TABLE_SETTINGS.tcp, rtoMinMs: TUNNEL_RTO_MIN_MS, mss: Math.min(1460, mtu - 40), ...t.tcp },
      tcpV6: { ...DEFAULT_TABLE_SETTINGS.tcpV6, rtoMinMs: TUNNEL_RTO_MIN_MS, mss: Math.min(1440, mtu - 60), ...t.tcpV6 },
    });
    this.reassembler = new Ipv4Reassembler(this.settings.fragments);
    const drop = (reason: string) => this.drop(reason);
    this.dns = opts.dns
      ? new DnsForwarder({
          resolver: opts.dns.resolver,
          maxPending: this.settings.maxDnsPending,
          timeoutMs: this.settings.dnsTimeoutMs,
          now: this.now,
          drop,
          reply: (q, answer) => {
            this.counters.dnsAnswered++;
            this.sendUdpBytes(q.dst, q.dstPort, q.src, q.srcPort, answer);
            this.arm();
          },
        })
      : null;
    const quota = opts.udpFlowQuota;
    this.relay = new UdpRelay({
      ...(quota ? { admit: (t: UdpTuple) => quota.open(formatIp(t.src), { host: formatIp(t.dst), port: t.dstPort }), released: (t: UdpTuple) => quota.close(formatIp(t.src)) } : {}),
      maxFlows: this.settings.maxUdpFlows,
      idleMs: this.settings.udpIdleMs,
      now: this.now,
      drop,
      reply: (f, payload) => {
        this.counters.relayReplies++;
        this.sendUdpBytes(f.dst, f.dstPort, f.src, f.srcPort, payload);
      },
    });
    this.link.onPackets((packets) => this.onPackets(packets));
  }

  // ------------------------------------------------------------- input

  private onPackets(packets: Uint8Array[]): void {
    if (this.closed) return;
    const now = this.now();
    for (const p of packets) {
      try {
        this.input(p, now);
      } catch (e) {
        // An engine bug must cost one packet, not the gateway.
        this.drop("internal: exception");
        log.debug("netstack: exception on input", { error: (e as Error).message });
      }
    }
    this.pump();
  }

  private drop(reason: string): void {
    this.drops[reason] = (this.drops[reason] ?? 0) + 1;
  }

  private input(bytes: Uint8Array, now: number): void {
    this.counters.packetsIn++;
    this.counters.bytesIn += bytes.length;
    const version = bytes.length > 0 ? bytes[0]! >> 4 : 0;
    if (version === 4) {
      const r = ipv4.parse(bytes);
      if (!r.ok) return this.drop(r.reason);
      const h = r.repr;
      if (isMartian(h.src, false)) return this.drop("ip: martian-source");
      if (isMartian(h.dst, true)) return this.drop("ip: martian-destination");
      if (ipv4.isFragment(h)) {
        const res = this.reassembler.add(h, r.payload, now);
        if (res.kind === "drop") return this.drop(res.reason);
        if (res.kind === "incomplete") return;
        return this.upper(4, h.src, h.dst, h.protocol, res.payload, null, now);
      }
      return this.upper(4, h.src, h.dst, h.protocol, r.payload, bytes, now);
    }
    if (version === 6) {
      const r = ipv6.parse(bytes);
      if (!r.ok) return this.drop(r.reason);
      const h = r.repr;
      if (h.fragment !== null) return this.drop("ipv6: fragment");
      if (isMartian(h.src, false)) return this.drop("ip: martian-source");
      if (isMartian(h.dst, true)) return this.drop("ip: martian-destination");
      return this.upper(6, h.src, h.dst, h.nextHeader, r.payload, bytes, now);
    }
    return this.drop("ip: bad-version");
  }

  /** `raw` is the whole IP packet when it arrived unfragmented (for ICMP quotes). */
  private upper(
    version: 4 | 6, src: Uint8Array, dst: Uint8Array, protocol: number, payload: Uint8Array, raw: Uint8Array | null, now: number,
  ): void {
    if (protocol === IPPROTO_TCP) {
      const r = tcp.parse(payload, src, dst);
      if (!r.ok) return this.drop(r.reason);
      if (r.repr.srcPort === 0 || r.repr.dstPort === 0) return this.drop("tcp: port-zero");
      const conn = this.table.process(src, dst, r.repr, r.payload, now);
      if (conn !== undefined) {
        const d = this.duplexes.get(conn);
        if (d !== undefined) this.dirty.add(d);
      }
      return;
    }
    if (protocol === IPPROTO_UDP) {
      const r = udp.parse(payload, src, dst);
      if (!r.ok) return this.drop(r.reason);
      return this.udpInput(version, src, dst, r.repr, r.payload, raw, now);
    }
    if (version === 4 && protocol === IPPROTO_ICMP) {
      const r = icmp.parseV4(payload);
      if (!r.ok) return this.drop(r.reason);
      return this.icmpInput(src, dst, r.repr, r.payload);
    }
    if (version === 6 && protocol === IPPROTO_ICMPV6) {
      const r = icmp.parseV6(payload, src, dst);
      if (!r.ok) return this.drop(r.reason);
      return this.icmpInput(src, dst, r.repr, r.payload);
    }
    return this.drop("ip: unsupported-protocol");
  }

  private icmpInput(src: Uint8Array, dst: Uint8Array, repr: icmp.IcmpRepr, payload: Uint8Array): void {
    if (repr.kind !== "echo-request") return this.drop("icmp: ignored");
    if (!this.own.has(addrKey(dst))) return this.drop("icmp: echo-not-own");
    this.counters.echoReplied++;
    this.writeAll(emitEchoReply(src, dst, repr.ident, repr.seqNo, payload, this.link.mtu), "icmp: reply-too-big");
  }

  private udpInput(
    version: 4 | 6, src: Uint8Array, dst: Uint8Array, repr: udp.UdpRepr, payload: Uint8Array, raw: Uint8Array | null, now: number,
  ): void {
    if (repr.srcPort === 0 || repr.dstPort === 0) return this.drop("udp: port-zero");
    // The dispatch table's UDP rows (app/dispatch/udp.ts); the relay's own checks follow.
    const decision = dispatchUdp(repr.dstPort, this.udpPolicy(), this.localNames.size > 0 || this.dns !== null);
    if (decision.kind === "refuse-quic") {
      // QUIC: refuse at once so the client falls back to TCP (RFC 9000 clients do on ICMP errors).
      this.counters.quicRefused++;
      const invoking = raw ?? this.rebuildV4(src, dst, repr, payload);
      const code = version === 4 ? icmp.ICMPV4_UNREACH_PORT : icmp.ICMPV6_UNREACH_PORT;
      this.writeAll(emitDestUnreachable(src, dst, invoking, code, this.link.mtu), "icmp: reply-too-big");
      return;
    }
    const tuple: UdpTuple = { src, srcPort: repr.srcPort, dst, dstPort: repr.dstPort };
    if (this.onUdp !== undefined) {
      const taken = this.onUdp({
        src: { host: formatIp(src), port: repr.srcPort },
        dst: { host: formatIp(dst), port: repr.dstPort },
        payload,
      });
      if (taken) {
        this.counters.handedOff++;
        return;
      }
    }
    if (decision.kind === "dns") {
      const answer = this.localNames.size > 0 ? localAnswer(payload, this.localNames) : undefined;
      if (answer !== undefined) {
        this.counters.dnsLocal++;
        this.sendUdpBytes(dst, repr.dstPort, src, repr.srcPort, answer);
        return;
      }
      if (this.dns !== null) {
        this.counters.dnsForwarded++;
        this.dns.query(tuple, payload, now);
        return;
      }
    }
    // A DNS query no local name answers, without a forwarder, is like any other datagram.
    if (decision.kind === "drop" || (decision.kind === "dns" && this.udpPolicy() === "drop")) return this.drop("udp: policy-drop");
    if (this.udpDestinationAllowed && !this.udpDestinationAllowed({ host: formatIp(dst), port: repr.dstPort }, { host: formatIp(src), port: repr.srcPort })) {
      const invoking = raw ?? this.rebuildV4(src, dst, repr, payload);
      const code = version === 4 ? icmp.ICMPV4_UNREACH_ADMIN : icmp.ICMPV6_UNREACH_ADMIN;
      this.writeAll(emitDestUnreachable(src, dst, invoking, code, this.link.mtu), "icmp: reply-too-big");
      return this.drop("udp: destination-refused");
    }
    if (!this.relay.send(tuple, payload, now)) {
      // Refused by the device's quota: the protocol's own refusal.
      const invoking = raw ?? this.rebuildV4(src, dst, repr, payload);
      const code = version === 4 ? icmp.ICMPV4_UNREACH_ADMIN : icmp.ICMPV6_UNREACH_ADMIN;
      this.writeAll(emitDestUnreachable(src, dst, invoking, code, this.link.mtu), "icmp: reply-too-big");
      return;
    }
    this.counters.relayed++;
  }

  /** The invoking packet for an ICMP quote when it arrived in fragments: header + the start of the datagram. */
  private rebuildV4(src: Uint8Array, dst: Uint8Array, repr: udp.UdpRepr, payload: Uint8Array): Uint8Array {
    const dgram = udp.emit(repr, payload.subarray(0, 540), src, dst);
    return ipv4.emit(
      { src, dst, protocol: IPPROTO_UDP, ttl: 64, tos: 0, ident: 0, dontFragment: false, moreFragments: false, fragmentOffset: 0 },
      dgram,
    );
  }

  // ------------------------------------------------------------ output

  private write(packet: Uint8Array): void {
    if (this.link.write(packet)) {
      this.counters.packetsOut++;
      this.counters.bytesOut += packet.length;
    } else {
      this.counters.linkWriteFailed++;
    }
  }

  private writeAll(packets: Uint8Array[], tooBig: string): void {
    if (packets.length === 0) return this.drop(tooBig);
    for (const p of packets) this.write(p);
  }

  private sendUdpBytes(src: Uint8Array, srcPort: number, dst: Uint8Array, dstPort: number, payload: Uint8Array): void {
    if (this.closed) return;
    this.writeAll(emitUdpPackets(src, srcPort, dst, dstPort, payload, this.link.mtu), "udp: reply-too-big");
  }

  /** Send a UDP datagram to a device (for `onUdp` handlers): from `from`, to `to`. */
  sendUdp(from: FlowEndpoint, to: FlowEndpoint, payload: Uint8Array): boolean {
    const s = parseIp(from.host);
    const d = parseIp(to.host);
    if (s === undefined || d === undefined || s.length !== d.length) return false;
    this.sendUdpBytes(s, from.port, d, to.port, payload);
    return true;
  }

  // -------------------------------------------------------------- pump

  /** Something on the application side changed (a Duplex wrote, read, ended). */
  private kick(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    if (this.pumpScheduled || this.closed) return;
    this.pumpScheduled = true;
    queueMicrotask(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    if (this.closed) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    let rounds = 0;
    try {
      for (; rounds < MAX_PUMP_ROUNDS; rounds++) {
        this.pumpAgain = false;
        this.handleEvents();
        if (this.dirty.size > 0) {
          const ds = Array.from(this.dirty);
          this.dirty.clear();
          for (const d of ds) d.service();
        }
        const out = this.table.dispatch(this.now());
        for (const o of out) this.write(emitTcpPacket(o.src, o.dst, o.segment.repr, o.segment.payload));
        this.handleEvents();
        if (!this.pumpAgain && this.dirty.size === 0 && this.table.pollAt() !== 0) break;
      }
    } catch (e) {
      log.error("netstack: exception in pump", { error: (e as Error).message });
    } finally {
      this.pumping = false;
    }
    // Work left after the round limit continues on the next turn, once:
    // a pump started meanwhile must not start a second chain.
    if (rounds >= MAX_PUMP_ROUNDS && !this.pumpDeferred) {
      this.pumpDeferred = true;
      setImmediate(() => {
        this.pumpDeferred = false;
        this.pump();
      });
    }
    this.arm();
  }

  private handleEvents(): void {
    for (const ev of this.table.takeEvents()) this.onTableEvent(ev);
  }

  private onTableEvent(ev: TcpTableEvent): void {
    if (ev.type === "established") {
      const d = new TcpDuplex(ev.conn, () => this.kick());
      this.duplexes.set(ev.conn, d);
      this.counters.flowsOpened++;
      const t = ev.tuple;
      const account = this.tcpBufferAccount?.(formatIp(t.remoteAddr));
      if (account) {
        ev.conn.sendBuf.attach(account);
        ev.conn.recvBuf.attach(account);
      }
      try {
        this.onTcpFlow({
          src: { host: formatIp(t.remoteAddr), port: t.remotePort },
          dst: { host: formatIp(t.localAddr), port: t.localPort },
          conn: d,
          ipVersion: t.localAddr.length === 16 ? 6 : 4,
        });
      } catch (e) {
        log.error("netstack: onTcpFlow threw", { error: (e as Error).message });
        d.destroy();
      }
      this.dirty.add(d);
      return;
    }
    // closed: its storage goes back to the device's account
    ev.conn.sendBuf.detach();
    ev.conn.recvBuf.detach();
    const d = this.duplexes.get(ev.conn);
    if (d === undefined) return;
    this.duplexes.delete(ev.conn);
    this.dirty.delete(d);
    d.onClosed(ev.reason);
  }

  // ------------------------------------------------------------- clock

  private nextDeadline(): number | null {
    let t: number | null = null;
    for (const x of [this.table.pollAt(), this.reassembler.pollAt(), this.dns?.pollAt() ?? null, this.relay.pollAt()]) {
      if (x !== null && (t === null || x < t)) t = x;
    }
    return t;
  }

  private arm(): void {
    if (this.closed) return;
    const t = this.nextDeadline();
    if (t === null) return; // an armed timer may fire early; harmless
    if (this.timer !== null && this.timerAt <= t) return;
    if (this.timer !== null) clearTimeout(this.timer);
    const now = this.now();
    this.timerAt = t;
    this.timer = setTimeout(() => this.onTimer(), Math.max(0, Math.ceil(t - now)));
    this.timer.unref?.();
  }

  private onTimer(): void {
    this.timer = null;
    if (this.closed) return;
    const now = this.now();
    this.reassembler.expire(now);
    this.dns?.expire(now);
    this.relay.expire(now);
    this.pump();
  }

  // ------------------------------------------------------------ public

  stats(): NetStackStats {
    const c = this.counters;
    return {
      packetsIn: c.packetsIn,
      bytesIn: c.bytesIn,
      packetsOut: c.packetsOut,
      bytesOut: c.bytesOut,
      linkWriteFailed: c.linkWriteFailed,
      drops: { ...this.drops },
      tcp: {
        ...this.table.stats,
        connections: this.table.size,
        halfOpen: this.table.halfOpenCount,
        flows: this.duplexes.size,
        flowsOpened: c.flowsOpened,
      },
      udp: {
        quicRefused: c.quicRefused,
        dnsForwarded: c.dnsForwarded,
        dnsAnswered: c.dnsAnswered,
        dnsPending: this.dns?.pendingCount ?? 0,
        dnsLocal: c.dnsLocal,
        relayed: c.relayed,
        relayReplies: c.relayReplies,
        relayFlows: this.relay.size,
        handedOff: c.handedOff,
      },
      icmp: { echoReplied: c.echoReplied },
      fragments: { ...this.reassembler.stats, inFlight: this.reassembler.size, bufferedBytes: this.reassembler.bufferedBytes },
    };
  }

  /**
   * Reset every open TCP connection (the RSTs go out), close the UDP
   * sockets and stop the clock. The link stays open: its owner closes it.
   */
  close(): void {
    if (this.closed) return;
    for (const d of Array.from(this.duplexes.values())) d.destroy();
    this.pump();
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.duplexes.clear();
    this.dirty.clear();
    this.dns?.close();
    this.relay.close();
    this.reassembler.clear();
    this.link.onPackets(() => {});
  }
}
