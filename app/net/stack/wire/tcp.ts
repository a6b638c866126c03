// TCP header and options (RFC 9293 §3.1, §3.2; RFC 7323 window scale and
// timestamps; RFC 2018 SACK). Parse verifies the checksum over the
// pseudo-header; emit computes it.
import { IPPROTO_TCP, checksum, fold, onesSum, pseudoHeaderSum } from "./checksum.ts";
import { drop, get16, get32, put16, put32, type Parsed } from "./result.ts";

export const TCP_HEADER_LEN = 20;
/** RFC 9293 §3.1: Data Offset is 4 bits of 32-bit words, so 60 bytes at most. */
export const TCP_MAX_HEADER_LEN = 60;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;

// RFC 9293 §3.2 / IANA "TCP Option Kind Numbers".
export const TCPOPT_EOL = 0;
export const TCPOPT_NOP = 1;
export const TCPOPT_MSS = 2;
export const TCPOPT_WINDOW_SCALE = 3;
export const TCPOPT_SACK_PERMITTED = 4;
export const TCPOPT_SACK = 5;
export const TCPOPT_TIMESTAMP = 8;
/** RFC 7323 §2.3: a shift above 14 is treated as 14. */
export const TCP_MAX_WINDOW_SHIFT = 14;

export interface TcpTimestamp {
  tsval: number;
  tsecr: number;
}

export interface TcpRepr {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  /** Bitmask of TCP_FIN … TCP_CWR. */
  flags: number;
  /** The raw 16-bit window field (unscaled). */
  window: number;
  urgent: number;
  mss: number | null;
  windowScale: number | null;
  sackPermitted: boolean;
  /** Left/right edges, flattened: [l0, r0, l1, r1, …] (at most 4 blocks). */
  sackBlocks: number[] | null;
  timestamp: TcpTimestamp | null;
}

export function tcpRepr(fields: Partial<TcpRepr> = {}): TcpRepr {
  return {
    srcPort: 0,
    dstPort: 0,
    seq: 0,
    ack: 0,
    flags: 0,
    window: 0,
    urgent: 0,
    mss: null,
    windowScale: null,
    sackPermitted: false,
    sackBlocks: null,
    timestamp: null,
    ...fields,
  };
}

/** Sequence space a segment occupies: payload plus one each for SYN and FIN. */
export function segmentLength(flags: number, payloadLen: number): number {
  return payloadLen + (flags & TCP_SYN ? 1 : 0) + (flags & TCP_FIN ? 1 : 0);
}

export function flagString(flags: number): string {
  const names: [number, string][] = [
    [TCP_SYN, "SYN"], [TCP_ACK, "ACK"], [TCP_FIN, "FIN"], [TCP_RST, "RST"],
    [TCP_PSH, "PSH"], [TCP_URG, "URG"], [TCP_ECE, "ECE"], [TCP_CWR, "CWR"],
  ];
  return names.filter(([f]) => flags & f).map(([, n]) => n).join("|") || "none";
}

/**
 * Checked parse of a TCP segment (`bytes` = exactly the IP payload) sent
 * from `src` to `dst`. Reasons: truncated, bad-offset, bad-checksum,
 * bad-option.
 */
export function parse(bytes: Uint8Array, src: Uint8Array, dst: Uint8Array, verifyChecksum = true): Parsed<TcpRepr> {
  if (bytes.length < TCP_HEADER_LEN) return drop("tcp: truncated");
  const hlen = (bytes[12]! >> 4) * 4;
  if (hlen < TCP_HEADER_LEN || hlen > bytes.length) return drop("tcp: bad-offset");
  if (verifyChecksum && fold(onesSum(bytes, pseudoHeaderSum(src, dst, IPPROTO_TCP, bytes.length))) !== 0xffff)
    return drop("tcp: bad-checksum");
  const repr: TcpRepr = {
    srcPort: get16(bytes, 0),
    dstPort: get16(bytes, 2),
    seq: get32(bytes, 4),
    ack: get32(bytes, 8),
    flags: bytes[13]!,
    window: get16(bytes, 14),
    urgent: get16(bytes, 18),
    mss: null,
    windowScale: null,
    sackPermitted: false,
    sackBlocks: null,
    timestamp: null,
  };
  let i = TCP_HEADER_LEN;
  while (i < hlen) {
    const kind = bytes[i]!;
    if (kind === TCPOPT_EOL) break;
    if (kind === TCPOPT_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= hlen) return drop("tcp: bad-option");
    const len = bytes[i + 1]!;
    if (len < 2 || i + len > hlen) return drop("tcp: bad-option");
    // Known options with a wrong length are ignored, as Linux does.
    switch (kind) {
      case TCPOPT_MSS:
        if (len === 4) repr.mss = get16(bytes, i + 2);
        break;
      case TCPOPT_WINDOW_SCALE:
        if (len === 3) repr.windowScale = Math.min(bytes[i + 2]!, TCP_MAX_WINDOW_SHIFT);
        break;
      case TCPOPT_SACK_PERMITTED:
        if (len === 2) repr.sackPermitted = true;
        break;
      case TCPOPT_SACK:
        if (len >= 10 && (len - 2) % 8 === 0) {
          const blocks: number[] = [];
          for (let j = i + 2; j < i + len; j += 8) blocks.push(get32(bytes, j), get32(bytes, j + 4));
          repr.sackBlocks = blocks;
        }
        break;
      case TCPOPT_TIMESTAMP:
        if (len === 10) repr.timestamp = { tsval: get32(bytes, i + 2), tsecr: get32(bytes, i + 6) };
        break;
    }
    i += len;
  }
  return { ok: true, repr, payload: bytes.subarray(hlen) };
}

