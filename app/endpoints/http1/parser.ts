// Sans-IO HTTP/1.1 message parser (RFC 9112). Bytes in, events out; no
// sockets, no timers. One instance per direction of a connection: role
// "request" parses what the agent sends, role "response" parses what the
// upstream sends back.
//
// Stages of one message:
//   1. HEAD: find the empty line that ends the head (one native search for
//      LF CR LF when the start-line ends in CRLF; a walk over LFs when it
//      ends in a bare LF, RFC 9112 §2.2), decode the head once as latin1,
//      refuse controls and bare CR with one regex, split into start-line
//      and fields by byte scan, and decide the framing (RFC 9112 §6.3).
//   2. BODY: Content-Length countdown, chunked decoding (size line, data,
//      CRLF, trailers) or read-until-close. Body bytes leave as subarrays of
//      the pushed chunks, never copied.
//   3. END: the message is complete; the next message starts at stage 1,
//      unless the message closes the connection, or switches protocols
//      (101, CONNECT 2xx, an accepted upgrade request), after which bytes
//      come back as raw events.
//
// Buffering: a partial head or chunk line is kept; when more bytes arrive
// only the bytes up to the next LF are appended to it, so body bytes that
// follow a split line are still not copied. The buffer is append-only: a
// subarray handed out as a body event is never overwritten. Callers must
// not mutate a chunk after pushing it.
//
// Errors are values: after an error event the parser is dead and push()
// returns nothing. Codes for role "request": 400 malformed or ambiguous
// framing (TE with CL, differing CL, obs-fold, bad chunk), 413 a length
// beyond 2^53, 431 head/trailers over maxHeadBytes or maxHeaders, 501 a
// transfer coding other than chunked, 505 an HTTP major version other than
// 1. For role "response" every error carries 502 (what the gateway answers
// the agent); the message says what was wrong.
//
// Strictness, chosen for a gateway that re-frames everything it forwards:
// heads accept bare LF line endings but refuse bare CR, NUL and other
// controls; chunked framing (size lines, trailers, the CRLF after data)
// requires CRLF. A request with both Transfer-Encoding and Content-Length
// is refused (smuggling defence); a response with both uses
// Transfer-Encoding, and the caller must drop Content-Length when
// forwarding (RFC 9112 §6.3).

import type { HeaderList } from "./headers.ts";
import {
  bufIndexOf, contentLength, CR, EMPTY, FORBIDDEN_IN_HEAD, HTAB, isTokenRange, isValueRange, latin1, LF,
  LFCRLF, MAX_CHUNK_LINE, parseField, parseFields, ParseError, parseVersion, SP, tokens, type CodeOf, type Framing,
} from "./grammar.ts";

export type HttpVersion = "1.0" | "1.1";

/** How the message body is delimited (RFC 9112 §6.3). */
export type BodyKind =
  | { kind: "none" }
  | { kind: "length"; length: number }
  | { kind: "chunked" }
  /** Responses only: the body runs until the connection closes. */
  | { kind: "until-close" };

export interface RequestHead {
  method: string;
  target: string;
  version: HttpVersion;
  headers: HeaderList;
  bodyKind: BodyKind;
  /** The connection stays open after this message (RFC 9112 §9.3). */
  keepAlive: boolean;
  /** The Upgrade value when Connection lists "upgrade" and Upgrade is present. */
  upgrade?: string;
  /** `Expect: 100-continue` (RFC 9110 §10.1.1). */
  expectContinue: boolean;
}

export interface ResponseHead {
  status: number;
  reason: string;
  version: HttpVersion;
  headers: HeaderList;
  bodyKind: BodyKind;
  keepAlive: boolean;
  /** On a 101 response: the Upgrade value ("" when absent). */
  upgrade?: string;
}

export type ErrorCode = 400 | 413 | 431 | 501 | 502 | 505;

