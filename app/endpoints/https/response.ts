// Relaying one upstream response to the agent, sans-IO: the response
// parser's events in, bytes for the agent and the exchange's outcome out.
// The session reads the upstream and writes the agent; every decision about
// what the agent is sent is made here.
//
// 1. head: hop-by-hop fields dropped, the secret's needles masked in names,
//    values and the reason phrase; framing rewritten (an until-close body
//    is re-chunked for an HTTP/1.1 agent, else the agent's connection
//    closes after it). A 101 the agent did not ask for, a WebSocket
//    extension never offered, or a coding that cannot be masked is refused.
// 2. an answer before the request was sent whole: the rest of the request
//    is never sent, and both connections close after it.
// 3. body: masked in flight (same length, so a Content-Length stays true);
//    a recodable coded body on a credentialed request is held, masked and
//    coded again, its head sent with the body.
// 4. end (or EOF of an until-close body): the last chunk, the outcome.
import type { ParseEvent, RequestHead, ResponseHead } from "../http1/parser.ts";
import { getHeader, headerTokens, removeHeader, setHeader, stripHopByHop, type HeaderList } from "../http1/headers.ts";
import { encodeChunk, LAST_CHUNK, serializeResponseHead } from "../http1/serialize.ts";
import { needleSet, StreamScrubber, scrubText, sameLengthMask } from "../../credentials/scrub.ts";
import { CodedBody, recodable } from "./coded.ts";

export type RelayEvent =
  /** One event of the response parser; `requestSent`: the request went out whole by now. */
  | { type: "upstream"; ev: ParseEvent; requestSent: boolean }
  /** The upstream's end of stream. */
  | { type: "upstream-closed" };

/** How the response ended. */
export interface RelayOutcome {
  status: number;
  bytesDown: number;
  /** The upstream may carry another request (it said keep-alive). */
  reusable: boolean;
  /** The agent's connection closes after this response. */
  agentClose: boolean;
  /** Answered before the request was sent whole: the upstream gets none of the rest. */
  early: boolean;
}

export type RelayCommand =
  | { type: "send-agent"; data: Uint8Array }
  /** The response is complete. */
  | ({ type: "done" } & RelayOutcome)
  /** A 101 was relayed: frames follow raw (`rest` came with the head). */
  | { type: "upgraded"; status: number; bytesDown: number; rest: Uint8Array }
  /**
   * Nothing more can be relayed. `refused`: a response the gateway will not
   * forward (it could carry the secret past the scrubber); else the
   * upstream failed (closed early, malformed).
   */
  | { type: "fail"; refused: boolean; message: string };

/** Sees the response as the upstream sent it, before masking (the usage meter of an LLM API). */
export interface ResponseTap {
  head(status: number, contentType: string | undefined, contentEncoding: string | undefined): void;
  body(data: Uint8Array): void;
}

export class ResponseRelay {
  private readonly scrubber: StreamScrubber | undefined;
  private head: ResponseHead | undefined;
  private bodyBytes = 0;
  private headSent = false;
  private chunkedToAgent = false;
  private agentClose = false;
  private early = false;
  /** A coded body on a credentialed request: its head waits until the body is masked. */
  private coded: { body: CodedBody; head: ResponseHead; headers: HeaderList } | undefined;
  private finished = false;

  constructor(
    /** The request as the agent sent it (version, keep-alive, the upgrade it asked for). */
    private readonly request: Pick<RequestHead, "version" | "keepAlive" | "upgrade">,
    /** Strings to mask in everything sent to the agent. */
    private readonly needles: string[],
    private readonly tap?: ResponseTap,
  ) {
    this.scrubber = needles.length > 0 ? new StreamScrubber(needles, sameLengthMask) : undefined;
  }

  /** The status the agent was sent, once the head went out (a held coded body's head goes with the body). */
  get sentStatus(): number | undefined {
    return this.headSent ? this.head?.status : undefined;
  }

