// vnet.ts: virtio-net headers from an IFF_VNET_HDR TUN device. Super-packets
// are built with the stack's emitters, given a partial checksum as the
// kernel leaves it, and every resulting segment is checked with the stack's
// parsers (which verify the IP header and TCP checksums).
import { describe, expect, test } from "bun:test";
import { completeChecksum, emitVirtioNetHdr, fromVirtio, parseVirtioNetHdr, splitTcp, type VirtioNetHdr } from "../../../app/net/tun/vnet.ts";
import {
  VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6, VIRTIO_NET_HDR_GSO_UDP_L4, VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_LEN,
} from "../../../app/net/tun/libc.ts";
import { parseIp } from "../../../app/net/stack/ip.ts";
import * as ipv4 from "../../../app/net/stack/wire/ipv4.ts";
import * as ipv6 from "../../../app/net/stack/wire/ipv6.ts";
import * as tcp from "../../../app/net/stack/wire/tcp.ts";
import * as udp from "../../../app/net/stack/wire/udp.ts";
import { IPPROTO_TCP, IPPROTO_UDP, fold, pseudoHeaderSum } from "../../../app/net/stack/wire/checksum.ts";

const SRC4 = new Uint8Array([10, 0, 0, 1]);
const DST4 = new Uint8Array([192, 0, 2, 7]);
const SRC6 = new Uint8Array([0xfd, 0x10, 0, 0x100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1].map((x) => x & 0xff));
const DST6 = new Uint8Array([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);

function pattern(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >> 8)) & 0xff;
  return b;
}

function hdr(fields: Partial<VirtioNetHdr>): VirtioNetHdr {
  return { flags: 0, gsoType: VIRTIO_NET_HDR_GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0, ...fields };
}

function frame(h: VirtioNetHdr, pkt: Uint8Array): Uint8Array {
  const f = new Uint8Array(VIRTIO_NET_HDR_LEN + pkt.length);
  emitVirtioNetHdr(h, f);
  f.set(pkt, VIRTIO_NET_HDR_LEN);
  return f;
}

/** Replace the L4 checksum with the kernel's partial form: the folded pseudo-header sum. */
function makePartial(pkt: Uint8Array, l4: number, csumOffset: number, proto: number, src: Uint8Array, dst: Uint8Array): void {
  const p = fold(pseudoHeaderSum(src, dst, proto, pkt.length - l4));
  pkt[l4 + csumOffset] = p >> 8;
  pkt[l4 + csumOffset + 1] = p & 0xff;
}

const TCP_REPR = tcp.tcpRepr({
  srcPort: 443, dstPort: 51000, seq: 0xfffff000, ack: 12345, flags: tcp.TCP_ACK | tcp.TCP_PSH | tcp.TCP_FIN | tcp.TCP_CWR,
  window: 512, timestamp: { tsval: 1, tsecr: 2 },
});

function superPacket(version: 4 | 6, payload: Uint8Array): { pkt: Uint8Array; l4: number } {
  const src = version === 4 ? SRC4 : SRC6;
  const dst = version === 4 ? DST4 : DST6;
  const seg = tcp.emit(TCP_REPR, payload, src, dst);
  const pkt = version === 4
    ? ipv4.emit({ src, dst, protocol: IPPROTO_TCP, ttl: 64, tos: 0, ident: 0x1234, dontFragment: true, moreFragments: false, fragmentOffset: 0 }, seg)
    : ipv6.emit({ src, dst, nextHeader: IPPROTO_TCP, hopLimit: 64, trafficClass: 0, flowLabel: 0xabcde, fragment: null, extensionLen: 0 }, seg);
  const l4 = version === 4 ? 20 : 40;
  makePartial(pkt, l4, 16, IPPROTO_TCP, src, dst);
  return { pkt, l4 };
}

