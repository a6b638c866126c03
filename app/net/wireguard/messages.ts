/**
 * The four WireGuard messages (whitepaper §5.4.2–§5.4.7, §5.4.6), as checked
 * views over bytes plus plain representations.
 *
 *   type 1  MessageInitiation   148 bytes exactly
 *   type 2  MessageResponse      92 bytes exactly
 *   type 3  MessageCookieReply   64 bytes exactly
 *   type 4  MessageTransport    >= 32 bytes (16 header + AEAD of >= 0 bytes)
 *
 * The first four bytes are read as a little-endian u32 (as wireguard-go does),
 * so non-zero "reserved" bytes make an unknown type. Untrusted bytes enter only
 * through {@link parseMessage}; after it no accessor can throw.
 */
import {
  AEAD_TAG_LEN,
  KEY_LEN,
  LABEL_COOKIE,
  LABEL_MAC1,
  MAC_LEN,
  TAI64N_LEN,
  XNONCE_LEN,
  equalBytes,
  type WgCrypto,
} from "./crypto.ts";

export const MessageInitiationType = 1;
export const MessageResponseType = 2;
export const MessageCookieReplyType = 3;
export const MessageTransportType = 4;

export const MessageInitiationSize = 148;
export const MessageResponseSize = 92;
export const MessageCookieReplySize = 64;
export const MessageTransportHeaderSize = 16;
export const MessageTransportMinSize = MessageTransportHeaderSize + AEAD_TAG_LEN; // 32 (keepalive)
export const MessageKeepaliveSize = MessageTransportMinSize;

/** Offsets, as in the wire format tables of §5.4. */
export const Initiation = {
  type: 0,
  sender: 4,
  ephemeral: 8,
  static: 40, // 32 + 16
  timestamp: 88, // 12 + 16
  mac1: 116,
  mac2: 132,
} as const;
export const Response = {
  type: 0,
  sender: 4,
  receiver: 8,
  ephemeral: 12,
  empty: 44, // 0 + 16
  mac1: 60,
  mac2: 76,
} as const;
export const CookieReply = {
  type: 0,
  receiver: 4,
  nonce: 8,
  cookie: 32, // 16 + 16
} as const;
export const Transport = {
  type: 0,
  receiver: 4,
  counter: 8,
  content: 16,
} as const;

export const ENCRYPTED_STATIC_LEN = KEY_LEN + AEAD_TAG_LEN;
export const ENCRYPTED_TIMESTAMP_LEN = TAI64N_LEN + AEAD_TAG_LEN;
export const ENCRYPTED_NOTHING_LEN = AEAD_TAG_LEN;
export const ENCRYPTED_COOKIE_LEN = MAC_LEN + AEAD_TAG_LEN;

// ---------------------------------------------------------------------------
// Plain representations
// ---------------------------------------------------------------------------

export interface MessageInitiation {
  type: typeof MessageInitiationType;
  sender: number;
  ephemeral: Uint8Array;
  encryptedStatic: Uint8Array;
  encryptedTimestamp: Uint8Array;
  mac1: Uint8Array;
  mac2: Uint8Array;
  /** The whole message, for mac checks. */
  bytes: Uint8Array;
}

export interface MessageResponse {
  type: typeof MessageResponseType;
  sender: number;
  receiver: number;
  ephemeral: Uint8Array;
  encryptedNothing: Uint8Array;
  mac1: Uint8Array;
  mac2: Uint8Array;
  bytes: Uint8Array;
}

export interface MessageCookieReply {
  type: typeof MessageCookieReplyType;
  receiver: number;
  nonce: Uint8Array;
  encryptedCookie: Uint8Array;
}

export interface MessageTransport {
  type: typeof MessageTransportType;
  receiver: number;
  /** The 64-bit counter; values >= 2^53 are refused at parse time. */
  counter: number;
  /** Ciphertext with its tag. */
  content: Uint8Array;
}

export type Message = MessageInitiation | MessageResponse | MessageCookieReply | MessageTransport;

export type ParseDrop =
  | "too-short"
  | "unknown-type"
  | "bad-length-initiation"
  | "bad-length-response"
  | "bad-length-cookie-reply"
  | "bad-length-transport"
  | "counter-too-large";

export type ParseResult = { ok: true; message: Message } | { ok: false; reason: ParseDrop };

