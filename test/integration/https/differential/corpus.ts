// The attack corpus: what a hostile agent sends inside an intercepted TLS
// session, and what must come of it. `h` is the Host value the agent would
// normally send (api.test:PORT). Every attack also runs the harness's
// generic checks: the agent never receives the secret, the upstream parses
// no request the gateway did not judge and allow, and no credential goes to
// another host.

/** What one upstream (or all) must produce for an attack. */
export interface Expect {
  /** Status codes of the responses the agent gets, in order. */
  statuses: number[];
  /** "METHOD target" of every request the upstream parses, in order. */
  sees: string[];
}

export interface Attack {
  name: string;
  /** The bytes the agent writes, at once. */
  send(h: string): string;
  /** Methods of the requests sent, for framing the agent's responses (HEAD). */
  methods?: string[];
  expect: Expect;
  /** Per-upstream exceptions (the lenient server's careless answers). */
  byUpstream?: Record<string, Expect>;
}

const auth = "Authorization: Bearer placeholder-token\r\n";
const get = (target: string, h: string, extra = "") => `GET ${target} HTTP/1.1\r\nHost: ${h}\r\n${auth}${extra}Connection: close\r\n\r\n`;
const refused = (status: number): Expect => ({ statuses: [status], sees: [] });
const ok = (...sees: string[]): Expect => ({ statuses: sees.map(() => 200), sees });