export type ParseEvent<H extends RequestHead | ResponseHead = RequestHead | ResponseHead> =
  | { type: "head"; head: H }
  /** A 1xx other than 101; the final response follows. */
  | { type: "informational"; head: ResponseHead }
  /** Decoded body bytes (chunk framing removed). */
  | { type: "body"; data: Uint8Array }
  | { type: "end"; trailers?: HeaderList }
  /** The connection switched protocols; `rest` are bytes already received past the head. */
  | { type: "upgrade"; rest: Uint8Array }
  /** Bytes after an upgrade, passed through untouched. */
  | { type: "raw"; data: Uint8Array }
  | { type: "error"; code: ErrorCode; message: string };

export type Role = "request" | "response";
type HeadFor<R extends Role> = R extends "request" ? RequestHead : ResponseHead;

export interface ParserLimits {
  /** Largest head (start-line + fields + empty line), and largest trailer section. Default 64 KiB. */
  maxHeadBytes?: number;
  /** Most fields in a head or trailer section. Default 200. */
  maxHeaders?: number;
}

const enum State {
  Head,
  BodyLength,
  ChunkSize,
  ChunkData,
  ChunkDataCrlf,
  Trailers,
  UntilClose,
  /** A request asked to upgrade (or CONNECT); waiting for acceptUpgrade/declineUpgrade. */
  Paused,
  Raw,
  /** Message had Connection: close; later bytes are ignored. */
  Closed,
  Dead,
}

export class Http1Parser<R extends Role = Role> {
  readonly role: R;
  private readonly maxHeadBytes: number;
  private readonly maxHeaders: number;

  private state = State.Head;
  // Unconsumed bytes are buf[start, fill). buf may be a caller's chunk (not
  // owned: never written) or our own with spare capacity past `fill`.
  private buf: Uint8Array = EMPTY;
  private start = 0;
  private fill = 0;
  private owned = false;
  /** Head stage: where the LF search resumes, so a split head is scanned once. */
  private scanPos = 0;

  private remaining = 0;
  private trailers: HeaderList = [];
  private trailerBytes = 0;
  private keepAlive = true;
  /** Set when the current request should pause for an upgrade decision at its end. */
  private pauseAtEnd = false;
  /** Response role: methods of requests sent, oldest first. */
  private readonly methods: string[] = [];

  constructor(role: R, limits: ParserLimits = {}) {
    this.role = role;
    this.maxHeadBytes = limits.maxHeadBytes ?? 64 * 1024;
    this.maxHeaders = limits.maxHeaders ?? 200;
  }

  /** Response role: record a request sent upstream so its response is framed right (HEAD, CONNECT). */
  expectResponseTo(method: string): void {
    this.methods.push(method); // case-sensitive (RFC 9110 §9.1): `head` is not HEAD
  }

  /** True between messages with nothing buffered. */
  get idle(): boolean {
    return this.state === State.Head && this.start === this.fill;
  }

  /** True when a request that asked to switch protocols (Upgrade or CONNECT) has ended. */
  get awaitingUpgrade(): boolean {
    return this.state === State.Paused;
  }

  /** Feed bytes; returns every event they complete. */
  push(chunk: Uint8Array): ParseEvent<HeadFor<R>>[] {
    const out: ParseEvent[] = [];
    const s = this.state;
    if (s === State.Dead || s === State.Closed || chunk.length === 0) return out as never;
    if (s === State.Raw) {
      out.push({ type: "raw", data: chunk });
      return out as never;
    }
    if (s === State.Paused) {
      this.append(chunk);
      this.checkPausedLimit(out);
      return out as never;
    }
    if (this.start === this.fill) {
      this.adopt(chunk);
      this.run(out);
      return out as never;
    }
    // A partial line is buffered: append up to the next LF at a time, and
    // hand the rest over uncopied once the buffer drains.
    let off = 0;
    while (off < chunk.length) {
      const st = this.state;
      if (st === State.Dead || st === State.Closed) break;
      if (st === State.Raw) {
        out.push({ type: "raw", data: chunk.subarray(off) });
        break;
      }
      if (st === State.Paused) {
        this.append(chunk.subarray(off));
        this.checkPausedLimit(out);
        break;
      }
      if (this.start === this.fill) {
        this.adopt(chunk.subarray(off));
        this.run(out);
        break;
      }
      const lf = chunk.indexOf(LF, off);
      const stop = lf < 0 ? chunk.length : lf + 1;
      this.append(chunk.subarray(off, stop));
      off = stop;
      this.run(out);
    }
    return out as never;
  }