function checkSegments(version: 4 | 6, payload: Uint8Array, mss: number, segs: Uint8Array[]): void {
  expect(segs).toHaveLength(Math.ceil(payload.length / mss));
  const joined: number[] = [];
  segs.forEach((seg, i) => {
    const last = i === segs.length - 1;
    expect(seg.length).toBeLessThanOrEqual((version === 4 ? 20 : 40) + tcp.headerLength(TCP_REPR) + mss);
    const ip = parseIp(seg);
    if (!ip.ok) throw new Error(ip.reason);
    expect(ip.packet.protocol).toBe(IPPROTO_TCP);
    if (version === 4) {
      const r = ipv4.parse(seg);
      if (!r.ok) throw new Error(r.reason); // header checksum verified
      expect(r.repr.ident).toBe(0x1234 + i);
      expect(r.repr.dontFragment).toBe(true);
    } else {
      const r = ipv6.parse(seg);
      if (!r.ok) throw new Error(r.reason);
      expect(r.payload.length).toBe(seg.length - 40);
      expect(r.repr.flowLabel).toBe(0xabcde);
    }
    const t = tcp.parse(ip.packet.payload, ip.packet.src, ip.packet.dst); // checksum verified
    if (!t.ok) throw new Error(`segment ${i}: ${t.reason}`);
    expect(t.repr.seq).toBe((TCP_REPR.seq + i * mss) >>> 0);
    expect(t.repr.ack).toBe(TCP_REPR.ack);
    expect(t.repr.timestamp).toEqual({ tsval: 1, tsecr: 2 });
    expect(!!(t.repr.flags & tcp.TCP_FIN)).toBe(last);
    expect(!!(t.repr.flags & tcp.TCP_PSH)).toBe(last);
    expect(!!(t.repr.flags & tcp.TCP_CWR)).toBe(i === 0);
    expect(!!(t.repr.flags & tcp.TCP_ACK)).toBe(true);
    expect(t.payload.length).toBe(last ? payload.length - i * mss : mss);
    joined.push(...t.payload);
  });
  expect(new Uint8Array(joined)).toEqual(payload as Uint8Array<ArrayBuffer>);
}

describe("virtio_net_hdr", () => {
  test("emit and parse round-trip, host (little-endian) order", () => {
    const h = hdr({ flags: 1, gsoType: 4, hdrLen: 72, gsoSize: 1428, csumStart: 40, csumOffset: 16 });
    const b = new Uint8Array(12);
    emitVirtioNetHdr(h, b);
    expect([...b]).toEqual([1, 4, 72, 0, 0x94, 0x05, 40, 0, 16, 0, 0, 0]);
    expect(parseVirtioNetHdr(b)).toEqual(h);
    expect(parseVirtioNetHdr(b.subarray(0, 11))).toBeNull();
  });
});

