// SOCKS5 server handshake (RFC 1928, RFC 1929 sub-negotiation) as playbooks:
// wire bytes built from values, fed whole, at every cut and byte by byte;
// the outcome (what was sent back, and connect / fail) must never depend on
// how the bytes arrived. Random bytes never throw.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  AddressType,
  Command,
  Method,
  Reply,
  SOCKS_VERSION,
  Socks5Handshake,
  reply,
  type Socks5Step,
} from "../../../app/net/proxy/socks5.ts";

// ------------------------------------------------------------ test buffers

const ascii = (s: string) => new TextEncoder().encode(s);
const u16 = (n: number) => [(n >> 8) & 0xff, n & 0xff];

function bytes(...parts: (Uint8Array | number[])[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** RFC 1928 §3: VER NMETHODS METHODS */
const greeting = (...methods: number[]) => bytes([SOCKS_VERSION, methods.length], methods);
/** RFC 1929 §2: VER ULEN UNAME PLEN PASSWD */
const userPass = (user: string, pass: string, ver = 0x01) => {
  const u = ascii(user);
  const p = ascii(pass);
  return bytes([ver, u.length], u, [p.length], p);
};

type Addr = { ipv4: [number, number, number, number] } | { domain: string } | { ipv6: number[] } | { atyp: number; raw: number[] };

/** RFC 1928 §4: VER CMD RSV ATYP DST.ADDR DST.PORT */
function request(addr: Addr, port: number, cmd: number = Command.CONNECT, ver = SOCKS_VERSION): Uint8Array {
  let atyp: number;
  let a: Uint8Array | number[];
  if ("ipv4" in addr) [atyp, a] = [AddressType.IPV4, addr.ipv4];
  else if ("domain" in addr) {
    const d = ascii(addr.domain);
    [atyp, a] = [AddressType.DOMAIN, bytes([d.length], d)];
  } else if ("ipv6" in addr) [atyp, a] = [AddressType.IPV6, addr.ipv6];
  else [atyp, a] = [addr.atyp, addr.raw];
  return bytes([ver, cmd, 0x00, atyp], a, u16(port));
}

const METHOD_NO_AUTH = Uint8Array.of(SOCKS_VERSION, Method.NO_AUTH);
const METHOD_USER_PASS = Uint8Array.of(SOCKS_VERSION, Method.USERNAME_PASSWORD);
const METHOD_NONE_ACCEPTABLE = Uint8Array.of(SOCKS_VERSION, Method.NO_ACCEPTABLE);
const AUTH_OK = Uint8Array.of(0x01, 0x00);
const AUTH_BAD_VERSION = Uint8Array.of(0x01, 0x01);

// ------------------------------------------------------------ the runner

/** What a whole handshake produced, independent of how the bytes were cut. */
type Outcome =
  | { kind: "need-more"; sent: number[] }
  | { kind: "connect"; host: string; port: number; username?: string; password?: string; rest: number[]; sent: number[] }
  | { kind: "fail"; reason: string; sent: number[] };

/**
 * Feed the chunks in order until the handshake finishes. Bytes in chunks
 * after the one that finished it belong to the tunnel, so they join `rest`.
 */
function run(allowAnonymous: boolean, chunks: Uint8Array[]): Outcome {
  const h = new Socks5Handshake(allowAnonymous);
  const sent: number[] = [];
  let last: Socks5Step = { kind: "need-more" };
  let i = 0;
  for (; i < chunks.length; i++) {
    last = h.push(chunks[i]!);
    if (last.send) sent.push(...last.send);
    if (last.kind !== "need-more") {
      i++;
      break;
    }
  }
  const leftover = chunks.slice(i).flatMap((c) => [...c]);
  switch (last.kind) {
    case "need-more":
      return { kind: "need-more", sent };
    case "fail":
      return { kind: "fail", reason: last.reason, sent };
    case "connect": {
      const o: Outcome = { kind: "connect", host: last.host, port: last.port, rest: [...last.rest, ...leftover], sent };
      if (last.username !== undefined) o.username = last.username;
      if (last.password !== undefined) o.password = last.password;
      return o;
    }
  }
}

const whole = (b: Uint8Array) => [b];
const cutAt = (b: Uint8Array, i: number) => [b.subarray(0, i), b.subarray(i)];
const byteByByte = (b: Uint8Array) => [...b].map((x) => Uint8Array.of(x));

// ------------------------------------------------------------ the playbooks

interface Case {
  name: string;
  allowAnonymous: boolean;
  wire: Uint8Array;
  expect: Outcome;
}

const anonConnect = (addr: Addr, port: number) => bytes(greeting(Method.NO_AUTH), request(addr, port));
const authConnect = (user: string, pass: string, addr: Addr, port: number, ...methods: number[]) =>
  bytes(greeting(...(methods.length ? methods : [Method.USERNAME_PASSWORD])), userPass(user, pass), request(addr, port));

const CASES: Case[] = [
  // §3 method selection
  {
    name: "no-auth accepted when anonymous clients are allowed",
    allowAnonymous: true,
    wire: anonConnect({ domain: "api.github.com" }, 443),
    expect: { kind: "connect", host: "api.github.com", port: 443, rest: [], sent: [...METHOD_NO_AUTH] },
  },
  {
    name: "no-auth refused with X'FF' when anonymous clients are not allowed",
    allowAnonymous: false,
    wire: anonConnect({ domain: "api.github.com" }, 443),
    expect: { kind: "fail", reason: "no acceptable authentication method", sent: [...METHOD_NONE_ACCEPTABLE] },
  },
  {
    name: "only GSSAPI offered: no acceptable method even for anonymous",
    allowAnonymous: true,
    wire: greeting(0x01),
    expect: { kind: "fail", reason: "no acceptable authentication method", sent: [...METHOD_NONE_ACCEPTABLE] },
  },
  {
    name: "zero methods offered: no acceptable method",
    allowAnonymous: true,
    wire: greeting(),
    expect: { kind: "fail", reason: "no acceptable authentication method", sent: [...METHOD_NONE_ACCEPTABLE] },
  },
  {
    name: "username/password preferred over no-auth when both are offered",
    allowAnonymous: true,
    wire: authConnect("dev", "cpd_tok", { domain: "example.com" }, 443, Method.NO_AUTH, Method.USERNAME_PASSWORD),
    expect: {
      kind: "connect",
      host: "example.com",
      port: 443,
      username: "dev",
      password: "cpd_tok",
      rest: [],
      sent: [...METHOD_USER_PASS, ...AUTH_OK],
    },
  },
  // RFC 1929 sub-negotiation
  {
    name: "username/password carried to the connect outcome (validity is the caller's call)",
    allowAnonymous: false,
    wire: authConnect("laptop", "cpd_abc123", { ipv4: [10, 0, 0, 7] }, 8080),
    expect: {
      kind: "connect",
      host: "10.0.0.7",
      port: 8080,
      username: "laptop",
      password: "cpd_abc123",
      rest: [],
      sent: [...METHOD_USER_PASS, ...AUTH_OK],
    },
  },
  {
    name: "empty username and password are still passed through",
    allowAnonymous: false,
    wire: authConnect("", "", { domain: "a.b" }, 1),
    expect: { kind: "connect", host: "a.b", port: 1, username: "", password: "", rest: [], sent: [...METHOD_USER_PASS, ...AUTH_OK] },
  },
  {
    name: "255-byte username and password",
    allowAnonymous: false,
    wire: authConnect("u".repeat(255), "p".repeat(255), { domain: "a.b" }, 443),
    expect: {
      kind: "connect",
      host: "a.b",
      port: 443,
      username: "u".repeat(255),
      password: "p".repeat(255),
      rest: [],
      sent: [...METHOD_USER_PASS, ...AUTH_OK],
    },
  },
  {
    name: "sub-negotiation version other than 1 fails with status 1",
    allowAnonymous: false,
    wire: bytes(greeting(Method.USERNAME_PASSWORD), userPass("u", "p", 0x05)),
    expect: { kind: "fail", reason: "bad auth version", sent: [...METHOD_USER_PASS, ...AUTH_BAD_VERSION] },
  },
  // §4/§5 request and addressing
  {
    name: "CONNECT to IPv4 gives a dotted quad",
    allowAnonymous: true,
    wire: anonConnect({ ipv4: [192, 168, 1, 254] }, 443),
    expect: { kind: "connect", host: "192.168.1.254", port: 443, rest: [], sent: [...METHOD_NO_AUTH] },
  },
  {
    name: "CONNECT to 0.0.0.0 and 255.255.255.255 edges",
    allowAnonymous: true,
    wire: anonConnect({ ipv4: [255, 255, 255, 255] }, 65535),
    expect: { kind: "connect", host: "255.255.255.255", port: 65535, rest: [], sent: [...METHOD_NO_AUTH] },
  },
  {
    name: "CONNECT to a domain keeps the name as sent",
    allowAnonymous: true,
    wire: anonConnect({ domain: "objects.githubusercontent.com" }, 443),
    expect: { kind: "connect", host: "objects.githubusercontent.com", port: 443, rest: [], sent: [...METHOD_NO_AUTH] },
  },
  {
    name: "CONNECT to IPv6 2001:db8::1 gives the RFC 5952 text form (as CONNECT [2001:db8::1]:443 does)",
    allowAnonymous: true,
    wire: anonConnect({ ipv6: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01] }, 443),
    expect: { kind: "connect", host: "2001:db8::1", port: 443, rest: [], sent: [...METHOD_NO_AUTH] },
  },
  {
    name: "CONNECT to IPv6 loopback ::1",
    allowAnonymous: true,
    wire: anonConnect({ ipv6: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1] }, 22),
    expect: { kind: "connect", host: "::1", port: 22, rest: [], sent: [...METHOD_NO_AUTH] },
  },
  {
    name: "CONNECT to a full IPv6 address, no zero run to compress",
    allowAnonymous: true,
    wire: anonConnect({ ipv6: [0xfe, 0x80, 0x12, 0x34, 0xab, 0xcd, 0, 1, 0, 2, 0, 3, 0x0f, 0xff, 0xff, 0xff] }, 443),
    expect: { kind: "connect", host: "fe80:1234:abcd:1:2:3:fff:ffff", port: 443, rest: [], sent: [...METHOD_NO_AUTH] },
  },
  {
    name: "port is big-endian: 0x1F90 is 8080",
    allowAnonymous: true,
    wire: anonConnect({ domain: "x.example" }, 0x1f90),
    expect: { kind: "connect", host: "x.example", port: 8080, rest: [], sent: [...METHOD_NO_AUTH] },
  },
  {
    name: "port 0 is parsed as 0 (the caller decides)",
    allowAnonymous: true,
    wire: anonConnect({ domain: "x.example" }, 0),
    expect: { kind: "connect", host: "x.example", port: 0, rest: [], sent: [...METHOD_NO_AUTH] },
  },
  {
    name: "early data after the request (an optimistic ClientHello) is returned in rest",
    allowAnonymous: true,
    wire: bytes(anonConnect({ domain: "api.github.com" }, 443), [0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]),
    expect: {
      kind: "connect",
      host: "api.github.com",
      port: 443,
      rest: [0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5],
      sent: [...METHOD_NO_AUTH],
    },
  },
  {
    name: "early data after an authenticated request is returned in rest",
    allowAnonymous: false,
    wire: bytes(authConnect("d", "t", { ipv4: [1, 2, 3, 4] }, 80), ascii("GET / HTTP/1.1\r\n\r\n")),
    expect: {
      kind: "connect",
      host: "1.2.3.4",
      port: 80,
      username: "d",
      password: "t",
      rest: [...ascii("GET / HTTP/1.1\r\n\r\n")],
      sent: [...METHOD_USER_PASS, ...AUTH_OK],
    },
  },
  // refusals in the protocol's own form
  {
    name: "BIND refused with X'07' command not supported",
    allowAnonymous: true,
    wire: bytes(greeting(Method.NO_AUTH), request({ ipv4: [1, 2, 3, 4] }, 80, Command.BIND)),
    expect: { kind: "fail", reason: "only CONNECT is supported", sent: [...METHOD_NO_AUTH, ...reply(Reply.COMMAND_NOT_SUPPORTED)] },
  },
  {
    name: "UDP ASSOCIATE refused with X'07' command not supported",
    allowAnonymous: true,
    wire: bytes(greeting(Method.NO_AUTH), request({ domain: "dns.example" }, 53, Command.UDP_ASSOCIATE)),
    expect: { kind: "fail", reason: "only CONNECT is supported", sent: [...METHOD_NO_AUTH, ...reply(Reply.COMMAND_NOT_SUPPORTED)] },
  },
  {
    name: "unknown command 0x09 refused with X'07'",
    allowAnonymous: true,
    wire: bytes(greeting(Method.NO_AUTH), request({ ipv4: [1, 2, 3, 4] }, 80, 0x09)),
    expect: { kind: "fail", reason: "only CONNECT is supported", sent: [...METHOD_NO_AUTH, ...reply(Reply.COMMAND_NOT_SUPPORTED)] },
  },
  {
    name: "address type 0x02 refused with X'08' address type not supported",
    allowAnonymous: true,
    wire: bytes(greeting(Method.NO_AUTH), request({ atyp: 0x02, raw: [1, 2, 3, 4] }, 80)),
    expect: {
      kind: "fail",
      reason: "unsupported address type",
      sent: [...METHOD_NO_AUTH, ...reply(Reply.ADDRESS_TYPE_NOT_SUPPORTED)],
    },
  },
  {
    name: "zero-length domain refused with general failure",
    allowAnonymous: true,
    wire: anonConnect({ domain: "" }, 443),
    expect: { kind: "fail", reason: "invalid domain name", sent: [...METHOD_NO_AUTH, ...reply(Reply.GENERAL_FAILURE)] },
  },
  {
    name: "domain with a space or a NUL refused with general failure",
    allowAnonymous: true,
    wire: anonConnect({ domain: "evil\u0000.example com" }, 443),
    expect: { kind: "fail", reason: "invalid domain name", sent: [...METHOD_NO_AUTH, ...reply(Reply.GENERAL_FAILURE)] },
  },
  // wrong versions
  {
    name: "SOCKS4 greeting is not SOCKS5: fail, nothing sent",
    allowAnonymous: true,
    wire: Uint8Array.of(0x04, 0x01, 0x00, 0x50, 1, 2, 3, 4, 0),
    expect: { kind: "fail", reason: "not SOCKS5", sent: [] },
  },
  {
    name: "an HTTP request on the SOCKS port is not SOCKS5",
    allowAnonymous: true,
    wire: ascii("CONNECT a:443 HTTP/1.1\r\n\r\n"),
    expect: { kind: "fail", reason: "not SOCKS5", sent: [] },
  },
  {
    name: "request with version 4 after a good greeting fails",
    allowAnonymous: true,
    wire: bytes(greeting(Method.NO_AUTH), request({ ipv4: [1, 2, 3, 4] }, 80, Command.CONNECT, 0x04)),
    expect: { kind: "fail", reason: "bad request version", sent: [...METHOD_NO_AUTH] },
  },
  // incomplete handshakes stay need-more, having sent what was due
  {
    name: "greeting only: method chosen, waiting for the request",
    allowAnonymous: true,
    wire: greeting(Method.NO_AUTH),
    expect: { kind: "need-more", sent: [...METHOD_NO_AUTH] },
  },
  {
    name: "greeting and half an IPv6 request: still waiting",
    allowAnonymous: true,
    wire: bytes(greeting(Method.NO_AUTH), request({ ipv6: new Array(16).fill(0) }, 443).subarray(0, 12)),
    expect: { kind: "need-more", sent: [...METHOD_NO_AUTH] },
  },
  {
    name: "greeting and half the credentials: user/pass chosen, no auth status yet",
    allowAnonymous: false,
    wire: bytes(greeting(Method.USERNAME_PASSWORD), userPass("device", "token").subarray(0, 6)),
    expect: { kind: "need-more", sent: [...METHOD_USER_PASS] },
  },
];

