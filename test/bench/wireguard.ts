/**
 * WireGuard engine micro-benchmark (not a test; `bun test` does not pick it up).
 * Belongs in test/bench/ once the lead wires it into `make bench-*`.
 *
 *   ./node_modules/.bin/bun test/unit/wireguard/bench.ts [noble|sodium|both]
 *
 * Prints handshakes/s (full Noise_IKpsk2 exchange incl. macs, one core) and
 * 1400-byte transport packets/s sealed and opened through WireGuardDevice.
 */
import { WireGuardDevice, type Output } from "../../app/net/wireguard/device.ts";
import { NodeNobleCrypto, type WgCrypto } from "../../app/net/wireguard/crypto.ts";
import { loadSodiumCrypto } from "../../app/net/wireguard/crypto-sodium.ts";

const ep = { address: "192.0.2.1", port: 1 };
const pkt = new Uint8Array(1400);
pkt.set([0x45, 0, 1400 >> 8, 1400 & 0xff], 0);
pkt.set([10, 0, 0, 2, 10, 0, 0, 1], 12);

function dgram(out: Output[], type: number): Uint8Array | undefined {
  for (const o of out) if (o.kind === "datagram" && o.data[0] === type) return o.data;
  return undefined;
}

function pair(c: WgCrypto) {
  const a = new WireGuardDevice({ privateKey: c.generatePrivateKey(), now: 0, crypto: c });
  const b = new WireGuardDevice({ privateKey: c.generatePrivateKey(), now: 0, crypto: c });
  a.addPeer({ publicKey: b.publicKey, allowedIPs: ["10.0.0.2/32"] });
  b.addPeer({ publicKey: a.publicKey, allowedIPs: ["0.0.0.0/0"], endpoint: ep });
  return { a, b };
}

function bench(c: WgCrypto): void {
  console.log(`backend: ${c.name}`);
  // Full handshakes: b's session is expired each round (t += REJECT_AFTER_TIME) so sending starts a new one.
  {
    const { a, b } = pair(c);
    const n = 1000;
    let t = 1;
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      t += 200_000;
      const init = dgram(b.sendPacket(pkt, t), 1)!;
      const resp = dgram(a.receiveDatagram(init, ep, t), 2)!;
      const data = dgram(b.receiveDatagram(resp, ep, t), 4)!;
      a.receiveDatagram(data, ep, t);
    }
    const s = (performance.now() - start) / 1000;
    console.log(`  handshakes (both sides, one core): ${Math.round(n / s)}/s`);
  }
  {
    const { a, b } = pair(c);
    const t = 1;
    const init = dgram(b.sendPacket(pkt, t), 1)!;
    const resp = dgram(a.receiveDatagram(init, ep, t), 2)!;
    a.receiveDatagram(dgram(b.receiveDatagram(resp, ep, t), 4)!, ep, t);
    const n = 50_000;
    const sealed: Uint8Array[] = new Array(n);
    let start = performance.now();
    for (let i = 0; i < n; i++) sealed[i] = dgram(b.sendPacket(pkt, t), 4)!;
    let s = (performance.now() - start) / 1000;
    console.log(`  seal 1400 B: ${Math.round(n / s)} pkt/s (${((n * 1400 * 8) / s / 1e6).toFixed(0)} Mbit/s)`);
    start = performance.now();
    let ok = 0;
    for (let i = 0; i < n; i++) if (a.receiveDatagram(sealed[i]!, ep, t)[0]!.kind === "packet") ok++;
    s = (performance.now() - start) / 1000;
    console.log(`  open 1400 B: ${Math.round(n / s)} pkt/s (${((n * 1400 * 8) / s / 1e6).toFixed(0)} Mbit/s), ${ok}/${n} ok`);
  }
}

const which = process.argv[2] ?? "both";
if (which !== "sodium") bench(new NodeNobleCrypto());
if (which !== "noble") {
  const s = loadSodiumCrypto();
  if (s === undefined) console.log("libsodium not available");
  else bench(s);
}
