// One entry for whole IP packets: parse either version down to the
// upper-layer payload, and build a TCP packet for either version in one
// allocation. The TCP table and the shell meet here.
import * as ipv4 from "./wire/ipv4.ts";
import * as ipv6 from "./wire/ipv6.ts";
import * as tcp from "./wire/tcp.ts";
import { IPPROTO_TCP } from "./wire/checksum.ts";

export interface IpPacket {
  version: 4 | 6;
  src: Uint8Array;
  dst: Uint8Array;
  /** Upper-layer protocol (after IPv6 extension headers). */
  protocol: number;
  ttl: number;
  /** True when this packet is a fragment (reassembly is not done here). */
  fragment: boolean;
  payload: Uint8Array;
}

export type IpParsed = { ok: true; packet: IpPacket } | { ok: false; reason: string };

export function parseIp(bytes: Uint8Array): IpParsed {
  if (bytes.length < 1) return { ok: false, reason: "ip: empty" };
  const version = bytes[0]! >> 4;
  if (version === 4) {
    const r = ipv4.parse(bytes);
    if (!r.ok) return r;
    return {
      ok: true,
      packet: {
        version: 4, src: r.repr.src, dst: r.repr.dst, protocol: r.repr.protocol, ttl: r.repr.ttl,
        fragment: ipv4.isFragment(r.repr), payload: r.payload,
      },
    };
  }
  if (version === 6) {
    const r = ipv6.parse(bytes);
    if (!r.ok) return r;
    return {
      ok: true,
      packet: {
        version: 6, src: r.repr.src, dst: r.repr.dst, protocol: r.repr.nextHeader, ttl: r.repr.hopLimit,
        fragment: r.repr.fragment !== null, payload: r.payload,
      },
    };
  }
  return { ok: false, reason: "ip: bad-version" };
}

export const DEFAULT_TTL = 64;

/** A whole IPv4/IPv6 packet carrying one TCP segment, checksums filled in. */
export function emitTcpPacket(src: Uint8Array, dst: Uint8Array, repr: tcp.TcpRepr, payload: Uint8Array, ttl = DEFAULT_TTL): Uint8Array {
  const tlen = tcp.headerLength(repr) + payload.length;
  if (src.length === 4) {
    const out = new Uint8Array(ipv4.IPV4_HEADER_LEN + tlen);
    ipv4.emitHeader(
      { src, dst, protocol: IPPROTO_TCP, ttl, tos: 0, ident: 0, dontFragment: true, moreFragments: false, fragmentOffset: 0 },
      tlen, out,
    );
    tcp.emitInto(repr, payload, src, dst, out.subarray(ipv4.IPV4_HEADER_LEN));
    return out;
  }
  const out = new Uint8Array(ipv6.IPV6_HEADER_LEN + tlen);
  ipv6.emitHeader(
    { src, dst, nextHeader: IPPROTO_TCP, hopLimit: ttl, trafficClass: 0, flowLabel: 0, fragment: null, extensionLen: 0 },
    tlen, out,
  );
  tcp.emitInto(repr, payload, src, dst, out.subarray(ipv6.IPV6_HEADER_LEN));
  return out;
}