  /** The peer closed its side: finish an until-close body, or report a cut message. */
  end(): ParseEvent<HeadFor<R>>[] {
    const out: ParseEvent[] = [];
    switch (this.state) {
      case State.Head:
        if (this.start !== this.fill && !this.onlyEmptyLines()) {
          this.fail(out, new ParseError(this.code(400), "connection closed inside a message head"));
        }
        break;
      case State.BodyLength:
      case State.ChunkSize:
      case State.ChunkData:
      case State.ChunkDataCrlf:
      case State.Trailers:
        this.fail(out, new ParseError(this.code(400), "connection closed inside a message body"));
        break;
      case State.UntilClose:
        out.push({ type: "end" });
        break;
      case State.Paused:
      case State.Raw:
      case State.Closed:
      case State.Dead:
        break;
    }
    this.state = State.Dead;
    this.release();
    return out as never;
  }

  /** After a request that asked to upgrade (or CONNECT) ended: switch to raw bytes. */
  acceptUpgrade(): ParseEvent<HeadFor<R>>[] {
    if (this.state !== State.Paused) throw new Error("acceptUpgrade: no upgrade request is waiting");
    const rest = this.start < this.fill ? this.buf.subarray(this.start, this.fill) : EMPTY;
    this.release();
    this.state = State.Raw;
    return [{ type: "upgrade", rest }];
  }

  /** After a request that asked to upgrade ended: carry on with HTTP/1.1 on the buffered bytes. */
  declineUpgrade(): ParseEvent<HeadFor<R>>[] {
    if (this.state !== State.Paused) throw new Error("declineUpgrade: no upgrade request is waiting");
    const out: ParseEvent[] = [];
    this.state = this.keepAlive ? State.Head : State.Closed;
    this.scanPos = this.start;
    if (this.state === State.Head) this.run(out);
    else this.release();
    return out as never;
  }

  // ---- buffer ---------------------------------------------------------

  private adopt(chunk: Uint8Array): void {
    this.buf = chunk;
    this.start = 0;
    this.fill = chunk.length;
    this.owned = false;
    this.scanPos = 0;
  }

  private append(chunk: Uint8Array): void {
    const n = chunk.length;
    if (n === 0) return;
    if (this.owned && this.buf.length - this.fill >= n) {
      this.buf.set(chunk, this.fill);
      this.fill += n;
      return;
    }
    // Grow into a fresh buffer; the old one may back handed-out body events.
    const have = this.fill - this.start;
    const next = new Uint8Array(Math.max(256, 2 * (have + n)));
    next.set(this.buf.subarray(this.start, this.fill), 0);
    next.set(chunk, have);
    this.scanPos -= this.start;
    this.buf = next;
    this.start = 0;
    this.fill = have + n;
    this.owned = true;
  }

  private release(): void {
    this.buf = EMPTY;
    this.start = this.fill = this.scanPos = 0;
    this.owned = false;
  }

  private checkPausedLimit(out: ParseEvent[]): void {
    if (this.fill - this.start > this.maxHeadBytes) {
      this.fail(out, new ParseError(400, "too many bytes before the upgrade was decided"));
    }
  }

  private code(c: ErrorCode): ErrorCode {
    return this.role === "response" ? 502 : c;
  }

  private readonly codeOf: CodeOf = (c) => this.code(c);

  private fail(out: ParseEvent[], e: ParseError): void {
    out.push({ type: "error", code: e.code, message: e.message });
    this.state = State.Dead;
    this.release();
  }

