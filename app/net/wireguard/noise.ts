/**
 * The Noise_IKpsk2 handshake (whitepaper §5.4.2–§5.4.6, wireguard-go
 * device/noise-protocol.go), as Create/Consume pairs over a per-peer
 * {@link Handshake} state:
 *
 *   1. initiator  createInitiation  -> MessageInitiation   (initiation-created)
 *   2. responder  consumeInitiation <- MessageInitiation   (initiation-consumed)
 *   3. responder  createResponse    -> MessageResponse     (response-created)
 *   4. initiator  consumeResponse   <- MessageResponse     (response-consumed)
 *   5. both       beginSymmetricSession -> Keypair         (zeroed)
 *
 * Each Consume computes on locals and writes the state only when every check
 * passed, so a forged message cannot disturb a handshake in progress. Failures
 * are reason values (silent drops), never exceptions. mac1/mac2 are added and
 * checked by the caller (messages.ts MacGenerator / MacChecker).
 */
import {
  CONSTRUCTION,
  IDENTIFIER,
  INITIATIONS_PER_SECOND,
  KEY_LEN,
  compareBytes,
  isZero,
  kdf1,
  kdf2,
  kdf3,
  type WgCrypto,
} from "./crypto.ts";
import {
  emitInitiation,
  emitResponse,
  ENCRYPTED_NOTHING_LEN,
  ENCRYPTED_STATIC_LEN,
  ENCRYPTED_TIMESTAMP_LEN,
  type MessageInitiation,
  type MessageResponse,
} from "./messages.ts";
import { ReplayFilter } from "./replay.ts";

export type HandshakeStateName =
  | "zeroed"
  | "initiation-created"
  | "initiation-consumed"
  | "response-created"
  | "response-consumed";

export interface Handshake {
  state: HandshakeStateName;
  hash: Uint8Array;
  chainKey: Uint8Array;
  localEphemeral: Uint8Array | undefined;
  remoteEphemeral: Uint8Array | undefined;
  localIndex: number;
  remoteIndex: number;
  /** TAI64N of the newest initiation consumed from this peer (replay protection). */
  lastTimestamp: Uint8Array;
  /** When the last initiation from this peer was consumed (flood protection). */
  lastInitiationConsumed: number | undefined;
}

/** What the handshake needs to know about a peer. */
export interface NoisePeer {
  remoteStatic: Uint8Array;
  presharedKey: Uint8Array;
  /** DH(Spriv_local, Spub_remote), computed once when the peer is added. */
  precomputedStaticStatic: Uint8Array;
  handshake: Handshake;
}

export interface StaticIdentity {
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}

export interface Keypair {
  sendKey: Uint8Array;
  recvKey: Uint8Array;
  /** The next counter to send. */
  sendNonce: number;
  replay: ReplayFilter;
  isInitiator: boolean;
  created: number;
  localIndex: number;
  remoteIndex: number;
}

export type NoiseDrop =
  | "handshake-bad-state"
  | "handshake-dh-failed"
  | "handshake-decrypt-static-failed"
  | "handshake-unknown-peer"
  | "handshake-decrypt-timestamp-failed"
  | "handshake-replayed-timestamp"
  | "handshake-flood"
  | "handshake-decrypt-empty-failed"
  | "handshake-unknown-index";

export type NoiseResult<T> = { ok: true; value: T } | { ok: false; reason: NoiseDrop };

const EMPTY = new Uint8Array(0);
/** wireguard-go HandshakeInitationRate: consume at most 50 initiations/s per peer. */
export const HANDSHAKE_INITIATION_RATE = 1000 / INITIATIONS_PER_SECOND;

let initial: { chainKey: Uint8Array; hash: Uint8Array } | undefined;

/** InitialChainKey = HASH(CONSTRUCTION); InitialHash = HASH(InitialChainKey || IDENTIFIER). */
export function initialChainKeyAndHash(c: WgCrypto): { chainKey: Uint8Array; hash: Uint8Array } {
  if (initial === undefined) {
    const chainKey = c.hash(CONSTRUCTION);
    initial = { chainKey, hash: c.hash(chainKey, IDENTIFIER) };
  }
  return initial;
}

export function newHandshake(): Handshake {
  return {
    state: "zeroed",
    hash: new Uint8Array(32),
    chainKey: new Uint8Array(32),
    localEphemeral: undefined,
    remoteEphemeral: undefined,
    localIndex: 0,
    remoteIndex: 0,
    lastTimestamp: new Uint8Array(12),
    lastInitiationConsumed: undefined,
  };
}

/** Forgets the ephemeral state of a handshake (not its replay timestamps). */
export function clearHandshake(h: Handshake): void {
  h.state = "zeroed";
  h.hash.fill(0);
  h.chainKey.fill(0);
  h.localEphemeral?.fill(0);
  h.localEphemeral = undefined;
  h.remoteEphemeral = undefined;
  h.localIndex = 0;
  h.remoteIndex = 0;
}