export const CORPUS: Attack[] = [
  // --- the baseline: a plain request goes through --------------------------------
  { name: "baseline GET", send: (h) => get("/echo", h), expect: ok("GET /echo") },
  {
    name: "two pipelined requests keep their order",
    send: (h) => `GET /a HTTP/1.1\r\nHost: ${h}\r\n${auth}\r\n` + get("/b", h),
    expect: ok("GET /a", "GET /b"),
  },

  // --- class 1: methods and pooled state --------------------------------------------
  { name: "lower-case method", send: (h) => `get /echo HTTP/1.1\r\nHost: ${h}\r\n${auth}\r\n`, expect: refused(501) },
  {
    name: "CONNECT inside the session, a request after it",
    send: (h) => `CONNECT evil.test:443 HTTP/1.1\r\nHost: ${h}\r\n${auth}\r\n` + get("/smuggled", h),
    expect: refused(405),
  },
  { name: "TRACE reflects the credential", send: (h) => `TRACE /echo HTTP/1.1\r\nHost: ${h}\r\n${auth}\r\n`, expect: refused(405) },
  { name: "unknown method", send: (h) => `PROPFIND /echo HTTP/1.1\r\nHost: ${h}\r\n${auth}Content-Length: 0\r\n\r\n`, expect: refused(501) },
  {
    name: "HEAD answered with a body, then another request",
    send: (h) => `HEAD /head HTTP/1.1\r\nHost: ${h}\r\n${auth}\r\n` + get("/after-head", h),
    methods: ["HEAD", "GET"],
    expect: ok("HEAD /head", "GET /after-head"),
  },
  { name: "a request on a fresh connection after HEAD gets its own answer", send: (h) => get("/after-head-2", h), expect: ok("GET /after-head-2") },

  // --- class 2: framing the gateway forwards -------------------------------------------
  {
    name: "GET with a body holding a second request",
    send: (h) => {
      const inner = `GET /smuggled HTTP/1.1\r\nHost: ${h}\r\n\r\n`;
      return `GET /echo HTTP/1.1\r\nHost: ${h}\r\n${auth}Content-Length: ${inner.length}\r\n\r\n${inner}`;
    },
    expect: refused(400),
  },
  {
    name: "GET chunked",
    send: (h) => `GET /echo HTTP/1.1\r\nHost: ${h}\r\n${auth}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    expect: refused(400),
  },
  {
    name: "Content-Length and Transfer-Encoding together",
    send: (h) => `POST /echo HTTP/1.1\r\nHost: ${h}\r\n${auth}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    expect: refused(400),
  },
  {
    name: "POST chunked is forwarded with a length",
    send: (h) => `POST /upload HTTP/1.1\r\nHost: ${h}\r\n${auth}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    expect: ok("POST /upload"),
  },

  // --- class 5: the credential goes only to its endpoint ---------------------------------
  { name: "Host naming another server", send: () => get("/echo", "evil.test"), expect: refused(421) },
  { name: "two Host headers", send: (h) => get("/echo", h, "Host: evil.test\r\n"), expect: refused(400) },
  { name: "Host with userinfo", send: () => get("/echo", "evil.test@api.test"), expect: refused(400) },
  { name: "Host in brackets", send: () => get("/echo", "[::1]"), expect: refused(400) },
  { name: "absolute-form naming another authority", send: (h) => get("https://evil.test/echo", h), expect: refused(421) },
  { name: "absolute-form naming this authority", send: (h) => get(`https://${h}/abs?x=1`, h), expect: ok("GET /abs?x=1") },
  { name: "Connection naming Host", send: (h) => get("/echo", h).replace("Connection: close", "Connection: close, host"), expect: refused(400) },
  {
    name: "Connection naming the credential's header",
    send: (h) => get("/echo", h).replace("Connection: close", "Connection: close, authorization"),
    expect: refused(400),
  },

  // --- class 4: rules judge the path the upstream acts on ----------------------------------
  { name: "a denied path", send: (h) => get("/admin", h), expect: refused(403) },
  { name: "a denied path, unreserved characters escaped", send: (h) => get("/%61dmin", h), expect: refused(403) },
  { name: "a denied path behind repeated slashes", send: (h) => get("//admin", h), expect: refused(403) },
  { name: "dot-segments", send: (h) => get("/public/../admin", h), expect: refused(400) },
  { name: "escaped dot-segments", send: (h) => get("/public/%2e%2E/admin", h), expect: refused(400) },
  { name: "an encoded slash", send: (h) => get("/public%2F..%2Fadmin", h), expect: refused(400) },
  { name: "a backslash", send: (h) => get("/public\\..\\admin", h), expect: refused(400) },
  { name: "escapes normalised before forwarding", send: (h) => get("/%7euser/a%2b", h), expect: ok("GET /~user/a%2B") },

  // --- class 3: the secret never comes back ------------------------------------------------
  { name: "the upstream echoes the credential", send: (h) => get("/echo-auth", h), expect: ok("GET /echo-auth") },
  // Coded bodies despite identity: decoded, masked, coded again; or refused.
  { name: "a gzip body despite identity", send: (h) => get("/gzip", h, "Accept-Encoding: gzip\r\n"), expect: ok("GET /gzip") },
  { name: "a chunked gzip body", send: (h) => get("/gzip-chunked", h), expect: ok("GET /gzip-chunked") },
  { name: "a deflate body", send: (h) => get("/deflate", h), expect: ok("GET /deflate") },
  { name: "a br body", send: (h) => get("/br", h), expect: ok("GET /br") },
  {
    name: "stacked codings",
    send: (h) => get("/stacked", h),
    expect: ok("GET /stacked"),
    byUpstream: { lenient: { statuses: [502], sees: ["GET /stacked"] } },
  },
  {
    name: "a body that does not decode",
    send: (h) => get("/bad-gzip", h),
    expect: ok("GET /bad-gzip"),
    byUpstream: { lenient: { statuses: [502], sees: ["GET /bad-gzip"] } },
  },
  {
    name: "103 Early Hints reflecting the credential",
    send: (h) => get("/hints", h),
    expect: ok("GET /hints"),
    byUpstream: { lenient: { statuses: [103, 200], sees: ["GET /hints"] } },
  },
  { name: "the credential echoed in base64", send: (h) => get("/b64", h), expect: ok("GET /b64") },
  {
    name: "a compression extension the gateway did not offer",
    send: (h) =>
      `GET /ws-deflate HTTP/1.1\r\nHost: ${h}\r\n${auth}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    expect: ok("GET /ws-deflate"),
    byUpstream: { lenient: { statuses: [502], sees: ["GET /ws-deflate"] } },
  },
  { name: "the credential in the reason phrase", send: (h) => get("/reason", h), expect: ok("GET /reason") },
  { name: "the credential as a header name", send: (h) => get("/header-name", h), expect: ok("GET /header-name") },
  { name: "the credential in a trailer", send: (h) => get("/trailers", h, "TE: trailers\r\n"), expect: ok("GET /trailers") },
  { name: "both framings in a response", send: (h) => get("/both-lengths", h), expect: ok("GET /both-lengths") },
  {
    name: "WebSocket frames after an upgrade",
    send: (h) =>
      `GET /ws HTTP/1.1\r\nHost: ${h}\r\n${auth}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n`,
    expect: ok("GET /ws"),
    byUpstream: { lenient: { statuses: [101], sees: ["GET /ws"] } },
  },
  {
    name: "an upgrade to h2c (HTTP/2 requests no rule would see)",
    send: (h) => `GET /echo HTTP/1.1\r\nHost: ${h}\r\n${auth}Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n`,
    expect: refused(400),
  },
  {
    name: "an unasked 101",
    send: (h) => get("/switch", h),
    expect: ok("GET /switch"),
    byUpstream: { lenient: { statuses: [502], sees: ["GET /switch"] } },
  },
];
