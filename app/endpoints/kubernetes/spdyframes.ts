// Masking the secret in a SPDY/3.1 connection's server-to-client frames
// (kubectl's older exec, attach and port-forward upgrade; draft-mbelshe-
// httpbis-spdy-00 §2.2), after a credentialed upgrade. The same contract as
// the WebSocket scrubber (app/endpoints/https/wsframes.ts): bytes in, whole
// frames out, each data frame's payload masked at its own length so the
// framing stays true. Control frames (SYN_REPLY, SETTINGS, PING, ...) pass
// as they are: their header blocks are the server's own, zlib-compressed,
// and carry no request header (the credential went in the HTTP upgrade).
//
//   data:    0 | stream-id (31) | flags (8) | length (24) | payload
//   control: 1 | version (15) | type (16) | flags (8) | length (24) | data
import { StreamScrubber, sameLengthMask } from "../../credentials/scrub.ts";
import type { FrameResult } from "../https/wsframes.ts";

/** SPDY's length field is 24 bits: no frame is larger. */
const HEADER = 8;

export class SpdyFrameScrubber {
  private buf: Uint8Array = new Uint8Array(0);

  constructor(private readonly needles: string[]) {}

  push(chunk: Uint8Array): FrameResult {
    const joined = new Uint8Array(this.buf.length + chunk.length);
    joined.set(this.buf, 0);
    joined.set(chunk, this.buf.length);
    const out: Uint8Array[] = [];
    let at = 0;
    while (joined.length - at >= HEADER) {
      const control = (joined[at]! & 0x80) !== 0;
      if (control && ((joined[at]! & 0x7f) << 8 | joined[at + 1]!) !== 3) return { ok: false, reason: "a SPDY control frame of another version than 3" };
      const length = (joined[at + 5]! << 16) | (joined[at + 6]! << 8) | joined[at + 7]!;
      const end = at + HEADER + length;
      if (end > joined.length) break;
      if (control) {
        out.push(joined.slice(at, end));
      } else {
        const scrubber = new StreamScrubber(this.needles, sameLengthMask);
        const payload = joined.subarray(at + HEADER, end);
        out.push(joined.slice(at, at + HEADER), Buffer.concat([scrubber.push(payload), scrubber.flush()]));
      }
      at = end;
    }
    this.buf = joined.slice(at);
    return { ok: true, out };
  }
}

/** Upgrade protocols a kubernetes endpoint bridges besides WebSocket. */
export const KUBERNETES_UPGRADES: readonly string[] = ["websocket", "spdy/3.1"];

export function isSpdy(upgrade: string | undefined): boolean {
  return (upgrade ?? "").trim().toLowerCase() === "spdy/3.1";
}