describe("fromVirtio: GSO TCP super-packets", () => {
  for (const version of [4, 6] as const) {
    for (const [size, mss] of [[5000, 1448], [65000 - 100, 1400], [2896, 1448], [1000, 536]] as const) {
      test(`TCPv${version}: ${size} bytes at MSS ${mss}`, () => {
        const payload = pattern(size);
        const { pkt, l4 } = superPacket(version, payload);
        const h = hdr({
          flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
          gsoType: version === 4 ? VIRTIO_NET_HDR_GSO_TCPV4 : VIRTIO_NET_HDR_GSO_TCPV6,
          hdrLen: l4 + tcp.headerLength(TCP_REPR), gsoSize: mss, csumStart: l4, csumOffset: 16,
        });
        const r = fromVirtio(frame(h, pkt));
        if (!r.ok) throw new Error(r.reason);
        checkSegments(version, payload, mss, r.packets);
      });
    }
  }

  test("the ECN bit in gso_type is accepted", () => {
    const payload = pattern(3000);
    const { pkt } = superPacket(4, payload);
    const r = fromVirtio(frame(hdr({ flags: 1, gsoType: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN, gsoSize: 1000, csumStart: 20, csumOffset: 16 }), pkt));
    if (!r.ok) throw new Error(r.reason);
    checkSegments(4, payload, 1000, r.packets);
  });

  test("sequence numbers wrap modulo 2^32", () => {
    const r = splitTcp(superPacket(4, pattern(9000)).pkt, 4, 1448);
    if (!r.ok) throw new Error(r.reason);
    const seqs = r.packets.map((s) => new DataView(s.buffer).getUint32(24));
    expect(seqs[3]).toBe((0xfffff000 + 3 * 1448) % 2 ** 32);
    expect(seqs[3]! < seqs[0]!).toBe(true);
  });

  test("drops: version mismatch, not TCP, truncated, zero MSS, unsupported GSO type", () => {
    const { pkt } = superPacket(4, pattern(3000));
    expect(fromVirtio(frame(hdr({ gsoType: VIRTIO_NET_HDR_GSO_TCPV6, gsoSize: 1000 }), pkt))).toEqual({ ok: false, reason: "vnet: gso version mismatch" });
    const notTcp = pkt.slice();
    notTcp[9] = IPPROTO_UDP;
    expect(fromVirtio(frame(hdr({ gsoType: VIRTIO_NET_HDR_GSO_TCPV4, gsoSize: 1000 }), notTcp)).ok).toBe(false);
    expect(fromVirtio(frame(hdr({ gsoType: VIRTIO_NET_HDR_GSO_TCPV4, gsoSize: 1000 }), pkt.subarray(0, 30))).ok).toBe(false);
    expect(fromVirtio(frame(hdr({ gsoType: VIRTIO_NET_HDR_GSO_TCPV4, gsoSize: 0 }), pkt)).ok).toBe(false);
    expect(fromVirtio(frame(hdr({ gsoType: VIRTIO_NET_HDR_GSO_UDP_L4, gsoSize: 1000 }), pkt))).toEqual({ ok: false, reason: "vnet: unsupported gso_type 5" });
    expect(fromVirtio(new Uint8Array(5)).ok).toBe(false);
  });
});

describe("fromVirtio: partial checksums (NEEDS_CSUM, no GSO)", () => {
  test("TCP/IPv4 and TCP/IPv6 are completed in place and verify", () => {
    for (const version of [4, 6] as const) {
      const payload = pattern(700);
      const { pkt, l4 } = superPacket(version, payload);
      const f = frame(hdr({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: l4, csumOffset: 16 }), pkt);
      const r = fromVirtio(f);
      if (!r.ok) throw new Error(r.reason);
      expect(r.packets).toHaveLength(1);
      expect(r.packets[0]!.buffer).toBe(f.buffer); // a view, no copy
      const ip = parseIp(r.packets[0]!);
      if (!ip.ok) throw new Error(ip.reason);
      const t = tcp.parse(ip.packet.payload, ip.packet.src, ip.packet.dst);
      expect(t.ok).toBe(true);
    }
  });

  test("UDP/IPv4", () => {
    const seg = udp.emit({ srcPort: 5353, dstPort: 53 }, pattern(101), SRC4, DST4);
    const pkt = ipv4.emit({ src: SRC4, dst: DST4, protocol: IPPROTO_UDP, ttl: 64, tos: 0, ident: 1, dontFragment: false, moreFragments: false, fragmentOffset: 0 }, seg);
    makePartial(pkt, 20, 6, IPPROTO_UDP, SRC4, DST4);
    expect(udp.parse(pkt.subarray(20), SRC4, DST4).ok).toBe(false);
    const r = fromVirtio(frame(hdr({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 20, csumOffset: 6 }), pkt));
    if (!r.ok) throw new Error(r.reason);
    expect(udp.parse(r.packets[0]!.subarray(20), SRC4, DST4).ok).toBe(true);
  });

  test("a plain packet without flags passes through untouched", () => {
    const { pkt } = superPacket(6, pattern(10));
    const r = fromVirtio(frame(hdr({}), pkt));
    if (!r.ok) throw new Error(r.reason);
    expect(r.packets[0]).toEqual(pkt);
  });

  test("csum_start/csum_offset beyond the packet is a drop", () => {
    const pkt = new Uint8Array(40);
    expect(completeChecksum(pkt, 30, 16)).toBe("vnet: bad csum_start/csum_offset");
    expect(fromVirtio(frame(hdr({ flags: 1, csumStart: 39, csumOffset: 0 }), pkt)).ok).toBe(false);
  });
});
