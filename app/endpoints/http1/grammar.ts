// The HTTP/1.1 grammar the parser (parser.ts) is built from: byte classes,
// field lines, the version, Content-Length and token lists (RFC 9110, RFC
// 9112). Pure functions; a violation throws ParseError with the status the
// parser's role answers (`code` maps it: a response's errors are all 502).
import type { HeaderList } from "./headers.ts";
import type { ErrorCode, HttpVersion } from "./parser.ts";

/** The status a grammar violation answers, for the parser's role. */
export type CodeOf = (c: ErrorCode) => ErrorCode;

export const LF = 0x0a;
export const CR = 0x0d;
export const SP = 0x20;
export const HTAB = 0x09;
const COLON = 0x3a;
/** A chunk-size line with extensions longer than this is refused. */
export const MAX_CHUNK_LINE = 4096;
export const EMPTY = new Uint8Array(0);

/** tchar lookup over all 256 byte values (0 for non-ASCII and undefined). */
export const TCHAR = new Uint8Array(256);
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;
for (const ch of "!#$%&'*+-.^_`|~") TCHAR[ch.charCodeAt(0)] = 1;

export function isTokenRange(s: string, from: number, to: number): boolean {
  if (to <= from) return false;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || TCHAR[c] === 0) return false;
  }
  return true;
}

/** field-value chars: no controls except HTAB (this also refuses a bare CR). */
export function isValueRange(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if ((c < 0x20 && c !== HTAB) || c === 0x7f) return false;
  }
  return true;
}

// Buffer's native search and latin1 decoding work on any Uint8Array when
// called on it, which avoids wrapping every chunk in a Buffer.
export const bufIndexOf = Buffer.prototype.indexOf as (this: Uint8Array, value: Uint8Array, byteOffset: number) => number;
const bufLatin1Slice = (Buffer.prototype as unknown as { latin1Slice?: (this: Uint8Array, start: number, end: number) => string }).latin1Slice;
export const LFCRLF = new Uint8Array([LF, CR, LF]);

export function latin1(buf: Uint8Array, from: number, to: number): string {
  if (bufLatin1Slice !== undefined) return bufLatin1Slice.call(buf, from, to);
  return Buffer.from(buf.buffer, buf.byteOffset + from, to - from).toString("latin1");
}

export const FORBIDDEN_IN_HEAD = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)/;

export class ParseError {
  constructor(
    readonly code: ErrorCode,
    readonly message: string,
  ) {}
}

/** Fields that decide framing and connection handling, gathered while parsing a head. */
export interface Framing {
  contentLength: string[] | undefined;
  transferEncoding: string[] | undefined;
  connection: string[] | undefined;
  upgrade: string | undefined;
  expect: string | undefined;
}

/**
 * Splits the head buf[base, base + text.length) into start-line and
 * fields; returns the start-line. Scans bytes (cheap indexed reads) and
 * slices names and values from `text`, the same bytes decoded as latin1,
 * so offsets match. The head already passed FORBIDDEN_IN_HEAD, so a CR
 * is always followed by LF and values need no per-char check.
 */
