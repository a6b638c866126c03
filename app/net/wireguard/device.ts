/**
 * WireGuardDevice: the sans-IO WireGuard engine (wireguard-go device/*).
 *
 * The shell owns the UDP socket, the TUN side and the clock. It calls:
 *   - receiveDatagram(bytes, from, now)  for every UDP datagram,
 *   - sendPacket(ipPacket, now)          for every inner IP packet to send,
 *   - tick(now)                          whenever now >= nextTimerAt(),
 * and carries out the returned Outputs: "datagram" goes to the UDP socket,
 * "packet" (a decrypted, authenticated, allowed inner packet) to the stack,
 * "drop" and "peer-event" to logs and metrics.
 *
 * Receive pipeline (device/receive.go):
 *   1. parse the message (checked view; exact lengths for handshakes)
 *   2. handshakes: mac1, then under load mac2 or a cookie reply
 *   3. Consume{Initiation,Response}; answer / derive keys
 *   4. transport: index -> keypair, expiry, AEAD open, anti-replay window
 *   5. confirm a "next" keypair, roam the endpoint, timers
 *   6. keepalive ends here; else cryptokey routing check of the source IP
 * Send pipeline (device/send.go):
 *   1. longest-prefix match of the destination IP -> peer
 *   2. stage the packet (bounded); without a valid keypair start a handshake
 *   3. pad to 16, seal with the next counter, timers, rekey if stale
 *
 * Every failure toward the network is a silent drop reported as
 * { kind: "drop", reason }; nothing here throws on network input.
 */
import {
  AEAD_TAG_LEN,
  COOKIE_REFRESH_TIME,
  KEEPALIVE_TIMEOUT,
  MAX_TIMER_HANDSHAKES,
  REJECT_AFTER_MESSAGES_LIMIT,
  REJECT_AFTER_TIME,
  REKEY_AFTER_MESSAGES,
  REKEY_AFTER_TIME,
  REKEY_TIMEOUT,
  REKEY_TIMEOUT_JITTER_MAX,
  compareBytes,
  fromBase64Key,
  getDefaultCrypto,
  tai64n,
  toBase64,
  type WgCrypto,
} from "./crypto.ts";
import {
  MacChecker,
  MessageTransportHeaderSize,
  emitTransportHeader,
  parseMessage,
  type MessageCookieReply,
  type MessageInitiation,
  type MessageResponse,
  type MessageTransport,
  type ParseDrop,
} from "./messages.ts";
import {
  beginSymmetricSession,
  clearHandshake,
  consumeInitiation,
  consumeResponse,
  createInitiation,
  createResponse,
  type Keypair,
  type NoiseDrop,
  type StaticIdentity,
} from "./noise.ts";
import { AllowedIps, innerAddresses, parsePrefix, parseIp, formatIp, type Prefix } from "./allowedips.ts";
import { HandshakeRateLimiter } from "./ratelimiter.ts";
import { Peer, QUEUE_STAGED_SIZE, TIMER_NAMES, endpointBytes, sameEndpoint, type Endpoint } from "./peer.ts";

export type { Endpoint } from "./peer.ts";

export type PeerEventName =
  | "handshake-complete"
  | "endpoint-changed"
  | "handshake-failed"
  | "keys-zeroed";

export type DropReason =
  | ParseDrop
  | NoiseDrop
  | "bad-mac1"
  | "under-load-cookie-sent"
  | "handshake-rate-limited"
  | "bad-cookie-reply"
  | "unknown-receiver-index"
  | "keypair-expired"
  | "decrypt-failed"
  | "replayed"
  | "invalid-inner-packet"
  | "source-not-allowed"
  | "no-route"
  | "no-endpoint"
  | "staged-queue-full"
  | "handshake-gave-up";

export type Output =
  | { kind: "datagram"; to: Endpoint; data: Uint8Array }
  | { kind: "packet"; peer: string; data: Uint8Array }
  | { kind: "drop"; reason: DropReason; peer?: string }
  | { kind: "peer-event"; peer: string; event: PeerEventName; endpoint?: Endpoint };

