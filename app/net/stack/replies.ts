// Packets the stack originates toward the device other than TCP segments:
// UDP datagrams (DNS answers, relayed replies), ICMP/ICMPv6 echo replies and
// destination-unreachable errors. Pure functions: bytes in, bytes out.
//
// IPv4 datagrams larger than the link MTU are fragmented here (RFC 791
// §3.2, fragments cut on 8-octet boundaries); IPv6 ones are refused
// (returned as an empty list), since only the source may fragment and an
// extension header is not worth it for the few oversize replies.
import * as ipv4 from "./wire/ipv4.ts";
import * as ipv6 from "./wire/ipv6.ts";
import * as udp from "./wire/udp.ts";
import * as icmp from "./wire/icmp.ts";
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_UDP } from "./wire/checksum.ts";
import { DEFAULT_TTL } from "./ip.ts";

let nextIdent = 1;

/** An IP packet (or IPv4 fragments) carrying `payload` as `protocol`, each at most `mtu` bytes. */
export function emitIpPackets(src: Uint8Array, dst: Uint8Array, protocol: number, payload: Uint8Array, mtu: number): Uint8Array[] {
  if (src.length === 16) {
    if (ipv6.IPV6_HEADER_LEN + payload.length > mtu) return [];
    const repr: ipv6.Ipv6Repr = {
      src, dst, nextHeader: protocol, hopLimit: DEFAULT_TTL, trafficClass: 0, flowLabel: 0, fragment: null, extensionLen: 0,
    };
    return [ipv6.emit(repr, payload)];
  }
  const base: ipv4.Ipv4Repr = {
    src, dst, protocol, ttl: DEFAULT_TTL, tos: 0, ident: 0, dontFragment: false, moreFragments: false, fragmentOffset: 0,
  };
  if (ipv4.IPV4_HEADER_LEN + payload.length <= mtu) return [ipv4.emit({ ...base, dontFragment: true }, payload)];
  const chunk = ((mtu - ipv4.IPV4_HEADER_LEN) >> 3) << 3;
  if (chunk <= 0) return [];
  const ident = nextIdent;
  nextIdent = (nextIdent + 1) & 0xffff || 1;
  const out: Uint8Array[] = [];
  for (let off = 0; off < payload.length; off += chunk) {
    const end = Math.min(off + chunk, payload.length);
    out.push(ipv4.emit({ ...base, ident, fragmentOffset: off, moreFragments: end < payload.length }, payload.subarray(off, end)));
  }
  return out;
}

/** A UDP datagram from `src`:`srcPort` to `dst`:`dstPort`, as IP packets no larger than `mtu`. */
export function emitUdpPackets(
  src: Uint8Array, srcPort: number, dst: Uint8Array, dstPort: number, payload: Uint8Array, mtu: number,
): Uint8Array[] {
  return emitIpPackets(src, dst, IPPROTO_UDP, udp.emit({ srcPort, dstPort }, payload, src, dst), mtu);
}

/** The echo reply to an echo request (`payload` = the request's data, echoed whole). */
export function emitEchoReply(
  requestSrc: Uint8Array, requestDst: Uint8Array, ident: number, seqNo: number, payload: Uint8Array, mtu: number,
): Uint8Array[] {
  const repr: icmp.IcmpRepr = { kind: "echo-reply", ident, seqNo };
  if (requestSrc.length === 16) {
    return emitIpPackets(requestDst, requestSrc, IPPROTO_ICMPV6, icmp.emitV6(repr, payload, requestDst, requestSrc), mtu);
  }
  return emitIpPackets(requestDst, requestSrc, IPPROTO_ICMP, icmp.emitV4(repr, payload), mtu);
}

/**
 * Destination unreachable about `invoking` (the whole offending IP packet,
 * header included), sent from the address it was sent to. The quote is cut
 * so the error stays within RFC 1812 §4.3.2.3 (576 bytes, IPv4) or RFC 4443
 * §2.4(c) (1280 bytes, IPv6).
 */
export function emitDestUnreachable(
  invokingSrc: Uint8Array, invokingDst: Uint8Array, invoking: Uint8Array, code: number, mtu: number,
): Uint8Array[] {
  const repr: icmp.IcmpRepr = { kind: "dest-unreachable", code, mtu: 0 };
  if (invokingSrc.length === 16) {
    const max = Math.min(icmp.ICMPV6_ERROR_MAX, mtu) - ipv6.IPV6_HEADER_LEN - icmp.ICMP_HEADER_LEN;
    const quote = invoking.subarray(0, Math.max(0, max));
    return emitIpPackets(invokingDst, invokingSrc, IPPROTO_ICMPV6, icmp.emitV6(repr, quote, invokingDst, invokingSrc), mtu);
  }
  const max = Math.min(icmp.ICMPV4_ERROR_MAX, mtu) - ipv4.IPV4_HEADER_LEN - icmp.ICMP_HEADER_LEN;
  const quote = invoking.subarray(0, Math.max(0, max));
  return emitIpPackets(invokingDst, invokingSrc, IPPROTO_ICMP, icmp.emitV4(repr, quote), mtu);
}
