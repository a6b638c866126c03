/**
 * Runs inside a network namespace (spawned by tun.test.ts and the bench
 * through `ip netns exec`): opens a TUN device with openTun() and drives
 * the namespace's kernel from the same process, then prints one JSON line.
 *
 *   tun-peer.ts udp    DEV LOCAL PEER COUNT   datagrams LOCAL -> PEER (routed into DEV);
 *                                             each read packet is answered (addresses and
 *                                             ports swapped, "echo:" + payload)
 *   tun-peer.ts flood  DEV LOCAL PEER COUNT SIZE WINDOW   COUNT datagrams, at most WINDOW
 *                                             unread; then the process CPU over 1 s idle
 *   tun-peer.ts tx     DEV LOCAL PEER COUNT SIZE   COUNT packets written into DEV toward a
 *                                             UDP socket on LOCAL; counts what it receives
 *   tun-peer.ts sink   DEV COUNT             counts UDP/IPv4 packets read from DEV until COUNT
 *                                             or 1 s without one; prints "ready" first
 *   tun-peer.ts blast  - LOCAL PEER COUNT SIZE  COUNT datagrams toward PEER, no TUN here
 *   (TUN_WAKE=message in the environment selects the worker's postMessage wake-up;
 *   TUN_VNET=1 opens the device with vnetHdr)
 *   tun-peer.ts create                        a kernel-named device; prints its name, then
 *                                             waits for a line on stdin and closes it
 */
import * as dgram from "node:dgram";
import { readdirSync } from "node:fs";
import { openTun, type TunDevice } from "../../../app/net/tun/tun.ts";
import * as ipv4 from "../../../app/net/stack/wire/ipv4.ts";
import * as udp from "../../../app/net/stack/wire/udp.ts";
import { IPPROTO_UDP } from "../../../app/net/stack/wire/checksum.ts";

const [mode, dev, local, peer, countArg, sizeArg, windowArg] = process.argv.slice(2);
const PEER_PORT = 7777;
const WAKE = process.env.TUN_WAKE === "message" ? "message" : "atomics";
const VNET = process.env.TUN_VNET === "1";

function ip4(s: string): Uint8Array {
  return new Uint8Array(s.split(".").map(Number));
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

/** The reply to a UDP/IPv4 packet: addresses and ports swapped, "echo:" + payload. */
function reply(packet: Uint8Array): Uint8Array | null {
  const ip = ipv4.parse(packet);
  if (!ip.ok || ip.repr.protocol !== IPPROTO_UDP) return null;
  const u = udp.parse(ip.payload, ip.repr.src, ip.repr.dst);
  if (!u.ok) return null;
  const body = new Uint8Array(5 + u.payload.length);
  body.set(new TextEncoder().encode("echo:"), 0);
  body.set(u.payload, 5);
  const seg = udp.emit({ srcPort: u.repr.dstPort, dstPort: u.repr.srcPort }, body, ip.repr.dst, ip.repr.src);
  return ipv4.emit({ ...ip.repr, src: ip.repr.dst, dst: ip.repr.src, ttl: 64, ident: 0 }, seg);
}

function isUdp4(p: Uint8Array): boolean {
  return p.length >= 20 && p[0]! >> 4 === 4 && p[9] === IPPROTO_UDP;
}

async function bind(): Promise<dgram.Socket> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((resolve, reject) => {
    s.once("error", reject);
    s.bind(0, local, () => resolve());
  });
  return s;
}

async function finish(tun: TunDevice, out: object): Promise<never> {
  tun.close();
  await tun.done;
  console.log(JSON.stringify(out));
  process.exit(0);
}

async function udpMode(): Promise<void> {
  const count = Number(countArg);
  const tun = openTun({ name: dev, wake: WAKE, vnetHdr: VNET });
  const packets: string[] = [];
  tun.onPackets((batch) => {
    for (const p of batch) {
      if (!isUdp4(p)) continue;
      packets.push(hex(p));
      const r = reply(p);
      if (r !== null) tun.write(r);
    }
  });
  const sock = await bind();
  const replies: { from: string; port: number; data: string }[] = [];
  const got = new Promise<void>((resolve) => {
    sock.on("message", (msg, rinfo) => {
      replies.push({ from: rinfo.address, port: rinfo.port, data: msg.toString() });
      if (replies.length === count) resolve();
    });
  });
  for (let i = 0; i < count; i++) sock.send(`datagram ${i}`, PEER_PORT, peer);
  await Promise.race([got, Bun.sleep(3000)]);
  sock.close();
  await finish(tun, { name: tun.name, mtu: tun.mtu, vnetHdr: tun.vnetHdr, packets, replies, stats: tun.stats });
}

