// IPv4 header (RFC 791 §3.1). Options are validated for length and skipped.
import { checksum, verifies } from "./checksum.ts";
import { drop, viewOf, type Parsed } from "./result.ts";

export const IPV4_HEADER_LEN = 20;
export const IPV4_VERSION = 4;
/** RFC 791: fragment offset is in units of 8 octets. */
export const IPV4_FRAGMENT_UNIT = 8;
const FLAG_DF = 0x4000;
const FLAG_MF = 0x2000;
const OFFSET_MASK = 0x1fff;

export interface Ipv4Repr {
  src: Uint8Array; // 4 bytes
  dst: Uint8Array; // 4 bytes
  protocol: number;
  ttl: number;
  /** DSCP (6 bits) and ECN (2 bits), the old TOS octet. */
  tos: number;
  ident: number;
  dontFragment: boolean;
  moreFragments: boolean;
  /** In bytes (already multiplied by 8). */
  fragmentOffset: number;
}

export function isFragment(r: Ipv4Repr): boolean {
  return r.moreFragments || r.fragmentOffset !== 0;
}

/**
 * Checked parse. The payload is a view cut to Total Length (link padding
 * beyond it is ignored). Reasons: truncated, bad-version, bad-ihl,
 * bad-total-length, bad-checksum.
 */
export function parse(bytes: Uint8Array): Parsed<Ipv4Repr> {
  if (bytes.length < IPV4_HEADER_LEN) return drop("ipv4: truncated");
  const v = viewOf(bytes);
  const b0 = v.getUint8(0);
  if (b0 >> 4 !== IPV4_VERSION) return drop("ipv4: bad-version");
  const ihl = (b0 & 0x0f) * 4;
  if (ihl < IPV4_HEADER_LEN || ihl > bytes.length) return drop("ipv4: bad-ihl");
  const total = v.getUint16(2);
  if (total < ihl || total > bytes.length) return drop("ipv4: bad-total-length");
  if (!verifies(bytes.subarray(0, ihl))) return drop("ipv4: bad-checksum");
  const frag = v.getUint16(6);
  return {
    ok: true,
    repr: {
      src: bytes.slice(12, 16),
      dst: bytes.slice(16, 20),
      protocol: v.getUint8(9),
      ttl: v.getUint8(8),
      tos: v.getUint8(1),
      ident: v.getUint16(4),
      dontFragment: (frag & FLAG_DF) !== 0,
      moreFragments: (frag & FLAG_MF) !== 0,
      fragmentOffset: (frag & OFFSET_MASK) * IPV4_FRAGMENT_UNIT,
    },
    payload: bytes.subarray(ihl, total),
  };
}

/** Emit header + payload with a correct header checksum (no options). */
export function emit(repr: Ipv4Repr, payload: Uint8Array): Uint8Array {
  const total = IPV4_HEADER_LEN + payload.length;
  const out = new Uint8Array(total);
  emitHeader(repr, payload.length, out);
  out.set(payload, IPV4_HEADER_LEN);
  return out;
}

/** Write the 20-byte header for `payloadLen` bytes of payload into `out[0..20)`. */
export function emitHeader(repr: Ipv4Repr, payloadLen: number, out: Uint8Array): void {
  const v = viewOf(out);
  v.setUint8(0, (IPV4_VERSION << 4) | (IPV4_HEADER_LEN / 4));
  v.setUint8(1, repr.tos);
  v.setUint16(2, IPV4_HEADER_LEN + payloadLen);
  v.setUint16(4, repr.ident);
  let frag = (repr.fragmentOffset / IPV4_FRAGMENT_UNIT) & OFFSET_MASK;
  if (repr.dontFragment) frag |= FLAG_DF;
  if (repr.moreFragments) frag |= FLAG_MF;
  v.setUint16(6, frag);
  v.setUint8(8, repr.ttl);
  v.setUint8(9, repr.protocol);
  v.setUint16(10, 0);
  out.set(repr.src.subarray(0, 4), 12);
  out.set(repr.dst.subarray(0, 4), 16);
  v.setUint16(10, checksum(out.subarray(0, IPV4_HEADER_LEN)));
}