  private onlyEmptyLines(): boolean {
    for (let i = this.start; i < this.fill; i++) {
      const c = this.buf[i];
      if (c !== CR && c !== LF) return false;
    }
    return true;
  }

  // ---- state machine --------------------------------------------------

  private run(out: ParseEvent[]): void {
    try {
      this.step(out);
    } catch (e) {
      if (e instanceof ParseError) this.fail(out, e);
      else throw e;
    }
    if (this.start === this.fill && this.state !== State.Paused) this.release();
  }

  private step(out: ParseEvent[]): void {
    const buf = this.buf;
    for (;;) {
      switch (this.state) {
        case State.Head: {
          if (!this.parseHead(out)) return;
          break;
        }
        case State.BodyLength: {
          const avail = this.fill - this.start;
          if (avail === 0) return;
          const n = avail < this.remaining ? avail : this.remaining;
          out.push({ type: "body", data: buf.subarray(this.start, this.start + n) });
          this.start += n;
          this.remaining -= n;
          if (this.remaining === 0) this.finishMessage(out, undefined);
          break;
        }
        case State.ChunkSize: {
          const lf = this.findLf(MAX_CHUNK_LINE, 400, "chunk-size line too long");
          if (lf < 0) return;
          this.parseChunkSize(lf);
          break;
        }
        case State.ChunkData: {
          const avail = this.fill - this.start;
          if (avail === 0) return;
          const n = avail < this.remaining ? avail : this.remaining;
          out.push({ type: "body", data: buf.subarray(this.start, this.start + n) });
          this.start += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = State.ChunkDataCrlf;
          break;
        }
        case State.ChunkDataCrlf: {
          const avail = this.fill - this.start;
          if (avail === 0) return;
          if (buf[this.start] !== CR) throw new ParseError(this.code(400), "chunk data not followed by CRLF");
          if (avail === 1) return;
          if (buf[this.start + 1] !== LF) throw new ParseError(this.code(400), "chunk data not followed by CRLF");
          this.start += 2;
          this.state = State.ChunkSize;
          break;
        }
        case State.Trailers: {
          const room = this.maxHeadBytes - this.trailerBytes;
          const lf = this.findLf(room, 431, "trailer section too large");
          if (lf < 0) return;
          this.parseTrailerLine(out, lf);
          break;
        }
        case State.UntilClose: {
          if (this.fill === this.start) return;
          out.push({ type: "body", data: buf.subarray(this.start, this.fill) });
          this.start = this.fill;
          return;
        }
        case State.Raw: {
          if (this.fill === this.start) return;
          out.push({ type: "raw", data: buf.subarray(this.start, this.fill) });
          this.start = this.fill;
          return;
        }
        case State.Paused:
        case State.Closed:
        case State.Dead:
          return;
      }
    }
  }

  /** Index of the next LF in the buffer (strict CRLF framing), -1 if more is needed. */
  private findLf(maxLine: number, code: ErrorCode, tooLong: string): number {
    const lf = this.buf.indexOf(LF, this.start);
    if (lf < 0 || lf >= this.fill) {
      if (this.fill - this.start > maxLine) throw new ParseError(this.code(code), tooLong);
      return -1;
    }
    if (lf + 1 - this.start > maxLine) throw new ParseError(this.code(code), tooLong);
    if (lf === this.start || this.buf[lf - 1] !== CR) throw new ParseError(this.code(400), "bare LF in chunked framing");
    return lf;
  }

