// HTTP/1.1 parser: every message shape fed whole, cut at every offset,
// byte by byte, and joined with a second message (pg-protocol style).
import { describe, expect, test } from "bun:test";
import { Http1Parser, type ParseEvent, type RequestHead, type ResponseHead } from "../../../app/endpoints/http1/parser.ts";
import type { HeaderList } from "../../../app/endpoints/http1/headers.ts";
import { chunked, concat, cuts, enc, feed, head, normalise, type FeedOptions, type NormEvent } from "./wire.ts";
import type { Role } from "../../../app/endpoints/http1/parser.ts";

const H8: HeaderList = [
  ["Host", "api.example.com"],
  ["User-Agent", "claude-cli/1.0"],
  ["Accept", "*/*"],
  ["Accept-Encoding", "gzip, deflate"],
  ["Authorization", "Bearer placeholder"],
  ["X-Request-Id", "abc-123"],
  ["Cookie", "a=b; c=d"],
  ["Cache-Control", "no-cache"],
];

function req(method: string, target: string, headers: HeaderList, extra: Partial<RequestHead> = {}): RequestHead {
  return { method, target, version: "1.1", headers, bodyKind: { kind: "none" }, keepAlive: true, expectContinue: false, ...extra };
}
function res(status: number, reason: string, headers: HeaderList, extra: Partial<ResponseHead> = {}): ResponseHead {
  return { status, reason, version: "1.1", headers, bodyKind: { kind: "none" }, keepAlive: true, ...extra };
}

interface Case {
  name: string;
  role: Role;
  wire: string;
  expected: NormEvent[];
  opts?: FeedOptions;
  /** The parser is back at a message boundary after this message, so a second one parses. */
  joinable?: boolean;
}

// The second message appended in the "joined" runs.
const NEXT_REQ = head("GET /next HTTP/1.1", [["Host", "n"]]);
const NEXT_REQ_EVENTS: NormEvent[] = [{ type: "head", head: req("GET", "/next", [["Host", "n"]]) }, { type: "end" }];
const NEXT_RES = head("HTTP/1.1 200 OK", [["Content-Length", "2"]]) + "ok";
const NEXT_RES_EVENTS: NormEvent[] = [
  { type: "head", head: res(200, "OK", [["Content-Length", "2"]], { bodyKind: { kind: "length", length: 2 } }) },
  { type: "body", data: "ok" },
  { type: "end" },
];

