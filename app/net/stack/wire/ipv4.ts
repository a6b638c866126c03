// IPv4 header (RFC 791 §3.1). Options are validated for length and skipped.
import { fold, onesSumRange } from "./checksum.ts";
import { drop, get16, put16, type Parsed } from "./result.ts";

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
  const b0 = bytes[0]!;
  if (b0 >> 4 !== IPV4_VERSION) return drop("ipv4: bad-version");
  const ihl = (b0 & 0x0f) * 4;
  if (ihl < IPV4_HEADER_LEN || ihl > bytes.length) return drop("ipv4: bad-ihl");
  const total = get16(bytes, 2);
  if (total < ihl || total > bytes.length) return drop("ipv4: bad-total-length");
  if (fold(onesSumRange(bytes, 0, ihl)) !== 0xffff) return drop("ipv4: bad-checksum");
  const frag = get16(bytes, 6);
  return {
    ok: true,
    repr: {
      src: bytes.slice(12, 16),
      dst: bytes.slice(16, 20),
      protocol: bytes[9]!,
      ttl: bytes[8]!,
      tos: bytes[1]!,
      ident: get16(bytes, 4),
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
  out[0] = (IPV4_VERSION << 4) | (IPV4_HEADER_LEN / 4);
  out[1] = repr.tos;
  put16(out, 2, IPV4_HEADER_LEN + payloadLen);
  put16(out, 4, repr.ident);
  let frag = (repr.fragmentOffset / IPV4_FRAGMENT_UNIT) & OFFSET_MASK;
  if (repr.dontFragment) frag |= FLAG_DF;
  if (repr.moreFragments) frag |= FLAG_MF;
  put16(out, 6, frag);
  out[8] = repr.ttl;
  out[9] = repr.protocol;
  put16(out, 10, 0);
  for (let i = 0; i < 4; i++) {
    out[12 + i] = repr.src[i]!;
    out[16 + i] = repr.dst[i]!;
  }
  put16(out, 10, ~fold(onesSumRange(out, 0, IPV4_HEADER_LEN)) & 0xffff);
}