export interface PeerConfig {
  /** 32 bytes or base64 (wg's format). */
  publicKey: Uint8Array | string;
  presharedKey?: Uint8Array | string;
  /** "10.0.0.2/32", "fd00::/64", "0.0.0.0/0" … */
  allowedIPs: readonly string[];
  endpoint?: Endpoint;
  /** Seconds, as wg(8)'s PersistentKeepalive; 0 or absent: off. */
  persistentKeepalive?: number;
}

export interface DeviceOptions {
  privateKey: Uint8Array | string;
  /** The current time in ms (Unix epoch: TAI64N timestamps are derived from it). */
  now: number;
  crypto?: WgCrypto;
  /** Inner MTU used for padding (wireguard-go pads to 16 but never beyond the MTU). */
  mtu?: number;
  /** Force the under-load state (cookie replies) on or off; undefined: automatic. */
  underLoad?: boolean;
  /** Automatic under-load: more than this many handshake messages within one second. */
  underLoadThreshold?: number;
  /** Jitter for handshake timers in ms; default uniform in [0, 334). */
  jitter?: () => number;
}

export interface PeerStatus {
  publicKey: string;
  endpoint: Endpoint | undefined;
  allowedIPs: string[];
  lastHandshake: number | undefined;
  rxBytes: number;
  txBytes: number;
  hasSession: boolean;
}

interface IndexEntry {
  peer: Peer;
  keypair: Keypair | undefined;
}

const UNDER_LOAD_AFTER = 1000;

function keyBytes(k: Uint8Array | string): Uint8Array {
  return typeof k === "string" ? fromBase64Key(k) : new Uint8Array(k);
}

/** wireguard-go calculatePaddingSize: pad to 16, but not past the MTU. */
export function paddedLength(size: number, mtu: number): number {
  if (size === 0) return 0;
  let last = size;
  if (mtu > 0 && last > mtu) last %= mtu;
  let padded = (last + 15) & ~15;
  if (mtu > 0 && padded > mtu) padded = mtu;
  return size + (padded - last);
}

export class WireGuardDevice {
  readonly crypto: WgCrypto;
  readonly identity: StaticIdentity;
  readonly publicKey: string;
  readonly mtu: number;
  #peers = new Map<string, Peer>();
  #routes = new AllowedIps<Peer>();
  #index = new Map<number, IndexEntry>();
  #macChecker: MacChecker;
  #jitter: () => number;
  #lastTimestamp: Uint8Array = new Uint8Array(12);
  #forcedUnderLoad: boolean | undefined;
  /** Under load, handshake messages per source address (wireguard-go's ratelimiter). */
  #handshakeLimiter = new HandshakeRateLimiter();
  #underLoadThreshold: number;
  #loadWindowStart = 0;
  #loadCount = 0;
  #underLoadUntil = Number.NEGATIVE_INFINITY;

  constructor(opts: DeviceOptions) {
    this.crypto = opts.crypto ?? getDefaultCrypto();
    const privateKey = keyBytes(opts.privateKey);
    this.identity = { privateKey, publicKey: this.crypto.publicKey(privateKey) };
    this.publicKey = toBase64(this.identity.publicKey);
    this.mtu = opts.mtu ?? 1420;
    this.#macChecker = new MacChecker(this.crypto, this.identity.publicKey, COOKIE_REFRESH_TIME, opts.now);
    this.#jitter = opts.jitter ?? (() => Math.floor(Math.random() * REKEY_TIMEOUT_JITTER_MAX));
    this.#forcedUnderLoad = opts.underLoad;
    this.#underLoadThreshold = opts.underLoadThreshold ?? 512;
  }

  // -------------------------------------------------------------------------
  // Configuration
  // -------------------------------------------------------------------------