const postHeaders: HeaderList = [["Host", "h"], ["Content-Length", "11"]];
const chunkHeaders: HeaderList = [["Host", "h"], ["Transfer-Encoding", "chunked"], ["Trailer", "X-Checksum"]];
const wsHeaders: HeaderList = [["Host", "h"], ["Connection", "Upgrade"], ["Upgrade", "websocket"], ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="]];

const cases: Case[] = [
  {
    name: "GET without body, 8 headers",
    role: "request",
    wire: head("GET /v1/models?limit=10 HTTP/1.1", H8),
    expected: [{ type: "head", head: req("GET", "/v1/models?limit=10", H8) }, { type: "end" }],
    joinable: true,
  },
  {
    name: "POST with Content-Length",
    role: "request",
    wire: head("POST /submit HTTP/1.1", postHeaders) + "hello world",
    expected: [
      { type: "head", head: req("POST", "/submit", postHeaders, { bodyKind: { kind: "length", length: 11 } }) },
      { type: "body", data: "hello world" },
      { type: "end" },
    ],
    joinable: true,
  },
  {
    name: "POST with Content-Length: 0",
    role: "request",
    wire: head("POST /x HTTP/1.1", [["Content-Length", "0"]]),
    expected: [{ type: "head", head: req("POST", "/x", [["Content-Length", "0"]], { bodyKind: { kind: "length", length: 0 } }) }, { type: "end" }],
    joinable: true,
  },
  {
    name: "repeated identical Content-Length",
    role: "request",
    wire: head("PUT /x HTTP/1.1", [["Content-Length", "3, 3"], ["content-length", "3"]]) + "abc",
    expected: [
      { type: "head", head: req("PUT", "/x", [["Content-Length", "3, 3"], ["content-length", "3"]], { bodyKind: { kind: "length", length: 3 } }) },
      { type: "body", data: "abc" },
      { type: "end" },
    ],
    joinable: true,
  },
  {
    name: "chunked with extensions and trailers",
    role: "request",
    wire: head("POST /upload HTTP/1.1", chunkHeaders) + chunked([["hello", ";name=val"], [" wor", ' ; a="b c" ;x'], "ld"], [["X-Checksum", "42"]]),
    expected: [
      { type: "head", head: req("POST", "/upload", chunkHeaders, { bodyKind: { kind: "chunked" } }) },
      { type: "body", data: "hello world" },
      { type: "end", trailers: [["X-Checksum", "42"]] },
    ],
    joinable: true,
  },
  {
    name: "chunked with upper-case hex and leading zeros",
    role: "request",
    wire: head("POST /u HTTP/1.1", [["Transfer-Encoding", "Chunked"]]) + "00A\r\n0123456789\r\n0000\r\n\r\n",
    expected: [
      { type: "head", head: req("POST", "/u", [["Transfer-Encoding", "Chunked"]], { bodyKind: { kind: "chunked" } }) },
      { type: "body", data: "0123456789" },
      { type: "end" },
    ],
    joinable: true,
  },
  {
    name: "pipelined requests",
    role: "request",
    wire: head("GET /a HTTP/1.1", [["Host", "h"]]) + head("POST /b HTTP/1.1", [["Content-Length", "2"]]) + "hi" + head("DELETE /c HTTP/1.1", []),
    expected: [
      { type: "head", head: req("GET", "/a", [["Host", "h"]]) },
      { type: "end" },
      { type: "head", head: req("POST", "/b", [["Content-Length", "2"]], { bodyKind: { kind: "length", length: 2 } }) },
      { type: "body", data: "hi" },
      { type: "end" },
      { type: "head", head: req("DELETE", "/c", []) },
      { type: "end" },
    ],
    joinable: true,
  },
  {
    name: "Expect: 100-continue",
    role: "request",
    wire: head("PUT /big HTTP/1.1", [["Content-Length", "4"], ["Expect", "100-Continue"]]) + "data",
    expected: [
      { type: "head", head: req("PUT", "/big", [["Content-Length", "4"], ["Expect", "100-Continue"]], { bodyKind: { kind: "length", length: 4 }, expectContinue: true }) },
      { type: "body", data: "data" },
      { type: "end" },
    ],
    joinable: true,
  },
  {
    name: "HTTP/1.0 keep-alive",
    role: "request",
    wire: head("GET / HTTP/1.0", [["Connection", "Keep-Alive"]]),
    expected: [{ type: "head", head: req("GET", "/", [["Connection", "Keep-Alive"]], { version: "1.0" }) }, { type: "end" }],
    joinable: true,
  },
  {
    name: "HTTP/1.0 without keep-alive ignores what follows",
    role: "request",
    wire: head("GET / HTTP/1.0", []) + NEXT_REQ,
    expected: [{ type: "head", head: req("GET", "/", [], { version: "1.0", keepAlive: false }) }, { type: "end" }],
  },
  {
    name: "Connection: close ignores what follows",
    role: "request",
    wire: head("GET / HTTP/1.1", [["Connection", "close"]]) + NEXT_REQ,
    expected: [{ type: "head", head: req("GET", "/", [["Connection", "close"]], { keepAlive: false }) }, { type: "end" }],
  },
  {
    name: "HTTP/1.2 is understood as 1.1",
    role: "request",
    wire: head("GET / HTTP/1.2", []),
    expected: [{ type: "head", head: req("GET", "/", []) }, { type: "end" }],
    joinable: true,
  },
  {
    name: "bare LF line endings and empty lines before the request line",
    role: "request",
    wire: "\r\n\n" + head("GET /lf HTTP/1.1", [["Host", "h"], ["X-Empty", ""]], "\n"),
    expected: [{ type: "head", head: req("GET", "/lf", [["Host", "h"], ["X-Empty", ""]]) }, { type: "end" }],
    joinable: true,
  },
  {
    name: "mixed line endings",
    role: "request",
    // A CRLF start-line: the head ends at LF CRLF. A bare-LF start-line: at any empty line.
    wire: "GET /mix HTTP/1.1\r\nA: 1\nB: 2\n\r\n" + "GET /mix2 HTTP/1.1\nA: 1\r\n\n",
    expected: [
      { type: "head", head: req("GET", "/mix", [["A", "1"], ["B", "2"]]) },
      { type: "end" },
      { type: "head", head: req("GET", "/mix2", [["A", "1"]]) },
      { type: "end" },
    ],
    joinable: true,
  },
  {
    name: "OWS around values, obs-text kept",
    role: "request",
    wire: "GET / HTTP/1.1\r\nX-A:\t spaced \t\r\nX-B:caf\xe9\r\n\r\n",
    expected: [{ type: "head", head: req("GET", "/", [["X-A", "spaced"], ["X-B", "caf\xe9"]]) }, { type: "end" }],
    joinable: true,
  },
  {
    name: "WebSocket upgrade request, accepted, with early frame bytes",
    role: "request",
    wire: head("GET /ws HTTP/1.1", wsHeaders) + "\x81\x05hello",
    opts: { after: (p) => p.acceptUpgrade() },
    expected: [
      { type: "head", head: req("GET", "/ws", wsHeaders, { upgrade: "websocket" }) },
      { type: "end" },
      { type: "upgrade", rest: "\x81\x05hello" },
    ],
  },
  {
    name: "WebSocket upgrade request, declined, next request parsed",
    role: "request",
    wire: head("GET /ws HTTP/1.1", wsHeaders) + NEXT_REQ,
    opts: { after: (p) => p.declineUpgrade() },
    expected: [{ type: "head", head: req("GET", "/ws", wsHeaders, { upgrade: "websocket" }) }, { type: "end" }, ...NEXT_REQ_EVENTS],
  },
  {
    name: "Upgrade without Connection: upgrade is no upgrade",
    role: "request",
    wire: head("GET / HTTP/1.1", [["Upgrade", "websocket"]]),
    expected: [{ type: "head", head: req("GET", "/", [["Upgrade", "websocket"]]) }, { type: "end" }],
    joinable: true,
  },
  {
    name: "CONNECT, accepted",
    role: "request",
    wire: head("CONNECT api.example.com:443 HTTP/1.1", [["Host", "api.example.com:443"]]) + "\x16\x03\x01",
    opts: { after: (p) => p.acceptUpgrade() },
    expected: [
      { type: "head", head: req("CONNECT", "api.example.com:443", [["Host", "api.example.com:443"]]) },
      { type: "end" },
      { type: "upgrade", rest: "\x16\x03\x01" },
    ],
  },

  // ---- responses ----
  {
    name: "200 with Content-Length",
    role: "response",
    wire: head("HTTP/1.1 200 OK", [["Content-Type", "application/json"], ["Content-Length", "7"]]) + '{"a":1}',
    expected: [
      { type: "head", head: res(200, "OK", [["Content-Type", "application/json"], ["Content-Length", "7"]], { bodyKind: { kind: "length", length: 7 } }) },
      { type: "body", data: '{"a":1}' },
      { type: "end" },
    ],
    joinable: true,
  },
  {
    name: "chunked SSE response with trailers",
    role: "response",
    wire: head("HTTP/1.1 200 OK", [["Transfer-Encoding", "chunked"]]) + chunked(["data: 1\n\n", ["data: 2\n\n", ";x"]], [["X-Done", "1"], ["X-More", "a, b"]]),
    expected: [
      { type: "head", head: res(200, "OK", [["Transfer-Encoding", "chunked"]], { bodyKind: { kind: "chunked" } }) },
      { type: "body", data: "data: 1\n\ndata: 2\n\n" },
      { type: "end", trailers: [["X-Done", "1"], ["X-More", "a, b"]] },
    ],
    joinable: true,
  },
  {
    name: "Transfer-Encoding overrides Content-Length in a response",
    role: "response",
    wire: head("HTTP/1.1 200 OK", [["Content-Length", "99"], ["Transfer-Encoding", "chunked"]]) + chunked(["abc"]),
    expected: [
      { type: "head", head: res(200, "OK", [["Content-Length", "99"], ["Transfer-Encoding", "chunked"]], { bodyKind: { kind: "chunked" } }) },
      { type: "body", data: "abc" },
      { type: "end" },
    ],
    joinable: true,
  },
  {
    name: "100 Continue then final response",
    role: "response",
    wire: head("HTTP/1.1 100 Continue", []) + head("HTTP/1.1 201 Created", [["Content-Length", "0"]]),
    expected: [
      { type: "informational", head: res(100, "Continue", []) },
      { type: "head", head: res(201, "Created", [["Content-Length", "0"]], { bodyKind: { kind: "length", length: 0 } }) },
      { type: "end" },
    ],
    joinable: true,
  },
  {
    name: "103 Early Hints and 100 before the final response",
    role: "response",
    wire: head("HTTP/1.1 103 Early Hints", [["Link", "</s.css>; rel=preload"]]) + head("HTTP/1.1 100 Continue", []) + head("HTTP/1.1 204 No Content", []),
    expected: [
      { type: "informational", head: res(103, "Early Hints", [["Link", "</s.css>; rel=preload"]]) },
      { type: "informational", head: res(100, "Continue", []) },
      { type: "head", head: res(204, "No Content", []) },
      { type: "end" },
    ],
    joinable: true,
  },
  {
    name: "101 Switching Protocols with trailing frame bytes",
    role: "response",
    wire: head("HTTP/1.1 101 Switching Protocols", [["Upgrade", "websocket"], ["Connection", "Upgrade"]]) + "\x81\x02hi\x81\x00",
    opts: { methods: ["GET"] },
    expected: [
      { type: "head", head: res(101, "Switching Protocols", [["Upgrade", "websocket"], ["Connection", "Upgrade"]], { upgrade: "websocket" }) },
      { type: "end" },
      { type: "upgrade", rest: "\x81\x02hi\x81\x00" },
    ],
  },
  {
    name: "CONNECT 200 switches to raw",
    role: "response",
    wire: head("HTTP/1.1 200 Connection established", []) + "\x16\x03\x03",
    opts: { methods: ["CONNECT"] },
    expected: [{ type: "head", head: res(200, "Connection established", []) }, { type: "end" }, { type: "upgrade", rest: "\x16\x03\x03" }],
  },
  {
    name: "HEAD response with Content-Length has no body",
    role: "response",
    wire: head("HTTP/1.1 200 OK", [["Content-Length", "1234"]]),
    opts: { methods: ["HEAD", "GET"] },
    expected: [{ type: "head", head: res(200, "OK", [["Content-Length", "1234"]]) }, { type: "end" }],
    joinable: true,
  },
  {
    name: "204 and 304 have no body",
    role: "response",
    wire: head("HTTP/1.1 204 No Content", [["Content-Length", "5"]]) + head("HTTP/1.1 304 Not Modified", [["Transfer-Encoding", "chunked"]]),
    expected: [
      { type: "head", head: res(204, "No Content", [["Content-Length", "5"]]) },
      { type: "end" },
      { type: "head", head: res(304, "Not Modified", [["Transfer-Encoding", "chunked"]]) },
      { type: "end" },
    ],
    joinable: true,
  },
  {
    name: "no length: body until close",
    role: "response",
    wire: head("HTTP/1.1 200 OK", [["Content-Type", "text/plain"]]) + "streamed until the end\r\n\r\nHTTP/1.1 200 OK\r\n",
    expected: [
      { type: "head", head: res(200, "OK", [["Content-Type", "text/plain"]], { bodyKind: { kind: "until-close" }, keepAlive: false }) },
      { type: "body", data: "streamed until the end\r\n\r\nHTTP/1.1 200 OK\r\n" },
      { type: "end" },
    ],
  },
  {
    name: "final coding other than chunked: until close",
    role: "response",
    wire: head("HTTP/1.1 200 OK", [["Transfer-Encoding", "gzip"]]) + "\x1f\x8b",
    expected: [
      { type: "head", head: res(200, "OK", [["Transfer-Encoding", "gzip"]], { bodyKind: { kind: "until-close" }, keepAlive: false }) },
      { type: "body", data: "\x1f\x8b" },
      { type: "end" },
    ],
  },
  {
    name: "HTTP/1.0 response with keep-alive and length",
    role: "response",
    wire: head("HTTP/1.0 200 OK", [["Connection", "keep-alive"], ["Content-Length", "3"]]) + "abc",
    expected: [
      { type: "head", head: res(200, "OK", [["Connection", "keep-alive"], ["Content-Length", "3"]], { version: "1.0", bodyKind: { kind: "length", length: 3 } }) },
      { type: "body", data: "abc" },
      { type: "end" },
    ],
    joinable: true,
  },
  {
    name: "status line without reason",
    role: "response",
    wire: head("HTTP/1.1 404", [["Content-Length", "0"]]) + head("HTTP/1.1 200 ", [["Content-Length", "0"]]),
    expected: [
      { type: "head", head: res(404, "", [["Content-Length", "0"]], { bodyKind: { kind: "length", length: 0 } }) },
      { type: "end" },
      { type: "head", head: res(200, "", [["Content-Length", "0"]], { bodyKind: { kind: "length", length: 0 } }) },
      { type: "end" },
    ],
    joinable: true,
  },
];

describe("Http1Parser message shapes", () => {
  for (const c of cases) {
    test(c.name, () => {
      const bytes = enc(c.wire);
      for (const [how, chunks] of cuts(bytes)) {
        const got = feed(c.role, chunks, c.opts);
        if (!Bun.deepEquals(got, c.expected)) expect({ how, got }).toEqual({ how, got: c.expected });
      }
    });
    if (c.joinable) {
      test(`${c.name}, joined with a second message`, () => {
        const [next, nextEvents] = c.role === "request" ? [NEXT_REQ, NEXT_REQ_EVENTS] : [NEXT_RES, NEXT_RES_EVENTS];
        const bytes = enc(c.wire + next);
        const opts: FeedOptions = { ...c.opts, methods: [...(c.opts?.methods ?? []), "GET", "GET", "GET", "GET"] };
        const want = [...c.expected, ...nextEvents];
        for (const [how, chunks] of cuts(bytes)) {
          const got = feed(c.role, chunks, opts);
          if (!Bun.deepEquals(got, want)) expect({ how, got }).toEqual({ how, got: want });
        }
      });
    }
  }
});

interface ErrorCase {
  name: string;
  role?: Role;
  wire: string;
  code: number;
  opts?: FeedOptions;
}

const big = "x".repeat(300);
const errorCases: ErrorCase[] = [
  { name: "Transfer-Encoding and Content-Length together", wire: head("POST / HTTP/1.1", [["Content-Length", "5"], ["Transfer-Encoding", "chunked"]]) + chunked(["hello"]), code: 400 },
  { name: "differing Content-Length fields", wire: head("POST / HTTP/1.1", [["Content-Length", "5"], ["Content-Length", "6"]]) + "hello!", code: 400 },
  { name: "differing Content-Length list", wire: head("POST / HTTP/1.1", [["Content-Length", "5, 6"]]) + "hello!", code: 400 },
  { name: "non-numeric Content-Length", wire: head("POST / HTTP/1.1", [["Content-Length", "abc"]]), code: 400 },
  { name: "negative Content-Length", wire: head("POST / HTTP/1.1", [["Content-Length", "-1"]]), code: 400 },
  { name: "signed Content-Length", wire: head("POST / HTTP/1.1", [["Content-Length", "+5"]]) + "hello", code: 400 },
  { name: "empty Content-Length", wire: head("POST / HTTP/1.1", [["Content-Length", ""]]), code: 400 },
  { name: "Content-Length with inner space", wire: head("POST / HTTP/1.1", [["Content-Length", "1 2"]]), code: 400 },
  { name: "Content-Length too large", wire: head("POST / HTTP/1.1", [["Content-Length", "99999999999999999999"]]), code: 413 },
  { name: "Transfer-Encoding gzip", wire: head("POST / HTTP/1.1", [["Transfer-Encoding", "gzip, chunked"]]), code: 501 },
  { name: "Transfer-Encoding identity", wire: head("POST / HTTP/1.1", [["Transfer-Encoding", "identity"]]), code: 501 },
  { name: "Transfer-Encoding chunked twice", wire: head("POST / HTTP/1.1", [["Transfer-Encoding", "chunked"], ["Transfer-Encoding", "chunked"]]), code: 400 },
  { name: "Transfer-Encoding in HTTP/1.0", wire: head("POST / HTTP/1.0", [["Transfer-Encoding", "chunked"]]), code: 400 },
  { name: "obs-fold", wire: "GET / HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n", code: 400 },
  { name: "whitespace before the first field", wire: "GET / HTTP/1.1\r\n X-A: one\r\n\r\n", code: 400 },
  { name: "space before colon", wire: "GET / HTTP/1.1\r\nX-A : one\r\n\r\n", code: 400 },
  { name: "field name not a token", wire: "GET / HTTP/1.1\r\nX(A): one\r\n\r\n", code: 400 },
  { name: "empty field name", wire: "GET / HTTP/1.1\r\n: one\r\n\r\n", code: 400 },
  { name: "field without colon", wire: "GET / HTTP/1.1\r\nX-A one\r\n\r\n", code: 400 },
  { name: "bare CR in a value", wire: "GET / HTTP/1.1\r\nX-A: o\rne\r\n\r\n", code: 400 },
  { name: "NUL in a value", wire: "GET / HTTP/1.1\r\nX-A: o\x00ne\r\n\r\n", code: 400 },
  { name: "bare CR ending a line", wire: "GET / HTTP/1.1\r\nX-A: one\r\r\n\r\n", code: 400 },
  { name: "method not a token", wire: "G(T / HTTP/1.1\r\n\r\n", code: 400 },
  { name: "empty target", wire: "GET  HTTP/1.1\r\n\r\n", code: 400 },
  { name: "space in target", wire: "GET /a b HTTP/1.1\r\n\r\n", code: 400 },
  { name: "control in target", wire: "GET /a\x01b HTTP/1.1\r\n\r\n", code: 400 },
  { name: "missing version", wire: "GET /\r\n\r\n", code: 400 },
  { name: "lower-case version", wire: "GET / http/1.1\r\n\r\n", code: 400 },
  { name: "HTTP/2.0", wire: "GET / HTTP/2.0\r\n\r\n", code: 505 },
  { name: "garbage", wire: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", code: 400 },
  { name: "head over the limit, no end", wire: "GET / HTTP/1.1\r\nX-Big: " + big, code: 431, opts: { limits: { maxHeadBytes: 256 }, eof: false } },
  { name: "head over the limit, complete", wire: head("GET / HTTP/1.1", [["X-Big", big]]), code: 431, opts: { limits: { maxHeadBytes: 256 } } },
  { name: "too many fields", wire: head("GET / HTTP/1.1", Array.from({ length: 11 }, (_, i): [string, string] => [`X-${i}`, "v"])), code: 431, opts: { limits: { maxHeaders: 10 } } },
  { name: "invalid chunk size", wire: head("POST / HTTP/1.1", [["Transfer-Encoding", "chunked"]]) + "zz\r\nhello\r\n0\r\n\r\n", code: 400 },
  { name: "empty chunk size", wire: head("POST / HTTP/1.1", [["Transfer-Encoding", "chunked"]]) + ";ext\r\nhello\r\n0\r\n\r\n", code: 400 },
  { name: "chunk size with junk", wire: head("POST / HTTP/1.1", [["Transfer-Encoding", "chunked"]]) + "5 x\r\nhello\r\n0\r\n\r\n", code: 400 },
  { name: "negative chunk size", wire: head("POST / HTTP/1.1", [["Transfer-Encoding", "chunked"]]) + "-5\r\nhello\r\n0\r\n\r\n", code: 400 },
  { name: "chunk size overflow", wire: head("POST / HTTP/1.1", [["Transfer-Encoding", "chunked"]]) + "fffffffffffffffff\r\n", code: 413 },
  { name: "chunk size line with bare LF", wire: head("POST / HTTP/1.1", [["Transfer-Encoding", "chunked"]]) + "5\nhello\r\n0\r\n\r\n", code: 400 },
  { name: "chunk data too long", wire: head("POST / HTTP/1.1", [["Transfer-Encoding", "chunked"]]) + "5\r\nhello!\r\n0\r\n\r\n", code: 400 },
  { name: "control in chunk extension", wire: head("POST / HTTP/1.1", [["Transfer-Encoding", "chunked"]]) + "5;a\x01\r\nhello\r\n0\r\n\r\n", code: 400 },
  { name: "bad trailer", wire: head("POST / HTTP/1.1", [["Transfer-Encoding", "chunked"]]) + "0\r\nbad trailer\r\n\r\n", code: 400 },
  { name: "trailers over the limit", wire: head("POST / HTTP/1.1", [["Transfer-Encoding", "chunked"]]) + "0\r\nX-T: " + big + "\r\n\r\n", code: 431, opts: { limits: { maxHeadBytes: 256 } } },
  { name: "cut inside a Content-Length body", wire: head("POST / HTTP/1.1", [["Content-Length", "10"]]) + "short", code: 400 },
  { name: "cut inside a chunked body", wire: head("POST / HTTP/1.1", [["Transfer-Encoding", "chunked"]]) + "5\r\nhel", code: 400 },
  { name: "cut inside a head", wire: "GET / HTTP/1.1\r\nHost: h\r\n", code: 400 },
  { name: "response: malformed status line", role: "response", wire: "HTTP/1.1 2x0 OK\r\n\r\n", code: 502 },
  { name: "response: status too short", role: "response", wire: "HTTP/1.1 20\r\n\r\n", code: 502 },
  { name: "response: status below 100", role: "response", wire: "HTTP/1.1 099 X\r\n\r\n", code: 502 },
  { name: "response: status with junk", role: "response", wire: "HTTP/1.1 2000 X\r\n\r\n", code: 502 },
  { name: "response: not HTTP", role: "response", wire: "SSH-2.0-OpenSSH_9.2\r\n\r\n", code: 502 },
  { name: "response: HTTP/2", role: "response", wire: "HTTP/2.0 200 OK\r\n\r\n", code: 502 },
  { name: "response: conflicting Content-Length", role: "response", wire: head("HTTP/1.1 200 OK", [["Content-Length", "1"], ["Content-Length", "2"]]), code: 502 },
  { name: "response: obs-fold", role: "response", wire: "HTTP/1.1 200 OK\r\nX: a\r\n\tb\r\n\r\n", code: 502 },
  { name: "response: gzip, chunked", role: "response", wire: head("HTTP/1.1 200 OK", [["Transfer-Encoding", "gzip, chunked"]]), code: 502 },
  { name: "response: control in reason", role: "response", wire: "HTTP/1.1 200 O\x01K\r\n\r\n", code: 502 },
  { name: "response: cut inside body", role: "response", wire: head("HTTP/1.1 200 OK", [["Content-Length", "10"]]) + "short", code: 502 },
];

describe("Http1Parser errors", () => {
  for (const c of errorCases) {
    test(`${c.name} -> ${c.code}`, () => {
      const role = c.role ?? "request";
      const bytes = enc(c.wire);
      let reference: NormEvent[] | undefined;
      for (const [how, chunks] of cuts(bytes)) {
        const got = feed(role, chunks, c.opts);
        const last = got[got.length - 1];
        if (last?.type !== "error" || last.code !== c.code) expect({ how, got: got as unknown }).toEqual({ how, got: `ending in an error with code ${c.code}` });
        expect(got.filter((e) => e.type === "error").length).toBe(1);
        reference ??= got;
        if (!Bun.deepEquals(got, reference)) expect({ how, got }).toEqual({ how, got: reference });
      }
    });
  }

  test("a dead parser returns nothing", () => {
    const p = new Http1Parser("request");
    const ev = p.push(enc("BAD\r\n\r\n"));
    expect(ev.map((e) => e.type)).toEqual(["error"]);
    expect(p.push(enc(head("GET / HTTP/1.1", [])))).toEqual([]);
    expect(p.end()).toEqual([]);
  });

  test("too many bytes while an upgrade is undecided", () => {
    const p = new Http1Parser("request", { maxHeadBytes: 128 });
    const ev = normalise(p.push(enc(head("CONNECT h:443 HTTP/1.1", []))));
    expect(ev.map((e) => e.type)).toEqual(["head", "end"]);
    expect(p.awaitingUpgrade).toBe(true);
    expect(p.push(new Uint8Array(100))).toEqual([]);
    const err = p.push(new Uint8Array(100));
    expect(err).toEqual([{ type: "error", code: 400, message: "too many bytes before the upgrade was decided" }]);
  });

  test("acceptUpgrade without a waiting upgrade throws (caller bug)", () => {
    const p = new Http1Parser("request");
    expect(() => p.acceptUpgrade()).toThrow();
    expect(() => p.declineUpgrade()).toThrow();
  });
});

describe("Http1Parser streaming behaviour", () => {
  test("body bytes are subarrays of the pushed chunk, not copies", () => {
    const p = new Http1Parser("request");
    const bytes = enc(head("POST / HTTP/1.1", [["Content-Length", "5"]]) + "hello");
    const ev = p.push(bytes);
    const body = ev.find((e): e is Extract<ParseEvent, { type: "body" }> => e.type === "body")!;
    expect(body.data.buffer).toBe(bytes.buffer);
  });

  test("chunk data after a split size line is not copied", () => {
    const p = new Http1Parser("response");
    p.push(enc(head("HTTP/1.1 200 OK", [["Transfer-Encoding", "chunked"]]) + "1"));
    const tail = enc("0\r\n" + "y".repeat(16) + "\r\n");
    const ev = p.push(tail);
    const body = ev.find((e): e is Extract<ParseEvent, { type: "body" }> => e.type === "body")!;
    expect(body.data.buffer).toBe(tail.buffer);
    expect(body.data.length).toBe(16);
  });

  test("SSE events come out as they arrive", () => {
    const p = new Http1Parser("response");
    p.expectResponseTo("GET");
    const first = p.push(enc(head("HTTP/1.1 200 OK", [["Transfer-Encoding", "chunked"]]) + "9\r\ndata: 1\n\n\r\n"));
    expect(normalise(first).map((e) => e.type)).toEqual(["head", "body"]);
    const second = normalise(p.push(enc("9\r\ndata: 2\n\n\r\n")));
    expect(second).toEqual([{ type: "body", data: "data: 2\n\n" }]);
    expect(normalise(p.push(enc("0\r\n\r\n")))).toEqual([{ type: "end" }]);
    expect(p.idle).toBe(true);
  });

  test("large Content-Length body is passed through in pieces", () => {
    const p = new Http1Parser("request");
    const n = 1 << 20;
    p.push(enc(head("PUT / HTTP/1.1", [["Content-Length", String(n)]])));
    let total = 0;
    let ended = false;
    const piece = new Uint8Array(65536);
    for (let i = 0; i < n / piece.length; i++) {
      for (const e of p.push(piece)) {
        if (e.type === "body") total += e.data.length;
        if (e.type === "end") ended = true;
      }
    }
    expect(total).toBe(n);
    expect(ended).toBe(true);
  });

  test("pipelined responses follow the queued methods", () => {
    const p = new Http1Parser("response");
    p.expectResponseTo("HEAD");
    p.expectResponseTo("GET");
    const wire = head("HTTP/1.1 200 OK", [["Content-Length", "3"]]) + head("HTTP/1.1 200 OK", [["Content-Length", "3"]]) + "abc";
    const ev = normalise(p.push(enc(wire)));
    expect(ev.map((e) => e.type)).toEqual(["head", "end", "head", "body", "end"]);
  });

  test("methods compare case-sensitively: a response to `head` has its body (RFC 9110 §9.1)", () => {
    const p = new Http1Parser("response");
    p.expectResponseTo("head");
    const ev = normalise(p.push(enc(head("HTTP/1.1 200 OK", [["Content-Length", "3"]]) + "abc")));
    expect(ev.map((e) => e.type)).toEqual(["head", "body", "end"]);
    expect(p.idle).toBe(true);
  });

  test("raw bytes after an upgrade pass through untouched", () => {
    const p = new Http1Parser("response");
    p.expectResponseTo("GET");
    const ev = p.push(enc(head("HTTP/1.1 101 Switching Protocols", [["Upgrade", "websocket"]])));
    expect(ev.map((e) => e.type)).toEqual(["head", "end", "upgrade"]);
    const frame = enc("\x81\x00");
    const raw = p.push(frame);
    expect(raw).toEqual([{ type: "raw", data: frame }]);
    expect(p.end()).toEqual([]);
  });

  test("end() on an idle connection says nothing", () => {
    const p = new Http1Parser("request");
    p.push(enc(head("GET / HTTP/1.1", []) + "\r\n"));
    expect(p.end()).toEqual([]);
  });
});
