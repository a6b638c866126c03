/**
 * A native WgCrypto backend: libsodium (Debian libsodium23) through bun:ffi
 * for ChaCha20-Poly1305, XChaCha20-Poly1305 and X25519. BLAKE2s stays on
 * node:crypto (libsodium's generichash is BLAKE2b).
 *
 * loadSodiumCrypto() returns undefined when the library cannot be opened, so
 * callers fall back to the pure-JS backend:
 *
 *   setDefaultCrypto(loadSodiumCrypto() ?? new NodeNobleCrypto());
 */
import { dlopen, FFIType, type Pointer } from "bun:ffi";
import { AEAD_TAG_LEN, KEY_LEN, NodeNobleCrypto, counterNonce, isZero, type WgCrypto } from "./crypto.ts";

const LIBRARY_NAMES = ["libsodium.so.23", "libsodium.so", "libsodium.dylib", "libsodium.23.dylib"];

const symbols = {
  sodium_init: { args: [], returns: FFIType.i32 },
  crypto_aead_chacha20poly1305_ietf_encrypt: {
    // c, clen_p, m, mlen, ad, adlen, nsec, npub, k
    args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.ptr, FFIType.ptr],
    returns: FFIType.i32,
  },
  crypto_aead_chacha20poly1305_ietf_decrypt: {
    // m, mlen_p, nsec, c, clen, ad, adlen, npub, k
    args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.ptr],
    returns: FFIType.i32,
  },
  crypto_aead_xchacha20poly1305_ietf_encrypt: {
    args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.ptr, FFIType.ptr],
    returns: FFIType.i32,
  },
  crypto_aead_xchacha20poly1305_ietf_decrypt: {
    args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.ptr],
    returns: FFIType.i32,
  },
  crypto_scalarmult_curve25519: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  crypto_scalarmult_curve25519_base: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
} as const;

type Lib = ReturnType<typeof dlopen<typeof symbols>>["symbols"];

const NULL = null as unknown as Pointer;
/** bun:ffi refuses zero-length typed arrays as pointers; use a 1-byte stand-in (length 0 is passed separately). */
const ONE = new Uint8Array(1);

function ptrOf(b: Uint8Array): Uint8Array {
  return b.length === 0 ? ONE : b;
}

export class SodiumCrypto extends NodeNobleCrypto implements WgCrypto {
  override readonly name: string = "libsodium(ffi)+node:crypto";
  #nonce = new Uint8Array(12);
  constructor(private readonly lib: Lib) {
    super();
  }

  override publicKey(privateKey: Uint8Array): Uint8Array {
    const q = new Uint8Array(KEY_LEN);
    this.lib.crypto_scalarmult_curve25519_base(q, privateKey);
    return q;
  }

  override dh(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array | undefined {
    if (privateKey.length !== KEY_LEN || publicKey.length !== KEY_LEN) return undefined;
    const q = new Uint8Array(KEY_LEN);
    if (this.lib.crypto_scalarmult_curve25519(q, privateKey, publicKey) !== 0) return undefined;
    return isZero(q) ? undefined : q;
  }

  override seal(key: Uint8Array, counter: number, plaintext: Uint8Array, aad: Uint8Array | undefined, dst: Uint8Array, dstOffset: number): void {
    const nonce = counterNonce(counter, this.#nonce);
    const out = dst.subarray(dstOffset, dstOffset + plaintext.length + AEAD_TAG_LEN);
    const ad = aad ?? ONE;
    this.lib.crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, ptrOf(plaintext), plaintext.length, ad, aad?.length ?? 0, NULL, nonce, key);
  }

  override open(key: Uint8Array, counter: number, ciphertext: Uint8Array, aad: Uint8Array | undefined): Uint8Array | undefined {
    if (ciphertext.length < AEAD_TAG_LEN) return undefined;
    const nonce = counterNonce(counter, this.#nonce);
    const out = new Uint8Array(ciphertext.length - AEAD_TAG_LEN);
    const ad = aad ?? ONE;
    const r = this.lib.crypto_aead_chacha20poly1305_ietf_decrypt(ptrOf(out), NULL, NULL, ciphertext, ciphertext.length, ad, aad?.length ?? 0, nonce, key);
    return r === 0 ? out : undefined;
  }

  override xseal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
    const out = new Uint8Array(plaintext.length + AEAD_TAG_LEN);
    this.lib.crypto_aead_xchacha20poly1305_ietf_encrypt(out, NULL, ptrOf(plaintext), plaintext.length, ptrOf(aad), aad.length, NULL, nonce, key);
    return out;
  }

  override xopen(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Uint8Array | undefined {
    if (ciphertext.length < AEAD_TAG_LEN || nonce.length !== 24) return undefined;
    const out = new Uint8Array(ciphertext.length - AEAD_TAG_LEN);
    const r = this.lib.crypto_aead_xchacha20poly1305_ietf_decrypt(ptrOf(out), NULL, NULL, ciphertext, ciphertext.length, ptrOf(aad), aad.length, nonce, key);
    return r === 0 ? out : undefined;
  }
}

/** Opens libsodium; undefined if it is not installed or fails to initialise. */
export function loadSodiumCrypto(): SodiumCrypto | undefined {
  for (const name of LIBRARY_NAMES) {
    try {
      const lib = dlopen(name, symbols).symbols;
      if (lib.sodium_init() < 0) return undefined;
      return new SodiumCrypto(lib);
    } catch {
      // try the next name
    }
  }
  return undefined;
}
