// The HTTP CONNECT side of the explicit proxy: request heads built from
// values, fed whole and at every cut (need-more until the head is complete,
// then one outcome), plus the authority-form and Proxy-Authorization parsers.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  MAX_CONNECT_HEAD,
  parseAuthority,
  parseConnectHead,
  tokenFromProxyAuthorization,
  type ConnectParse,
} from "../../../app/net/proxy/connect.ts";
import type { HeaderList } from "../../../app/endpoints/http1/headers.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");

function head(requestLine: string, headers: [string, string][] = [], tail = ""): Uint8Array {
  return enc(requestLine + "\r\n" + headers.map(([k, v]) => `${k}: ${v}\r\n`).join("") + "\r\n" + tail);
}

/** A parse with `rest` as text, so tables read well. */
type Outcome =
  | { kind: "need-more" }
  | { kind: "connect" | "forward"; host: string; port: number; token?: string; rest: string }
  | { kind: "reject"; status: number; message?: string };

function outcome(r: ConnectParse, withMessage: boolean): Outcome {
  switch (r.kind) {
    case "need-more":
      return r;
    case "connect":
    case "forward": {
      const o: Outcome = { kind: r.kind, host: r.host, port: r.port, rest: new TextDecoder().decode(r.rest) };
      if (r.token !== undefined) o.token = r.token;
      return o;
    }
    case "reject":
      return withMessage ? { kind: "reject", status: r.status, message: r.message } : { kind: "reject", status: r.status };
  }
}

interface Case {
  name: string;
  wire: Uint8Array;
  expect: Outcome;
}