  /** Response body bytes read from the upstream so far (relayed as read, masked at the same length). */
  get bytesDown(): number {
    return this.bodyBytes;
  }

  handle(e: RelayEvent): RelayCommand[] {
    if (this.finished) throw new Error(`response relay: ${e.type} after the response ended`);
    const out: RelayCommand[] = [];
    try {
      if (e.type === "upstream-closed") this.onClosed(out);
      else this.onEvent(e.ev, e.requestSent, out);
    } catch (err) {
      if (!(err instanceof RelayFailure)) throw err;
      this.finished = true;
      out.push({ type: "fail", refused: err.refused, message: err.message });
    }
    return out;
  }

  private onClosed(out: RelayCommand[]): void {
    const head = this.head;
    if (!head) throw new RelayFailure(false, "upstream closed before responding");
    // An until-close body ends here; anything else was cut short.
    if (head.bodyKind.kind !== "until-close") throw new RelayFailure(false, "upstream closed mid-response");
    this.flushBody(out);
    this.finished = true;
    out.push({ type: "done", status: head.status, bytesDown: this.bodyBytes, reusable: false, agentClose: this.agentClose, early: false });
  }

  private onEvent(ev: ParseEvent, requestSent: boolean, out: RelayCommand[]): void {
    const { needles } = this;
    switch (ev.type) {
      case "informational": {
        // 103 Early Hints and the like: scrubbed as a final head is.
        const info = ev.head;
        let headers = stripHopByHop([...info.headers]);
        if (needles.length > 0) headers = scrubHeaderList(headers, needles);
        send(out, serializeResponseHead({ status: info.status, reason: this.mask(info.reason), headers }));
        return;
      }
      case "head":
        this.onHead(ev.head as ResponseHead, requestSent, out);
        return;
      case "body": {
        this.bodyBytes += ev.data.length;
        this.tap?.body(ev.data);
        if (this.coded) {
          if (!this.coded.body.push(ev.data)) throw new RelayFailure(true, "a coded body too large to mask");
          return;
        }
        this.sendBody(out, this.scrubber ? this.scrubber.push(ev.data) : ev.data);
        return;
      }
      case "end": {
        // A 101's end is followed by its upgrade event.
        if (this.head?.status === 101) return;
        this.flushBody(out);
        this.finished = true;
        const status = this.head?.status ?? 502;
        const reusable = !this.early && this.head !== undefined && this.head.keepAlive;
        out.push({ type: "done", status, bytesDown: this.bodyBytes, reusable, agentClose: this.agentClose, early: this.early });
        return;
      }
      case "upgrade":
        this.finished = true;
        out.push({ type: "upgraded", status: this.head?.status ?? 101, bytesDown: this.bodyBytes, rest: ev.rest });
        return;
      case "error":
        throw new RelayFailure(false, `upstream sent a malformed response: ${ev.message}`);
      default:
        return;
    }
  }

