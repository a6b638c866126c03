// What an HTTP/2 agent's stream is sent of one upstream response, sans-IO:
// the response's head, body pieces and end in (from an HTTP/1.1 upstream's
// parser or an h2 upstream's stream alike), what to write to the stream
// out. The h2 counterpart of ResponseRelay (response.ts), minus HTTP/1.1's
// framing:
//   head: connection-specific fields dropped, the secret's needles masked;
//         the usage meter (an LLM credential's) told the status and type;
//   body: masked in flight (same length), the meter fed the bytes as sent
//         by the upstream;
//   a coded body on a credentialed request (the gateway asked for
//         identity): held whole, decoded, masked and coded again as
//         HTTP/1.1 does (coded.ts), its head sent with it and a new length;
//         a coding it cannot re-code, or a body past the limit, is refused;
//   end:  the scrubber's tail (or the held body) goes out with END_STREAM,
//         one DATA frame fewer than a write and an empty end.
import type { OutgoingHttpHeaders } from "node:http2";
import { getHeader, headerTokens, removeHeader, setHeader, type HeaderList } from "../http1/headers.ts";
import { StreamScrubber, sameLengthMask } from "../../credentials/scrub.ts";
import { CodedBody, recodable } from "./coded.ts";
import { h2ResponseHeaders } from "./h2head.ts";
import type { ResponseTap } from "./response.ts";

export type H2HeadOutcome =
  /** Respond now with these headers. */
  | { type: "respond"; headers: OutgoingHttpHeaders }
  /** A coded body is held: its head goes out with it at the end. */
  | { type: "hold" }
  /** Never forwarded (it could carry the secret past the scrubber). */
  | { type: "refuse"; message: string };

export type H2DataOutcome = { type: "data"; data: Uint8Array } | { type: "refuse"; message: string };

/** The end: the last bytes to send with END_STREAM, and a held body's head to respond with first. */
export type H2EndOutcome = { type: "end"; data: Uint8Array; headers?: OutgoingHttpHeaders } | { type: "refuse"; message: string };

const EMPTY = new Uint8Array(0);

export class H2ResponseFilter {
  private readonly scrubber: StreamScrubber | undefined;
  private coded: { body: CodedBody; status: number; headers: HeaderList } | undefined;

  constructor(
    /** Strings to mask in whatever goes to the agent. */
    readonly needles: string[],
    private readonly tap?: ResponseTap,
  ) {
    this.scrubber = needles.length > 0 ? new StreamScrubber(needles, sameLengthMask) : undefined;
  }

  /** The response head; `hasBody`: a body follows (not a HEAD's answer, a 204 or 304). */
  head(status: number, headers: HeaderList, hasBody: boolean): H2HeadOutcome {
    this.tap?.head(status, getHeader(headers, "content-type"), getHeader(headers, "content-encoding"));
    const codings = headerTokens(headers, "content-encoding");
    if (this.needles.length > 0 && hasBody && !codings.every((c) => c === "identity")) {
      // We asked for identity; a coded body cannot be masked in flight.
      const coding = recodable(codings);
      if (!coding) return { type: "refuse", message: `upstream sent Content-Encoding ${getHeader(headers, "content-encoding")} despite identity` };
      this.coded = { body: new CodedBody(coding), status, headers: [...headers] };
      return { type: "hold" };
    }
    return { type: "respond", headers: h2ResponseHeaders(status, headers, this.needles) };
  }

  /** A piece of the body as the upstream sent it. */
  body(data: Uint8Array): H2DataOutcome {
    this.tap?.body(data);
    if (this.coded) {
      if (!this.coded.body.push(data)) return { type: "refuse", message: "a coded body too large to mask" };
      return { type: "data", data: EMPTY };
    }
    return { type: "data", data: this.scrubber ? this.scrubber.push(data) : data };
  }

  /** The body ended. */
  end(): H2EndOutcome {
    const c = this.coded;
    if (c) {
      const body = c.body.finish(this.needles);
      if (body instanceof Error) return { type: "refuse", message: body.message };
      const headers = c.headers;
      removeHeader(headers, "transfer-encoding");
      setHeader(headers, "Content-Length", String(body.length));
      return { type: "end", data: body, headers: h2ResponseHeaders(c.status, headers, this.needles) };
    }
    return { type: "end", data: this.scrubber ? this.scrubber.flush() : EMPTY };
  }
}
