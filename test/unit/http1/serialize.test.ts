import { describe, expect, test } from "bun:test";
import {
  LAST_CHUNK,
  encodeChunk,
  encodeLastChunk,
  serializeRequestHead,
  serializeResponseHead,
  simpleResponse,
} from "../../../app/endpoints/http1/serialize.ts";
import { Http1Parser } from "../../../app/endpoints/http1/parser.ts";
import { concat, dec, enc, normalise } from "./wire.ts";

describe("heads", () => {
  test("request head", () => {
    const b = serializeRequestHead({ method: "POST", target: "/v1/messages?x=1", headers: [["Host", "api"], ["Content-Length", "2"]] });
    expect(dec(b)).toBe("POST /v1/messages?x=1 HTTP/1.1\r\nHost: api\r\nContent-Length: 2\r\n\r\n");
  });
  test("response head with default and explicit reason", () => {
    expect(dec(serializeResponseHead({ status: 403, headers: [] }))).toBe("HTTP/1.1 403 Forbidden\r\n\r\n");
    expect(dec(serializeResponseHead({ status: 200, reason: "Fine", headers: [["A", "b"]] }))).toBe("HTTP/1.1 200 Fine\r\nA: b\r\n\r\n");
    expect(dec(serializeResponseHead({ status: 599, headers: [] }))).toBe("HTTP/1.1 599 \r\n\r\n");
  });
  test("latin1 bytes round-trip", () => {
    expect(dec(serializeRequestHead({ method: "GET", target: "/caf\xe9", headers: [["X", "\xff"]] }))).toBe("GET /caf\xe9 HTTP/1.1\r\nX: \xff\r\n\r\n");
  });
  test("header injection through a value throws", () => {
    expect(() => serializeRequestHead({ method: "GET", target: "/", headers: [["Authorization", "Bearer s3cret\n"]] })).toThrow(TypeError);
    expect(() => serializeRequestHead({ method: "GET", target: "/", headers: [["X", "a\r\nEvil: 1"]] })).toThrow(TypeError);
    expect(() => serializeResponseHead({ status: 200, headers: [["Bad Name", "x"]] })).toThrow(TypeError);
    expect(() => serializeRequestHead({ method: "GET", target: "/a b", headers: [] })).toThrow(TypeError);
    expect(() => serializeRequestHead({ method: "G T", target: "/", headers: [] })).toThrow(TypeError);
    expect(() => serializeRequestHead({ method: "GET", target: "", headers: [] })).toThrow(TypeError);
    expect(() => serializeResponseHead({ status: 99, headers: [] })).toThrow(TypeError);
    expect(() => serializeResponseHead({ status: 200, reason: "a\r\nb", headers: [] })).toThrow(TypeError);
  });
});

describe("chunks", () => {
  test("encodeChunk frames without copying", () => {
    const data = enc("x".repeat(300));
    const parts = encodeChunk(data);
    expect(parts.length).toBe(3);
    expect(parts[1]).toBe(data);
    expect(dec(parts[0]!)).toBe("12c\r\n");
    expect(dec(parts[2]!)).toBe("\r\n");
  });
  test("an empty chunk writes nothing (it would end the body)", () => {
    expect(encodeChunk(new Uint8Array(0))).toEqual([]);
  });
  test("last chunk and trailers", () => {
    expect(dec(LAST_CHUNK)).toBe("0\r\n\r\n");
    expect(encodeLastChunk()).toBe(LAST_CHUNK);
    expect(dec(encodeLastChunk([["X-Sum", "1"]]))).toBe("0\r\nX-Sum: 1\r\n\r\n");
  });
  test("encoded chunks parse back", () => {
    const head = serializeRequestHead({ method: "POST", target: "/", headers: [["Transfer-Encoding", "chunked"]] });
    const body = [enc("hello "), new Uint8Array(0), enc("world")].flatMap(encodeChunk);
    const wire = concat(head, ...body, encodeLastChunk([["X-T", "v"]]));
    const ev = normalise(new Http1Parser("request").push(wire));
    expect(ev.slice(1)).toEqual([{ type: "body", data: "hello world" }, { type: "end", trailers: [["X-T", "v"]] }]);
  });
});

describe("simpleResponse", () => {
  test("403 JSON with Content-Length in bytes", () => {
    const body = JSON.stringify({ error: "denied by clawpatrol", rule: "no-push", reason: "nope — später" });
    const b = simpleResponse(403, [["Content-Type", "application/json"], ["content-length", "1"]], body);
    const bytes = new TextEncoder().encode(body);
    const p = new Http1Parser("response");
    p.expectResponseTo("POST");
    const ev = p.push(b);
    const h = ev[0];
    expect(h?.type).toBe("head");
    if (h?.type !== "head") return;
    expect(h.head.status).toBe(403);
    expect(h.head.reason).toBe("Forbidden");
    expect(h.head.headers).toEqual([["Content-Type", "application/json"], ["Content-Length", String(bytes.length)]]);
    const data = ev.find((e) => e.type === "body");
    expect(data?.type === "body" && new TextDecoder().decode(data.data)).toBe(body);
  });
  test("empty body", () => {
    expect(dec(simpleResponse(502, []))).toBe("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
  });
});
