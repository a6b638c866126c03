// HTTP/1.1 message serialisation: heads, chunk framing, and small complete
// answers the gateway makes itself (403 deny, 502 bad gateway).
//
// Strings go out as latin1, the inverse of the parser, so bytes the agent
// sent round-trip unchanged. Names and values are checked before writing:
// a CR or LF in a value (say, a secret read with its trailing newline)
// would let one header smuggle in others, so it throws instead; the
// per-connection shell turns that into a closed connection, never into
// bytes on the wire.

import { isFieldValue, isToken, setHeader, type HeaderList } from "./headers.ts";

/** Reason phrases (RFC 9110 §15) for the status codes a gateway meets. */
export const STATUS_REASONS: Readonly<Record<number, string>> = {
  100: "Continue",
  101: "Switching Protocols",
  102: "Processing",
  103: "Early Hints",
  200: "OK",
  201: "Created",
  202: "Accepted",
  203: "Non-Authoritative Information",
  204: "No Content",
  205: "Reset Content",
  206: "Partial Content",
  207: "Multi-Status",
  300: "Multiple Choices",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  402: "Payment Required",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  407: "Proxy Authentication Required",
  408: "Request Timeout",
  409: "Conflict",
  410: "Gone",
  411: "Length Required",
  412: "Precondition Failed",
  413: "Content Too Large",
  414: "URI Too Long",
  415: "Unsupported Media Type",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  421: "Misdirected Request",
  422: "Unprocessable Content",
  425: "Too Early",
  426: "Upgrade Required",
  428: "Precondition Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  451: "Unavailable For Legal Reasons",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
  511: "Network Authentication Required",
};

export interface RequestHeadInit {
  method: string;
  target: string;
  headers: HeaderList;
}

export interface ResponseHeadInit {
  status: number;
  /** Defaults to the RFC 9110 phrase for the status, or "" when unknown. */
  reason?: string;
  headers: HeaderList;
}

function writeFields(s: string, headers: HeaderList): string {
  for (const [name, value] of headers) {
    if (!isToken(name)) throw new TypeError(`invalid header field name: ${JSON.stringify(name)}`);
    if (!isFieldValue(value)) throw new TypeError(`invalid value for header field ${name}`);
    s += name + ": " + value + "\r\n";
  }
  return s + "\r\n";
}

function latin1Bytes(s: string): Uint8Array {
  return Buffer.from(s, "latin1");
}

/** `method SP target SP HTTP/1.1 CRLF fields CRLF`. Throws TypeError on a value that cannot be sent. */
export function serializeRequestHead(head: RequestHeadInit): Uint8Array {
  if (!isToken(head.method)) throw new TypeError(`invalid method: ${JSON.stringify(head.method)}`);
  const t = head.target;
  if (t.length === 0) throw new TypeError("empty request target");
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f || c > 0xff) throw new TypeError(`invalid request target: ${JSON.stringify(t)}`);
  }
  return latin1Bytes(writeFields(head.method + " " + t + " HTTP/1.1\r\n", head.headers));
}

/** `HTTP/1.1 SP status SP reason CRLF fields CRLF`. Throws TypeError on a value that cannot be sent. */
export function serializeResponseHead(head: ResponseHeadInit): Uint8Array {
  const { status } = head;
  if (!Number.isInteger(status) || status < 100 || status > 999) throw new TypeError(`invalid status: ${status}`);
  const reason = head.reason ?? STATUS_REASONS[status] ?? "";
  if (!isFieldValue(reason)) throw new TypeError("invalid reason phrase");
  return latin1Bytes(writeFields("HTTP/1.1 " + status + " " + reason + "\r\n", head.headers));
}

const CRLF_BYTES = new Uint8Array([0x0d, 0x0a]);

/**
 * Chunk framing for `data` as three buffers `[size CRLF, data, CRLF]`, so
 * the body bytes are written as they are, never copied. Empty data gives no
 * buffers: a zero-size chunk would end the body.
 */
export function encodeChunk(data: Uint8Array): Uint8Array[] {
  if (data.length === 0) return [];
  return [latin1Bytes(data.length.toString(16) + "\r\n"), data, CRLF_BYTES];
}

/** last-chunk and the empty trailer section: `0 CRLF CRLF`. */
export const LAST_CHUNK: Uint8Array = new Uint8Array([0x30, 0x0d, 0x0a, 0x0d, 0x0a]);

/** last-chunk followed by trailer fields. With no trailers, equal to LAST_CHUNK. */
export function encodeLastChunk(trailers?: HeaderList): Uint8Array {
  if (!trailers || trailers.length === 0) return LAST_CHUNK;
  return latin1Bytes(writeFields("0\r\n", trailers));
}

/**
 * A complete response made by the gateway: head and body in one buffer,
 * with Content-Length set (replacing any given). A string body is UTF-8.
 */
export function simpleResponse(status: number, headers: HeaderList, body: string | Uint8Array = ""): Uint8Array {
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
  const h: HeaderList = headers.map(([n, v]) => [n, v]);
  setHeader(h, "Content-Length", String(bytes.length));
  const head = serializeResponseHead({ status, headers: h });
  const out = new Uint8Array(head.length + bytes.length);
  out.set(head, 0);
  out.set(bytes, head.length);
  return out;
}