describe("Socks5Handshake", () => {
  test.each(CASES.map((c) => [c.name, c] as const))("%s (fed whole)", (_name, c) => {
    expect(run(c.allowAnonymous, whole(c.wire))).toEqual(c.expect);
  });

  test.each(CASES.map((c) => [c.name, c] as const))("%s (fed at every cut and byte by byte)", (_name, c) => {
    for (let i = 0; i <= c.wire.length; i++) {
      const got = run(c.allowAnonymous, cutAt(c.wire, i));
      if (!Bun.deepEquals(got, c.expect)) throw new Error(`cut at ${i}: ${JSON.stringify(got)} != ${JSON.stringify(c.expect)}`);
    }
    expect(run(c.allowAnonymous, byteByByte(c.wire))).toEqual(c.expect);
  });

  test("need-more with nothing to send carries no send field", () => {
    const h = new Socks5Handshake(true);
    expect(h.push(Uint8Array.of(SOCKS_VERSION))).toEqual({ kind: "need-more" });
    expect(h.push(Uint8Array.of(2, Method.NO_AUTH))).toEqual({ kind: "need-more" }); // one of two methods still missing
  });

  test("each reply is sent once, in the step that earns it", () => {
    const h = new Socks5Handshake(false);
    expect(h.push(greeting(Method.USERNAME_PASSWORD))).toEqual({ kind: "need-more", send: METHOD_USER_PASS });
    expect(h.push(userPass("d", "t"))).toEqual({ kind: "need-more", send: AUTH_OK });
    const step = h.push(request({ domain: "a.b" }, 443));
    expect(step).toEqual({ kind: "connect", host: "a.b", port: 443, username: "d", password: "t", rest: new Uint8Array(0) });
    expect(step.send).toBeUndefined();
  });

  test("a pipelined greeting + auth + request gets both replies in one send", () => {
    const h = new Socks5Handshake(false);
    const step = h.push(authConnect("d", "t", { domain: "a.b" }, 443));
    expect(step.kind).toBe("connect");
    expect(step.send).toEqual(bytes(METHOD_USER_PASS, AUTH_OK));
  });

  test("rest is a copy: later reuse of the caller's buffer does not change it", () => {
    const wire = bytes(anonConnect({ domain: "a.b" }, 443), [9, 9, 9]);
    const step = new Socks5Handshake(true).push(wire);
    wire.fill(0);
    expect(step.kind === "connect" && [...step.rest]).toEqual([9, 9, 9]);
  });

  test.each([
    ["after connect", anonConnect({ domain: "a.b" }, 443)],
    ["after a fail", greeting(0x01)],
  ] as const)("pushing %s fails: the handshake is finished", (_what, wire) => {
    const h = new Socks5Handshake(true);
    expect(h.push(wire).kind).not.toBe("need-more");
    expect(h.push(Uint8Array.of(1))).toEqual({ kind: "fail", reason: "handshake already finished" });
  });

  test("reply() is VER REP RSV ATYP=IPv4 0.0.0.0:0", () => {
    expect([...reply(Reply.SUCCEEDED)]).toEqual([5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    expect([...reply(Reply.CONNECTION_REFUSED)]).toEqual([5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
    expect([...reply(Reply.HOST_UNREACHABLE)]).toEqual([5, 4, 0, 1, 0, 0, 0, 0, 0, 0]);
  });
});

// ------------------------------------------------------------ properties

const chunked = (b: Uint8Array, cuts: number[]): Uint8Array[] => {
  const points = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(b.subarray(prev, p));
    prev = p;
  }
  out.push(b.subarray(prev));
  return out;
};

describe("Socks5Handshake properties", () => {
  test("random bytes in random chunks never throw; outcome is need-more, connect or fail", () => {
    fc.assert(
      fc.property(fc.boolean(), fc.uint8Array({ maxLength: 64 }), fc.array(fc.nat(), { maxLength: 6 }), (anon, wire, cuts) => {
        const o = run(anon, chunked(wire, cuts));
        expect(["need-more", "connect", "fail"]).toContain(o.kind);
      }),
      { numRuns: 2000 },
    );
  });

  test("random bytes after a valid SOCKS5 prefix never throw", () => {
    const prefixes = [
      greeting(Method.NO_AUTH),
      greeting(Method.USERNAME_PASSWORD),
      bytes(greeting(Method.USERNAME_PASSWORD), userPass("d", "t")),
      Uint8Array.of(SOCKS_VERSION),
    ];
    fc.assert(
      fc.property(fc.constantFrom(...prefixes), fc.boolean(), fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(), { maxLength: 4 }), (prefix, anon, tail, cuts) => {
        const o = run(anon, chunked(bytes(prefix, tail), cuts));
        expect(["need-more", "connect", "fail"]).toContain(o.kind);
      }),
      { numRuns: 1000 },
    );
  });

  test("any valid handshake followed by any tail: connect with rest = tail, however cut", () => {
    const label = fc.stringMatching(/^[a-z0-9-]{1,20}$/);
    const addr: fc.Arbitrary<{ addr: Addr; host: string }> = fc.oneof(
      fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map(([a, b, c, d]) => ({
        addr: { ipv4: [a, b, c, d] as [number, number, number, number] },
        host: `${a}.${b}.${c}.${d}`,
      })),
      fc.array(label, { minLength: 1, maxLength: 4 }).map((ls) => ({ addr: { domain: ls.join(".") }, host: ls.join(".") })),
    );
    const creds = fc.option(fc.tuple(fc.stringMatching(/^[A-Za-z0-9_]{0,40}$/), fc.stringMatching(/^[A-Za-z0-9_]{0,60}$/)), { nil: undefined });
    fc.assert(
      fc.property(addr, fc.integer({ min: 0, max: 65535 }), creds, fc.uint8Array({ maxLength: 64 }), fc.array(fc.nat(), { maxLength: 5 }), (a, port, cred, tail, cuts) => {
        const wire = cred
          ? bytes(authConnect(cred[0], cred[1], a.addr, port), tail)
          : bytes(anonConnect(a.addr, port), tail);
        const o = run(cred === undefined, chunked(wire, cuts));
        const expected: Outcome = {
          kind: "connect",
          host: a.host,
          port,
          rest: [...tail],
          sent: cred ? [...METHOD_USER_PASS, ...AUTH_OK] : [...METHOD_NO_AUTH],
        };
        if (cred) [expected.username, expected.password] = cred;
        expect(o).toEqual(expected);
      }),
      { numRuns: 500 },
    );
  });
});