async function floodMode(): Promise<void> {
  const count = Number(countArg);
  const size = Number(sizeArg);
  const window = Number(windowArg);
  const tun = openTun({ name: dev, wake: WAKE, vnetHdr: VNET });
  let received = 0;
  let bytes = 0;
  let kick: (() => void) | null = null;
  tun.onPackets((batch) => {
    for (const p of batch) {
      if (!isUdp4(p)) continue;
      received++;
      bytes += p.length;
    }
    kick?.();
  });
  const sock = await bind();
  const payload = new Uint8Array(Math.max(0, size - 28));
  let sent = 0;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  while (sent < count) {
    while (sent < count && sent - received < window) {
      sock.send(payload, PEER_PORT, peer);
      sent++;
    }
    await new Promise<void>((resolve) => {
      kick = resolve;
      setTimeout(resolve, 200);
    });
  }
  const deadline = performance.now() + 2000;
  while (received < count && performance.now() < deadline) await Bun.sleep(5);
  const seconds = (performance.now() - t0) / 1000;
  const busy = process.cpuUsage(cpu0);
  sock.close();
  // Idle: the device open, nothing arriving.
  await Bun.sleep(100);
  const idle0 = process.cpuUsage();
  await Bun.sleep(1000);
  const idle = process.cpuUsage(idle0);
  await finish(tun, {
    sent, received, bytes, seconds,
    pps: received / seconds,
    mbps: (bytes * 8) / seconds / 1e6,
    cpuBusyMs: (busy.user + busy.system) / 1000,
    idleCpuMs: (idle.user + idle.system) / 1000,
    stats: tun.stats,
  });
}

async function txMode(): Promise<void> {
  const count = Number(countArg);
  const size = Number(sizeArg);
  const tun = openTun({ name: dev, wake: WAKE, vnetHdr: VNET });
  tun.onPackets(() => {});
  const sock = await bind();
  const port = sock.address().port;
  let received = 0;
  let bytes = 0;
  let last = 0;
  sock.on("message", (msg) => {
    received++;
    bytes += msg.length + 28;
    last = performance.now();
  });
  const body = new Uint8Array(Math.max(0, size - 28));
  const seg = udp.emit({ srcPort: PEER_PORT, dstPort: port }, body, ip4(peer!), ip4(local!));
  const packet = ipv4.emit(
    { src: ip4(peer!), dst: ip4(local!), protocol: IPPROTO_UDP, ttl: 64, tos: 0, ident: 0, dontFragment: true, moreFragments: false, fragmentOffset: 0 },
    seg,
  );
  // Write in bursts, yielding between them so the socket can be read; the
  // kernel may drop when the socket buffer is full: counted, not an error.
  let written = 0;
  let dropped = 0;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const BURST = 64;
  while (written + dropped < count) {
    for (let i = 0; i < BURST && written + dropped < count; i++) {
      if (tun.write(packet)) written++;
      else dropped++;
    }
    await new Promise((r) => setImmediate(r));
  }
  const writeSeconds = (performance.now() - t0) / 1000;
  const deadline = performance.now() + 1000;
  while (received < written && performance.now() < deadline) await Bun.sleep(5);
  const seconds = ((last || performance.now()) - t0) / 1000;
  const busy = process.cpuUsage(cpu0);
  sock.close();
  await finish(tun, {
    written, dropped, received, bytes, writeSeconds, seconds,
    writePps: written / writeSeconds,
    pps: received / seconds,
    mbps: (bytes * 8) / seconds / 1e6,
    cpuBusyMs: (busy.user + busy.system) / 1000,
    stats: tun.stats,
  });
}

async function sinkMode(): Promise<void> {
  const count = Number(local);
  const tun = openTun({ name: dev, wake: WAKE, vnetHdr: VNET });
  let received = 0;
  let bytes = 0;
  let first = 0;
  let last = 0;
  tun.onPackets((batch) => {
    const now = performance.now();
    for (const p of batch) {
      if (!isUdp4(p)) continue;
      if (received === 0) first = now;
      received++;
      bytes += p.length;
      last = now;
    }
  });
  const cpu0 = process.cpuUsage();
  console.log("ready");
  const start = performance.now();
  while (received < count) {
    await Bun.sleep(20);
    const ref = last || start;
    if (performance.now() - ref > (last ? 1000 : 10_000)) break;
  }
  const busy = process.cpuUsage(cpu0);
  const seconds = Math.max(1e-6, (last - first) / 1000);
  await finish(tun, {
    received, bytes, seconds, pps: received / seconds, mbps: (bytes * 8) / seconds / 1e6,
    cpuMs: (busy.user + busy.system) / 1000, stats: tun.stats,
  });
}

async function blastMode(): Promise<void> {
  const count = Number(countArg);
  const size = Number(sizeArg);
  const sock = await bind();
  const payload = new Uint8Array(Math.max(0, size - 28));
  const t0 = performance.now();
  for (let sent = 0; sent < count; ) {
    for (let i = 0; i < 32 && sent < count; i++, sent++) sock.send(payload, PEER_PORT, peer);
    await new Promise((r) => setImmediate(r));
  }
  const seconds = (performance.now() - t0) / 1000;
  sock.close();
  console.log(JSON.stringify({ sent: count, seconds, pps: count / seconds }));
  process.exit(0);
}

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

async function createMode(): Promise<void> {
  const fdsBefore = openFds();
  const tun = openTun();
  console.log(JSON.stringify({ name: tun.name, mtu: tun.mtu }));
  for await (const _ of console) break;
  tun.close();
  await tun.done;
  await Bun.sleep(50);
  console.log(JSON.stringify({ closed: true, fdsBefore, fdsAfter: openFds() }));
  process.exit(0);
}

switch (mode) {
  case "udp": await udpMode(); break;
  case "flood": await floodMode(); break;
  case "tx": await txMode(); break;
  case "create": await createMode(); break;
  case "sink": await sinkMode(); break;
  case "blast": await blastMode(); break;
  default:
    console.error(`unknown mode ${mode}`);
    process.exit(2);
}