  private parseChunkSize(lf: number): void {
    const buf = this.buf;
    const lineEnd = lf - 1; // CR
    let i = this.start;
    let size = 0;
    let digits = 0;
    for (; i < lineEnd; i++) {
      const c = buf[i]!;
      let d: number;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x37;
      else break;
      size = size * 16 + d;
      digits++;
      if (size > Number.MAX_SAFE_INTEGER) throw new ParseError(this.code(413), "chunk size too large");
    }
    if (digits === 0) throw new ParseError(this.code(400), "invalid chunk size");
    // chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ): ignored, but it
    // must start with ";" and hold no controls.
    while (i < lineEnd && (buf[i] === SP || buf[i] === HTAB)) i++;
    if (i < lineEnd && buf[i] !== 0x3b) throw new ParseError(this.code(400), "invalid chunk size");
    for (; i < lineEnd; i++) {
      const c = buf[i]!;
      if ((c < 0x20 && c !== HTAB) || c === 0x7f) throw new ParseError(this.code(400), "invalid chunk extension");
    }
    this.start = lf + 1;
    if (size === 0) {
      this.state = State.Trailers;
      this.trailers = [];
      this.trailerBytes = 0;
    } else {
      this.remaining = size;
      this.state = State.ChunkData;
    }
  }

  private parseTrailerLine(out: ParseEvent[], lf: number): void {
    const lineStart = this.start;
    this.trailerBytes += lf + 1 - lineStart;
    this.start = lf + 1;
    if (lf - 1 === lineStart) {
      const t = this.trailers;
      this.trailers = [];
      this.finishMessage(out, t.length > 0 ? t : undefined);
      return;
    }
    const line = latin1(this.buf, lineStart, lf - 1);
    if (this.trailers.length >= this.maxHeaders) throw new ParseError(this.code(431), "too many trailer fields");
    this.trailers.push(parseField(line, 0, line.length, true, this.codeOf));
  }

  private finishMessage(out: ParseEvent[], trailers: HeaderList | undefined): void {
    out.push(trailers ? { type: "end", trailers } : { type: "end" });
    if (this.pauseAtEnd) {
      this.pauseAtEnd = false;
      this.state = State.Paused;
      return;
    }
    if (!this.keepAlive) {
      this.state = State.Closed;
      this.start = this.fill;
      return;
    }
    this.state = State.Head;
    this.scanPos = this.start;
  }

  /** Stage 1. Returns false when more bytes are needed. */
  private parseHead(out: ParseEvent[]): boolean {
    const buf = this.buf;
    const end = this.fill;
    // RFC 9112 §2.2: ignore empty lines before the start-line (old clients
    // send CRLF after a POST body).
    while (this.start < end) {
      const c = buf[this.start];
      if (c === LF) this.start++;
      else if (c === CR && this.start + 1 < end && buf[this.start + 1] === LF) this.start += 2;
      else break;
    }
    if (this.start === end) return false;
    if (buf[this.start] === CR && this.start + 1 === end) return false;
    if (this.scanPos < this.start) this.scanPos = this.start;

    // The first line tells the line ending. CRLF (every real client): one
    // native search for LF CR LF, the tail of CRLFCRLF. Bare LF (RFC 9112
    // §2.2 MAY): walk the lines.
    const lf1 = buf.indexOf(LF, this.start);
    let headEnd = -1;
    if (lf1 >= 0 && lf1 < end) {
      if (buf[lf1 - 1] === CR) {
        const from = this.scanPos > lf1 ? this.scanPos : lf1;
        const at = bufIndexOf.call(buf, LFCRLF, from);
        if (at >= 0 && at + 3 <= end) headEnd = at + 3;
        else this.scanPos = end - 2 > lf1 ? end - 2 : lf1;
      } else {
        let p = this.scanPos > lf1 ? this.scanPos : lf1;
        for (;;) {
          const lf = buf.indexOf(LF, p);
          if (lf < 0 || lf >= end) break;
          // An LF ending an empty line: preceded by LF, or by CR after LF.
          if (buf[lf - 1] === LF || (buf[lf - 1] === CR && buf[lf - 2] === LF)) {
            headEnd = lf + 1;
            break;
          }
          p = lf + 1;
        }
        // Resume after the last LF seen; the empty-line check looks backwards.
        if (headEnd < 0) this.scanPos = p;
      }
    }
    if (headEnd < 0) {
      if (end - this.start > this.maxHeadBytes) throw new ParseError(this.code(431), "message head too large");
      return false;
    }
    if (headEnd - this.start > this.maxHeadBytes) throw new ParseError(this.code(431), "message head too large");

    const base = this.start;
    const text = latin1(buf, base, headEnd);
    // One pass for every forbidden byte: controls other than HTAB, and a CR
    // that does not end a line. After it, field values need no per-char check.
    if (FORBIDDEN_IN_HEAD.test(text)) throw new ParseError(this.code(400), "control character in message head");
    this.start = headEnd;
    this.scanPos = headEnd;
    if (this.role === "request") this.parseRequest(out, buf, base, text);
    else this.parseResponse(out, buf, base, text);
    return true;
  }