const CASES: Case[] = [
  {
    name: "CONNECT host:port",
    wire: head("CONNECT api.github.com:443 HTTP/1.1", [["Host", "api.github.com:443"]]),
    expect: { kind: "connect", host: "api.github.com", port: 443, rest: "" },
  },
  {
    name: "CONNECT host is lower-cased",
    wire: head("CONNECT API.GitHub.COM:443 HTTP/1.1"),
    expect: { kind: "connect", host: "api.github.com", port: 443, rest: "" },
  },
  {
    name: "CONNECT IPv4:port",
    wire: head("CONNECT 10.1.2.3:8443 HTTP/1.1"),
    expect: { kind: "connect", host: "10.1.2.3", port: 8443, rest: "" },
  },
  {
    name: "CONNECT [v6]:port drops the brackets",
    wire: head("CONNECT [2001:DB8::1]:443 HTTP/1.1"),
    expect: { kind: "connect", host: "2001:db8::1", port: 443, rest: "" },
  },
  {
    name: "CONNECT over HTTP/1.0 (some clients still send it)",
    wire: head("CONNECT example.com:443 HTTP/1.0"),
    expect: { kind: "connect", host: "example.com", port: 443, rest: "" },
  },
  {
    name: "early bytes after the head (a ClientHello sent before 200) are returned in rest",
    wire: head("CONNECT example.com:443 HTTP/1.1", [["Host", "example.com:443"]], "\x16\x03\x01\x00\x05hello"),
    expect: { kind: "connect", host: "example.com", port: 443, rest: "\x16\x03\x01\x00\x05hello" },
  },
  {
    name: "a CONNECT's Content-Length does not eat the tunnel's first bytes",
    wire: head("CONNECT example.com:443 HTTP/1.1", [["Content-Length", "5"]], "hello world"),
    expect: { kind: "connect", host: "example.com", port: 443, rest: "hello world" },
  },
  {
    name: "token from Basic base64(user:token) (curl -U device:TOKEN)",
    wire: head("CONNECT a.example:443 HTTP/1.1", [["Proxy-Authorization", `Basic ${b64("laptop:cpd_secret1")}`]]),
    expect: { kind: "connect", host: "a.example", port: 443, token: "cpd_secret1", rest: "" },
  },
  {
    name: "token from Basic base64(token:) (token as the user name)",
    wire: head("CONNECT a.example:443 HTTP/1.1", [["Proxy-Authorization", `Basic ${b64("cpd_secret2:")}`]]),
    expect: { kind: "connect", host: "a.example", port: 443, token: "cpd_secret2", rest: "" },
  },
  {
    name: "token from Bearer token; header name matched case-insensitively",
    wire: head("CONNECT a.example:443 HTTP/1.1", [["proxy-authorization", "Bearer cpd_secret3"]]),
    expect: { kind: "connect", host: "a.example", port: 443, token: "cpd_secret3", rest: "" },
  },
  {
    name: "garbage Proxy-Authorization: no token, still a connect (the caller refuses or uses the default profile)",
    wire: head("CONNECT a.example:443 HTTP/1.1", [["Proxy-Authorization", "Digest username=x"]]),
    expect: { kind: "connect", host: "a.example", port: 443, rest: "" },
  },
  // rejections
  // plain HTTP in absolute-form: forwarded, the whole head handed on (the session parses it again)
  {
    name: "GET http://host/ through the proxy: forward to port 80",
    wire: head("GET http://example.com/ HTTP/1.1", [["Host", "example.com"]]),
    expect: { kind: "forward", host: "example.com", port: 80, rest: "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n" },
  },
  {
    name: "POST http://HOST:port/x with a token: forward to that port, the host lower-cased, the body kept",
    wire: head("POST http://Example.COM:8080/x?y=1 HTTP/1.1", [["Content-Length", "2"], ["Proxy-Authorization", `Basic ${b64("dev:tok")}`]], "hi"),
    expect: {
      kind: "forward",
      host: "example.com",
      port: 8080,
      token: "tok",
      rest: `POST http://Example.COM:8080/x?y=1 HTTP/1.1\r\nContent-Length: 2\r\nProxy-Authorization: Basic ${b64("dev:tok")}\r\n\r\nhi`,
    },
  },
  { name: "GET with an origin-form target: 405", wire: head("GET / HTTP/1.1", [["Host", "example.com"]]), expect: { kind: "reject", status: 405 } },
  { name: "GET https://host/ (a client that should CONNECT): 405", wire: head("GET https://example.com/ HTTP/1.1"), expect: { kind: "reject", status: 405 } },
  { name: "GET http://user@host/ (userinfo): 405", wire: head("GET http://u@example.com/ HTTP/1.1"), expect: { kind: "reject", status: 405 } },
  { name: "lower-case connect is another method (RFC 9110 §9.1): 405", wire: head("connect a:443 HTTP/1.1"), expect: { kind: "reject", status: 405 } },
  { name: "CONNECT without a port: 400", wire: head("CONNECT example.com HTTP/1.1"), expect: { kind: "reject", status: 400 } },
  { name: "CONNECT to port 0: 400", wire: head("CONNECT example.com:0 HTTP/1.1"), expect: { kind: "reject", status: 400 } },
  { name: "CONNECT to port 65536: 400", wire: head("CONNECT example.com:65536 HTTP/1.1"), expect: { kind: "reject", status: 400 } },
  { name: "CONNECT with an origin-form target: 400", wire: head("CONNECT / HTTP/1.1"), expect: { kind: "reject", status: 400 } },
  { name: "CONNECT with an absolute-form target: 400", wire: head("CONNECT https://example.com:443/ HTTP/1.1"), expect: { kind: "reject", status: 400 } },
  { name: "CONNECT [v6] without a port: 400", wire: head("CONNECT [::1] HTTP/1.1"), expect: { kind: "reject", status: 400 } },
  { name: "a request line that is not HTTP: 400", wire: enc("hello there\r\n\r\n"), expect: { kind: "reject", status: 400 } },
  { name: "an empty head: 400", wire: enc("\r\n\r\n"), expect: { kind: "reject", status: 400 } },
];

