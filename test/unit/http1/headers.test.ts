import { describe, expect, test } from "bun:test";
import {
  HOP_BY_HOP,
  getHeader,
  getHeaderAll,
  hasToken,
  headerTokens,
  isFieldValue,
  isToken,
  removeHeader,
  setHeader,
  stripHopByHop,
  type HeaderList,
} from "../../../app/endpoints/http1/headers.ts";

describe("header lookups", () => {
  const h: HeaderList = [
    ["Host", "a"],
    ["Accept", "text/html"],
    ["accept", "application/json"],
    ["Connection", "keep-alive, Upgrade"],
  ];
  test("getHeader is case-insensitive and returns the first", () => {
    expect(getHeader(h, "ACCEPT")).toBe("text/html");
    expect(getHeader(h, "host")).toBe("a");
    expect(getHeader(h, "missing")).toBeUndefined();
  });
  test("getHeaderAll keeps wire order", () => {
    expect(getHeaderAll(h, "Accept")).toEqual(["text/html", "application/json"]);
    expect(getHeaderAll(h, "x")).toEqual([]);
  });
  test("hasToken reads comma lists", () => {
    expect(hasToken(h, "connection", "upgrade")).toBe(true);
    expect(hasToken(h, "Connection", "KEEP-ALIVE")).toBe(true);
    expect(hasToken(h, "Connection", "close")).toBe(false);
    expect(hasToken([["Connection", "close"]], "connection", "close")).toBe(true);
    expect(hasToken([["Connection", "closed"]], "connection", "close")).toBe(false);
  });
  test("headerTokens lower-cases and drops empty elements", () => {
    expect(headerTokens([["TE", " , Trailers,,gzip "], ["te", "X"]], "te")).toEqual(["trailers", "gzip", "x"]);
  });
});

describe("header edits", () => {
  test("setHeader replaces all, keeps the first position", () => {
    const h: HeaderList = [["A", "1"], ["Authorization", "x"], ["B", "2"], ["authorization", "y"], ["C", "3"]];
    setHeader(h, "authorization", "Bearer real");
    expect(h).toEqual([["A", "1"], ["authorization", "Bearer real"], ["B", "2"], ["C", "3"]]);
  });
  test("setHeader appends when absent", () => {
    const h: HeaderList = [["A", "1"]];
    setHeader(h, "X-New", "v");
    expect(h).toEqual([["A", "1"], ["X-New", "v"]]);
  });
  test("setHeader does not alias the caller's pair", () => {
    const pair: [string, string] = ["Authorization", "placeholder"];
    const h: HeaderList = [pair];
    setHeader(h, "Authorization", "secret");
    expect(pair[1]).toBe("placeholder");
  });
  test("removeHeader removes every one and counts", () => {
    const h: HeaderList = [["A", "1"], ["Cookie", "x"], ["B", "2"], ["COOKIE", "y"]];
    expect(removeHeader(h, "cookie")).toBe(2);
    expect(h).toEqual([["A", "1"], ["B", "2"]]);
    expect(removeHeader(h, "cookie")).toBe(0);
  });
});

describe("hop-by-hop", () => {
  test("the RFC 9110 §7.6.1 set", () => {
    for (const n of ["connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer", "transfer-encoding", "upgrade"]) {
      expect(HOP_BY_HOP.has(n)).toBe(true);
    }
  });
  const h: HeaderList = [
    ["Host", "h"],
    ["Connection", "keep-alive, X-Secret-Hop"],
    ["Keep-Alive", "timeout=5"],
    ["X-Secret-Hop", "1"],
    ["Proxy-Authorization", "Basic dG9rZW4="],
    ["Proxy-Connection", "keep-alive"],
    ["TE", "trailers"],
    ["Transfer-Encoding", "chunked"],
    ["Trailer", "X-T"],
    ["Upgrade", "websocket"],
    ["Accept", "*/*"],
  ];
  test("stripHopByHop drops them and the fields Connection names", () => {
    const before = structuredClone(h);
    expect(stripHopByHop(h)).toEqual([["Host", "h"], ["Accept", "*/*"]]);
    expect(h).toEqual(before);
  });
  test("keepUpgrade keeps Upgrade and Connection: Upgrade only", () => {
    expect(stripHopByHop(h, { keepUpgrade: true })).toEqual([
      ["Host", "h"],
      ["Connection", "Upgrade"],
      ["Upgrade", "websocket"],
      ["Accept", "*/*"],
    ]);
  });
});

describe("token and value checks", () => {
  test("isToken", () => {
    expect(isToken("Content-Type")).toBe(true);
    expect(isToken("!#$%&'*+-.^_`|~09azAZ")).toBe(true);
    for (const bad of ["", "a b", "a:b", "a\r", "é", "(x)", "a/b"]) expect(isToken(bad)).toBe(false);
  });
  test("isFieldValue", () => {
    expect(isFieldValue("")).toBe(true);
    expect(isFieldValue("a b\tc caf\xe9")).toBe(true);
    for (const bad of ["a\r\nX: y", "a\n", "a\0", " lead", "trail ", "\u0100"]) expect(isFieldValue(bad)).toBe(false);
  });
});
