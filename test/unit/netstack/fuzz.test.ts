// Fuzz: random and mutated packets into a NetStack over the in-memory link.
//
// 1. Seeds: valid IPv4/IPv6 TCP (SYN with every option, ACK+data, FIN,
//    RST), UDP (:53, :443, other), ICMP/ICMPv6 echo, IPv4 fragments.
// 2. Each fuzz packet is one of: a structure-aware mutant (random TCP
//    fields, flags, options, ports, addresses, emitted with valid checksums
//    so it reaches the state machines); a byte-level mutant of a seed (bit
//    flips, truncation, a lying length field, garbage in the TCP options,
//    optionally with the checksums fixed up again); or plain random bytes.
// 3. Batches go to the stack as the link would deliver them. No exception
//    may escape (the stack's own catch counts "internal: exception", which
//    must stay 0), and the stack's tables must stay within their bounds.
// 4. Afterwards a normal connection still carries bytes both ways.
//
// FUZZ_PACKETS sets the count (default 1,000,000, the figure).
import { expect, test } from "bun:test";
import * as ipv4 from "../../../app/net/stack/wire/ipv4.ts";
import * as ipv6 from "../../../app/net/stack/wire/ipv6.ts";
import * as udp from "../../../app/net/stack/wire/udp.ts";
import * as icmp from "../../../app/net/stack/wire/icmp.ts";
import * as tcp from "../../../app/net/stack/wire/tcp.ts";
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, checksum, pseudoHeaderSum } from "../../../app/net/stack/wire/checksum.ts";
import { emitTcpPacket } from "../../../app/net/stack/ip.ts";
import dgram from "node:dgram";
import { createMemoryLinkPair } from "../../../app/net/tun/memory-link.ts";
import { NetStack, type TcpFlowInit } from "../../../app/net/stack/netstack.ts";
import { Device, deviceRecv, deviceSend, equalBytes, ip, pattern, until } from "./helpers.ts";

// 1M takes 60-90 s here (about 30 s of CPU). (It took 220 s and grew superlinearly until the stack's
// deferred pump was made single: every pump that hit its round limit started
// another setImmediate chain, and the chains multiplied.)
const PACKETS = Number(process.env.FUZZ_PACKETS ?? 1_000_000);
const BATCH = 256;
const LIMITS = { maxHalfOpen: 256, maxConnections: 384, maxDatagrams: 32, maxBufferedBytes: 256 * 1024, maxDnsPending: 128 };

/** xorshift32: reproducible runs (FUZZ_SEED). */
let state = Number(process.env.FUZZ_SEED ?? 0x2545f491) >>> 0 || 1;
function rnd(): number {
  state ^= state << 13;
  state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5;
  state >>>= 0;
  return state;
}
const below = (n: number) => rnd() % n;
const chance = (p: number) => rnd() / 0x100000000 < p;
function bytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = rnd() & 0xff;
  return b;
}

// Addresses: a few devices, a few destinations (so tuples repeat and reach
// established state), sometimes anything at all.
const V4_SRC = ["10.0.0.2", "10.0.0.3", "10.0.0.4"].map(ip);
const V4_DST = ["93.184.216.34", "10.0.0.1", "198.51.100.7", "93.184.216.35", "203.0.113.9", "0.0.0.0", "127.0.0.1", "224.0.0.1"].map(ip);
const V6_SRC = ["fd00::2", "fd00::3"].map(ip);
const V6_DST = ["2001:db8::1", "fd00::1", "::1", "ff02::1"].map(ip);
const PORTS = [53, 80, 443, 5432, 7000, 0, 65535];
const pick = <T,>(a: T[]): T => a[below(a.length)]!;

function v4(src: Uint8Array, dst: Uint8Array, protocol: number, payload: Uint8Array, frag?: { mf: boolean; off: number; id: number }): Uint8Array {
  return ipv4.emit(
    {
      src, dst, protocol, ttl: 64, tos: 0, ident: frag?.id ?? below(65536), dontFragment: !frag && chance(0.5),
      moreFragments: frag?.mf ?? false, fragmentOffset: frag?.off ?? 0,
    },
    payload,
  );
}

