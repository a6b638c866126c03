// The agent's side of the differential tests: raw bytes into an intercepted
// TLS session (CONNECT through the gateway's proxy, TLS with the gateway's
// CA), every byte back recorded, the responses parsed with our own parser.
import net from "node:net";
import zlib from "node:zlib";
import tls from "node:tls";
import { Http1Parser, type ResponseHead } from "../../../../app/endpoints/http1/parser.ts";
import type { TestGateway } from "../../support/gateway.ts";
import type { GatewayEvent } from "../../../../app/events/types.ts";
import type { DiffUpstream, SeenRequest } from "./upstreams.ts";

export interface AgentResult {
  /** Every byte the agent received, TLS removed. */
  bytes: Buffer;
  statuses: number[];
  bodies: string[];
  /** The bodies with their Content-Encoding undone ("" where it does not decode). */
  decoded: string[];
}

function undo(coding: string, body: Buffer): string {
  try {
    if (coding === "gzip") return zlib.gunzipSync(body).toString("latin1");
    if (coding === "deflate") return zlib.inflateSync(body).toString("latin1");
    if (coding === "br") return zlib.brotliDecompressSync(body).toString("latin1");
    return body.toString("latin1");
  } catch {
    return "";
  }
}

export interface AgentOptions {
  host: string;
  /** Methods of the requests sent, so HEAD responses are framed right. */
  methods: string[];
  /** Stop once this many final (non-1xx) responses are whole; otherwise read to EOF. */
  responses?: number;
}

/** An intercepted TLS session to 127.0.0.1:port with `host` as SNI, through the gateway's proxy. */
export async function openSession(t: TestGateway, port: number, host: string): Promise<tls.TLSSocket> {
  const { hostname, port: proxyPort } = new URL(t.proxyUrl);
  const raw = net.connect(Number(proxyPort), hostname);
  await new Promise<void>((resolve, reject) => {
    raw.once("connect", () => resolve());
    raw.once("error", reject);
  });
  raw.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
  const established = await new Promise<string>((resolve) => raw.once("data", (d: Buffer) => resolve(d.toString("latin1"))));
  if (!established.startsWith("HTTP/1.1 200")) throw new Error(`CONNECT refused: ${established}`);
  const ca = await Bun.file(t.caPath).text();
  const sock = tls.connect({ socket: raw, servername: host, ca });
  await new Promise<void>((resolve, reject) => {
    sock.once("secureConnect", () => resolve());
    sock.once("error", reject);
  });
  return sock;
}

/** Sends `data` in one intercepted session and reads what comes back. */
export async function agentSend(t: TestGateway, port: number, data: string, opts: AgentOptions): Promise<AgentResult> {
  const sock = await openSession(t, port, opts.host);
  const parser = new Http1Parser("response");
  for (const m of opts.methods) parser.expectResponseTo(m);
  const chunks: Buffer[] = [];
  const statuses: number[] = [];
  const bodies: string[] = [];
  const decoded: string[] = [];
  let coding = "";
  let body: Buffer[] = [];
  let finals = 0;
  let upgraded = false;
  await new Promise<void>((resolve) => {
    const done = () => {
      sock.destroy();
      resolve();
    };
    sock.on("data", (d: Buffer) => {
      chunks.push(d);
      for (const ev of parser.push(d)) {
        if (ev.type === "informational") statuses.push(ev.head.status);
        else if (ev.type === "head") {
          statuses.push((ev.head as ResponseHead).status);
          coding = (ev.head.headers.find(([n]) => n.toLowerCase() === "content-encoding")?.[1] ?? "").toLowerCase();
          if ((ev.head as ResponseHead).status === 101) upgraded = true;
        } else if (ev.type === "body") body.push(Buffer.from(ev.data));
        else if (ev.type === "end") {
          bodies.push(Buffer.concat(body).toString("latin1"));
          decoded.push(undo(coding, Buffer.concat(body)));
          body = [];
          finals += 1;
        }
      }
      if (!upgraded && opts.responses !== undefined && finals >= opts.responses) done();
    });
    sock.on("close", done);
    sock.on("error", done);
    sock.write(data);
  });
  return { bytes: Buffer.concat(chunks), statuses, bodies, decoded };
}

/** Polls `cond` until it holds (a condition, never a fixed sleep). */
export async function waitFor(cond: () => Promise<boolean> | boolean, what: string, limitMs = 15_000): Promise<void> {
  const until = Date.now() + limitMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

export const describeSeen = (s: SeenRequest) => `${s.method} ${s.target}`;

/**
 * Every request the upstream parsed was judged and allowed by the gateway
 * (matched one-for-one against allow events for that upstream's port), and
 * every one that carried the secret was addressed to the endpoint's host.
 */
export async function checkNothingUnjudged(t: TestGateway, up: DiffUpstream, secret: string, host: string): Promise<void> {
  const seen = await up.seen();
  const allowed = new Map<string, number>();
  for (const e of t.events as GatewayEvent[]) {
    if (e.kind !== "http" || e.verdict !== "allow" || e.port !== up.port) continue;
    const k = `${e.method} ${e.path}`;
    allowed.set(k, (allowed.get(k) ?? 0) + 1);
  }
  for (const s of seen) {
    const k = describeSeen(s);
    const n = allowed.get(k) ?? 0;
    if (n === 0) throw new Error(`${up.name} parsed a request no rule allowed: ${k}`);
    allowed.set(k, n - 1);
    if ((s.authorization ?? "").includes(secret) && (s.host ?? "").replace(/:\d+$/, "") !== host) {
      throw new Error(`${up.name} received the secret for another host: ${s.host}`);
    }
  }
}