describe("parseConnectHead", () => {
  test.each(CASES.map((c) => [c.name, c] as const))("%s", (_name, c) => {
    expect(outcome(parseConnectHead(c.wire), false)).toEqual(c.expect);
  });

  test.each(CASES.map((c) => [c.name, c] as const))("%s: need-more at every cut until the head is complete", (_name, c) => {
    const text = new TextDecoder().decode(c.wire);
    const headLen = text.indexOf("\r\n\r\n") + 4;
    for (let i = 0; i < headLen; i++) {
      const r = parseConnectHead(c.wire.subarray(0, i));
      if (r.kind !== "need-more") throw new Error(`prefix of ${i} bytes: ${JSON.stringify(r)}`);
    }
    // From the complete head on, every longer prefix gives the same decision;
    // only `rest` grows with the early bytes received so far.
    for (let i = headLen; i <= c.wire.length; i++) {
      const got = outcome(parseConnectHead(c.wire.subarray(0, i)), false);
      const want =
        c.expect.kind === "connect" ? { ...c.expect, rest: text.slice(headLen, i) } : c.expect.kind === "forward" ? { ...c.expect, rest: text.slice(0, i) } : c.expect;
      if (!Bun.deepEquals(got, want)) throw new Error(`prefix of ${i} bytes: ${JSON.stringify(got)} != ${JSON.stringify(want)}`);
    }
  });

  test("the 405 message tells the user what to do instead", () => {
    expect(outcome(parseConnectHead(head("GET /x HTTP/1.1", [["Host", "x"]])), true)).toEqual({
      kind: "reject",
      status: 405,
      message: "this proxy takes CONNECT host:port, or plain-HTTP requests in absolute-form (GET http://host/path)",
    });
  });

  test("rest is a copy of the early bytes, not a view on the caller's buffer", () => {
    const wire = head("CONNECT a:443 HTTP/1.1", [], "abc");
    const r = parseConnectHead(wire);
    wire.fill(0);
    expect(r.kind === "connect" && new TextDecoder().decode(r.rest)).toBe("abc");
  });

  describe("head size limit (16 KiB)", () => {
    const pad = (n: number) => head("CONNECT a.example:443 HTTP/1.1", [["X-Pad", "x".repeat(n)]]);

    test("up to 16 KiB without the end of the head: need-more", () => {
      const partial = enc("CONNECT a.example:443 HTTP/1.1\r\nX-Pad: " + "x".repeat(MAX_CONNECT_HEAD));
      expect(parseConnectHead(partial.subarray(0, MAX_CONNECT_HEAD)).kind).toBe("need-more");
    });

    test("more than 16 KiB without the end of the head: 431", () => {
      const partial = enc("CONNECT a.example:443 HTTP/1.1\r\nX-Pad: " + "x".repeat(MAX_CONNECT_HEAD));
      expect(outcome(parseConnectHead(partial.subarray(0, MAX_CONNECT_HEAD + 1)), true)).toEqual({
        kind: "reject",
        status: 431,
        message: "request head too large",
      });
    });

    test("a head just under 16 KiB is accepted", () => {
      const wire = pad(MAX_CONNECT_HEAD - 200);
      expect(wire.length).toBeLessThanOrEqual(MAX_CONNECT_HEAD);
      expect(parseConnectHead(wire).kind).toBe("connect");
    });

    // The limit must not depend on how the bytes arrived: the same 17 KB
    // head is 431 when it trickles in, so it must be 431 when it arrives in
    // one read too.
    test("a complete head over 16 KiB is 431 whether it arrives in one read or in pieces", () => {
      const wire = pad(MAX_CONNECT_HEAD + 600);
      let piecewise: ConnectParse = { kind: "need-more" };
      for (let i = 1024; piecewise.kind === "need-more"; i += 1024) {
        piecewise = parseConnectHead(wire.subarray(0, Math.min(i, wire.length)));
        if (i >= wire.length) break;
      }
      expect(outcome(piecewise, false)).toEqual({ kind: "reject", status: 431 });
      expect(outcome(parseConnectHead(wire), false)).toEqual({ kind: "reject", status: 431 });
    });
  });
});

