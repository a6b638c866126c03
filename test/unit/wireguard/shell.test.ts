/**
 * The userspace shell without root: two shells on loopback (a "gateway" and
 * a "device"), packets through their PacketLinks; key helpers on a temp dir.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  generateKeyPair,
  isWireGuardKey,
  loadOrCreatePrivateKey,
  publicKeyOf,
  startUserspaceWireGuard,
  type UserspaceWireGuard,
} from "../../../app/net/wireguard/shell.ts";
import { setLogWriter } from "../../../app/log.ts";
import { ipv4Udp, ipv6Udp } from "./helpers.ts";

async function waitFor(cond: () => boolean, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 5));
  }
  return cond();
}

const open: UserspaceWireGuard[] = [];
beforeEach(() => setLogWriter(() => {}));
afterEach(() => {
  for (const s of open.splice(0)) s.close();
  setLogWriter(undefined);
});

async function pair(opts: { psk?: boolean } = {}) {
  const gwKeys = generateKeyPair();
  const devKeys = generateKeyPair();
  const psk = opts.psk ? generateKeyPair().privateKey : undefined;
  const gw = await startUserspaceWireGuard({ listen: { host: "127.0.0.1", port: 0 }, privateKey: gwKeys.privateKey });
  open.push(gw);
  gw.addPeer({ publicKey: devKeys.publicKey, allowedIPs: ["10.77.0.2/32", "fd77::2/128"], presharedKey: psk });
  const dev = await startUserspaceWireGuard({
    listen: { host: "127.0.0.1", port: 0 },
    privateKey: devKeys.privateKey,
    peers: [{ publicKey: gwKeys.publicKey, allowedIPs: ["0.0.0.0/0", "::/0"], presharedKey: psk, endpoint: { address: "127.0.0.1", port: gw.address.port } }],
  });
  open.push(dev);
  return { gw, dev, gwKeys, devKeys };
}

describe("startUserspaceWireGuard", () => {
  test("binds, reports its key and port", async () => {
    const k = generateKeyPair();
    const s = await startUserspaceWireGuard({ listen: { host: "127.0.0.1", port: 0 }, privateKey: k.privateKey });
    open.push(s);
    expect(s.publicKey).toBe(k.publicKey);
    expect(s.address.port).toBeGreaterThan(0);
    expect(s.link.mtu).toBe(1420);
    expect(s.peers()).toEqual([]);
  });

  test("device -> gateway -> device through the PacketLinks (IPv4 and IPv6, PSK)", async () => {
    const { gw, dev, devKeys, gwKeys } = await pair({ psk: true });
    const atGw: Uint8Array[] = [];
    const atDev: Uint8Array[] = [];
    gw.link.onPackets((ps) => atGw.push(...ps.map((p) => p.slice())));
    dev.link.onPackets((ps) => atDev.push(...ps.map((p) => p.slice())));

    const up4 = ipv4Udp("10.77.0.2", "93.184.216.34", "hello-4");
    const up6 = ipv6Udp("fd77::2", "2001:db8::1", "hello-6");
    expect(dev.link.write(up4)).toBe(true); // staged until the handshake completes
    expect(dev.link.write(up6)).toBe(true);
    expect(await waitFor(() => atGw.length >= 2)).toBe(true);
    expect(atGw[0]).toEqual(up4);
    expect(atGw[1]).toEqual(up6);

    const down = ipv4Udp("93.184.216.34", "10.77.0.2", "reply");
    expect(gw.link.write(down)).toBe(true);
    expect(await waitFor(() => atDev.length >= 1)).toBe(true);
    expect(atDev[0]).toEqual(down);

    const [info] = gw.peers();
    expect(info!.publicKey).toBe(devKeys.publicKey);
    expect(info!.lastHandshake).toBeGreaterThan(Date.now() - 5000);
    expect(info!.rxBytes).toBeGreaterThan(0);
    expect(info!.txBytes).toBeGreaterThan(0);
    expect(info!.endpoint).toEqual({ address: "127.0.0.1", port: dev.address.port });
    expect(info!.allowedIPs.sort()).toEqual(["10.77.0.2/32", "fd77::2/128"]);
    expect(dev.peers()[0]!.publicKey).toBe(gwKeys.publicKey);
    const st = gw.stats();
    expect(st.rxPackets).toBe(2);
    expect(st.txPackets).toBe(1);
    expect(st.udpRxDatagrams).toBeGreaterThanOrEqual(3);
  });

  test("write: no route -> false; a spoofed source from a peer is dropped", async () => {
    const { gw, dev } = await pair();
    const atGw: Uint8Array[] = [];
    gw.link.onPackets((ps) => atGw.push(...ps));
    expect(gw.link.write(ipv4Udp("1.1.1.1", "10.99.0.1"))).toBe(false);
    expect(gw.link.write(new Uint8Array([0x45, 0]))).toBe(false);
    expect(gw.stats().txDropped).toBe(2);
    dev.link.write(ipv4Udp("10.77.0.9", "1.1.1.1", "spoof"));
    dev.link.write(ipv4Udp("10.77.0.2", "1.1.1.1", "ok"));
    expect(await waitFor(() => atGw.length >= 1)).toBe(true);
    // The spoofed packet went first; once it is counted as dropped, only "ok" can have arrived.
    expect(await waitFor(() => gw.stats().drops["source-not-allowed"] === 1)).toBe(true);
    expect(atGw.length).toBe(1);
  });

  test("packets wait for the first handler", async () => {
    const { gw, dev } = await pair();
    dev.link.write(ipv4Udp("10.77.0.2", "1.1.1.1", "early"));
    expect(await waitFor(() => gw.stats().rxPackets >= 1)).toBe(true);
    const got: Uint8Array[] = [];
    gw.link.onPackets((ps) => got.push(...ps));
    expect(await waitFor(() => got.length === 1)).toBe(true);
  });

  test("removePeer ends the sessions at once: later packets are dropped", async () => {
    const { gw, dev, devKeys } = await pair();
    const atGw: Uint8Array[] = [];
    gw.link.onPackets((ps) => atGw.push(...ps));
    dev.link.write(ipv4Udp("10.77.0.2", "1.1.1.1", "before"));
    expect(await waitFor(() => atGw.length === 1)).toBe(true);
    expect(gw.removePeer(devKeys.publicKey)).toBe(true);
    expect(gw.removePeer(devKeys.publicKey)).toBe(false);
    expect(gw.peers()).toEqual([]);
    const rx = gw.stats().udpRxDatagrams;
    dev.link.write(ipv4Udp("10.77.0.2", "1.1.1.1", "after"));
    expect(await waitFor(() => gw.stats().udpRxDatagrams > rx)).toBe(true);
    expect(await waitFor(() => (gw.stats().drops["unknown-receiver-index"] ?? 0) >= 1)).toBe(true);
    expect(atGw.length).toBe(1);
    // and the gateway cannot send to it any more
    expect(gw.link.write(ipv4Udp("1.1.1.1", "10.77.0.2"))).toBe(false);
  });

  test("the clock: persistent keepalives arrive without traffic", async () => {
    const { gw, dev } = await pair();
    const atGw: Uint8Array[] = [];
    gw.link.onPackets((ps) => atGw.push(...ps));
    dev.link.write(ipv4Udp("10.77.0.2", "1.1.1.1", "x"));
    expect(await waitFor(() => atGw.length === 1)).toBe(true);
    const gwPub = dev.peers()[0]!.publicKey;
    await Bun.sleep(30); // a second initiation within 20 ms is a handshake flood (INITIATIONS_PER_SECOND)
    dev.addPeer({
      publicKey: gwPub,
      allowedIPs: ["0.0.0.0/0"],
      persistentKeepalive: 1,
      endpoint: { address: "127.0.0.1", port: gw.address.port },
    });
    const rx = gw.stats().udpRxDatagrams;
    // re-adding drops the session: a handshake, then keepalives every second
    expect(await waitFor(() => gw.stats().udpRxDatagrams >= rx + 3, 3500)).toBe(true);
    expect(gw.stats().drops["handshake-flood"]).toBeUndefined();
  });

  test("peer events are logged; keys never are", async () => {
    const lines: string[] = [];
    setLogWriter((l) => lines.push(l));
    const { gw, dev, gwKeys, devKeys } = await pair({ psk: true });
    gw.link.onPackets(() => {});
    dev.link.write(ipv4Udp("10.77.0.2", "1.1.1.1"));
    expect(await waitFor(() => lines.some((l) => l.includes("handshake-complete")))).toBe(true);
    const all = lines.join("\n");
    expect(all).toContain(devKeys.publicKey);
    expect(all).not.toContain(gwKeys.privateKey);
    expect(all).not.toContain(devKeys.privateKey);
  });
});

describe("key helpers", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });
  const tmp = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "wgkeys-"));
    dirs.push(d);
    return d;
  };

  test("generateKeyPair: wg-format keys, public derived from private", () => {
    const k = generateKeyPair();
    expect(isWireGuardKey(k.privateKey)).toBe(true);
    expect(isWireGuardKey(k.publicKey)).toBe(true);
    expect(publicKeyOf(k.privateKey)).toBe(k.publicKey);
    expect(generateKeyPair().privateKey).not.toBe(k.privateKey);
    const raw = Buffer.from(k.privateKey, "base64");
    expect(raw[0]! & 7).toBe(0); // clamped
    expect(raw[31]! & 0xc0).toBe(0x40);
  });

  test("publicKeyOf matches `wg pubkey` for a known vector", () => {
    // RFC 7748 §6.1 Alice
    const priv = Buffer.from("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", "hex").toString("base64");
    const pub = Buffer.from("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a", "hex").toString("base64");
    expect(publicKeyOf(priv)).toBe(pub);
  });

  test("loadOrCreatePrivateKey creates wg.key 0600 once and never overwrites it", () => {
    const dir = path.join(tmp(), "state");
    const a = loadOrCreatePrivateKey(dir);
    expect(a.created).toBe(true);
    expect(fs.statSync(a.file).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(a.file, "utf8")).toBe(a.privateKey + "\n");
    const b = loadOrCreatePrivateKey(dir);
    expect(b.created).toBe(false);
    expect(b.privateKey).toBe(a.privateKey);
    expect(b.publicKey).toBe(publicKeyOf(a.privateKey));
    expect(fs.readdirSync(dir)).toEqual(["wg.key"]); // no temp files left
  });

  test("an existing key (e.g. from wg genkey) is used as is", () => {
    const dir = tmp();
    const k = generateKeyPair();
    fs.writeFileSync(path.join(dir, "wg.key"), k.privateKey + "\n", { mode: 0o600 });
    const got = loadOrCreatePrivateKey(dir);
    expect(got).toMatchObject({ privateKey: k.privateKey, publicKey: k.publicKey, created: false });
  });

  test("a corrupt key file is refused, not replaced, and not echoed", () => {
    const dir = tmp();
    const secretish = "not-a-key-but-maybe-secret-material";
    fs.writeFileSync(path.join(dir, "wg.key"), secretish);
    let msg = "";
    try {
      loadOrCreatePrivateKey(dir);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toContain("wg.key");
    expect(msg).not.toContain(secretish);
    expect(fs.readFileSync(path.join(dir, "wg.key"), "utf8")).toBe(secretish);
  });
});
