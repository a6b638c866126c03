// UDP header (RFC 768; over IPv6, RFC 8200 §8.1: the checksum is mandatory).
import { IPPROTO_UDP, checksum, fold, onesSum, pseudoHeaderSum } from "./checksum.ts";
import { drop, viewOf, type Parsed } from "./result.ts";

export const UDP_HEADER_LEN = 8;

export interface UdpRepr {
  srcPort: number;
  dstPort: number;
}

/**
 * Checked parse of a UDP datagram carried between `src` and `dst` (4 or 16
 * byte addresses). `bytes` is the IP payload. Reasons: truncated,
 * bad-length, bad-checksum, zero-checksum-v6.
 */
export function parse(bytes: Uint8Array, src: Uint8Array, dst: Uint8Array): Parsed<UdpRepr> {
  if (bytes.length < UDP_HEADER_LEN) return drop("udp: truncated");
  const v = viewOf(bytes);
  const len = v.getUint16(4);
  if (len < UDP_HEADER_LEN || len > bytes.length) return drop("udp: bad-length");
  const dgram = bytes.subarray(0, len);
  const csum = v.getUint16(6);
  if (csum === 0) {
    if (src.length === 16) return drop("udp: zero-checksum-v6");
  } else if (fold(onesSum(dgram, pseudoHeaderSum(src, dst, IPPROTO_UDP, len))) !== 0xffff) {
    return drop("udp: bad-checksum");
  }
  return {
    ok: true,
    repr: { srcPort: v.getUint16(0), dstPort: v.getUint16(2) },
    payload: bytes.subarray(UDP_HEADER_LEN, len),
  };
}

export function emit(repr: UdpRepr, payload: Uint8Array, src: Uint8Array, dst: Uint8Array): Uint8Array {
  const len = UDP_HEADER_LEN + payload.length;
  const out = new Uint8Array(len);
  const v = viewOf(out);
  v.setUint16(0, repr.srcPort);
  v.setUint16(2, repr.dstPort);
  v.setUint16(4, len);
  out.set(payload, UDP_HEADER_LEN);
  const c = checksum(out, pseudoHeaderSum(src, dst, IPPROTO_UDP, len));
  v.setUint16(6, c === 0 ? 0xffff : c); // RFC 768: a computed zero is sent as all ones
  return out;
}
