import { describe, expect, test } from "bun:test";
import { NodeNobleCrypto } from "../../../app/net/wireguard/crypto.ts";
import { loadSodiumCrypto } from "../../../app/net/wireguard/crypto-sodium.ts";
import { WireGuardDevice } from "../../../app/net/wireguard/device.ts";
import { A_ENDPOINT, B_ENDPOINT, datagrams, ipv4Udp, packets } from "./helpers.ts";

const sodium = loadSodiumCrypto();
const noble = new NodeNobleCrypto();
const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const hex = (s: string) => new Uint8Array(Buffer.from(s, "hex"));

// libsodium23 is a dependency of the appliance image; here it may be absent.
describe.skipIf(sodium === undefined)("libsodium backend (bun:ffi)", () => {
  const s = sodium!;
  test("RFC 7748 §6.1 through libsodium", () => {
    const aPriv = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    const bPub = hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    expect(toHex(s.publicKey(aPriv))).toBe("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    expect(toHex(s.dh(aPriv, bPub)!)).toBe("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    expect(s.dh(aPriv, new Uint8Array(32))).toBeUndefined();
  });

  test("AEAD and XAEAD agree with the pure-JS backend, every length 0..100 and 1400", () => {
    const key = noble.randomBytes(32);
    const aad = noble.randomBytes(32);
    for (const len of [...Array.from({ length: 101 }, (_, i) => i), 1400]) {
      const pt = noble.randomBytes(len);
      const x = new Uint8Array(len + 16);
      const y = new Uint8Array(len + 16);
      s.seal(key, len * 1000 + 7, pt, len % 2 ? aad : undefined, x, 0);
      noble.seal(key, len * 1000 + 7, pt, len % 2 ? aad : undefined, y, 0);
      expect(toHex(x)).toBe(toHex(y));
      expect(toHex(s.open(key, len * 1000 + 7, x, len % 2 ? aad : undefined)!)).toBe(toHex(pt));
      x[0]! ^= 1;
      expect(s.open(key, len * 1000 + 7, x, len % 2 ? aad : undefined)).toBeUndefined();
      const n = noble.randomBytes(24);
      const xc = s.xseal(key, n, pt, aad);
      expect(toHex(xc)).toBe(toHex(noble.xseal(key, n, pt, aad)));
      expect(toHex(s.xopen(key, n, xc, aad)!)).toBe(toHex(pt));
      expect(s.xopen(key, n, xc, new Uint8Array(0))).toBeUndefined();
    }
  });

  test("a sodium device and a pure-JS device talk", () => {
    const a = new WireGuardDevice({ privateKey: s.generatePrivateKey(), now: 0, crypto: s });
    const b = new WireGuardDevice({ privateKey: noble.generatePrivateKey(), now: 0, crypto: noble });
    a.addPeer({ publicKey: b.publicKey, allowedIPs: ["10.100.0.2/32"] });
    b.addPeer({ publicKey: a.publicKey, allowedIPs: ["0.0.0.0/0"], endpoint: A_ENDPOINT });
    const init = datagrams(b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1", "mixed"), 0))[0]!.data;
    const resp = datagrams(a.receiveDatagram(init, B_ENDPOINT, 0))[0]!.data;
    const data = datagrams(b.receiveDatagram(resp, A_ENDPOINT, 0))[0]!.data;
    expect(packets(a.receiveDatagram(data, B_ENDPOINT, 0)).length).toBe(1);
    const back = datagrams(a.sendPacket(ipv4Udp("10.100.0.1", "10.100.0.2", "back"), 0))[0]!.data;
    expect(packets(b.receiveDatagram(back, A_ENDPOINT, 0)).length).toBe(1);
  });
});