  private onHead(head: ResponseHead, requestSent: boolean, out: RelayCommand[]): void {
    const { needles, request } = this;
    this.head = head;
    this.tap?.head(head.status, getHeader(head.headers, "content-type"), getHeader(head.headers, "content-encoding"));
    if (head.status === 101 && (request.upgrade === undefined || (head.upgrade ?? "").trim().toLowerCase() !== request.upgrade.trim().toLowerCase())) {
      throw new RelayFailure(true, "upstream switched to a protocol the agent did not ask for");
    }
    if (head.status === 101 && needles.length > 0 && getHeader(head.headers, "sec-websocket-extensions") !== undefined) {
      // We offered none: compressed frames would carry an echoed secret past the scrubber.
      throw new RelayFailure(true, "upstream chose a WebSocket extension the gateway did not offer");
    }
    let coding: ReturnType<typeof recodable>;
    if (needles.length > 0 && !isIdentityCoding(head.headers) && head.bodyKind.kind !== "none") {
      // We asked for identity; a coded body cannot be masked in flight.
      coding = recodable(headerTokens(head.headers, "content-encoding"));
      if (!coding) throw new RelayFailure(true, `upstream sent Content-Encoding ${getHeader(head.headers, "content-encoding")} despite identity`);
    }
    let headers: HeaderList = stripHopByHop([...head.headers], { keepUpgrade: head.status === 101 });
    if (needles.length > 0) headers = scrubHeaderList(headers, needles);
    if (head.bodyKind.kind === "chunked") {
      this.chunkedToAgent = true;
      removeHeader(headers, "content-length");
      setHeader(headers, "Transfer-Encoding", "chunked");
    } else if (head.bodyKind.kind === "until-close") {
      // Keep the agent's connection when it speaks 1.1: re-frame as chunked.
      if (request.version === "1.1") {
        this.chunkedToAgent = true;
        removeHeader(headers, "content-length");
        setHeader(headers, "Transfer-Encoding", "chunked");
      } else {
        this.agentClose = true;
      }
    } else if (head.bodyKind.kind === "length") {
      setHeader(headers, "Content-Length", String(head.bodyKind.length));
    }
    // Answered before the request body went out whole: the upstream may
    // read what is left as requests of its own, so it gets none of it,
    // and both connections close after this answer.
    if (head.status !== 101 && !requestSent) {
      this.early = true;
      this.agentClose = true;
    }
    if (!request.keepAlive || this.agentClose) setHeader(headers, "Connection", "close");
    if (coding) {
      this.chunkedToAgent = false;
      removeHeader(headers, "transfer-encoding");
      this.coded = { body: new CodedBody(coding), head, headers };
      return;
    }
    send(out, serializeResponseHead({ status: head.status, reason: this.mask(head.reason), headers }));
    this.headSent = true;
  }

  /** The held coded body, or the scrubber's tail, then the last chunk. */
  private flushBody(out: RelayCommand[]): void {
    const c = this.coded;
    if (c) {
      const body = c.body.finish(this.needles);
      if (body instanceof Error) throw new RelayFailure(true, body.message);
      setHeader(c.headers, "Content-Length", String(body.length));
      send(out, serializeResponseHead({ status: c.head.status, reason: this.mask(c.head.reason), headers: c.headers }));
      this.headSent = true;
      send(out, body);
    } else if (this.scrubber) {
      this.sendBody(out, this.scrubber.flush());
    }
    if (this.chunkedToAgent) send(out, LAST_CHUNK);
  }

  private sendBody(out: RelayCommand[], data: Uint8Array): void {
    if (data.length === 0) return;
    if (!this.chunkedToAgent) send(out, data);
    else for (const p of encodeChunk(data)) send(out, p);
  }

  private mask(text: string): string {
    return maskText(text, this.needles);
  }
}

class RelayFailure extends Error {
  constructor(
    readonly refused: boolean,
    message: string,
  ) {
    super(message);
  }
}

function send(out: RelayCommand[], data: Uint8Array): void {
  if (data.length > 0) out.push({ type: "send-agent", data });
}

/** No Content-Encoding, or only `identity`. */
function isIdentityCoding(headers: HeaderList): boolean {
  return headerTokens(headers, "content-encoding").every((c) => c === "identity");
}

/**
 * Header names and values with every needle masked (a reflected secret can
 * sit in either): `headers` itself when nothing matched, else a copy.
 */
export function scrubHeaderList(headers: HeaderList, needles: string[]): HeaderList {
  const set = needleSet(needles);
  let out: HeaderList | undefined;
  for (let i = 0; i < headers.length; i++) {
    const [n, v] = headers[i]!;
    const name = scrubText(n, set, sameLengthMask);
    const value = scrubText(v, set, sameLengthMask);
    if (name !== n || value !== v) (out ??= headers.slice())[i] = [name, value];
  }
  return out ?? headers;
}

export function maskText(text: string, needles: string[]): string {
  return needles.length > 0 ? scrubText(text, needles, sameLengthMask) : text;
}
