// Translating between an HTTP/2 stream's header block and the HTTP/1.1
// heads the rest of interception speaks, sans-IO. An h2 stream is one
// request for the rules: its pseudo-headers become the same RequestHead an
// HTTP/1.1 request gives (`:authority` as Host), so the exchange decider
// (decider.ts) judges it unchanged. Upstream responses (HTTP/1.1 heads) go
// back as h2 header objects, connection-specific fields dropped (RFC 9113
// §8.2.2) and the secret's needles masked.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http2";
import { Http1Parser, type RequestHead } from "../http1/parser.ts";
import { isFieldValue, isToken, stripHopByHop, type HeaderList } from "../http1/headers.ts";
import { scrubHeaderList } from "./response.ts";

/** Fields HTTP/2 forbids (RFC 9113 §8.2.2); `te` is allowed only as "trailers". */
const CONNECTION_SPECIFIC = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"]);

export type H2RequestResult = { ok: true; head: RequestHead } | { ok: false; status: number; reason: string };

/**
 * The RequestHead an h2 stream's headers stand for. `endStream`: the
 * HEADERS frame ended the stream (no body). A stream the rules could
 * misread (no :authority, a connection-specific field, a value HTTP/1.1
 * cannot carry) is refused.
 */
export function requestHeadFromH2(h: IncomingHttpHeaders, endStream: boolean): H2RequestResult {
  const method = one(h[":method"]);
  const path = one(h[":path"]);
  const authority = one(h[":authority"]) ?? one(h["host"]);
  if (!method || !isToken(method)) return { ok: false, status: 400, reason: "missing or invalid :method" };
  // Extended CONNECT (RFC 8441 WebSockets) and plain CONNECT: never tunnelled past the rules.
  if (method === "CONNECT") return { ok: false, status: 405, reason: "CONNECT is not forwarded on an intercepted HTTP/2 connection" };
  if (!path) return { ok: false, status: 400, reason: "missing :path" };
  if (!authority) return { ok: false, status: 400, reason: "missing :authority" };
  const headers: HeaderList = [["host", authority]];
  let length: number | undefined;
  for (const [name, raw] of Object.entries(h)) {
    if (name.startsWith(":") || raw === undefined) continue;
    if (name === "host") continue;
    if (CONNECTION_SPECIFIC.has(name)) return { ok: false, status: 400, reason: `connection-specific field ${name} in an HTTP/2 request` };
    if (!isToken(name)) return { ok: false, status: 400, reason: "invalid field name" };
    const values = Array.isArray(raw) ? raw : [raw];
    for (const v of values) {
      if (!isFieldValue(v) && v !== "") return { ok: false, status: 400, reason: `invalid value for ${name}` };
      if (name === "te" && v.trim().toLowerCase() !== "trailers") return { ok: false, status: 400, reason: "te other than trailers" };
      if (name === "content-length") {
        if (!/^[0-9]{1,15}$/.test(v) || (length !== undefined && length !== Number(v))) return { ok: false, status: 400, reason: "invalid content-length" };
        length = Number(v);
      }
      headers.push([name, v]);
    }
  }
  // The framing the forwarder writes upstream: none, a length, or chunked as the DATA frames come.
  const bodyKind: RequestHead["bodyKind"] = endStream
    ? { kind: "none" }
    : length !== undefined
      ? { kind: "length", length }
      : { kind: "chunked" };
  if (endStream && length !== undefined && length > 0) return { ok: false, status: 400, reason: "content-length on a stream without a body" };
  // An h2 client may wait for a 100 before DATA too (RFC 9113 §8.1); the decider sends it when it reads the body.
  const expectContinue = !endStream && headers.some(([n, v]) => n === "expect" && v.trim().toLowerCase() === "100-continue");
  return { ok: true, head: { method, target: path, version: "1.1", headers, bodyKind, keepAlive: true, expectContinue } };
}

/** An upstream (HTTP/1.1) response head as h2 headers: connection-specific fields gone, needles masked. */
export function h2ResponseHeaders(status: number, headers: HeaderList, needles: string[]): OutgoingHttpHeaders {
  let list = stripHopByHop([...headers]);
  if (needles.length > 0) list = scrubHeaderList(list, needles);
  const out: OutgoingHttpHeaders = { ":status": status };
  appendFields(out, list);
  return out;
}

/** Trailers (from a chunked upstream response) as h2 trailers, needles masked. */
export function h2Trailers(trailers: HeaderList, needles: string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  appendFields(out, needles.length > 0 ? scrubHeaderList(trailers, needles) : trailers);
  return out;
}

function appendFields(out: OutgoingHttpHeaders, list: HeaderList): void {
  for (const [n, v] of list) {
    const name = n.toLowerCase();
    if (CONNECTION_SPECIFIC.has(name) || name === "te" || name.startsWith(":")) continue;
    const prev = out[name];
    if (prev === undefined) out[name] = v;
    else if (Array.isArray(prev)) prev.push(v);
    else out[name] = [String(prev), v];
  }
}

/** A whole HTTP/1.1 response the decider wrote (a refusal, 202, 502) as h2 headers and body. */
export function h2Reply(data: Uint8Array): { headers: OutgoingHttpHeaders; body: Uint8Array } {
  const parser = new Http1Parser("response");
  parser.expectResponseTo("GET");
  const events = [...parser.push(data), ...parser.end()];
  const parts: Uint8Array[] = [];
  let headers: OutgoingHttpHeaders = { ":status": 502 };
  for (const ev of events) {
    if (ev.type === "head" && "status" in ev.head) headers = h2ResponseHeaders(ev.head.status, ev.head.headers, []);
    else if (ev.type === "body") parts.push(ev.data);
  }
  return { headers, body: Buffer.concat(parts) };
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
