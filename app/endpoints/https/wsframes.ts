// Masking the secret in a WebSocket's server-to-client frames (RFC 6455
// §5.2) after an upgrade on a credentialed request. Sans-IO: bytes in,
// whole frames out, each payload masked at its own length, so the frame
// header stays true and a frame is never held past its last byte (a
// byte-stream scrubber would hold a frame whose end looks like the start of
// a secret until the next frame comes).
//
// Each frame is held whole (up to MAX_FRAME bytes) and its payload scrubbed
// alone. A compressed frame (RSV1; the gateway offered no extension), a
// masked one (servers must not mask) or one past the limit is an error: the
// caller closes the connection.
import { StreamScrubber, sameLengthMask } from "../../credentials/scrub.ts";

export const MAX_FRAME = 16 * 1024 * 1024;

export type FrameResult = { ok: true; out: Uint8Array[] } | { ok: false; reason: string };

export class ServerFrameScrubber {
  private buf: Uint8Array = new Uint8Array(0);

  constructor(
    private readonly needles: string[],
    private readonly maxFrame = MAX_FRAME,
  ) {}

  push(chunk: Uint8Array): FrameResult {
    const joined = new Uint8Array(this.buf.length + chunk.length);
    joined.set(this.buf, 0);
    joined.set(chunk, this.buf.length);
    const out: Uint8Array[] = [];
    let at = 0;
    for (;;) {
      const frame = frameAt(joined, at);
      if (frame === "more") break;
      if (typeof frame === "string") return { ok: false, reason: frame };
      if (frame.rsv1) return { ok: false, reason: "a compressed frame (no extension was offered)" };
      if (frame.masked) return { ok: false, reason: "a masked frame from the server" };
      if (frame.payloadLength > this.maxFrame) return { ok: false, reason: "a frame larger than the gateway holds" };
      const end = frame.payloadStart + frame.payloadLength;
      if (end > joined.length) break;
      const payload = joined.subarray(frame.payloadStart, end);
      const scrubber = new StreamScrubber(this.needles, sameLengthMask);
      const masked = Buffer.concat([scrubber.push(payload), scrubber.flush()]);
      out.push(joined.slice(at, frame.payloadStart), masked);
      at = end;
    }
    this.buf = joined.slice(at);
    if (this.buf.length > this.maxFrame + 14) return { ok: false, reason: "a frame larger than the gateway holds" };
    return { ok: true, out };
  }
}

interface FrameHead {
  rsv1: boolean;
  masked: boolean;
  payloadStart: number;
  payloadLength: number;
}

/** The frame header at `at`, "more" when incomplete, or an error text. */
function frameAt(b: Uint8Array, at: number): FrameHead | "more" | string {
  if (b.length - at < 2) return "more";
  const b0 = b[at]!;
  const b1 = b[at + 1]!;
  let len = b1 & 0x7f;
  let p = at + 2;
  if (len === 126) {
    if (b.length - p < 2) return "more";
    len = (b[p]! << 8) | b[p + 1]!;
    p += 2;
  } else if (len === 127) {
    if (b.length - p < 8) return "more";
    const hi = (b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!;
    const lo = ((b[p + 4]! << 24) >>> 0) + ((b[p + 5]! << 16) | (b[p + 6]! << 8) | b[p + 7]!);
    if (hi !== 0) return "a frame larger than the gateway holds";
    len = lo;
    p += 8;
  }
  const masked = (b1 & 0x80) !== 0;
  if (masked) p += 4;
  return { rsv1: (b0 & 0x40) !== 0, masked, payloadStart: p, payloadLength: len };
}
