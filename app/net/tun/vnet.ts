// virtio-net headers on a TUN device opened with IFF_VNET_HDR (pure; no I/O).
//
// With TUNSETOFFLOAD(CSUM|TSO4|TSO6) the kernel may hand us, after a
// 12-byte struct virtio_net_hdr_mrg_rxbuf:
//   - a plain packet (gso_type NONE), possibly with a partial checksum
//     (flags NEEDS_CSUM: the field at csum_start+csum_offset holds the
//     pseudo-header sum; the ones' complement of the sum from csum_start to
//     the end must be written there);
//   - a TCP super-packet (gso_type TCPV4/TCPV6): one IP+TCP header and up to
//     64 KB of payload, to be cut into gso_size-byte segments as the kernel's
//     tcp_gso_segment would: sequence numbers advanced, IPv4 ident + i,
//     FIN/PSH only on the last segment, CWR only on the first, lengths and
//     all checksums recomputed.
// fromVirtio() returns plain IP packets with complete checksums, or a reason
// to drop. Header fields are in host byte order (little-endian on x86_64 and
// aarch64; TUNSETVNETBE is never set).
import { IPPROTO_TCP, checksum, pseudoHeaderSum } from "../stack/wire/checksum.ts";
import {
  VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6, VIRTIO_NET_HDR_LEN,
} from "./libc.ts";

const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;

export interface VirtioNetHdr {
  flags: number;
  gsoType: number;
  /** Length of the headers (IP + TCP) in a GSO packet; advisory, recomputed here. */
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}

export function parseVirtioNetHdr(b: Uint8Array): VirtioNetHdr | null {
  if (b.length < VIRTIO_NET_HDR_LEN) return null;
  const v = new DataView(b.buffer, b.byteOffset, VIRTIO_NET_HDR_LEN);
  return {
    flags: v.getUint8(0),
    gsoType: v.getUint8(1),
    hdrLen: v.getUint16(2, true),
    gsoSize: v.getUint16(4, true),
    csumStart: v.getUint16(6, true),
    csumOffset: v.getUint16(8, true),
  };
}

/** Write `h` into out[0..12) (num_buffers = 0). */
export function emitVirtioNetHdr(h: VirtioNetHdr, out: Uint8Array): void {
  const v = new DataView(out.buffer, out.byteOffset, VIRTIO_NET_HDR_LEN);
  v.setUint8(0, h.flags);
  v.setUint8(1, h.gsoType);
  v.setUint16(2, h.hdrLen, true);
  v.setUint16(4, h.gsoSize, true);
  v.setUint16(6, h.csumStart, true);
  v.setUint16(8, h.csumOffset, true);
  v.setUint16(10, 0, true);
}

export type VirtioResult = { ok: true; packets: Uint8Array[] } | { ok: false; reason: string };

function fail(reason: string): VirtioResult {
  return { ok: false, reason };
}

/**
 * `frame` is what read() returned: the 12-byte header then the packet.
 * Plain packets come back as views into `frame` (checksum completed in
 * place); GSO segments are fresh arrays.
 */
export function fromVirtio(frame: Uint8Array): VirtioResult {
  const h = parseVirtioNetHdr(frame);
  if (h === null) return fail("vnet: truncated");
  const pkt = frame.subarray(VIRTIO_NET_HDR_LEN);
  const gso = h.gsoType & ~VIRTIO_NET_HDR_GSO_ECN;
  if (gso === VIRTIO_NET_HDR_GSO_NONE) {
    if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
      const r = completeChecksum(pkt, h.csumStart, h.csumOffset);
      if (r !== null) return fail(r);
    }
    return { ok: true, packets: [pkt] };
  }
  if (gso === VIRTIO_NET_HDR_GSO_TCPV4 || gso === VIRTIO_NET_HDR_GSO_TCPV6) {
    return splitTcp(pkt, gso === VIRTIO_NET_HDR_GSO_TCPV4 ? 4 : 6, h.gsoSize);
  }
  return fail(`vnet: unsupported gso_type ${h.gsoType}`);
}

/**
 * Complete a partial checksum in place: the 16-bit field at start+offset
 * holds the (uncomplemented) pseudo-header sum. Returns null or a reason.
 */