  /** Adds (or replaces) a peer. Throws on a bad key or prefix (configuration, not network input). */
  addPeer(cfg: PeerConfig): string {
    const publicKey = keyBytes(cfg.publicKey);
    const id = toBase64(publicKey);
    if (this.#peers.has(id)) this.removePeer(id);
    const prefixes: Prefix[] = cfg.allowedIPs.map((s) => {
      const p = parsePrefix(s.trim());
      if (p === undefined) throw new Error(`wireguard: bad allowed IP ${JSON.stringify(s)}`);
      return p;
    });
    const peer = new Peer(
      this.crypto,
      this.identity,
      {
        publicKey,
        presharedKey: cfg.presharedKey === undefined ? undefined : keyBytes(cfg.presharedKey),
        endpoint: cfg.endpoint,
        persistentKeepalive: cfg.persistentKeepalive,
      },
      this.#jitter,
    );
    this.#peers.set(id, peer);
    for (const p of prefixes) this.#routes.insert(p, peer);
    return id;
  }

  removePeer(publicKey: Uint8Array | string): boolean {
    const id = typeof publicKey === "string" ? publicKey : toBase64(publicKey);
    const peer = this.#peers.get(id);
    if (peer === undefined) return false;
    this.#zeroKeyMaterial(peer);
    this.#routes.removeValue(peer);
    this.#peers.delete(id);
    return true;
  }

  peers(): string[] {
    return [...this.#peers.keys()];
  }

  peerStatus(publicKey: string): PeerStatus | undefined {
    const p = this.#peers.get(publicKey);
    if (p === undefined) return undefined;
    return {
      publicKey: p.id,
      endpoint: p.endpoint,
      allowedIPs: this.#routes.entriesOf(p).map((x) => `${formatIp(x.address)}/${x.bits}`),
      lastHandshake: p.lastHandshakeComplete,
      rxBytes: p.rxBytes,
      txBytes: p.txBytes,
      hasSession: p.current !== undefined,
    };
  }

  /** Forces the under-load state (true/false) or returns it to automatic (undefined). */
  setUnderLoad(v: boolean | undefined): void {
    this.#forcedUnderLoad = v;
  }

  // -------------------------------------------------------------------------
  // Time
  // -------------------------------------------------------------------------

  /** The earliest time at which tick() has work to do. */
  nextTimerAt(): number | undefined {
    let t: number | undefined;
    for (const p of this.#peers.values()) {
      const d = p.nextTimerAt();
      if (d !== undefined && (t === undefined || d < t)) t = d;
    }
    return t;
  }

  /** Runs every timer whose deadline has passed (wireguard-go timers.go expiry handlers). */
  tick(now: number): Output[] {
    const out: Output[] = [];
    for (const peer of this.#peers.values()) {
      for (const name of TIMER_NAMES) {
        const d = peer.timers[name];
        if (d === undefined || d > now) continue;
        peer.timers[name] = undefined;
        switch (name) {
          case "retransmitHandshake":
            this.#expiredRetransmitHandshake(peer, now, out);
            break;
          case "sendKeepalive":
            this.#sendKeepalive(peer, now, out);
            if (peer.needAnotherKeepalive) {
              peer.needAnotherKeepalive = false;
              peer.timers.sendKeepalive = now + KEEPALIVE_TIMEOUT;
            }
            break;
          case "newHandshake":
            // We sent data and heard nothing back for KEEPALIVE + REKEY_TIMEOUT.
            this.#sendHandshakeInitiation(peer, false, now, out);
            break;
          case "zeroKeyMaterial":
            this.#zeroKeyMaterial(peer);
            out.push({ kind: "peer-event", peer: peer.id, event: "keys-zeroed" });
            break;
          case "persistentKeepalive":
            if (peer.persistentKeepaliveInterval > 0) this.#sendKeepalive(peer, now, out);
            break;
        }
      }
    }
    return out;
  }

  #expiredRetransmitHandshake(peer: Peer, now: number, out: Output[]): void {
    if (peer.handshakeAttempts > MAX_TIMER_HANDSHAKES) {
      // Gave up after REKEY_ATTEMPT_TIME: drop what waited, forget keys later.
      peer.timers.sendKeepalive = undefined;
      const dropped = peer.staged.length;
      peer.staged = [];
      for (let i = 0; i < dropped; i++) out.push({ kind: "drop", reason: "handshake-gave-up", peer: peer.id });
      peer.timers.zeroKeyMaterial ??= now + REJECT_AFTER_TIME * 3;
      out.push({ kind: "peer-event", peer: peer.id, event: "handshake-failed" });
      return;
    }
    peer.handshakeAttempts++;
    this.#sendHandshakeInitiation(peer, true, now, out);
  }

  // -------------------------------------------------------------------------
  // Send path
  // -------------------------------------------------------------------------

  /** Sends an inner IP packet to the peer whose allowed IPs hold its destination. */
  sendPacket(ipPacket: Uint8Array, now: number): Output[] {
    const out: Output[] = [];
    const inner = innerAddresses(ipPacket);
    if (inner === undefined) {
      out.push({ kind: "drop", reason: "invalid-inner-packet" });
      return out;
    }
    const peer = this.#routes.lookup(inner.destination);
    if (peer === undefined) {
      out.push({ kind: "drop", reason: "no-route" });
      return out;
    }
    this.#stage(peer, ipPacket.subarray(0, inner.totalLength), out);
    this.#sendStagedPackets(peer, now, out);
    return out;
  }

  /** Sends an inner packet to a given peer, bypassing the routing table (e.g. tests, replies). */
  sendPacketToPeer(publicKey: string, ipPacket: Uint8Array, now: number): Output[] {
    const out: Output[] = [];
    const peer = this.#peers.get(publicKey);
    if (peer === undefined) {
      out.push({ kind: "drop", reason: "no-route" });
      return out;
    }
    this.#stage(peer, ipPacket, out);
    this.#sendStagedPackets(peer, now, out);
    return out;
  }

  #stage(peer: Peer, packet: Uint8Array, out: Output[]): void {
    if (peer.staged.length >= QUEUE_STAGED_SIZE) {
      peer.staged.shift();
      out.push({ kind: "drop", reason: "staged-queue-full", peer: peer.id });
    }
    peer.staged.push(packet);
  }

