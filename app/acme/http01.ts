// The plain-HTTP listener that exists only when `acme {}` is configured
// (normally :80): it answers HTTP-01 challenges (RFC 8555 §8.3) for the
// tokens pending right now, and sends everything else to https with a 301
// to public_url (same path and query). `answerHttp` is the whole decision;
// `startHttpListener` is the socket around it.
import type { ChallengeResponder } from "./client.ts";

const CHALLENGE_PREFIX = "/.well-known/acme-challenge/";

export interface HttpAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export function answerHttp(method: string, pathAndQuery: string, tokens: ReadonlyMap<string, string>, publicUrl: string): HttpAnswer {
  const path = pathAndQuery.split("?")[0]!;
  if (path.startsWith(CHALLENGE_PREFIX)) {
    const token = path.slice(CHALLENGE_PREFIX.length);
    const keyAuth = tokens.get(token);
    if ((method === "GET" || method === "HEAD") && keyAuth !== undefined) {
      return { status: 200, headers: { "content-type": "application/octet-stream" }, body: keyAuth };
    }
    return { status: 404, headers: { "content-type": "text/plain" }, body: "no such challenge\n" };
  }
  const location = `${publicUrl.replace(/\/+$/, "")}${pathAndQuery.startsWith("/") ? pathAndQuery : `/${pathAndQuery}`}`;
  return { status: 301, headers: { location, "content-type": "text/plain" }, body: `moved to ${location}\n` };
}

export interface HttpListener {
  port: number;
  responder: ChallengeResponder;
  close(): Promise<void>;
}

export function startHttpListener(listen: string, publicUrl: () => string): HttpListener {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(listen);
  if (!m) throw new Error(`http_listen is not host:port: ${listen}`);
  const tokens = new Map<string, string>();
  const server = Bun.serve({
    hostname: m[1] || "0.0.0.0",
    port: Number(m[2]),
    fetch(req) {
      const url = new URL(req.url);
      const a = answerHttp(req.method, `${url.pathname}${url.search}`, tokens, publicUrl());
      return new Response(req.method === "HEAD" ? null : a.body, { status: a.status, headers: a.headers });
    },
  });
  return {
    port: server.port ?? Number(m[2]),
    responder: {
      type: "http-01",
      publish: (token, keyAuth) => void tokens.set(token, keyAuth),
      withdraw: (token) => void tokens.delete(token),
    },
    async close() {
      await server.stop(true);
    },
  };
}