export function newNoisePeer(c: WgCrypto, local: StaticIdentity, remoteStatic: Uint8Array, presharedKey?: Uint8Array): NoisePeer {
  const ss = c.dh(local.privateKey, remoteStatic) ?? new Uint8Array(KEY_LEN);
  return {
    remoteStatic,
    presharedKey: presharedKey ?? new Uint8Array(KEY_LEN),
    precomputedStaticStatic: ss,
    handshake: newHandshake(),
  };
}

/**
 * §5.4.2: the initiator's first message. `timestamp` is TAI64N(now) from the
 * caller, which keeps it strictly increasing. Returns the message without macs.
 */
export function createInitiation(
  c: WgCrypto,
  local: StaticIdentity,
  peer: NoisePeer,
  localIndex: number,
  timestamp: Uint8Array,
): NoiseResult<Uint8Array> {
  const h = peer.handshake;
  if (isZero(peer.precomputedStaticStatic)) return { ok: false, reason: "handshake-dh-failed" };
  const init = initialChainKeyAndHash(c);
  const localEphemeral = c.generatePrivateKey();
  const ephemeral = c.publicKey(localEphemeral);
  let hash = c.hash(init.hash, peer.remoteStatic);
  let chainKey = kdf1(c, init.chainKey, ephemeral);
  hash = c.hash(hash, ephemeral);
  const ss = c.dh(localEphemeral, peer.remoteStatic);
  if (ss === undefined) return { ok: false, reason: "handshake-dh-failed" };
  let key: Uint8Array;
  [chainKey, key] = kdf2(c, chainKey, ss);
  const encryptedStatic = new Uint8Array(ENCRYPTED_STATIC_LEN);
  c.seal(key, 0, local.publicKey, hash, encryptedStatic, 0);
  hash = c.hash(hash, encryptedStatic);
  [chainKey, key] = kdf2(c, chainKey, peer.precomputedStaticStatic);
  const encryptedTimestamp = new Uint8Array(ENCRYPTED_TIMESTAMP_LEN);
  c.seal(key, 0, timestamp, hash, encryptedTimestamp, 0);
  hash = c.hash(hash, encryptedTimestamp);

  h.state = "initiation-created";
  h.hash = hash;
  h.chainKey = chainKey;
  h.localEphemeral = localEphemeral;
  h.remoteEphemeral = undefined;
  h.localIndex = localIndex;
  h.remoteIndex = 0;
  return { ok: true, value: emitInitiation({ sender: localIndex, ephemeral, encryptedStatic, encryptedTimestamp }) };
}

/**
 * §5.4.2, responder side. `lookupPeer` maps the decrypted static key to a
 * peer we know. On success the peer's handshake is "initiation-consumed".
 */
export function consumeInitiation<P extends NoisePeer>(
  c: WgCrypto,
  local: StaticIdentity,
  msg: MessageInitiation,
  lookupPeer: (remoteStatic: Uint8Array) => P | undefined,
  now: number,
): NoiseResult<P> {
  const init = initialChainKeyAndHash(c);
  let hash = c.hash(init.hash, local.publicKey);
  hash = c.hash(hash, msg.ephemeral);
  let chainKey = kdf1(c, init.chainKey, msg.ephemeral);
  const ss = c.dh(local.privateKey, msg.ephemeral);
  if (ss === undefined) return { ok: false, reason: "handshake-dh-failed" };
  let key: Uint8Array;
  [chainKey, key] = kdf2(c, chainKey, ss);
  const remoteStatic = c.open(key, 0, msg.encryptedStatic, hash);
  if (remoteStatic === undefined) return { ok: false, reason: "handshake-decrypt-static-failed" };
  hash = c.hash(hash, msg.encryptedStatic);
  const peer = lookupPeer(remoteStatic);
  if (peer === undefined) return { ok: false, reason: "handshake-unknown-peer" };
  if (isZero(peer.precomputedStaticStatic)) return { ok: false, reason: "handshake-dh-failed" };
  [chainKey, key] = kdf2(c, chainKey, peer.precomputedStaticStatic);
  const timestamp = c.open(key, 0, msg.encryptedTimestamp, hash);
  if (timestamp === undefined) return { ok: false, reason: "handshake-decrypt-timestamp-failed" };
  hash = c.hash(hash, msg.encryptedTimestamp);

  const h = peer.handshake;
  if (compareBytes(timestamp, h.lastTimestamp) <= 0) return { ok: false, reason: "handshake-replayed-timestamp" };
  if (h.lastInitiationConsumed !== undefined && now - h.lastInitiationConsumed <= HANDSHAKE_INITIATION_RATE) {
    return { ok: false, reason: "handshake-flood" };
  }

  h.localEphemeral?.fill(0);
  h.state = "initiation-consumed";
  h.hash = hash;
  h.chainKey = chainKey;
  h.localEphemeral = undefined;
  h.remoteEphemeral = new Uint8Array(msg.ephemeral);
  h.remoteIndex = msg.sender;
  h.lastTimestamp = timestamp;
  h.lastInitiationConsumed = now;
  return { ok: true, value: peer };
}

