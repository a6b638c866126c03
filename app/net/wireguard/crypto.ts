/**
 * WireGuard primitives (whitepaper §5.4 "Cryptographic primitives").
 *
 * Everything the protocol needs sits behind {@link WgCrypto}, so a faster
 * native backend (libsodium through bun:ffi) can be slotted in without the
 * protocol code noticing. The default backend, measured under Bun 1.4.5:
 *
 *   - X25519: node:crypto `diffieHellman` over raw-key KeyObjects
 *     (~20k DH/s; @noble/curves x25519 does ~1.4k/s).
 *   - HASH / HMAC / HKDF: node:crypto `blake2s256` with a hand HMAC
 *     (the hash is ~4x faster than @noble/hashes blake2s).
 *   - MAC (keyed BLAKE2s-128): our own blake2s.ts (node has no keyed mode;
 *     @noble/hashes' keyed blake2s costs ~25 µs a call under Bun).
 *   - AEAD / XAEAD: @noble/ciphers chacha20poly1305 / xchacha20poly1305
 *     (node:crypto has no chacha20-poly1305 under Bun).
 *
 * No I/O, no clock: TAI64N takes the time as an argument.
 */
import * as nodeCrypto from "node:crypto";
import { blake2s } from "./blake2s.ts";
import { chacha20poly1305, xchacha20poly1305 } from "@noble/ciphers/chacha.js";

// ---------------------------------------------------------------------------
// Constants, named as in the whitepaper (§5.4, §6.1, §6.4) and wireguard-go
// device/constants.go.
// ---------------------------------------------------------------------------

const utf8 = new TextEncoder();

export const CONSTRUCTION = utf8.encode("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s");
export const IDENTIFIER = utf8.encode("WireGuard v1 zx2c4 Jason@zx2c4.com");
export const LABEL_MAC1 = utf8.encode("mac1----");
export const LABEL_COOKIE = utf8.encode("cookie--");

/** §6.1: after this many messages a new handshake is initiated (2^60). */
export const REKEY_AFTER_MESSAGES = 2 ** 60;
/**
 * §6.1: 2^64 - 2^13 - 1. Counters are JS numbers here, so the usable limit is
 * clamped to 2^53 ({@link REJECT_AFTER_MESSAGES_LIMIT}); no session gets near
 * either bound (2^53 packets at 10 Mpps is 28 years).
 */
export const REJECT_AFTER_MESSAGES = 2n ** 64n - 2n ** 13n - 1n;
export const REJECT_AFTER_MESSAGES_LIMIT = Number.MAX_SAFE_INTEGER;
/** §6.1 timers, in milliseconds. */
export const REKEY_AFTER_TIME = 120_000;
export const REJECT_AFTER_TIME = 180_000;
export const REKEY_ATTEMPT_TIME = 90_000;
export const REKEY_TIMEOUT = 5_000;
export const KEEPALIVE_TIMEOUT = 10_000;
/** §5.4.7: the cookie secret changes every two minutes. */
export const COOKIE_REFRESH_TIME = 120_000;
/** wireguard-go: jitter added to handshake retransmits, at most 1/3 s. */
export const REKEY_TIMEOUT_JITTER_MAX = 334;
/** wireguard-go: at most 50 initiations per second are consumed per peer. */
export const INITIATIONS_PER_SECOND = 50;
/** wireguard-go: REKEY_ATTEMPT_TIME / REKEY_TIMEOUT handshake attempts. */
export const MAX_TIMER_HANDSHAKES = REKEY_ATTEMPT_TIME / REKEY_TIMEOUT;

export const KEY_LEN = 32;
export const HASH_LEN = 32;
export const MAC_LEN = 16;
export const AEAD_TAG_LEN = 16;
export const TAI64N_LEN = 12;
export const XNONCE_LEN = 24;

// ---------------------------------------------------------------------------
// The backend interface
// ---------------------------------------------------------------------------

/** The AEAD half of the backend: the hot path of the data plane. */
export interface WgAead {
  /**
   * AEAD(key, counter, plaintext, aad) with the WireGuard nonce (32 zero bits
   * then the 64-bit little-endian counter). Writes plaintext.length + 16
   * bytes into dst at dstOffset.
   */
  seal(key: Uint8Array, counter: number, plaintext: Uint8Array, aad: Uint8Array | undefined, dst: Uint8Array, dstOffset: number): void;
  /** Opens ciphertext (with its tag); undefined when authentication fails. */
  open(key: Uint8Array, counter: number, ciphertext: Uint8Array, aad: Uint8Array | undefined): Uint8Array | undefined;
}

