// Coded response bodies on credentialed requests: decoded, masked, coded
// again in the same coding; refused when they cannot be.
import { describe, expect, test } from "bun:test";
import zlib from "node:zlib";
import { CodedBody, recodable } from "../../../app/endpoints/https/coded.ts";

const SECRET = "sk-coded-0123456789abcdef";
const text = `{"echo":"Bearer ${SECRET}","n":1}`;

describe("recodable", () => {
  test("one known coding, identity aside", () => {
    expect(recodable(["gzip"])).toBe("gzip");
    expect(recodable(["x-gzip"])).toBe("gzip");
    expect(recodable(["identity", "br"])).toBe("br");
    expect(recodable(["deflate"])).toBe("deflate");
  });
  test("stacked, unknown or none: refuse", () => {
    expect(recodable(["gzip", "br"])).toBeUndefined();
    expect(recodable(["zstd"])).toBeUndefined();
    expect(recodable(["compress"])).toBeUndefined();
    expect(recodable([])).toBeUndefined();
  });
});

describe("CodedBody", () => {
  const cases = [
    ["gzip", zlib.gzipSync, zlib.gunzipSync],
    ["deflate", zlib.deflateSync, zlib.inflateSync],
    ["br", zlib.brotliCompressSync, zlib.brotliDecompressSync],
  ] as const;
  for (const [coding, enc, dec] of cases) {
    test(`${coding}: masked at the same length, coded again, cut anywhere`, () => {
      const wire = enc(Buffer.from(text));
      for (const cut of [1, 7, wire.length - 1]) {
        const b = new CodedBody(coding);
        expect(b.push(wire.subarray(0, cut))).toBe(true);
        expect(b.push(wire.subarray(cut))).toBe(true);
        const out = b.finish([SECRET]);
        if (out instanceof Error) throw out;
        const plain = dec(out).toString();
        expect(plain).toBe(text.replace(SECRET, "*".repeat(SECRET.length)));
      }
    });
  }

  test("raw deflate (no zlib wrapper) is read too", () => {
    const b = new CodedBody("deflate");
    b.push(zlib.deflateRawSync(Buffer.from(text)));
    const out = b.finish([SECRET]);
    if (out instanceof Error) throw out;
    expect(zlib.inflateSync(out).toString()).not.toContain(SECRET);
  });

  test("a body past the limit, a bomb past the limit decoded, garbage: refused", () => {
    const small = new CodedBody("gzip", 64);
    expect(small.push(new Uint8Array(65))).toBe(false);
    const bomb = new CodedBody("gzip", 1024 * 1024);
    expect(bomb.push(zlib.gzipSync(Buffer.alloc(8 * 1024 * 1024)))).toBe(true);
    expect(bomb.finish([SECRET])).toBeInstanceOf(Error);
    const junk = new CodedBody("gzip");
    junk.push(Buffer.from("not gzip at all"));
    expect(junk.finish([SECRET])).toBeInstanceOf(Error);
  });
});
