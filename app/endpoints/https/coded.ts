// A response body the upstream content-coded although the gateway asked for
// `identity` on a credentialed request. It cannot be masked in flight, so it
// is held whole (up to a limit), decoded, masked, and encoded again in the
// same coding. Anything else (an unknown or stacked coding, a body past the
// limit, one that does not decode) is refused by the caller.
import zlib from "node:zlib";
import { StreamScrubber, sameLengthMask } from "../../credentials/scrub.ts";

/** Coded bodies held for masking, and their decoded size, stay below this. */
export const CODED_BODY_LIMIT = 8 * 1024 * 1024;

type Coding = "gzip" | "deflate" | "br";

/** The one coding the gateway can re-code, or undefined (refuse). */
export function recodable(codings: string[]): Coding | undefined {
  const real = codings.filter((c) => c !== "identity");
  if (real.length !== 1) return undefined;
  const c = real[0]!;
  if (c === "gzip" || c === "x-gzip") return "gzip";
  if (c === "deflate" || c === "br") return c;
  return undefined;
}

export class CodedBody {
  private readonly parts: Uint8Array[] = [];
  private bytes = 0;

  constructor(
    readonly coding: Coding,
    private readonly limit = CODED_BODY_LIMIT,
  ) {}

  /** False once the body is past the limit. */
  push(data: Uint8Array): boolean {
    this.parts.push(data.slice());
    this.bytes += data.length;
    return this.bytes <= this.limit;
  }

  /** The body decoded, masked and encoded again; an Error when it does not decode. */
  finish(needles: string[]): Uint8Array | Error {
    const coded = Buffer.concat(this.parts);
    let plain: Buffer;
    try {
      plain = decode(this.coding, coded, this.limit);
    } catch (e) {
      return new Error(`the ${this.coding} body does not decode: ${(e as Error).message}`);
    }
    const scrubber = new StreamScrubber(needles, sameLengthMask);
    const masked = Buffer.concat([scrubber.push(plain), scrubber.flush()]);
    return encode(this.coding, masked);
  }
}

function decode(coding: Coding, data: Buffer, maxOutputLength: number): Buffer {
  switch (coding) {
    case "gzip":
      return zlib.gunzipSync(data, { maxOutputLength });
    case "deflate":
      // RFC 9110 §8.4.1.2 means zlib-wrapped; some servers send it raw.
      try {
        return zlib.inflateSync(data, { maxOutputLength });
      } catch {
        return zlib.inflateRawSync(data, { maxOutputLength });
      }
    case "br":
      return zlib.brotliDecompressSync(data, { maxOutputLength });
  }
}

function encode(coding: Coding, data: Buffer): Buffer {
  switch (coding) {
    case "gzip":
      return zlib.gzipSync(data);
    case "deflate":
      return zlib.deflateSync(data);
    case "br":
      return zlib.brotliCompressSync(data);
  }
}