/** Length of the options `repr` asks for, padded to a multiple of 4. */
export function optionsLength(repr: TcpRepr): number {
  let n = 0;
  if (repr.mss !== null) n += 4;
  if (repr.timestamp !== null) n += 12; // NOP NOP TS (or SACK-perm TS)
  else if (repr.sackPermitted) n += 4; // NOP NOP SACK-perm
  if (repr.windowScale !== null) n += 4; // NOP WS
  const blocks = sackBlockCount(repr);
  if (blocks > 0) n += 4 + 8 * blocks; // NOP NOP SACK
  return n;
}

function sackBlockCount(repr: TcpRepr): number {
  if (repr.sackBlocks === null) return 0;
  // 40 bytes of option space; SACK takes 4 + 8n of what the others leave.
  let used = 0;
  if (repr.mss !== null) used += 4;
  if (repr.timestamp !== null) used += 12;
  else if (repr.sackPermitted) used += 4;
  if (repr.windowScale !== null) used += 4;
  const max = Math.max(0, Math.floor((TCP_MAX_HEADER_LEN - TCP_HEADER_LEN - used - 4) / 8));
  return Math.min(repr.sackBlocks.length >> 1, max, 4);
}

export function headerLength(repr: TcpRepr): number {
  return TCP_HEADER_LEN + optionsLength(repr);
}

/** Emit a segment from `src` to `dst` with the checksum filled in. */
export function emit(repr: TcpRepr, payload: Uint8Array, src: Uint8Array, dst: Uint8Array): Uint8Array {
  const hlen = headerLength(repr);
  const out = new Uint8Array(hlen + payload.length);
  emitInto(repr, payload, src, dst, out);
  return out;
}

/** Emit into `out` (exactly headerLength(repr) + payload.length bytes). */
export function emitInto(repr: TcpRepr, payload: Uint8Array, src: Uint8Array, dst: Uint8Array, out: Uint8Array): void {
  const hlen = headerLength(repr);
  if (hlen > TCP_MAX_HEADER_LEN) throw new Error("tcp: options exceed 40 bytes");
  put16(out, 0, repr.srcPort);
  put16(out, 2, repr.dstPort);
  put32(out, 4, repr.seq >>> 0);
  put32(out, 8, repr.ack >>> 0);
  out[12] = (hlen / 4) << 4;
  out[13] = repr.flags & 0xff;
  put16(out, 14, repr.window);
  put16(out, 16, 0);
  put16(out, 18, repr.urgent);
  let i = TCP_HEADER_LEN;
  if (repr.mss !== null) {
    out[i] = TCPOPT_MSS;
    out[i + 1] = 4;
    put16(out, i + 2, repr.mss);
    i += 4;
  }
  if (repr.timestamp !== null) {
    if (repr.sackPermitted) {
      out[i] = TCPOPT_SACK_PERMITTED;
      out[i + 1] = 2;
    } else {
      out[i] = TCPOPT_NOP;
      out[i + 1] = TCPOPT_NOP;
    }
    out[i + 2] = TCPOPT_TIMESTAMP;
    out[i + 3] = 10;
    put32(out, i + 4, repr.timestamp.tsval >>> 0);
    put32(out, i + 8, repr.timestamp.tsecr >>> 0);
    i += 12;
  } else if (repr.sackPermitted) {
    out[i] = TCPOPT_NOP;
    out[i + 1] = TCPOPT_NOP;
    out[i + 2] = TCPOPT_SACK_PERMITTED;
    out[i + 3] = 2;
    i += 4;
  }
  if (repr.windowScale !== null) {
    out[i] = TCPOPT_NOP;
    out[i + 1] = TCPOPT_WINDOW_SCALE;
    out[i + 2] = 3;
    out[i + 3] = repr.windowScale;
    i += 4;
  }
  const blocks = sackBlockCount(repr);
  if (blocks > 0) {
    out[i] = TCPOPT_NOP;
    out[i + 1] = TCPOPT_NOP;
    out[i + 2] = TCPOPT_SACK;
    out[i + 3] = 2 + 8 * blocks;
    i += 4;
    const sb = repr.sackBlocks!;
    for (let b = 0; b < blocks; b++) {
      put32(out, i, sb[2 * b]! >>> 0);
      put32(out, i + 4, sb[2 * b + 1]! >>> 0);
      i += 8;
    }
  }
  out.set(payload, hlen);
  put16(out, 16, checksum(out, pseudoHeaderSum(src, dst, IPPROTO_TCP, out.length)));
}
