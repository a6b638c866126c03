// Test helpers for the HTTP/1.1 codec: build wire bytes from values, feed
// them to a parser whole / cut / byte by byte, and normalise the events so
// different cuts compare equal (body chunks joined, upgrade rest + raw
// bytes joined, bytes shown as latin1 strings).
import { Http1Parser, type ParseEvent, type ParserLimits, type Role } from "../../../app/endpoints/http1/parser.ts";
import type { HeaderList } from "../../../app/endpoints/http1/headers.ts";

export const enc = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "latin1"));
export const dec = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1");

export function concat(...parts: Uint8Array[]): Uint8Array {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A message head on the wire: start-line, fields, empty line; `eol` lets tests use bare LF. */
export function head(startLine: string, headers: HeaderList, eol = "\r\n"): string {
  let s = startLine + eol;
  for (const [n, v] of headers) s += `${n}: ${v}${eol}`;
  return s + eol;
}

/** A chunked body: [data, ext?] pairs, then the last chunk and trailers. */
export function chunked(chunks: (string | [string, string])[], trailers: HeaderList = []): string {
  let s = "";
  for (const c of chunks) {
    const [data, ext] = typeof c === "string" ? [c, ""] : c;
    s += data.length.toString(16) + ext + "\r\n" + data + "\r\n";
  }
  s += "0\r\n";
  for (const [n, v] of trailers) s += `${n}: ${v}\r\n`;
  return s + "\r\n";
}

/** Normalised event, comparable with toEqual. */
export type NormEvent =
  | { type: "head"; head: unknown }
  | { type: "informational"; head: unknown }
  | { type: "body"; data: string }
  | { type: "end"; trailers?: HeaderList }
  | { type: "upgrade"; rest: string }
  | { type: "error"; code: number; message: string };

export function normalise(events: ParseEvent[]): NormEvent[] {
  const out: NormEvent[] = [];
  for (const e of events) {
    const last = out[out.length - 1];
    switch (e.type) {
      case "body":
        if (last?.type === "body") last.data += dec(e.data);
        else out.push({ type: "body", data: dec(e.data) });
        break;
      case "raw":
        if (last?.type === "upgrade") last.rest += dec(e.data);
        else throw new Error("raw event without upgrade before it");
        break;
      case "upgrade":
        out.push({ type: "upgrade", rest: dec(e.rest) });
        break;
      case "head":
      case "informational":
        out.push({ type: e.type, head: e.head });
        break;
      case "end":
        out.push(e.trailers ? { type: "end", trailers: e.trailers } : { type: "end" });
        break;
      case "error":
        out.push({ type: "error", code: e.code, message: e.message });
        break;
    }
  }
  return out;
}

export interface FeedOptions {
  limits?: ParserLimits;
  /** Response role: methods of the requests these responses answer. */
  methods?: string[];
  /** Called after all pushes and before end(), e.g. to accept an upgrade. */
  after?: (p: Http1Parser) => ParseEvent[];
  /** Call end() after the pushes (default true). */
  eof?: boolean;
}

export function feed(role: Role, chunks: Uint8Array[], opts: FeedOptions = {}): NormEvent[] {
  const p = new Http1Parser(role, opts.limits);
  for (const m of opts.methods ?? []) p.expectResponseTo(m);
  const events: ParseEvent[] = [];
  for (const c of chunks) events.push(...p.push(c));
  if (opts.after) events.push(...opts.after(p));
  if (opts.eof !== false) events.push(...p.end());
  return normalise(events);
}

/** Every way of cutting `bytes`: whole, each two-piece cut, byte by byte. */
export function* cuts(bytes: Uint8Array): Generator<[string, Uint8Array[]]> {
  yield ["whole", [bytes]];
  for (let i = 1; i < bytes.length; i++) yield [`cut at ${i}`, [bytes.subarray(0, i), bytes.subarray(i)]];
  const single: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i++) single.push(bytes.subarray(i, i + 1));
  yield ["byte by byte", single];
}