  private parseRequest(out: ParseEvent[], buf: Uint8Array, base: number, text: string): void {
    const headers: HeaderList = [];
    const framing: Framing = { contentLength: undefined, transferEncoding: undefined, connection: undefined, upgrade: undefined, expect: undefined };
    const line = parseFields(buf, base, text, headers, framing, this.maxHeaders, this.codeOf);

    // request-line = method SP request-target SP HTTP-version
    const sp1 = line.indexOf(" ");
    const sp2 = sp1 < 0 ? -1 : line.indexOf(" ", sp1 + 1);
    if (sp2 < 0) throw new ParseError(400, "malformed request line");
    if (!isTokenRange(line, 0, sp1)) throw new ParseError(400, "invalid method");
    if (sp2 === sp1 + 1) throw new ParseError(400, "empty request target");
    // Controls are already refused for the whole head; HTAB is left.
    const tab = line.indexOf("\t", sp1 + 1);
    if (tab >= 0 && tab < sp2) throw new ParseError(400, "invalid request target");
    const version = parseVersion(line.slice(sp2 + 1), this.codeOf);
    if (version === undefined) throw new ParseError(400, "malformed request line");
    const method = line.slice(0, sp1);
    const target = line.slice(sp1 + 1, sp2);

    const connection = framing.connection ? tokens(framing.connection) : [];
    const keepAlive = version === "1.1" ? !connection.includes("close") : connection.includes("keep-alive");
    const upgrade = framing.upgrade !== undefined && connection.includes("upgrade") ? framing.upgrade : undefined;

    // Framing (RFC 9112 §6.3), strict for requests: ambiguity is smuggling.
    let bodyKind: BodyKind;
    if (framing.transferEncoding !== undefined) {
      if (framing.contentLength !== undefined) throw new ParseError(400, "both Transfer-Encoding and Content-Length");
      if (version === "1.0") throw new ParseError(400, "Transfer-Encoding in an HTTP/1.0 request");
      const codings = tokens(framing.transferEncoding);
      for (const c of codings) if (c !== "chunked") throw new ParseError(501, `unsupported transfer coding: ${c}`);
      if (codings.length !== 1) throw new ParseError(400, "invalid Transfer-Encoding");
      bodyKind = { kind: "chunked" };
    } else if (framing.contentLength !== undefined) {
      bodyKind = { kind: "length", length: contentLength(framing.contentLength, this.codeOf) };
    } else {
      bodyKind = { kind: "none" };
    }
    const isConnect = method === "CONNECT";
    if (isConnect) bodyKind = { kind: "none" }; // CONNECT has no content (RFC 9110 §9.3.6)

    const head: RequestHead = {
      method,
      target,
      version,
      headers,
      bodyKind,
      keepAlive,
      expectContinue: framing.expect !== undefined && framing.expect.toLowerCase() === "100-continue",
    };
    if (upgrade !== undefined) head.upgrade = upgrade;
    out.push({ type: "head", head });
    this.keepAlive = keepAlive;
    this.pauseAtEnd = isConnect || upgrade !== undefined;
    this.startBody(out, bodyKind);
  }