export function parseFields(buf: Uint8Array, base: number, text: string, headers: HeaderList, framing: Framing, maxHeaders: number, code: CodeOf): string {
  let i = base;
  while (buf[i] !== LF) i++;
  const startLine = text.slice(0, (buf[i - 1] === CR ? i - 1 : i) - base);
  i++;
  for (;;) {
    let c = buf[i]!;
    if (c === CR || c === LF) break; // the empty line ending the head
    if (c === SP || c === HTAB) throw new ParseError(code(400), "obsolete line folding");
    if (headers.length >= maxHeaders) throw new ParseError(code(431), "too many header fields");
    // field-line = field-name ":" OWS field-value OWS (RFC 9112 §5)
    const ns = i;
    while (TCHAR[c] === 1) c = buf[++i]!;
    if (c !== COLON || i === ns) throw new ParseError(code(400), c === LF || c === CR ? "header line without colon" : "invalid header field name");
    const colon = i;
    c = buf[++i]!;
    while (c === SP || c === HTAB) c = buf[++i]!;
    const vs = i;
    while (c !== LF) c = buf[++i]!;
    let ve = buf[i - 1] === CR ? i - 1 : i;
    while (ve > vs && (buf[ve - 1] === SP || buf[ve - 1] === HTAB)) ve--;
    i++;
    const name = text.slice(ns - base, colon - base);
    const value = text.slice(vs - base, ve - base);
    headers.push([name, value]);
    switch (colon - ns) {
      case 14:
        if (name.toLowerCase() === "content-length") (framing.contentLength ??= []).push(value);
        break;
      case 17:
        if (name.toLowerCase() === "transfer-encoding") (framing.transferEncoding ??= []).push(value);
        break;
      case 10:
        if (name.toLowerCase() === "connection") (framing.connection ??= []).push(value);
        break;
      case 7:
        if (name.toLowerCase() === "upgrade") framing.upgrade ??= value;
        break;
      case 6:
        if (name.toLowerCase() === "expect") framing.expect ??= value;
        break;
    }
  }
  return startLine;
}

/** field-line = field-name ":" OWS field-value OWS (RFC 9112 §5). */
export function parseField(s: string, from: number, to: number, checkValue: boolean, code: CodeOf): [string, string] {
  const colon = s.indexOf(":", from);
  if (colon < 0 || colon >= to) throw new ParseError(code(400), "header line without colon");
  if (!isTokenRange(s, from, colon)) throw new ParseError(code(400), "invalid header field name");
  let vs = colon + 1;
  let ve = to;
  while (vs < ve && (s.charCodeAt(vs) === SP || s.charCodeAt(vs) === HTAB)) vs++;
  while (ve > vs && (s.charCodeAt(ve - 1) === SP || s.charCodeAt(ve - 1) === HTAB)) ve--;
  if (checkValue && !isValueRange(s, vs, ve)) throw new ParseError(code(400), "invalid header field value");
  return [s.slice(from, colon), s.slice(vs, ve)];
}

export function parseVersion(s: string, code: CodeOf): HttpVersion | undefined {
  // HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3)
  if (s.length !== 8 || !s.startsWith("HTTP/") || s.charCodeAt(6) !== 0x2e) return undefined;
  const major = s.charCodeAt(5) - 0x30;
  const minor = s.charCodeAt(7) - 0x30;
  if (major < 0 || major > 9 || minor < 0 || minor > 9) return undefined;
  if (major !== 1) throw new ParseError(code(505), `HTTP/${major}.${minor} is not supported`);
  // A higher 1.x minor version is understood as 1.1 (RFC 9110 §2.5).
  return minor === 0 ? "1.0" : "1.1";
}

/** Content-Length = 1*DIGIT; repeated or listed values must all agree (RFC 9110 §8.6). */
export function contentLength(values: string[], code: CodeOf): number {
  let result = -1;
  for (const v of values) {
    for (const part of v.split(",")) {
      const t = part.trim();
      if (t.length === 0) throw new ParseError(code(400), "invalid Content-Length");
      let n = 0;
      for (let i = 0; i < t.length; i++) {
        const d = t.charCodeAt(i) - 0x30;
        if (!(d >= 0 && d <= 9)) throw new ParseError(code(400), "invalid Content-Length");
        n = n * 10 + d;
        if (n > Number.MAX_SAFE_INTEGER) throw new ParseError(code(413), "Content-Length too large");
      }
      if (result >= 0 && n !== result) throw new ParseError(code(400), "conflicting Content-Length values");
      result = n;
    }
  }
  return result;
}

/** The comma-separated tokens of repeated field values, lower-cased (Connection, Transfer-Encoding). */
export function tokens(values: string[]): string[] {
  const out: string[] = [];
  for (const v of values) {
    for (const part of v.split(",")) {
      const t = part.trim().toLowerCase();
      if (t.length > 0) out.push(t);
    }
  }
  return out;
}
