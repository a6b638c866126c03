// Reading a plain-HTTP request's Host after the ClientHello peek found no
// TLS: the head fed whole and cut at every offset gives the same host and
// every byte back; what is not one request with one Host gives no host.
import { describe, expect, test } from "bun:test";
import { PassThrough } from "node:stream";
import { MAX_PEEKED_HEAD, peekHttpHost } from "../../../app/dispatch/peek.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

async function peekCut(wire: string, cut: number, end = false) {
  const conn = new PassThrough();
  const bytes = enc(wire);
  const first = bytes.subarray(0, Math.min(cut, bytes.length));
  const p = peekHttpHost(conn, first, 2_000);
  if (cut < bytes.length) conn.write(Buffer.from(bytes.subarray(cut)));
  if (end) conn.end();
  return p;
}

describe("peekHttpHost", () => {
  const wire = "GET /echo HTTP/1.1\r\nHost: API.Example.com:8080\r\nAccept: */*\r\n\r\nrest";

  test("the Host of the first request, lower-cased without its port, at every cut, with every byte read (no more once the head is whole)", async () => {
    const headEnd = wire.indexOf("\r\n\r\n") + 4;
    for (let cut = 1; cut <= wire.length; cut++) {
      const r = await peekCut(wire, cut);
      expect(r?.host).toBe("api.example.com");
      // Here the rest arrives in one write after the cut: read whole when the head needed it, else left unread.
      expect(dec(r!.bytes)).toBe(cut >= headEnd ? wire.slice(0, cut) : wire);
    }
  });

  test("no Host, two Hosts, or a response instead of a request: no host, the bytes still returned", async () => {
    for (const w of ["GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n", "\x00\x01garbage\r\n\r\n"]) {
      const r = await peekCut(w, 3);
      expect(r?.host).toBeUndefined();
      expect(dec(r!.bytes)).toBe(w);
    }
  });

  test("a head longer than the bound, or a stream that ends before the head, gives no host", async () => {
    const long = await peekCut("GET / HTTP/1.1\r\nX: " + "a".repeat(MAX_PEEKED_HEAD + 10), 5);
    expect(long?.host).toBeUndefined();
    const ended = await peekCut("GET / HTTP/1.1\r\nHost: a", 4, true);
    expect(ended?.host).toBeUndefined();
    expect(dec(ended!.bytes)).toBe("GET / HTTP/1.1\r\nHost: a");
  });
});