  private parseResponse(out: ParseEvent[], buf: Uint8Array, base: number, text: string): void {
    const headers: HeaderList = [];
    const framing: Framing = { contentLength: undefined, transferEncoding: undefined, connection: undefined, upgrade: undefined, expect: undefined };
    const line = parseFields(buf, base, text, headers, framing, this.maxHeaders, this.codeOf);

    // status-line = HTTP-version SP status-code SP [ reason-phrase ]
    const sp1 = line.indexOf(" ");
    if (sp1 < 0) throw new ParseError(502, "malformed status line");
    const version = parseVersion(line.slice(0, sp1), this.codeOf);
    if (version === undefined) throw new ParseError(502, "malformed status line");
    let status = 0;
    for (let i = sp1 + 1; i < sp1 + 4; i++) {
      const d = line.charCodeAt(i) - 0x30;
      if (!(d >= 0 && d <= 9)) throw new ParseError(502, "invalid status code");
      status = status * 10 + d;
    }
    if (status < 100) throw new ParseError(502, "invalid status code");
    // Tolerate a missing SP when the reason is empty ("HTTP/1.1 200").
    if (line.length > sp1 + 4 && line.charCodeAt(sp1 + 4) !== SP) throw new ParseError(502, "invalid status code");
    const reason = line.length > sp1 + 5 ? line.slice(sp1 + 5) : "";
    if (!isValueRange(reason, 0, reason.length)) throw new ParseError(502, "invalid reason phrase");

    const connection = framing.connection ? tokens(framing.connection) : [];
    let keepAlive = version === "1.1" ? !connection.includes("close") : connection.includes("keep-alive");

    if (status < 200 && status !== 101) {
      out.push({ type: "informational", head: { status, reason, version, headers, bodyKind: { kind: "none" }, keepAlive } });
      return;
    }
    const method = this.methods.shift() ?? "GET";
    const none: BodyKind = { kind: "none" };

    if (status === 101 || (method === "CONNECT" && status >= 200 && status < 300)) {
      const head: ResponseHead = { status, reason, version, headers, bodyKind: none, keepAlive };
      if (status === 101) head.upgrade = framing.upgrade ?? "";
      out.push({ type: "head", head });
      out.push({ type: "end" });
      const rest = this.start < this.fill ? this.buf.subarray(this.start, this.fill) : EMPTY;
      out.push({ type: "upgrade", rest });
      this.start = this.fill;
      this.state = State.Raw;
      return;
    }

    let bodyKind: BodyKind;
    if (method === "HEAD" || status === 204 || status === 304) {
      bodyKind = none;
    } else if (framing.transferEncoding !== undefined) {
      // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3 item 3).
      const codings = tokens(framing.transferEncoding);
      if (codings[codings.length - 1] === "chunked") {
        if (codings.length !== 1) throw new ParseError(502, `unsupported transfer coding: ${codings.join(", ")}`);
        bodyKind = { kind: "chunked" };
      } else {
        bodyKind = { kind: "until-close" };
      }
    } else if (framing.contentLength !== undefined) {
      bodyKind = { kind: "length", length: contentLength(framing.contentLength, this.codeOf) };
    } else {
      bodyKind = { kind: "until-close" };
    }
    if (bodyKind.kind === "until-close") keepAlive = false;

    out.push({ type: "head", head: { status, reason, version, headers, bodyKind, keepAlive } });
    this.keepAlive = keepAlive;
    this.pauseAtEnd = false;
    this.startBody(out, bodyKind);
  }

  private startBody(out: ParseEvent[], bodyKind: BodyKind): void {
    switch (bodyKind.kind) {
      case "none":
        this.finishMessage(out, undefined);
        return;
      case "length":
        if (bodyKind.length === 0) {
          this.finishMessage(out, undefined);
          return;
        }
        this.remaining = bodyKind.length;
        this.state = State.BodyLength;
        return;
      case "chunked":
        this.state = State.ChunkSize;
        return;
      case "until-close":
        this.state = State.UntilClose;
        return;
    }
  }
}