  #sendKeepalive(peer: Peer, now: number, out: Output[]): void {
    if (peer.staged.length === 0) peer.staged.push(new Uint8Array(0));
    this.#sendStagedPackets(peer, now, out);
  }

  #keypairUsableForSending(kp: Keypair | undefined, now: number): kp is Keypair {
    return kp !== undefined && kp.sendNonce < REJECT_AFTER_MESSAGES_LIMIT && now - kp.created < REJECT_AFTER_TIME;
  }

  #sendStagedPackets(peer: Peer, now: number, out: Output[]): void {
    if (peer.staged.length === 0) return;
    const kp = peer.current;
    if (!this.#keypairUsableForSending(kp, now)) {
      this.#sendHandshakeInitiation(peer, false, now, out);
      return;
    }
    if (peer.endpoint === undefined) {
      // Keep them staged: a handshake from the peer will tell us where it is.
      out.push({ kind: "drop", reason: "no-endpoint", peer: peer.id });
      return;
    }
    const staged = peer.staged;
    peer.staged = [];
    for (const pkt of staged) {
      const data = this.#seal(kp, pkt);
      peer.txBytes += data.length;
      out.push({ kind: "datagram", to: peer.endpoint, data });
      peer.timersAnyAuthenticatedPacketTraversal(now);
      peer.timersAnyAuthenticatedPacketSent();
      if (pkt.length !== 0) peer.timersDataSent(now);
    }
    this.#keepKeyFreshSending(peer, kp, now, out);
  }

  #seal(kp: Keypair, pkt: Uint8Array): Uint8Array {
    const counter = kp.sendNonce++;
    const padded = paddedLength(pkt.length, this.mtu);
    let plain = pkt;
    if (padded !== pkt.length) {
      plain = new Uint8Array(padded);
      plain.set(pkt);
    }
    const data = new Uint8Array(MessageTransportHeaderSize + padded + AEAD_TAG_LEN);
    emitTransportHeader(data, kp.remoteIndex, counter);
    this.crypto.seal(kp.sendKey, counter, plain, undefined, data, MessageTransportHeaderSize);
    return data;
  }

  #keepKeyFreshSending(peer: Peer, kp: Keypair, now: number, out: Output[]): void {
    if (kp.isInitiator && (kp.sendNonce > REKEY_AFTER_MESSAGES || now - kp.created > REKEY_AFTER_TIME)) {
      this.#sendHandshakeInitiation(peer, false, now, out);
    }
  }

  #nextTimestamp(now: number): Uint8Array {
    let ts = tai64n(now);
    if (compareBytes(ts, this.#lastTimestamp) <= 0) {
      ts = new Uint8Array(this.#lastTimestamp);
      for (let i = ts.length - 1; i >= 0; i--) {
        ts[i] = (ts[i]! + 1) & 0xff;
        if (ts[i] !== 0) break;
      }
    }
    this.#lastTimestamp = ts;
    return ts;
  }

  #newIndex(entry: IndexEntry): number {
    for (;;) {
      const b = this.crypto.randomBytes(4);
      const idx = (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
      if (!this.#index.has(idx)) {
        this.#index.set(idx, entry);
        return idx;
      }
    }
  }

  #dropHandshakeIndex(peer: Peer): void {
    const h = peer.handshake;
    if (h.localIndex !== 0) {
      const e = this.#index.get(h.localIndex);
      if (e !== undefined && e.peer === peer && e.keypair === undefined) this.#index.delete(h.localIndex);
    }
  }

  #sendHandshakeInitiation(peer: Peer, isRetry: boolean, now: number, out: Output[]): void {
    if (!isRetry) peer.handshakeAttempts = 0;
    if (now - peer.lastSentHandshake < REKEY_TIMEOUT) return;
    peer.lastSentHandshake = now;
    this.#dropHandshakeIndex(peer);
    const localIndex = this.#newIndex({ peer, keypair: undefined });
    const r = createInitiation(this.crypto, this.identity, peer, localIndex, this.#nextTimestamp(now));
    if (!r.ok) {
      this.#index.delete(localIndex);
      out.push({ kind: "drop", reason: r.reason, peer: peer.id });
      return;
    }
    peer.macs.addMacs(r.value, now);
    peer.timersAnyAuthenticatedPacketTraversal(now);
    peer.timersAnyAuthenticatedPacketSent();
    peer.timersHandshakeInitiated(now);
    if (peer.endpoint === undefined) {
      out.push({ kind: "drop", reason: "no-endpoint", peer: peer.id });
      return;
    }
    out.push({ kind: "datagram", to: peer.endpoint, data: r.value });
  }

  // -------------------------------------------------------------------------
  // Receive path
  // -------------------------------------------------------------------------

  /** Handles one UDP datagram from the network. */
  receiveDatagram(bytes: Uint8Array, from: Endpoint, now: number): Output[] {
    const out: Output[] = [];
    const parsed = parseMessage(bytes);
    if (!parsed.ok) {
      out.push({ kind: "drop", reason: parsed.reason });
      return out;
    }
    const m = parsed.message;
    switch (m.type) {
      case 1:
        if (this.#admitHandshake(m, from, now, out)) this.#receiveInitiation(m, from, now, out);
        break;
      case 2:
        if (this.#admitHandshake(m, from, now, out)) this.#receiveResponse(m, from, now, out);
        break;
      case 3:
        this.#receiveCookieReply(m, now, out);
        break;
      case 4:
        this.#receiveTransport(m, from, now, out);
        break;
    }
    return out;
  }

  #isUnderLoad(now: number): boolean {
    if (this.#forcedUnderLoad !== undefined) return this.#forcedUnderLoad;
    if (now - this.#loadWindowStart >= 1000) {
      this.#loadWindowStart = now;
      this.#loadCount = 0;
    }
    if (++this.#loadCount > this.#underLoadThreshold) this.#underLoadUntil = now + UNDER_LOAD_AFTER;
    return now < this.#underLoadUntil;
  }

  /** §5.4.4 / §5.4.7: mac1 always; under load, mac2 or answer with a cookie reply. */
  #admitHandshake(m: MessageInitiation | MessageResponse, from: Endpoint, now: number, out: Output[]): boolean {
    if (!this.#macChecker.checkMac1(m.bytes)) {
      out.push({ kind: "drop", reason: "bad-mac1" });
      return false;
    }
    if (!this.#isUnderLoad(now)) return true;
    const source = endpointBytes(from);
    if (this.#macChecker.checkMac2(m.bytes, source, now)) {
      // A proven address may still not flood: ~20 handshakes a second per source, as wireguard-go.
      const address = parseIp(from.address);
      if (address === undefined || this.#handshakeLimiter.allow(address, now)) return true;
      out.push({ kind: "drop", reason: "handshake-rate-limited" });
      return false;
    }
    out.push({ kind: "datagram", to: from, data: this.#macChecker.createCookieReply(m.bytes, m.sender, source, now) });
    out.push({ kind: "drop", reason: "under-load-cookie-sent" });
    return false;
  }

  #setEndpoint(peer: Peer, from: Endpoint, out: Output[]): void {
    if (sameEndpoint(peer.endpoint, from)) return;
    peer.endpoint = { address: from.address, port: from.port };
    out.push({ kind: "peer-event", peer: peer.id, event: "endpoint-changed", endpoint: peer.endpoint });
  }

  #receiveInitiation(m: MessageInitiation, from: Endpoint, now: number, out: Output[]): void {
    const r = consumeInitiation(this.crypto, this.identity, m, (pk) => this.#peers.get(toBase64(pk)), now);
    if (!r.ok) {
      out.push({ kind: "drop", reason: r.reason });
      return;
    }
    const peer = r.value;
    this.#setEndpoint(peer, from, out);
    peer.timersAnyAuthenticatedPacketTraversal(now);
    peer.timersAnyAuthenticatedPacketReceived();
    // SendHandshakeResponse
    peer.lastSentHandshake = now;
    this.#dropHandshakeIndex(peer);
    const entry: IndexEntry = { peer, keypair: undefined };
    const localIndex = this.#newIndex(entry);
    const resp = createResponse(this.crypto, peer, localIndex);
    if (!resp.ok) {
      this.#index.delete(localIndex);
      out.push({ kind: "drop", reason: resp.reason, peer: peer.id });
      return;
    }
    peer.macs.addMacs(resp.value, now);
    const kp = beginSymmetricSession(this.crypto, peer, now);
    if (!kp.ok) {
      this.#index.delete(localIndex);
      out.push({ kind: "drop", reason: kp.reason, peer: peer.id });
      return;
    }
    entry.keypair = kp.value;
    this.#installKeypair(peer, kp.value);
    peer.timersSessionDerived(now);
    peer.timersAnyAuthenticatedPacketTraversal(now);
    peer.timersAnyAuthenticatedPacketSent();
    out.push({ kind: "datagram", to: peer.endpoint ?? from, data: resp.value });
  }

  #receiveResponse(m: MessageResponse, from: Endpoint, now: number, out: Output[]): void {
    const r = consumeResponse(this.crypto, this.identity, m, (idx) => {
      const e = this.#index.get(idx);
      return e !== undefined && e.keypair === undefined ? e.peer : undefined;
    });
    if (!r.ok) {
      out.push({ kind: "drop", reason: r.reason });
      return;
    }
    const peer = r.value;
    this.#setEndpoint(peer, from, out);
    peer.timersAnyAuthenticatedPacketTraversal(now);
    peer.timersAnyAuthenticatedPacketReceived();
    const kp = beginSymmetricSession(this.crypto, peer, now);
    if (!kp.ok) {
      out.push({ kind: "drop", reason: kp.reason, peer: peer.id });
      return;
    }
    const e = this.#index.get(kp.value.localIndex);
    if (e !== undefined) e.keypair = kp.value;
    this.#installKeypair(peer, kp.value);
    peer.timersSessionDerived(now);
    peer.timersHandshakeComplete(now);
    out.push({ kind: "peer-event", peer: peer.id, event: "handshake-complete" });
    // The initiator speaks first so the responder can confirm the session.
    this.#sendKeepalive(peer, now, out);
  }

  #deleteKeypair(kp: Keypair | undefined): void {
    if (kp === undefined) return;
    const e = this.#index.get(kp.localIndex);
    if (e !== undefined && e.keypair === kp) this.#index.delete(kp.localIndex);
    kp.sendKey.fill(0);
    kp.recvKey.fill(0);
  }

  /** wireguard-go beginSymmetricSession's slot rotation. */
  #installKeypair(peer: Peer, kp: Keypair): void {
    if (kp.isInitiator) {
      if (peer.next !== undefined) {
        const next = peer.next;
        peer.next = undefined;
        this.#deleteKeypair(peer.previous);
        this.#deleteKeypair(peer.current);
        peer.previous = next;
      } else {
        this.#deleteKeypair(peer.previous);
        peer.previous = peer.current;
      }
      peer.current = kp;
    } else {
      this.#deleteKeypair(peer.next);
      this.#deleteKeypair(peer.previous);
      peer.previous = undefined;
      peer.next = kp;
    }
  }

  /** wireguard-go ReceivedWithKeypair: the first packet under "next" confirms it. */
  #receivedWithKeypair(peer: Peer, kp: Keypair): boolean {
    if (peer.next !== kp) return false;
    this.#deleteKeypair(peer.previous);
    peer.previous = peer.current;
    peer.current = kp;
    peer.next = undefined;
    return true;
  }

  #receiveCookieReply(m: MessageCookieReply, now: number, out: Output[]): void {
    const e = this.#index.get(m.receiver);
    if (e === undefined || !e.peer.macs.consumeCookieReply(m, now)) {
      out.push({ kind: "drop", reason: "bad-cookie-reply" });
    }
  }

  #receiveTransport(m: MessageTransport, from: Endpoint, now: number, out: Output[]): void {
    const e = this.#index.get(m.receiver);
    const kp = e?.keypair;
    if (e === undefined || kp === undefined) {
      out.push({ kind: "drop", reason: "unknown-receiver-index" });
      return;
    }
    const peer = e.peer;
    if (now - kp.created >= REJECT_AFTER_TIME || m.counter >= REJECT_AFTER_MESSAGES_LIMIT) {
      out.push({ kind: "drop", reason: "keypair-expired", peer: peer.id });
      return;
    }
    const plain = this.crypto.open(kp.recvKey, m.counter, m.content, undefined);
    if (plain === undefined) {
      out.push({ kind: "drop", reason: "decrypt-failed", peer: peer.id });
      return;
    }
    if (!kp.replay.validateCounter(m.counter, REJECT_AFTER_MESSAGES_LIMIT)) {
      out.push({ kind: "drop", reason: "replayed", peer: peer.id });
      return;
    }
    peer.rxBytes += m.content.length + MessageTransportHeaderSize;
    const confirmed = this.#receivedWithKeypair(peer, kp);
    if (confirmed) {
      peer.timersHandshakeComplete(now);
      out.push({ kind: "peer-event", peer: peer.id, event: "handshake-complete" });
    }
    this.#setEndpoint(peer, from, out);
    if (confirmed) this.#sendStagedPackets(peer, now, out);
    // keepKeyFreshReceiving: the initiator rekeys shortly before the session dies.
    if (
      kp.isInitiator &&
      !peer.sentLastMinuteHandshake &&
      peer.current === kp &&
      now - kp.created > REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
    ) {
      peer.sentLastMinuteHandshake = true;
      this.#sendHandshakeInitiation(peer, false, now, out);
    }
    peer.timersAnyAuthenticatedPacketTraversal(now);
    peer.timersAnyAuthenticatedPacketReceived();
    if (plain.length === 0) return; // keepalive
    peer.timersDataReceived(now);
    const inner = innerAddresses(plain);
    if (inner === undefined) {
      out.push({ kind: "drop", reason: "invalid-inner-packet", peer: peer.id });
      return;
    }
    if (this.#routes.lookup(inner.source) !== peer) {
      out.push({ kind: "drop", reason: "source-not-allowed", peer: peer.id });
      return;
    }
    out.push({ kind: "packet", peer: peer.id, data: plain.subarray(0, inner.totalLength) });
  }

  #zeroKeyMaterial(peer: Peer): void {
    this.#deleteKeypair(peer.previous);
    this.#deleteKeypair(peer.current);
    this.#deleteKeypair(peer.next);
    peer.previous = peer.current = peer.next = undefined;
    this.#dropHandshakeIndex(peer);
    clearHandshake(peer.handshake);
  }
}
