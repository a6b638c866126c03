// ICMPv4 (RFC 792) and ICMPv6 (RFC 4443): echo and destination-unreachable.
// Other messages parse to { kind: "other" } so callers can count and drop.
// ICMPv6 checksums cover the IPv6 pseudo-header (RFC 4443 §2.3).
import { IPPROTO_ICMPV6, checksum, fold, onesSum, pseudoHeaderSum, verifies } from "./checksum.ts";
import { drop, viewOf, type Parsed } from "./result.ts";

export const ICMP_HEADER_LEN = 8;

// RFC 792 types.
export const ICMPV4_ECHO_REPLY = 0;
export const ICMPV4_DEST_UNREACHABLE = 3;
export const ICMPV4_ECHO_REQUEST = 8;
// RFC 792 destination-unreachable codes.
export const ICMPV4_UNREACH_NET = 0;
export const ICMPV4_UNREACH_HOST = 1;
export const ICMPV4_UNREACH_PROTOCOL = 2;
export const ICMPV4_UNREACH_PORT = 3;
export const ICMPV4_UNREACH_FRAG_NEEDED = 4;
export const ICMPV4_UNREACH_ADMIN = 13; // RFC 1812

// RFC 4443 types.
export const ICMPV6_DEST_UNREACHABLE = 1;
export const ICMPV6_ECHO_REQUEST = 128;
export const ICMPV6_ECHO_REPLY = 129;
// RFC 4443 §3.1 codes.
export const ICMPV6_UNREACH_NO_ROUTE = 0;
export const ICMPV6_UNREACH_ADMIN = 1;
export const ICMPV6_UNREACH_ADDRESS = 3;
export const ICMPV6_UNREACH_PORT = 4;
/** RFC 4443 §2.4(c): an error message must not exceed the minimum IPv6 MTU. */
export const ICMPV6_ERROR_MAX = 1280;
/** RFC 1812 §4.3.2.3: an ICMPv4 error should not exceed 576 bytes. */
export const ICMPV4_ERROR_MAX = 576;

export type IcmpRepr =
  | { kind: "echo-request"; ident: number; seqNo: number }
  | { kind: "echo-reply"; ident: number; seqNo: number }
  /** payload = the invoking packet (as much as fits). `mtu` is meaningful for v4 frag-needed. */
  | { kind: "dest-unreachable"; code: number; mtu: number }
  | { kind: "other"; type: number; code: number };

function decode(v: DataView, echoReq: number, echoRep: number, unreach: number): IcmpRepr {
  const type = v.getUint8(0);
  const code = v.getUint8(1);
  if (type === echoReq && code === 0) return { kind: "echo-request", ident: v.getUint16(4), seqNo: v.getUint16(6) };
  if (type === echoRep && code === 0) return { kind: "echo-reply", ident: v.getUint16(4), seqNo: v.getUint16(6) };
  if (type === unreach) return { kind: "dest-unreachable", code, mtu: v.getUint16(6) };
  return { kind: "other", type, code };
}

function encode(repr: IcmpRepr, payload: Uint8Array, echoReq: number, echoRep: number, unreach: number): Uint8Array {
  const out = new Uint8Array(ICMP_HEADER_LEN + payload.length);
  const v = viewOf(out);
  switch (repr.kind) {
    case "echo-request":
    case "echo-reply":
      v.setUint8(0, repr.kind === "echo-request" ? echoReq : echoRep);
      v.setUint16(4, repr.ident);
      v.setUint16(6, repr.seqNo);
      break;
    case "dest-unreachable":
      v.setUint8(0, unreach);
      v.setUint8(1, repr.code);
      v.setUint16(6, repr.mtu);
      break;
    case "other":
      v.setUint8(0, repr.type);
      v.setUint8(1, repr.code);
      break;
  }
  out.set(payload, ICMP_HEADER_LEN);
  return out;
}

/** Checked ICMPv4 parse. Reasons: truncated, bad-checksum. */
export function parseV4(bytes: Uint8Array): Parsed<IcmpRepr> {
  if (bytes.length < ICMP_HEADER_LEN) return drop("icmp: truncated");
  if (!verifies(bytes)) return drop("icmp: bad-checksum");
  const repr = decode(viewOf(bytes), ICMPV4_ECHO_REQUEST, ICMPV4_ECHO_REPLY, ICMPV4_DEST_UNREACHABLE);
  return { ok: true, repr, payload: bytes.subarray(ICMP_HEADER_LEN) };
}

export function emitV4(repr: IcmpRepr, payload: Uint8Array): Uint8Array {
  const out = encode(repr, payload, ICMPV4_ECHO_REQUEST, ICMPV4_ECHO_REPLY, ICMPV4_DEST_UNREACHABLE);
  viewOf(out).setUint16(2, checksum(out));
  return out;
}

/** Checked ICMPv6 parse (pseudo-header checksum). Reasons: truncated, bad-checksum. */
export function parseV6(bytes: Uint8Array, src: Uint8Array, dst: Uint8Array): Parsed<IcmpRepr> {
  if (bytes.length < ICMP_HEADER_LEN) return drop("icmpv6: truncated");
  if (fold(onesSum(bytes, pseudoHeaderSum(src, dst, IPPROTO_ICMPV6, bytes.length))) !== 0xffff)
    return drop("icmpv6: bad-checksum");
  const repr = decode(viewOf(bytes), ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY, ICMPV6_DEST_UNREACHABLE);
  return { ok: true, repr, payload: bytes.subarray(ICMP_HEADER_LEN) };
}

export function emitV6(repr: IcmpRepr, payload: Uint8Array, src: Uint8Array, dst: Uint8Array): Uint8Array {
  const out = encode(repr, payload, ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY, ICMPV6_DEST_UNREACHABLE);
  viewOf(out).setUint16(2, checksum(out, pseudoHeaderSum(src, dst, IPPROTO_ICMPV6, out.length)));
  return out;
}