function v6(src: Uint8Array, dst: Uint8Array, nextHeader: number, payload: Uint8Array): Uint8Array {
  return ipv6.emit({ src, dst, nextHeader, hopLimit: 64, trafficClass: 0, flowLabel: below(1 << 20), fragment: null, extensionLen: 0 }, payload);
}

function randomTcpRepr(): tcp.TcpRepr {
  const flagsPool = [tcp.TCP_SYN, tcp.TCP_SYN | tcp.TCP_ACK, tcp.TCP_ACK, tcp.TCP_ACK | tcp.TCP_PSH, tcp.TCP_FIN | tcp.TCP_ACK, tcp.TCP_RST, tcp.TCP_RST | tcp.TCP_ACK, below(256)];
  const sack = chance(0.2) ? Array.from({ length: 2 * (1 + below(4)) }, () => rnd()) : null;
  return tcp.tcpRepr({
    srcPort: chance(0.7) ? 40000 + below(64) : below(65536),
    dstPort: chance(0.8) ? pick(PORTS) : below(65536),
    seq: chance(0.5) ? below(4096) : rnd(),
    ack: chance(0.5) ? below(4096) : rnd(),
    flags: pick(flagsPool),
    window: below(65536),
    urgent: chance(0.1) ? below(65536) : 0,
    mss: chance(0.4) ? below(65536) : null,
    windowScale: chance(0.4) ? below(256) : null,
    sackPermitted: chance(0.4),
    sackBlocks: sack,
    timestamp: chance(0.4) ? { tsval: rnd(), tsecr: rnd() } : null,
  });
}

function structured(): Uint8Array {
  const kind = below(10);
  const six = chance(0.25);
  const src = six ? pick(V6_SRC) : pick(V4_SRC);
  const dst = six ? pick(V6_DST) : pick(V4_DST);
  const wrap = (proto: number, payload: Uint8Array) => (six ? v6(src, dst, proto, payload) : v4(src, dst, proto, payload));
  if (kind < 6) {
    const payload = chance(0.5) ? bytes(below(chance(0.1) ? 1400 : 64)) : new Uint8Array(0);
    return emitTcpPacket(src, dst, randomTcpRepr(), payload);
  }
  if (kind < 8) {
    const port = chance(0.8) ? pick([53, 443, 9999]) : below(65536);
    return wrap(IPPROTO_UDP, udp.emit({ srcPort: 1 + below(65535), dstPort: port }, bytes(below(600)), src, dst));
  }
  if (kind === 8) {
    const repr = { kind: "echo-request", ident: below(65536), seqNo: below(65536) } as icmp.IcmpRepr;
    return six ? wrap(IPPROTO_ICMPV6, icmp.emitV6(repr, bytes(below(100)), src, dst)) : wrap(IPPROTO_ICMP, icmp.emitV4(repr, bytes(below(100))));
  }
  // IPv4 fragments of a UDP datagram, possibly overlapping, possibly never completed.
  const s4 = pick(V4_SRC);
  const d4 = pick(V4_DST);
  const off = 8 * below(200);
  return v4(s4, d4, chance(0.8) ? IPPROTO_UDP : IPPROTO_TCP, bytes(8 * (1 + below(100))), { mf: chance(0.7), off, id: below(16) });
}

