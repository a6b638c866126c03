import { describe, expect, test } from "bun:test";
import { blake2s } from "@noble/hashes/blake2.js";
import { hmac } from "@noble/hashes/hmac.js";
import { x25519 } from "@noble/curves/ed25519.js";
import { chacha20poly1305, xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import {
  CONSTRUCTION,
  IDENTIFIER,
  NodeNobleCrypto,
  counterNonce,
  kdf1,
  kdf2,
  kdf3,
  tai64n,
  compareBytes,
} from "../../../app/net/wireguard/crypto.ts";

const hex = (s: string) => new Uint8Array(Buffer.from(s.replace(/\s+/g, ""), "hex"));
const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const c = new NodeNobleCrypto();

describe("X25519 (RFC 7748)", () => {
  test("§5.2 first vector", () => {
    const k = hex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
    const u = hex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c");
    expect(toHex(c.dh(k, u)!)).toBe("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
  });
  test("§6.1 Diffie-Hellman", () => {
    const aPriv = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    const bPriv = hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    const aPub = c.publicKey(aPriv);
    const bPub = c.publicKey(bPriv);
    expect(toHex(aPub)).toBe("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    expect(toHex(bPub)).toBe("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    const shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
    expect(toHex(c.dh(aPriv, bPub)!)).toBe(shared);
    expect(toHex(c.dh(bPriv, aPub)!)).toBe(shared);
  });
  test("low-order public keys give no shared secret", () => {
    const k = c.generatePrivateKey();
    expect(c.dh(k, new Uint8Array(32))).toBeUndefined();
    const one = new Uint8Array(32);
    one[0] = 1;
    expect(c.dh(k, one)).toBeUndefined();
    expect(c.dh(k, new Uint8Array(31))).toBeUndefined();
  });
  test("agrees with @noble/curves on random keys", () => {
    for (let i = 0; i < 5; i++) {
      const a = c.generatePrivateKey();
      const b = c.generatePrivateKey();
      expect(toHex(c.publicKey(a))).toBe(toHex(x25519.getPublicKey(a)));
      expect(toHex(c.dh(a, c.publicKey(b))!)).toBe(toHex(x25519.getSharedSecret(a, x25519.getPublicKey(b))));
    }
  });
  test("generated keys are clamped", () => {
    const k = c.generatePrivateKey();
    expect(k[0]! & 7).toBe(0);
    expect(k[31]! & 0x80).toBe(0);
    expect(k[31]! & 0x40).toBe(0x40);
  });
});

describe("BLAKE2s (RFC 7693)", () => {
  test('Appendix B: BLAKE2s-256("abc")', () => {
    expect(toHex(c.hash(new TextEncoder().encode("abc")))).toBe(
      "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982",
    );
  });
  test("hash of parts equals hash of the concatenation", () => {
    const a = c.randomBytes(70);
    expect(toHex(c.hash(a.subarray(0, 10), a.subarray(10)))).toBe(toHex(c.hash(a)));
  });
  test("keyed BLAKE2s KAT (blake2s-kat.txt, empty input, key 00..1f)", () => {
    const key = new Uint8Array(32).map((_, i) => i);
    expect(toHex(blake2s(new Uint8Array(0), { key }))).toBe("48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49");
  });
  test("MAC is keyed BLAKE2s-128", () => {
    const key = c.randomBytes(32);
    const m = c.randomBytes(100);
    expect(c.mac(key, m).length).toBe(16);
    expect(toHex(c.mac(key, m))).toBe(toHex(blake2s(m, { key, dkLen: 16 })));
  });
  test("hand HMAC over node's blake2s256 agrees with @noble/hashes hmac", () => {
    for (const len of [0, 1, 32, 63, 64, 65, 200]) {
      const key = c.randomBytes(32);
      const m = c.randomBytes(len);
      expect(toHex(c.hmac(key, m))).toBe(toHex(hmac(blake2s, key, m)));
    }
  });
  test("KDF chains match the whitepaper's definition", () => {
    const key = c.randomBytes(32);
    const input = c.randomBytes(32);
    const t0 = hmac(blake2s, key, input);
    const t1 = hmac(blake2s, t0, new Uint8Array([1]));
    const t2 = hmac(blake2s, t0, new Uint8Array([...t1, 2]));
    const t3 = hmac(blake2s, t0, new Uint8Array([...t2, 3]));
    expect(toHex(kdf1(c, key, input))).toBe(toHex(t1));
    expect(kdf2(c, key, input).map(toHex)).toEqual([t1, t2].map(toHex));
    expect(kdf3(c, key, input).map(toHex)).toEqual([t1, t2, t3].map(toHex));
  });
  test("initial chain key and hash (wireguard-go noise-protocol.go init)", () => {
    const ck = c.hash(CONSTRUCTION);
    // HASH("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"), as hard-coded in several WireGuard implementations
    expect(toHex(ck)).toBe("60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36");
    const h = c.hash(ck, IDENTIFIER);
    expect(toHex(h)).toBe("2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3");
  });
});

describe("ChaCha20-Poly1305 (RFC 8439)", () => {
  const key = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
  const nonce = hex("070000004041424344454647");
  const aad = hex("50515253c0c1c2c3c4c5c6c7");
  const plaintext = new TextEncoder().encode(
    "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
  );
  const ciphertext =
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116";
  const tag = "1ae10b594f09e26a7e902ecbd0600691";
  test("§2.8.2 AEAD vector (the library we seal with)", () => {
    expect(toHex(chacha20poly1305(key, nonce, aad).encrypt(plaintext))).toBe(ciphertext + tag);
  });
  test("the WireGuard nonce is 32 zero bits then the little-endian counter", () => {
    expect(toHex(counterNonce(0))).toBe("000000000000000000000000");
    expect(toHex(counterNonce(1))).toBe("000000000100000000000000");
    expect(toHex(counterNonce(0x0102030405))).toBe("000000000504030201000000");
    expect(toHex(counterNonce(2 ** 53 - 1))).toBe("00000000ffffffffffff1f00");
  });
  test("seal/open round trip equals the library with the explicit nonce; tampering fails", () => {
    const k = c.randomBytes(32);
    const pt = c.randomBytes(1400);
    const out = new Uint8Array(1416 + 3);
    c.seal(k, 77, pt, aad, out, 3);
    const ct = out.subarray(3);
    expect(toHex(ct)).toBe(toHex(chacha20poly1305(k, counterNonce(77), aad).encrypt(pt)));
    expect(toHex(c.open(k, 77, ct, aad)!)).toBe(toHex(pt));
    expect(c.open(k, 78, ct, aad)).toBeUndefined();
    const bad = new Uint8Array(ct);
    bad[5]! ^= 1;
    expect(c.open(k, 77, bad, aad)).toBeUndefined();
    expect(c.open(k, 77, ct.subarray(0, 10), aad)).toBeUndefined();
  });
  test("XChaCha20-Poly1305 round trip (draft-irtf-cfrg-xchacha)", () => {
    const k = c.randomBytes(32);
    const n = c.randomBytes(24);
    const ct = c.xseal(k, n, c.randomBytes(16), aad);
    expect(ct.length).toBe(32);
    expect(c.xopen(k, n, ct, aad)).toBeDefined();
    expect(c.xopen(k, n, ct, new Uint8Array(1))).toBeUndefined();
    expect(toHex(ct)).toBe(toHex(xchacha20poly1305(k, n, aad).encrypt(c.xopen(k, n, ct, aad)!)));
  });
});

describe("TAI64N", () => {
  test("encodes seconds + 2^62 and whitened nanoseconds, big-endian", () => {
    const t = tai64n(1_000_500); // 1000.5 s after the epoch
    expect(toHex(t.subarray(0, 8))).toBe("40000000000003e8");
    const nanos = new DataView(t.buffer).getUint32(8, false);
    expect(nanos).toBe(500_000_000 & ~0xffffff);
  });
  test("orders by time", () => {
    expect(compareBytes(tai64n(1000), tai64n(2000))).toBeLessThan(0);
    expect(compareBytes(tai64n(2000), tai64n(2000))).toBe(0);
  });
});

describe("blake2s.ts (keyed BLAKE2s for MAC)", () => {
  test("RFC 7693 Appendix B and the keyed KAT", async () => {
    const { blake2s: ours } = await import("../../../app/net/wireguard/blake2s.ts");
    expect(toHex(ours(new TextEncoder().encode("abc")))).toBe("508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982");
    const key = new Uint8Array(32).map((_, i) => i);
    expect(toHex(ours(new Uint8Array(0), key))).toBe("48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49");
    // blake2s-kat.txt, in = 00..ff (256 bytes), key 00..1f
    const input = new Uint8Array(256).map((_, i) => i);
    expect(toHex(ours(input, key))).toBe(toHex(blake2s(input, { key })));
  });
  test("agrees with @noble/hashes for every length 0..200, keyed and not, 16 and 32 bytes out", async () => {
    const { blake2s: ours } = await import("../../../app/net/wireguard/blake2s.ts");
    const data = c.randomBytes(200);
    const key = c.randomBytes(32);
    for (let len = 0; len <= 200; len++) {
      const m = data.subarray(0, len);
      expect(toHex(ours(m, key, 16))).toBe(toHex(blake2s(m, { key, dkLen: 16 })));
      expect(toHex(ours(m))).toBe(toHex(blake2s(m)));
      expect(toHex(ours(m, key.subarray(0, 16), 32))).toBe(toHex(blake2s(m, { key: key.subarray(0, 16) })));
    }
  });
});
