// Reads the agent's first bytes until the ClientHello parser can say what
// they are, then puts them back so the next reader (TLS termination, or the
// relay) sees the stream from its start. Bytes that are not TLS on a port
// claimed for plain HTTP are read on to the first request's Host.
import type { Duplex } from "node:stream";
import { parseClientHello } from "../tls/clienthello.ts";
import type { Peek } from "./dispatch.ts";
import { Http1Parser } from "../endpoints/http1/parser.ts";
import { parseHostField } from "../endpoints/http1/target.ts";

/** A client that connects to a TLS port and says nothing for this long is dropped. */
export const PEEK_TIMEOUT_MS = 10_000;

export interface PeekResult {
  peek: Peek;
  /** Every byte read while peeking, to be replayed. */
  bytes: Uint8Array;
}

export function peekClientHello(conn: Duplex, timeoutMs = PEEK_TIMEOUT_MS): Promise<PeekResult | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const done = (r: PeekResult | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      conn.off("data", onData);
      conn.off("end", onEnd);
      conn.off("error", onEnd);
      conn.pause();
      resolve(r);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      const bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      const r = parseClientHello(bytes);
      switch (r.kind) {
        case "need-more":
          return;
        case "hello":
          return done({ peek: r.sni ? { kind: "hello", sni: r.sni } : { kind: "hello" }, bytes });
        case "not-tls":
          return done({ peek: { kind: "not-tls" }, bytes });
        case "error":
          return done({ peek: { kind: "error", reason: r.reason }, bytes });
      }
    };
    const onEnd = () => done(undefined);
    const timer = setTimeout(() => done(undefined), timeoutMs);
    conn.on("data", onData);
    conn.on("end", onEnd);
    conn.on("error", onEnd);
    conn.resume();
  });
}

/** The most of a plain-HTTP request head read while looking for its Host. */
export const MAX_PEEKED_HEAD = 16 * 1024;

/**
 * Reads on from `initial` (bytes already peeked, not TLS) until the first
 * request head is whole, and returns the host its Host field names
 * (undefined when the bytes are not an HTTP request with one Host), with
 * every byte read, to be replayed.
 */
export function peekHttpHost(conn: Duplex, initial: Uint8Array, timeoutMs = PEEK_TIMEOUT_MS): Promise<{ host?: string; bytes: Uint8Array } | undefined> {
  return new Promise((resolve) => {
    let bytes = initial;
    let settled = false;
    const done = (r: { host?: string; bytes: Uint8Array } | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      conn.off("data", onData);
      conn.off("end", onEnd);
      conn.off("error", onEnd);
      conn.pause();
      resolve(r);
    };
    const check = () => {
      const end = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf("\r\n\r\n");
      if (end < 0) {
        if (bytes.length > MAX_PEEKED_HEAD) done({ bytes });
        return;
      }
      const events = new Http1Parser("request").push(bytes.subarray(0, end + 4));
      const first = events[0];
      if (!first || first.type !== "head" || !("method" in first.head)) return done({ bytes });
      const hosts = first.head.headers.filter(([n]) => n.toLowerCase() === "host");
      const host = hosts.length === 1 ? parseHostField(hosts[0]![1])?.name : undefined;
      done(host !== undefined ? { host, bytes } : { bytes });
    };
    const onData = (chunk: Buffer) => {
      bytes = Buffer.concat([bytes, chunk]);
      check();
    };
    const onEnd = () => done(bytes.length > 0 ? { bytes } : undefined);
    const timer = setTimeout(() => done(undefined), timeoutMs);
    check();
    if (settled) return;
    conn.on("data", onData);
    conn.on("end", onEnd);
    conn.on("error", onEnd);
    conn.resume();
  });
}