export interface WgCrypto extends WgAead {
  readonly name: string;
  /** A fresh clamped X25519 private key. */
  generatePrivateKey(): Uint8Array;
  /** The X25519 public key for a private key. */
  publicKey(privateKey: Uint8Array): Uint8Array;
  /** DH(private, public); undefined for an all-zero result (low-order point). */
  dh(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array | undefined;
  /** HASH(input): BLAKE2s-256 over the concatenation of the parts. */
  hash(...parts: Uint8Array[]): Uint8Array;
  /** HMAC-BLAKE2s-256(key, input). */
  hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array;
  /** MAC(key, input): keyed BLAKE2s with a 16-byte output. */
  mac(key: Uint8Array, input: Uint8Array): Uint8Array;
  /** XAEAD(key, nonce24, plaintext, aad): XChaCha20-Poly1305. */
  xseal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array;
  xopen(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Uint8Array | undefined;
  /** Cryptographically random bytes. */
  randomBytes(n: number): Uint8Array;
}

// ---------------------------------------------------------------------------
// Shared helpers built on the interface
// ---------------------------------------------------------------------------

const BYTE1 = new Uint8Array([1]);
const BYTE2 = new Uint8Array([2]);
const BYTE3 = new Uint8Array([3]);

/** KDF_n(key, input) from §5.4 (HKDF with HMAC-BLAKE2s). */
export function kdf1(c: WgCrypto, key: Uint8Array, input: Uint8Array): Uint8Array {
  const t0 = c.hmac(key, input);
  return c.hmac(t0, BYTE1);
}

export function kdf2(c: WgCrypto, key: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array] {
  const t0 = c.hmac(key, input);
  const t1 = c.hmac(t0, BYTE1);
  const t2 = c.hmac(t0, t1, BYTE2);
  return [t1, t2];
}

export function kdf3(c: WgCrypto, key: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array, Uint8Array] {
  const t0 = c.hmac(key, input);
  const t1 = c.hmac(t0, BYTE1);
  const t2 = c.hmac(t0, t1, BYTE2);
  const t3 = c.hmac(t0, t2, BYTE3);
  return [t1, t2, t3];
}

/**
 * TAI64N(now): 8 bytes big-endian seconds since 1970 plus 2^62, then 4 bytes
 * big-endian nanoseconds. The nanoseconds are whitened (low 24 bits cleared,
 * as wireguard-go's tai64n does) so the timestamp does not leak a fine clock.
 */
export function tai64n(nowMs: number): Uint8Array {
  const out = new Uint8Array(TAI64N_LEN);
  const dv = new DataView(out.buffer);
  const secs = Math.floor(nowMs / 1000);
  const nanos = Math.floor((nowMs - secs * 1000) * 1e6);
  dv.setBigUint64(0, 0x4000000000000000n + BigInt(secs), false);
  dv.setUint32(8, nanos & ~0xffffff, false);
  return out;
}

/** Compares two byte strings as big-endian numbers (TAI64N order). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/** Constant-time equality for secrets and MACs. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

export function isZero(a: Uint8Array): boolean {
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]!;
  return d === 0;
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The 12-byte ChaCha20-Poly1305 nonce for a 64-bit counter (number <= 2^53). */
export function counterNonce(counter: number, out: Uint8Array = new Uint8Array(12)): Uint8Array {
  out[0] = out[1] = out[2] = out[3] = 0;
  const lo = counter >>> 0;
  const hi = Math.floor(counter / 0x100000000) >>> 0;
  out[4] = lo & 0xff;
  out[5] = (lo >>> 8) & 0xff;
  out[6] = (lo >>> 16) & 0xff;
  out[7] = lo >>> 24;
  out[8] = hi & 0xff;
  out[9] = (hi >>> 8) & 0xff;
  out[10] = (hi >>> 16) & 0xff;
  out[11] = hi >>> 24;
  return out;
}

export function toBase64(key: Uint8Array): string {
  return Buffer.from(key).toString("base64");
}

/** Decodes a 32-byte key from base64 (wg's format); throws on a bad key (configuration, not network). */
export function fromBase64Key(s: string): Uint8Array {
  const b = Buffer.from(s, "base64");
  if (b.length !== KEY_LEN) throw new Error(`wireguard: key must be 32 bytes of base64, got ${b.length}`);
  return new Uint8Array(b);
}

// ---------------------------------------------------------------------------
// The default backend: node:crypto + @noble
// ---------------------------------------------------------------------------

const PKCS8_X25519_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");
const SPKI_X25519_PREFIX = Buffer.from("302a300506032b656e032100", "hex");
const HMAC_BLOCK = 64;

function clamp(k: Uint8Array): Uint8Array {
  k[0]! &= 248;
  k[31]! &= 127;
  k[31]! |= 64;
  return k;
}

export class NodeNobleCrypto implements WgCrypto {
  readonly name: string = "node:crypto+noble";
  #nonce = new Uint8Array(12);
  #ipad = new Uint8Array(HMAC_BLOCK);
  #opad = new Uint8Array(HMAC_BLOCK);

  generatePrivateKey(): Uint8Array {
    return clamp(new Uint8Array(nodeCrypto.randomBytes(KEY_LEN)));
  }

  #privateKeyObject(priv: Uint8Array): nodeCrypto.KeyObject {
    return nodeCrypto.createPrivateKey({ key: Buffer.concat([PKCS8_X25519_PREFIX, priv]), format: "der", type: "pkcs8" });
  }

  publicKey(privateKey: Uint8Array): Uint8Array {
    const spki = nodeCrypto.createPublicKey(this.#privateKeyObject(privateKey)).export({ format: "der", type: "spki" });
    return new Uint8Array(spki.subarray(spki.length - KEY_LEN));
  }

  dh(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array | undefined {
    if (publicKey.length !== KEY_LEN || privateKey.length !== KEY_LEN) return undefined;
    let out: Uint8Array;
    try {
      const pub = nodeCrypto.createPublicKey({ key: Buffer.concat([SPKI_X25519_PREFIX, publicKey]), format: "der", type: "spki" });
      out = new Uint8Array(nodeCrypto.diffieHellman({ privateKey: this.#privateKeyObject(privateKey), publicKey: pub }));
    } catch {
      return undefined; // OpenSSL refuses an all-zero shared secret
    }
    return isZero(out) ? undefined : out;
  }

  hash(...parts: Uint8Array[]): Uint8Array {
    const h = nodeCrypto.createHash("blake2s256");
    for (const p of parts) h.update(p);
    return new Uint8Array(h.digest());
  }

  hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
    // RFC 2104 over BLAKE2s (block 64). Keys here are always <= 32 bytes.
    const ipad = this.#ipad;
    const opad = this.#opad;
    ipad.fill(0x36);
    opad.fill(0x5c);
    const k = key.length > HMAC_BLOCK ? this.hash(key) : key;
    for (let i = 0; i < k.length; i++) {
      ipad[i]! ^= k[i]!;
      opad[i]! ^= k[i]!;
    }
    const inner = nodeCrypto.createHash("blake2s256").update(ipad);
    for (const p of parts) inner.update(p);
    const ih = inner.digest();
    return new Uint8Array(nodeCrypto.createHash("blake2s256").update(opad).update(ih).digest());
  }

  mac(key: Uint8Array, input: Uint8Array): Uint8Array {
    return blake2s(input, key, MAC_LEN);
  }

  seal(key: Uint8Array, counter: number, plaintext: Uint8Array, aad: Uint8Array | undefined, dst: Uint8Array, dstOffset: number): void {
    const nonce = counterNonce(counter, this.#nonce);
    const out = dst.subarray(dstOffset, dstOffset + plaintext.length + AEAD_TAG_LEN);
    chacha20poly1305(key, nonce, aad).encrypt(plaintext, out);
  }

  open(key: Uint8Array, counter: number, ciphertext: Uint8Array, aad: Uint8Array | undefined): Uint8Array | undefined {
    if (ciphertext.length < AEAD_TAG_LEN) return undefined;
    const nonce = counterNonce(counter, this.#nonce);
    try {
      return chacha20poly1305(key, nonce, aad).decrypt(ciphertext);
    } catch {
      return undefined;
    }
  }

  xseal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
    return xchacha20poly1305(key, nonce, aad).encrypt(plaintext);
  }

  xopen(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Uint8Array | undefined {
    try {
      return xchacha20poly1305(key, nonce, aad).decrypt(ciphertext);
    } catch {
      return undefined;
    }
  }

  randomBytes(n: number): Uint8Array {
    return new Uint8Array(nodeCrypto.randomBytes(n));
  }
}

let defaultCrypto: WgCrypto | undefined;

/** The process-wide default backend. */
export function getDefaultCrypto(): WgCrypto {
  defaultCrypto ??= new NodeNobleCrypto();
  return defaultCrypto;
}

/** Replaces the default backend (e.g. with a libsodium one at startup). */
export function setDefaultCrypto(c: WgCrypto): void {
  defaultCrypto = c;
}
