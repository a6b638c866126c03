// IPv6 header (RFC 8200 §3) with extension-header skipping (§4) to the
// upper-layer protocol. A Fragment header (§4.5) is noted, not reassembled:
// for a non-first fragment the upper-layer header is not in this packet.
import { drop, viewOf, type Parsed } from "./result.ts";

export const IPV6_HEADER_LEN = 40;
export const IPV6_VERSION = 6;

// RFC 8200 §4 / IANA "IPv6 Extension Header Types".
export const NEXT_HEADER_HOP_BY_HOP = 0;
export const NEXT_HEADER_ROUTING = 43;
export const NEXT_HEADER_FRAGMENT = 44;
export const NEXT_HEADER_ESP = 50;
export const NEXT_HEADER_AH = 51;
export const NEXT_HEADER_NONE = 59;
export const NEXT_HEADER_DEST_OPTS = 60;
export const NEXT_HEADER_MOBILITY = 135;
/** Bound on extension headers walked per packet (work per packet stays O(1)). */
export const MAX_EXTENSION_HEADERS = 8;

export interface Ipv6Fragment {
  /** In bytes. */
  offset: number;
  moreFragments: boolean;
  ident: number;
}

export interface Ipv6Repr {
  src: Uint8Array; // 16 bytes
  dst: Uint8Array; // 16 bytes
  /** The upper-layer protocol after the extension headers (TCP 6, UDP 17, ICMPv6 58, 59 none). */
  nextHeader: number;
  hopLimit: number;
  trafficClass: number;
  flowLabel: number;
  /** Present when a Fragment header was seen. */
  fragment: Ipv6Fragment | null;
  /** Bytes of extension headers skipped. */
  extensionLen: number;
}

/**
 * Checked parse. Payload is the upper-layer data (after extension headers),
 * cut to Payload Length. Reasons: truncated, bad-version, bad-payload-length,
 * bad-extension, too-many-extensions, jumbogram.
 */
export function parse(bytes: Uint8Array): Parsed<Ipv6Repr> {
  if (bytes.length < IPV6_HEADER_LEN) return drop("ipv6: truncated");
  const v = viewOf(bytes);
  const w0 = v.getUint32(0);
  if (w0 >>> 28 !== IPV6_VERSION) return drop("ipv6: bad-version");
  const payloadLen = v.getUint16(4);
  if (payloadLen === 0) return drop("ipv6: jumbogram");
  const end = IPV6_HEADER_LEN + payloadLen;
  if (end > bytes.length) return drop("ipv6: bad-payload-length");
  let next = v.getUint8(6);
  let off = IPV6_HEADER_LEN;
  let fragment: Ipv6Fragment | null = null;
  for (let n = 0; ; n++) {
    if (!isExtension(next)) break;
    if (n >= MAX_EXTENSION_HEADERS) return drop("ipv6: too-many-extensions");
    if (off + 8 > end) return drop("ipv6: bad-extension");
    const hdrNext = v.getUint8(off);
    let len: number;
    if (next === NEXT_HEADER_FRAGMENT) {
      len = 8;
      const fo = v.getUint16(off + 2);
      fragment = { offset: fo & 0xfff8, moreFragments: (fo & 1) !== 0, ident: v.getUint32(off + 4) };
    } else if (next === NEXT_HEADER_AH) {
      len = (v.getUint8(off + 1) + 2) * 4; // RFC 4302 §2.2: in 4-octet units, minus 2
    } else {
      len = (v.getUint8(off + 1) + 1) * 8;
    }
    if (off + len > end) return drop("ipv6: bad-extension");
    off += len;
    next = hdrNext;
    // A non-first fragment carries no upper-layer header: stop here.
    if (fragment !== null && fragment.offset !== 0) break;
  }
  return {
    ok: true,
    repr: {
      src: bytes.slice(8, 24),
      dst: bytes.slice(24, 40),
      nextHeader: next,
      hopLimit: v.getUint8(7),
      trafficClass: (w0 >>> 20) & 0xff,
      flowLabel: w0 & 0xfffff,
      fragment,
      extensionLen: off - IPV6_HEADER_LEN,
    },
    payload: bytes.subarray(off, end),
  };
}

function isExtension(nh: number): boolean {
  return (
    nh === NEXT_HEADER_HOP_BY_HOP ||
    nh === NEXT_HEADER_ROUTING ||
    nh === NEXT_HEADER_FRAGMENT ||
    nh === NEXT_HEADER_AH ||
    nh === NEXT_HEADER_DEST_OPTS ||
    nh === NEXT_HEADER_MOBILITY
  );
}

/** Emit the fixed header (no extension headers) + payload. */
export function emit(repr: Ipv6Repr, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(IPV6_HEADER_LEN + payload.length);
  emitHeader(repr, payload.length, out);
  out.set(payload, IPV6_HEADER_LEN);
  return out;
}

export function emitHeader(repr: Ipv6Repr, payloadLen: number, out: Uint8Array): void {
  const v = viewOf(out);
  v.setUint32(0, ((IPV6_VERSION << 28) | ((repr.trafficClass & 0xff) << 20) | (repr.flowLabel & 0xfffff)) >>> 0);
  v.setUint16(4, payloadLen);
  v.setUint8(6, repr.nextHeader);
  v.setUint8(7, repr.hopLimit);
  out.set(repr.src.subarray(0, 16), 8);
  out.set(repr.dst.subarray(0, 16), 24);
}