/** Recompute the IPv4 header checksum and, for TCP/UDP/ICMP, the transport checksum, as far as the bytes allow. */
function fixChecksums(p: Uint8Array): void {
  if (p.length < 20) return;
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  let proto: number, start: number, src: Uint8Array, dst: Uint8Array;
  if (p[0]! >> 4 === 4) {
    const ihl = (p[0]! & 15) * 4;
    if (ihl < 20 || ihl > p.length) return;
    dv.setUint16(10, 0);
    dv.setUint16(10, checksum(p.subarray(0, ihl)));
    proto = p[9]!;
    start = ihl;
    src = p.subarray(12, 16);
    dst = p.subarray(16, 20);
  } else if (p[0]! >> 4 === 6 && p.length >= 40) {
    proto = p[6]!;
    start = 40;
    src = p.subarray(8, 24);
    dst = p.subarray(24, 40);
  } else return;
  const seg = p.subarray(start);
  const at = proto === IPPROTO_TCP ? 16 : proto === IPPROTO_UDP ? 6 : proto === IPPROTO_ICMP || proto === IPPROTO_ICMPV6 ? 2 : -1;
  if (at < 0 || seg.length < at + 2) return;
  dv.setUint16(start + at, 0);
  const pseudo = proto === IPPROTO_ICMP ? 0 : pseudoHeaderSum(src, dst, proto, seg.length);
  dv.setUint16(start + at, checksum(seg, pseudo));
}

function mutate(seed: Uint8Array): Uint8Array {
  let p = seed.slice();
  const ops = 1 + below(3);
  for (let i = 0; i < ops; i++) {
    switch (below(6)) {
      case 0: // bit flips
        for (let n = 1 + below(8); n > 0 && p.length > 0; n--) p[below(p.length)]! ^= 1 << below(8);
        break;
      case 1: // truncation
        p = p.subarray(0, below(p.length + 1));
        break;
      case 2: { // a length field lies: IPv4 total length / IHL, IPv6 payload length, TCP data offset, UDP length
        const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
        const v = p.length > 0 ? p[0]! >> 4 : 0;
        const l4 = v === 4 ? (p[0]! & 15) * 4 : 40;
        const choice = below(4);
        if (choice === 0 && v === 4 && p.length >= 4) dv.setUint16(2, below(65536));
        else if (choice === 0 && v === 6 && p.length >= 6) dv.setUint16(4, below(65536));
        else if (choice === 1 && v === 4 && p.length >= 1) p[0] = 0x40 | below(16);
        else if (choice === 2 && p.length > l4 + 12) p[l4 + 12] = (below(16) << 4) | (p[l4 + 12]! & 15);
        else if (p.length > l4 + 6) dv.setUint16(l4 + 4, below(65536));
        break;
      }
      case 3: { // option garbage: random bytes over the TCP options / IPv4 options region
        const v = p.length > 0 ? p[0]! >> 4 : 0;
        const l4 = v === 4 ? (p[0]! & 15) * 4 : 40;
        const from = l4 + 20;
        if (p.length > from) p.set(bytes(Math.min(p.length - from, 1 + below(40))), from);
        break;
      }
      case 4: // random bytes appended
        p = Uint8Array.from([...p, ...bytes(below(64))]);
        break;
      default: // a random byte rewritten
        if (p.length > 0) p[below(p.length)] = rnd() & 0xff;
    }
  }
  if (chance(0.5)) fixChecksums(p);
  return p;
}

function nextPacket(seeds: Uint8Array[]): Uint8Array {
  const r = below(100);
  if (r < 45) return structured();
  if (r < 95) return mutate(chance(0.5) ? pick(seeds) : structured());
  const b = bytes(below(120));
  if (b.length > 0 && chance(0.7)) b[0] = (chance(0.5) ? 0x45 : 0x60) | (b[0]! & 0);
  return b;
}

