/**
 * Per-peer state (wireguard-go device/peer.go, device/timers.go): the Noise
 * handshake, the three keypair slots (previous, current, next), the staged
 * packet queue, and the five timers kept as absolute deadlines in `now` ms.
 *
 * The timer *events* (timersDataSent, …) live here as small methods that only
 * move deadlines; what happens when a deadline passes is the device's job.
 */
import {
  COOKIE_REFRESH_TIME,
  KEEPALIVE_TIMEOUT,
  REJECT_AFTER_TIME,
  REKEY_TIMEOUT,
  toBase64,
  type WgCrypto,
} from "./crypto.ts";
import { MacGenerator } from "./messages.ts";
import { newNoisePeer, type Handshake, type Keypair, type NoisePeer, type StaticIdentity } from "./noise.ts";
import { parseIp } from "./allowedips.ts";

export interface Endpoint {
  address: string;
  port: number;
}

export function sameEndpoint(a: Endpoint | undefined, b: Endpoint): boolean {
  return a !== undefined && a.address === b.address && a.port === b.port;
}

/** Aip || port (big-endian), the input of a cookie (§5.4.7). */
export function endpointBytes(e: Endpoint): Uint8Array {
  const ip = parseIp(e.address) ?? new TextEncoder().encode(e.address);
  const out = new Uint8Array(ip.length + 2);
  out.set(ip);
  out[ip.length] = (e.port >> 8) & 0xff;
  out[ip.length + 1] = e.port & 0xff;
  return out;
}

/** wireguard-go QueueStagedSize: packets held per peer while a handshake runs. */
export const QUEUE_STAGED_SIZE = 128;

export type TimerName = "retransmitHandshake" | "sendKeepalive" | "newHandshake" | "zeroKeyMaterial" | "persistentKeepalive";
export const TIMER_NAMES: readonly TimerName[] = [
  "retransmitHandshake",
  "sendKeepalive",
  "newHandshake",
  "zeroKeyMaterial",
  "persistentKeepalive",
];

export class Peer implements NoisePeer {
  readonly id: string;
  readonly remoteStatic: Uint8Array;
  readonly presharedKey: Uint8Array;
  readonly precomputedStaticStatic: Uint8Array;
  handshake: Handshake;
  readonly macs: MacGenerator;

  endpoint: Endpoint | undefined;
  /** Persistent keepalive interval in ms (0: off). */
  persistentKeepaliveInterval: number;

  previous: Keypair | undefined;
  current: Keypair | undefined;
  next: Keypair | undefined;

  /** Packets waiting for a session; a zero-length entry is a keepalive. */
  staged: Uint8Array[] = [];

  /** Timer deadlines (undefined: not pending). */
  timers: Record<TimerName, number | undefined> = {
    retransmitHandshake: undefined,
    sendKeepalive: undefined,
    newHandshake: undefined,
    zeroKeyMaterial: undefined,
    persistentKeepalive: undefined,
  };
  handshakeAttempts = 0;
  needAnotherKeepalive = false;
  sentLastMinuteHandshake = false;
  lastSentHandshake = Number.NEGATIVE_INFINITY;
  lastHandshakeComplete: number | undefined;

  rxBytes = 0;
  txBytes = 0;

  constructor(
    crypto: WgCrypto,
    local: StaticIdentity,
    opts: { publicKey: Uint8Array; presharedKey?: Uint8Array | undefined; endpoint?: Endpoint | undefined; persistentKeepalive?: number | undefined },
    private readonly jitter: () => number,
  ) {
    const np = newNoisePeer(crypto, local, opts.publicKey, opts.presharedKey);
    this.id = toBase64(opts.publicKey);
    this.remoteStatic = np.remoteStatic;
    this.presharedKey = np.presharedKey;
    this.precomputedStaticStatic = np.precomputedStaticStatic;
    this.handshake = np.handshake;
    this.macs = new MacGenerator(crypto, opts.publicKey, COOKIE_REFRESH_TIME);
    this.endpoint = opts.endpoint;
    this.persistentKeepaliveInterval = (opts.persistentKeepalive ?? 0) * 1000;
    // wg(8): setting a persistent keepalive sends one at once.
    if (this.persistentKeepaliveInterval > 0) this.timers.persistentKeepalive = 0;
  }

  /** The earliest pending deadline. */
  nextTimerAt(): number | undefined {
    let t: number | undefined;
    for (const n of TIMER_NAMES) {
      const d = this.timers[n];
      if (d !== undefined && (t === undefined || d < t)) t = d;
    }
    return t;
  }

  // -- timer events (wireguard-go timers.go) --------------------------------

  /** Should be called after an authenticated data packet is sent. */
  timersDataSent(now: number): void {
    this.timers.newHandshake ??= now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + this.jitter();
  }

  /** Should be called after an authenticated data packet is received. */
  timersDataReceived(now: number): void {
    if (this.timers.sendKeepalive === undefined) this.timers.sendKeepalive = now + KEEPALIVE_TIMEOUT;
    else this.needAnotherKeepalive = true;
  }

  /** Any authenticated packet sent: no need for a passive keepalive. */
  timersAnyAuthenticatedPacketSent(): void {
    this.timers.sendKeepalive = undefined;
  }

  /** Any authenticated packet received: the session is alive. */
  timersAnyAuthenticatedPacketReceived(): void {
    this.timers.newHandshake = undefined;
  }

  timersHandshakeInitiated(now: number): void {
    this.timers.retransmitHandshake = now + REKEY_TIMEOUT + this.jitter();
  }

  timersHandshakeComplete(now: number): void {
    this.timers.retransmitHandshake = undefined;
    this.handshakeAttempts = 0;
    this.sentLastMinuteHandshake = false;
    this.lastHandshakeComplete = now;
  }

  /** A new keypair exists: zero everything if nothing new comes for 3 × REJECT_AFTER_TIME. */
  timersSessionDerived(now: number): void {
    this.timers.zeroKeyMaterial = now + REJECT_AFTER_TIME * 3;
  }

  timersAnyAuthenticatedPacketTraversal(now: number): void {
    if (this.persistentKeepaliveInterval > 0) this.timers.persistentKeepalive = now + this.persistentKeepaliveInterval;
  }
}