export function completeChecksum(pkt: Uint8Array, start: number, offset: number): string | null {
  const at = start + offset;
  if (at + 2 > pkt.length) return "vnet: bad csum_start/csum_offset";
  const c = checksum(pkt.subarray(start));
  pkt[at] = c >> 8;
  pkt[at + 1] = c & 0xff;
  return null;
}

/**
 * Cut a TCP super-packet (IPv4 without options handled generally via IHL;
 * IPv6 with its fixed header only, as Linux TSO emits) into segments of at
 * most `mss` payload bytes with complete checksums.
 */
export function splitTcp(pkt: Uint8Array, version: 4 | 6, mss: number): VirtioResult {
  if (pkt.length < 1 || pkt[0]! >> 4 !== version) return fail("vnet: gso version mismatch");
  let l4: number;
  if (version === 4) {
    if (pkt.length < 20) return fail("vnet: truncated ipv4");
    l4 = (pkt[0]! & 0x0f) * 4;
    if (l4 < 20 || pkt[9] !== IPPROTO_TCP) return fail("vnet: gso not tcp/ipv4");
  } else {
    if (pkt.length < 40) return fail("vnet: truncated ipv6");
    l4 = 40;
    if (pkt[6] !== IPPROTO_TCP) return fail("vnet: gso not tcp/ipv6 (extension headers unsupported)");
  }
  if (pkt.length < l4 + 20) return fail("vnet: truncated tcp");
  const thl = (pkt[l4 + 12]! >> 4) * 4;
  if (thl < 20 || pkt.length < l4 + thl) return fail("vnet: bad tcp offset");
  const hdrLen = l4 + thl;
  const payloadLen = pkt.length - hdrLen;
  if (mss <= 0) return fail("vnet: zero gso_size");
  if (payloadLen <= mss) {
    // Not actually oversize: one segment, checksums recomputed.
    const one = pkt.slice();
    fixLengthsAndChecksums(one, version, l4);
    return { ok: true, packets: [one] };
  }
  const iv = new DataView(pkt.buffer, pkt.byteOffset, pkt.byteLength);
  const seq0 = iv.getUint32(l4 + 4);
  const ident0 = version === 4 ? iv.getUint16(4) : 0;
  const flags0 = pkt[l4 + 13]!;
  const count = Math.ceil(payloadLen / mss);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const from = hdrLen + i * mss;
    const to = Math.min(pkt.length, from + mss);
    const seg = new Uint8Array(hdrLen + (to - from));
    seg.set(pkt.subarray(0, hdrLen), 0);
    seg.set(pkt.subarray(from, to), hdrLen);
    const sv = new DataView(seg.buffer);
    sv.setUint32(l4 + 4, (seq0 + i * mss) >>> 0);
    let flags = flags0;
    if (i !== count - 1) flags &= ~(TCP_FIN | TCP_PSH);
    if (i !== 0) flags &= ~TCP_CWR;
    seg[l4 + 13] = flags;
    if (version === 4) sv.setUint16(4, (ident0 + i) & 0xffff);
    fixLengthsAndChecksums(seg, version, l4);
    out.push(seg);
  }
  return { ok: true, packets: out };
}

function fixLengthsAndChecksums(seg: Uint8Array, version: 4 | 6, l4: number): void {
  const v = new DataView(seg.buffer, seg.byteOffset, seg.byteLength);
  const tcpLen = seg.length - l4;
  let src: Uint8Array;
  let dst: Uint8Array;
  if (version === 4) {
    v.setUint16(2, seg.length);
    v.setUint16(10, 0);
    v.setUint16(10, checksum(seg.subarray(0, l4)));
    src = seg.subarray(12, 16);
    dst = seg.subarray(16, 20);
  } else {
    v.setUint16(4, seg.length - 40);
    src = seg.subarray(8, 24);
    dst = seg.subarray(24, 40);
  }
  v.setUint16(l4 + 16, 0);
  const tcp = seg.subarray(l4);
  v.setUint16(l4 + 16, checksum(tcp, pseudoHeaderSum(src, dst, IPPROTO_TCP, tcpLen)));
}