test(`${PACKETS.toLocaleString("en")} random and mutated packets: nothing escapes, state stays bounded, a connection still works`, async () => {
  // A resolver that swallows queries, so :53 forwarding stays on loopback.
  const sink = dgram.createSocket("udp4");
  await new Promise<void>((r) => sink.bind(0, "127.0.0.1", () => r()));
  const [gatewayLink, deviceLink] = createMemoryLinkPair({ mtu: 1500, queueLimit: 1 << 16, batchLimit: 64 });
  const flows: TcpFlowInit[] = [];
  const stack = new NetStack({
    link: gatewayLink,
    onTcpFlow: (f) => flows.push(f),
    dns: { resolver: `127.0.0.1:${sink.address().port}` },
    udpPolicy: () => "drop", // "relay" would send fuzz datagrams to real addresses
    settings: {
      ownAddresses: ["10.0.0.1", "fd00::1"],
      tcp: { maxHalfOpen: LIMITS.maxHalfOpen, maxConnections: LIMITS.maxConnections },
      fragments: { maxDatagrams: LIMITS.maxDatagrams, maxBufferedBytes: LIMITS.maxBufferedBytes },
      maxDnsPending: LIMITS.maxDnsPending,
    },
  });
  // The fuzzing device: every packet the stack sends must parse; a SYN-ACK
  // is often answered with the right ACK (and data), so handshakes complete
  // and the fuzz reaches established connections and their Flows.
  const followUps: Uint8Array[] = [];
  const badOutput: string[] = [];
  let received = 0;
  deviceLink.onPackets((ps) => {
    for (const p of ps) {
      received++;
      const v = p[0]! >> 4;
      const r = v === 4 ? ipv4.parse(p) : ipv6.parse(p);
      if (!r.ok) {
        badOutput.push(r.reason);
        continue;
      }
      const proto = "protocol" in r.repr ? r.repr.protocol : r.repr.nextHeader;
      if (proto !== IPPROTO_TCP) continue;
      const t = tcp.parse(r.payload, r.repr.src, r.repr.dst);
      if (!t.ok) {
        badOutput.push(t.reason);
        continue;
      }
      if ((t.repr.flags & (tcp.TCP_SYN | tcp.TCP_ACK)) === (tcp.TCP_SYN | tcp.TCP_ACK) && chance(0.6)) {
        const ack = tcp.tcpRepr({
          srcPort: t.repr.dstPort, dstPort: t.repr.srcPort, seq: t.repr.ack, ack: (t.repr.seq + 1) >>> 0,
          flags: tcp.TCP_ACK | (chance(0.5) ? tcp.TCP_PSH : 0), window: below(65536),
          timestamp: t.repr.timestamp ? { tsval: rnd(), tsecr: t.repr.timestamp.tsval } : null,
        });
        followUps.push(emitTcpPacket(r.repr.dst, r.repr.src, ack, chance(0.5) ? bytes(below(1000)) : new Uint8Array(0)));
      }
    }
  });
  const h = { stack, flows, gatewayLink };
  const errors: unknown[] = [];
  const onError = (e: unknown) => errors.push(e);
  process.on("uncaughtException", onError);
  try {
    // Flows the fuzz manages to open are read and written like a real pipeline would.
    const seeds: Uint8Array[] = [];
    for (let i = 0; i < 200; i++) seeds.push(structured());
    const s4 = ip("10.0.0.2"), d4 = ip("93.184.216.34");
    seeds.push(
      emitTcpPacket(s4, d4, tcp.tcpRepr({ srcPort: 40001, dstPort: 443, seq: 1000, flags: tcp.TCP_SYN, window: 65535, mss: 1460, windowScale: 7, sackPermitted: true, timestamp: { tsval: 1, tsecr: 0 } }), new Uint8Array(0)),
      emitTcpPacket(s4, d4, tcp.tcpRepr({ srcPort: 40001, dstPort: 443, seq: 1001, ack: 1, flags: tcp.TCP_ACK | tcp.TCP_PSH, window: 512, sackBlocks: [5, 9] }), pattern(300, 1)),
    );

    const open: TcpFlowInit[] = [];
    const started = performance.now();
    const peak = { halfOpen: 0, connections: 0, fragments: 0, fragmentBytes: 0, dnsPending: 0 };
    for (let sent = 0; sent < PACKETS; ) {
      const n = Math.min(BATCH, PACKETS - sent);
      const batch = new Array<Uint8Array>(n);
      for (let i = 0; i < n; i++) batch[i] = followUps.length > 0 && chance(0.3) ? followUps.shift()! : nextPacket(seeds);
      // Through the in-memory link, which hands them to the stack in batches as a TUN would.
      for (const p of batch) deviceLink.write(p);
      await h.gatewayLink.drained();
      sent += n;
      if (followUps.length > 4096) followUps.splice(0, followUps.length - 4096);
      if ((sent / BATCH) % 8 === 0) {
        for (const f of h.flows.splice(0)) {
          open.push(f);
          f.conn.on("error", () => {});
          f.conn.resume();
          if (chance(0.5)) f.conn.write(pattern(2000, sent));
        }
        // Keep a few alive; the rest are reset, as a pipeline would time them out: a table full of
        // peers that never ACK makes every timer expiry a scan over all of them (TcpTable.dispatch).
        while (open.length > 32) open.shift()!.conn.destroy();
        const st = h.stack.stats();
        peak.halfOpen = Math.max(peak.halfOpen, st.tcp.halfOpen);
        peak.connections = Math.max(peak.connections, st.tcp.connections);
        peak.fragments = Math.max(peak.fragments, st.fragments.inFlight);
        peak.fragmentBytes = Math.max(peak.fragmentBytes, st.fragments.bufferedBytes);
        peak.dnsPending = Math.max(peak.dnsPending, st.udp.dnsPending);
      }
      if ((sent / BATCH) % 64 === 0) await new Promise((r) => setImmediate(r)); // timers and sockets run too
    }
    const ms = performance.now() - started;
    const st = h.stack.stats();
    console.log(`fuzz: ${PACKETS} packets in ${(ms / 1000).toFixed(1)} s; peak ${JSON.stringify(peak)}; in ${st.packetsIn}, out ${st.packetsOut} (${received} seen), opened ${st.tcp.flowsOpened}`);
    console.log(`fuzz drops: ${JSON.stringify(Object.entries(st.drops).sort((a, b) => b[1] - a[1]).slice(0, 12))}`);

    expect(errors).toEqual([]);
    expect(badOutput).toEqual([]);
    expect(st.drops["internal: exception"] ?? 0).toBe(0);
    expect(st.packetsIn).toBeGreaterThanOrEqual(PACKETS * 0.99); // a few mutants grew past the link MTU
    expect(peak.halfOpen).toBeLessThanOrEqual(LIMITS.maxHalfOpen);
    expect(peak.connections).toBeLessThanOrEqual(LIMITS.maxConnections);
    expect(peak.fragments).toBeLessThanOrEqual(LIMITS.maxDatagrams);
    expect(peak.fragmentBytes).toBeLessThanOrEqual(LIMITS.maxBufferedBytes);
    expect(peak.dnsPending).toBeLessThanOrEqual(LIMITS.maxDnsPending);
    // The fuzz reached the state machines, not only the parsers.
    expect(st.tcp.flowsOpened + st.udp.quicRefused + st.udp.dnsForwarded + st.icmp.echoReplied).toBeGreaterThan(0);

    // A normal connection afterwards, from a fresh port: bytes both ways.
    // The fuzz filled the table to its bound with peers that never ACK;
    // reset them, as the pipeline would on its own timeouts.
    for (const f of open) f.conn.destroy();
    await new Promise((r) => setImmediate(r));
    h.flows.splice(0);
    const device = new Device(deviceLink);
    const c = device.connect("10.0.0.9", 51000, "203.0.113.80", 8080);
    await until(() => h.flows.length === 1, 5000, "the flow");
    const flow = h.flows[0]!;
    const up = pattern(50_000, 7);
    const got: Buffer[] = [];
    flow.conn.on("data", (d: Buffer) => got.push(d));
    await deviceSend(device, c, up);
    await until(() => got.reduce((n, b) => n + b.length, 0) >= up.length, 5000, "upstream bytes");
    expect(equalBytes(Buffer.concat(got), up)).toBe(true);
    const down = pattern(50_000, 8);
    flow.conn.write(down);
    expect(equalBytes(await deviceRecv(device, c, down.length), down)).toBe(true);
  } finally {
    process.off("uncaughtException", onError);
    stack.close();
    gatewayLink.close();
    deviceLink.close();
    sink.close();
  }
}, 60_000 + PACKETS * 0.3);