function u32le(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

function putU32le(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}

/** Reads the message type of a datagram, or undefined if shorter than 4 bytes. */
export function messageType(b: Uint8Array): number | undefined {
  return b.length < 4 ? undefined : u32le(b, 0);
}

/** The checked constructor: the only way untrusted bytes become a Message. */
export function parseMessage(b: Uint8Array): ParseResult {
  if (b.length < 4) return { ok: false, reason: "too-short" };
  const type = u32le(b, 0);
  switch (type) {
    case MessageInitiationType:
      if (b.length !== MessageInitiationSize) return { ok: false, reason: "bad-length-initiation" };
      return {
        ok: true,
        message: {
          type,
          sender: u32le(b, Initiation.sender),
          ephemeral: b.subarray(Initiation.ephemeral, Initiation.static),
          encryptedStatic: b.subarray(Initiation.static, Initiation.timestamp),
          encryptedTimestamp: b.subarray(Initiation.timestamp, Initiation.mac1),
          mac1: b.subarray(Initiation.mac1, Initiation.mac2),
          mac2: b.subarray(Initiation.mac2, MessageInitiationSize),
          bytes: b,
        },
      };
    case MessageResponseType:
      if (b.length !== MessageResponseSize) return { ok: false, reason: "bad-length-response" };
      return {
        ok: true,
        message: {
          type,
          sender: u32le(b, Response.sender),
          receiver: u32le(b, Response.receiver),
          ephemeral: b.subarray(Response.ephemeral, Response.empty),
          encryptedNothing: b.subarray(Response.empty, Response.mac1),
          mac1: b.subarray(Response.mac1, Response.mac2),
          mac2: b.subarray(Response.mac2, MessageResponseSize),
          bytes: b,
        },
      };
    case MessageCookieReplyType:
      if (b.length !== MessageCookieReplySize) return { ok: false, reason: "bad-length-cookie-reply" };
      return {
        ok: true,
        message: {
          type,
          receiver: u32le(b, CookieReply.receiver),
          nonce: b.subarray(CookieReply.nonce, CookieReply.cookie),
          encryptedCookie: b.subarray(CookieReply.cookie, MessageCookieReplySize),
        },
      };
    case MessageTransportType: {
      if (b.length < MessageTransportMinSize) return { ok: false, reason: "bad-length-transport" };
      const lo = u32le(b, Transport.counter);
      const hi = u32le(b, Transport.counter + 4);
      if (hi >= 0x200000) return { ok: false, reason: "counter-too-large" };
      return {
        ok: true,
        message: {
          type,
          receiver: u32le(b, Transport.receiver),
          counter: hi * 0x100000000 + lo,
          content: b.subarray(Transport.content),
        },
      };
    }
    default:
      return { ok: false, reason: "unknown-type" };
  }
}

// ---------------------------------------------------------------------------
// Emit
// ---------------------------------------------------------------------------

/** Emits an initiation with zero macs (fill them with {@link MacState.addMacs}). */
export function emitInitiation(m: Omit<MessageInitiation, "type" | "mac1" | "mac2" | "bytes">): Uint8Array {
  const b = new Uint8Array(MessageInitiationSize);
  putU32le(b, 0, MessageInitiationType);
  putU32le(b, Initiation.sender, m.sender);
  b.set(m.ephemeral, Initiation.ephemeral);
  b.set(m.encryptedStatic, Initiation.static);
  b.set(m.encryptedTimestamp, Initiation.timestamp);
  return b;
}

export function emitResponse(m: Omit<MessageResponse, "type" | "mac1" | "mac2" | "bytes">): Uint8Array {
  const b = new Uint8Array(MessageResponseSize);
  putU32le(b, 0, MessageResponseType);
  putU32le(b, Response.sender, m.sender);
  putU32le(b, Response.receiver, m.receiver);
  b.set(m.ephemeral, Response.ephemeral);
  b.set(m.encryptedNothing, Response.empty);
  return b;
}

export function emitCookieReply(m: Omit<MessageCookieReply, "type">): Uint8Array {
  const b = new Uint8Array(MessageCookieReplySize);
  putU32le(b, 0, MessageCookieReplyType);
  putU32le(b, CookieReply.receiver, m.receiver);
  b.set(m.nonce, CookieReply.nonce);
  b.set(m.encryptedCookie, CookieReply.cookie);
  return b;
}

/** Writes a transport header into b[0..16). */
export function emitTransportHeader(b: Uint8Array, receiver: number, counter: number): void {
  putU32le(b, 0, MessageTransportType);
  putU32le(b, Transport.receiver, receiver);
  putU32le(b, Transport.counter, counter >>> 0);
  putU32le(b, Transport.counter + 4, Math.floor(counter / 0x100000000) >>> 0);
}

// ---------------------------------------------------------------------------
// mac1 / mac2 (§5.4.4) and cookies (§5.4.7)
// ---------------------------------------------------------------------------

/** Offsets of mac1 and mac2 for a handshake message of the given size. */
function macOffsets(b: Uint8Array): { mac1: number; mac2: number } {
  const mac2 = b.length - MAC_LEN;
  return { mac1: mac2 - MAC_LEN, mac2 };
}

/**
 * The sending side of the mac machinery, one per remote static key
 * (wireguard-go CookieGenerator): knows HASH(LABEL_MAC1 || Spub_m) and
 * HASH(LABEL_COOKIE || Spub_m), remembers the last mac1 sent (the AAD of a
 * cookie reply) and the last cookie received.
 */
export class MacGenerator {
  readonly mac1Key: Uint8Array;
  readonly cookieKey: Uint8Array;
  #lastMac1: Uint8Array | undefined;
  #cookie: Uint8Array | undefined;
  #cookieSetAt = 0;
  constructor(
    private readonly crypto: WgCrypto,
    remoteStatic: Uint8Array,
    private readonly cookieRefreshTime: number,
  ) {
    this.mac1Key = crypto.hash(LABEL_MAC1, remoteStatic);
    this.cookieKey = crypto.hash(LABEL_COOKIE, remoteStatic);
  }

  /** Fills mac1 and (with a fresh cookie) mac2 of an emitted handshake message. */
  addMacs(b: Uint8Array, now: number): void {
    const { mac1, mac2 } = macOffsets(b);
    const m1 = this.crypto.mac(this.mac1Key, b.subarray(0, mac1));
    b.set(m1, mac1);
    this.#lastMac1 = m1;
    if (this.#cookie !== undefined && now - this.#cookieSetAt < this.cookieRefreshTime) {
      b.set(this.crypto.mac(this.#cookie, b.subarray(0, mac2)), mac2);
    } else {
      b.fill(0, mac2);
    }
  }

  /** Consumes a cookie reply addressed to us; false (silent drop) if it does not open. */
  consumeCookieReply(m: MessageCookieReply, now: number): boolean {
    if (this.#lastMac1 === undefined) return false;
    const cookie = this.crypto.xopen(this.cookieKey, m.nonce, m.encryptedCookie, this.#lastMac1);
    if (cookie === undefined) return false;
    this.#cookie = cookie;
    this.#cookieSetAt = now;
    return true;
  }

  hasCookie(now: number): boolean {
    return this.#cookie !== undefined && now - this.#cookieSetAt < this.cookieRefreshTime;
  }
}

/**
 * The receiving side (wireguard-go CookieChecker), one per device: checks
 * mac1 against our own static key, computes cookies from a secret that
 * changes every COOKIE_REFRESH_TIME, checks mac2, and makes cookie replies.
 */
export class MacChecker {
  readonly mac1Key: Uint8Array;
  readonly cookieKey: Uint8Array;
  #secret: Uint8Array;
  #secretSetAt: number;
  constructor(
    private readonly crypto: WgCrypto,
    localStatic: Uint8Array,
    private readonly cookieRefreshTime: number,
    now: number,
  ) {
    this.mac1Key = crypto.hash(LABEL_MAC1, localStatic);
    this.cookieKey = crypto.hash(LABEL_COOKIE, localStatic);
    this.#secret = crypto.randomBytes(32);
    this.#secretSetAt = now;
  }

  checkMac1(b: Uint8Array): boolean {
    const { mac1 } = macOffsets(b);
    return equalBytes(this.crypto.mac(this.mac1Key, b.subarray(0, mac1)), b.subarray(mac1, mac1 + MAC_LEN));
  }

  /** τ = MAC(Rm, Aip || port): the cookie for a source address. */
  cookie(source: Uint8Array, now: number): Uint8Array {
    if (now - this.#secretSetAt >= this.cookieRefreshTime) {
      this.#secret = this.crypto.randomBytes(32);
      this.#secretSetAt = now;
    }
    return this.crypto.mac(this.#secret, source);
  }

  checkMac2(b: Uint8Array, source: Uint8Array, now: number): boolean {
    const { mac2 } = macOffsets(b);
    const tau = this.cookie(source, now);
    return equalBytes(this.crypto.mac(tau, b.subarray(0, mac2)), b.subarray(mac2, mac2 + MAC_LEN));
  }

  /** A cookie reply to a handshake message (mac1 already checked). */
  createCookieReply(b: Uint8Array, sender: number, source: Uint8Array, now: number): Uint8Array {
    const { mac1 } = macOffsets(b);
    const nonce = this.crypto.randomBytes(XNONCE_LEN);
    const tau = this.cookie(source, now);
    const encryptedCookie = this.crypto.xseal(this.cookieKey, nonce, tau, b.subarray(mac1, mac1 + MAC_LEN));
    return emitCookieReply({ receiver: sender, nonce, encryptedCookie });
  }
}