/** §5.4.3: the responder's reply. The handshake must be "initiation-consumed". */
export function createResponse(c: WgCrypto, peer: NoisePeer, localIndex: number): NoiseResult<Uint8Array> {
  const h = peer.handshake;
  if (h.state !== "initiation-consumed" || h.remoteEphemeral === undefined) return { ok: false, reason: "handshake-bad-state" };
  const localEphemeral = c.generatePrivateKey();
  const ephemeral = c.publicKey(localEphemeral);
  let hash = c.hash(h.hash, ephemeral);
  let chainKey = kdf1(c, h.chainKey, ephemeral);
  const ee = c.dh(localEphemeral, h.remoteEphemeral);
  if (ee === undefined) return { ok: false, reason: "handshake-dh-failed" };
  chainKey = kdf1(c, chainKey, ee);
  const se = c.dh(localEphemeral, peer.remoteStatic);
  if (se === undefined) return { ok: false, reason: "handshake-dh-failed" };
  chainKey = kdf1(c, chainKey, se);
  const [ck, tau, key] = kdf3(c, chainKey, peer.presharedKey);
  chainKey = ck;
  hash = c.hash(hash, tau);
  const encryptedNothing = new Uint8Array(ENCRYPTED_NOTHING_LEN);
  c.seal(key, 0, EMPTY, hash, encryptedNothing, 0);
  hash = c.hash(hash, encryptedNothing);

  h.state = "response-created";
  h.hash = hash;
  h.chainKey = chainKey;
  h.localEphemeral = localEphemeral;
  h.localIndex = localIndex;
  return { ok: true, value: emitResponse({ sender: localIndex, receiver: h.remoteIndex, ephemeral, encryptedNothing }) };
}

/**
 * §5.4.3, initiator side. `lookupIndex` maps the receiver index to the peer
 * whose initiation it answers. On success the handshake is "response-consumed".
 */
export function consumeResponse<P extends NoisePeer>(
  c: WgCrypto,
  local: StaticIdentity,
  msg: MessageResponse,
  lookupIndex: (index: number) => P | undefined,
): NoiseResult<P> {
  const peer = lookupIndex(msg.receiver);
  if (peer === undefined) return { ok: false, reason: "handshake-unknown-index" };
  const h = peer.handshake;
  if (h.state !== "initiation-created" || h.localEphemeral === undefined || h.localIndex !== msg.receiver) {
    return { ok: false, reason: "handshake-bad-state" };
  }
  let hash = c.hash(h.hash, msg.ephemeral);
  let chainKey = kdf1(c, h.chainKey, msg.ephemeral);
  const ee = c.dh(h.localEphemeral, msg.ephemeral);
  if (ee === undefined) return { ok: false, reason: "handshake-dh-failed" };
  chainKey = kdf1(c, chainKey, ee);
  const se = c.dh(local.privateKey, msg.ephemeral);
  if (se === undefined) return { ok: false, reason: "handshake-dh-failed" };
  chainKey = kdf1(c, chainKey, se);
  const [ck, tau, key] = kdf3(c, chainKey, peer.presharedKey);
  chainKey = ck;
  hash = c.hash(hash, tau);
  if (c.open(key, 0, msg.encryptedNothing, hash) === undefined) return { ok: false, reason: "handshake-decrypt-empty-failed" };
  hash = c.hash(hash, msg.encryptedNothing);

  h.state = "response-consumed";
  h.hash = hash;
  h.chainKey = chainKey;
  h.remoteIndex = msg.sender;
  return { ok: true, value: peer };
}

/**
 * §5.4.5: derives the transport keys once the handshake is complete:
 * (T_send_i = T_recv_r, T_recv_i = T_send_r) = KDF2(C, ε). Zeroes the
 * handshake's ephemeral state.
 */
export function beginSymmetricSession(c: WgCrypto, peer: NoisePeer, now: number): NoiseResult<Keypair> {
  const h = peer.handshake;
  let isInitiator: boolean;
  let sendKey: Uint8Array;
  let recvKey: Uint8Array;
  if (h.state === "response-consumed") {
    [sendKey, recvKey] = kdf2(c, h.chainKey, EMPTY);
    isInitiator = true;
  } else if (h.state === "response-created") {
    [recvKey, sendKey] = kdf2(c, h.chainKey, EMPTY);
    isInitiator = false;
  } else {
    return { ok: false, reason: "handshake-bad-state" };
  }
  const keypair: Keypair = {
    sendKey,
    recvKey,
    sendNonce: 0,
    replay: new ReplayFilter(),
    isInitiator,
    created: now,
    localIndex: h.localIndex,
    remoteIndex: h.remoteIndex,
  };
  clearHandshake(h);
  return { ok: true, value: keypair };
}