describe("parseAuthority", () => {
  test.each([
    ["api.github.com:443", { host: "api.github.com", port: 443 }],
    ["API.GITHUB.COM:443", { host: "api.github.com", port: 443 }],
    ["1.2.3.4:80", { host: "1.2.3.4", port: 80 }],
    ["localhost:1", { host: "localhost", port: 1 }],
    ["a-b_c.d:65535", { host: "a-b_c.d", port: 65535 }],
    ["[::1]:443", { host: "::1", port: 443 }],
    ["[2001:db8::7]:8443", { host: "2001:db8::7", port: 8443 }],
    ["[FE80::AB]:22", { host: "fe80::ab", port: 22 }],
  ] as const)("%s -> %o", (target, want) => {
    expect(parseAuthority(target)).toEqual(want);
  });

  test.each([
    ["no port", "example.com"],
    ["empty port", "example.com:"],
    ["no host", ":443"],
    ["port 0", "example.com:0"],
    ["port 65536", "example.com:65536"],
    ["signed port", "example.com:+443"],
    ["six-digit port", "example.com:000443"],
    ["space in host", "exa mple.com:443"],
    ["slash in host", "example.com/x:443"],
    ["userinfo", "user@example.com:443"],
    ["v6 without the colon before the port", "[::1]443"],
    ["v6 with no port", "[::1]:"],
    ["unclosed bracket", "[::1:443"],
    ["empty brackets", "[]:443"],
    // RFC 3986 §3.2.2: a reg-name has no ':'; an IPv6 literal must be bracketed.
    ["unbracketed v6 (ambiguous)", "2001:db8::1:443"],
    ["host with an inner colon", "a:1:2"],
    // RFC 3986 §3.2.2: inside brackets only an IPv6 (or IPvFuture) literal.
    ["a name in brackets", "[example.com]:443"],
    ["empty", ""],
  ] as const)("%s (%s) -> undefined", (_why, target) => {
    expect(parseAuthority(target)).toBeUndefined();
  });

  test("never throws, and any result has a port in 1..65535 and a non-empty host", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (s) => {
        const r = parseAuthority(s);
        if (r) {
          expect(r.port).toBeGreaterThanOrEqual(1);
          expect(r.port).toBeLessThanOrEqual(65535);
          expect(r.host.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe("tokenFromProxyAuthorization", () => {
  const h = (v: string): HeaderList => [["Proxy-Authorization", v]];
  test.each([
    ["Basic base64(user:token)", h(`Basic ${b64("device:cpd_t1")}`), "cpd_t1"],
    ["Basic base64(token:)", h(`Basic ${b64("cpd_t2:")}`), "cpd_t2"],
    ["Basic base64(token) with no colon", h(`Basic ${b64("cpd_t3")}`), "cpd_t3"],
    ["Basic with a password that holds a colon", h(`Basic ${b64("dev:cpd:t4")}`), "cpd:t4"],
    ["scheme is case-insensitive (basic)", h(`basic ${b64("dev:cpd_t5")}`), "cpd_t5"],
    ["Bearer token", h("Bearer cpd_t6"), "cpd_t6"],
    ["BEARER token", h("BEARER cpd_t7"), "cpd_t7"],
    ["header name in lower case", [["proxy-authorization", "Bearer cpd_t8"]] as HeaderList, "cpd_t8"],
    ["no header", [["Host", "a:443"]] as HeaderList, undefined],
    ["the agent's own Authorization is not the proxy's", [["Authorization", "Bearer cpd_t9"]] as HeaderList, undefined],
    ["Basic of an empty string", h(`Basic ${b64("")}`), undefined],
    ["Basic of ':'", h(`Basic ${b64(":")}`), undefined],
    ["Basic with no credentials", h("Basic"), undefined],
    ["Bearer with no token", h("Bearer"), undefined],
    ["Bearer with only spaces", h("Bearer    "), undefined],
    ["unknown scheme", h("Digest username=\"x\""), undefined],
    ["no scheme", h("cpd_t10"), undefined],
    ["not base64 at all", h("Basic !!!***"), undefined],
  ] as const)("%s", (_name, headers, want) => {
    expect(tokenFromProxyAuthorization(headers as HeaderList)).toBe(want);
  });

  test("never throws on arbitrary header values", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (v) => {
        const t = tokenFromProxyAuthorization([["Proxy-Authorization", v]]);
        expect(t === undefined || (typeof t === "string" && t.length > 0)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("parseConnectHead properties", () => {
  test("random bytes never throw; outcome is need-more, connect or reject with 400/405/431", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (wire) => {
        const r = parseConnectHead(wire);
        if (r.kind === "reject") expect([400, 405, 431]).toContain(r.status);
        else expect(["need-more", "connect", "forward"]).toContain(r.kind);
      }),
      { numRuns: 2000 },
    );
  });

  test("a valid CONNECT head plus any tail: connect with rest = tail", () => {
    const host = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,15}\.){0,3}[a-z]{2,6}$/);
    fc.assert(
      fc.property(host, fc.integer({ min: 1, max: 65535 }), fc.option(fc.stringMatching(/^cpd_[A-Za-z0-9_-]{8,40}$/), { nil: undefined }), fc.uint8Array({ maxLength: 100 }), (hostname, port, token, tail) => {
        const headers: [string, string][] = [["Host", `${hostname}:${port}`]];
        if (token) headers.push(["Proxy-Authorization", `Basic ${b64(`agent:${token}`)}`]);
        const h = head(`CONNECT ${hostname}:${port} HTTP/1.1`, headers);
        const wire = new Uint8Array(h.length + tail.length);
        wire.set(h);
        wire.set(tail, h.length);
        const r = parseConnectHead(wire);
        const want: ConnectParse = { kind: "connect", host: hostname, port, rest: tail };
        if (token) want.token = token;
        expect(r).toEqual(want);
      }),
      { numRuns: 500 },
    );
  });
});
