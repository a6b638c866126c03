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

/** The outbound request (the decider's head, credential injected) as an h2 upstream stream's headers. */
export function h2RequestHeaders(head: { method: string; target: string; headers: HeaderList }, sni: string, port: number, teTrailers: boolean): OutgoingHttpHeaders {
  const authority = head.headers.find(([n]) => n.toLowerCase() === "host")?.[1] ?? (port === 443 ? sni : `${sni}:${port}`);
  const out: OutgoingHttpHeaders = { ":method": head.method, ":scheme": "https", ":authority": authority, ":path": head.target };
  // Framing is h2's own: no Transfer-Encoding; te passes only as the agent's "trailers" (gRPC needs it).
  appendFields(out, head.headers);
  if (teTrailers) out["te"] = "trailers";
  return out;
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

/** gRPC's status for an HTTP status (grpc/doc/http-grpc-status-mapping.md). */
const GRPC_STATUS: Record<number, number> = { 400: 13, 401: 16, 403: 7, 404: 12, 405: 12, 429: 8, 202: 14, 502: 14, 503: 14, 504: 14 };

/**
 * A refusal (or 202, 502) on a gRPC stream, as a gRPC client reads one: a
 * trailers-only response with grpc-status and grpc-message (the reason),
 * not a JSON body it cannot parse.
 */
export function grpcReply(reply: { headers: OutgoingHttpHeaders; body: Uint8Array }): OutgoingHttpHeaders {
  const status = Number(reply.headers[":status"]);
  let message = `HTTP ${status}`;
  try {
    const j = JSON.parse(Buffer.from(reply.body).toString("utf8")) as { reason?: string; error?: string; rule?: string | null };
    message = [j.error, j.rule ? `rule ${j.rule}` : undefined, j.reason].filter(Boolean).join(": ");
  } catch {
    // Not the gateway's JSON: the status alone says it.
  }
  return { ":status": 200, "content-type": "application/grpc", "grpc-status": String(GRPC_STATUS[status] ?? 2), "grpc-message": encodeURIComponent(message) };
}

export function isGrpc(h: IncomingHttpHeaders): boolean {
  return String(h["content-type"] ?? "").startsWith("application/grpc");
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
