// Reads the agent's first bytes until the ClientHello parser can say what
// they are, then puts them back so the next reader (TLS termination, or the
// relay) sees the stream from its start.
import type { Duplex } from "node:stream";
import { parseClientHello } from "../tls/clienthello.ts";
import type { Peek } from "./dispatch.ts";

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
