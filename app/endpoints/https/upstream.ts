// Upstream connections for intercepted HTTPS (and plain HTTP), pooled per
// (endpoint, destination, SNI) so keep-alive survives across agent
// connections. The upstream's real certificate is verified against the
// system store plus the endpoint's own `ca_cert` (and the gateway's own CA
// for an endpoint with `trust_gateway_ca`); a plain-HTTP upstream is
// a TCP socket to the address the shell already judged.
import net from "node:net";
import tls from "node:tls";
import { upstreamTrust, type TrustStore } from "../../tls/trust.ts";
import type { Endpoint } from "../../policy/types.ts";
import { StreamPuller } from "./puller.ts";
import { mutualTlsContext, type ClientCertificate } from "../kubernetes/client-cert.ts";
import { stallCorrectedTimeout } from "../../net/loop-stall.ts";

/** Idle upstream connections are closed after this long. */
const IDLE_TIMEOUT_MS = 60_000;
/**
 * Per pool key; more idle connections than this are closed, not kept. As
 * many as the agents' connections that use one upstream at once: at 64, 500
 * keep-alive agents on one upstream closed and redialed most of theirs
 * (a TLS handshake toward the upstream per request), and those dials, queued
 * at a busy upstream, ran into the connect timeout. At 512, 1,000 agents
 * churned it the same way (a 10-minute soak: 1,440 requests over 60 s and
 * 66 upstream handshakes past nginx's 60 s). An h2 agent holds one per
 * concurrent stream too.
 */
export const MAX_IDLE_PER_KEY = 1024;
/**
 * The TCP connect and TLS handshake toward the upstream, not counting time
 * the event loop was stalled (app/net/loop-stall.ts): a burst of agents
 * keeps the loop busy, and that wait is not the upstream's.
 */
const CONNECT_TIMEOUT_MS = 10_000;

/** Dial errors that may pass on a second dial (nothing was sent yet); a certificate refused will not. */
const TRANSIENT_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ECONNABORTED", "EAI_AGAIN", "UPSTREAM_CONNECT_TIMEOUT"]);

export function isTransientDialError(e: unknown): boolean {
  const code = (e as { code?: unknown } | undefined)?.code;
  if (typeof code === "string") return TRANSIENT_CODES.has(code);
  // A socket closed mid-handshake carries no code in every runtime.
  return /socket hang up|disconnected before secure TLS connection/i.test((e as Error | undefined)?.message ?? "");
}

/** One upstream connection (TLS, or TCP for plain HTTP): the socket, read by pulling (the response parser is the session's). */
export class UpstreamConn {
  readonly puller: StreamPuller;
  closed = false;

  constructor(readonly sock: net.Socket, readonly key: string) {
    this.puller = new StreamPuller(sock);
    sock.on("close", () => {
      this.closed = true;
    });
  }

  /**
   * True when no byte is left over unread: only then can the next request
   * reuse the connection (the session released it with its response parser
   * between messages).
   */
  get atCleanBoundary(): boolean {
    return this.puller.buffered === 0 && !this.puller.ended;
  }

  write(data: Uint8Array | string): Promise<void> {
    return writeWithBackpressure(this.sock, data);
  }

  destroy(): void {
    this.closed = true;
    this.sock.destroy();
  }
}

export interface DialTarget {
  host: string;
  port: number;
  sni: string;
  /** The endpoint claiming the request; none for a plain-HTTP request to an unclaimed host (unknown_host = passthrough). */
  endpoint?: Endpoint;
  /** Plain HTTP: a TCP connection to `address` (judged by the shell), no TLS. */
  plain?: { address: string };
  /** Presented in the handshake (mutual TLS; a kubernetes endpoint's k8s_client_cert). */
  clientCert?: ClientCertificate;
}

export class UpstreamPool {
  private idle = new Map<string, { conn: UpstreamConn; timer: ReturnType<typeof setTimeout> }[]>();
  private idleTotal = 0;
  /** Dials between connect() and the end of the handshake. */
  private dialing = 0;
  constructor(
    private readonly connectTimeoutMs = CONNECT_TIMEOUT_MS,
    private readonly trust: TrustStore = upstreamTrust,
  ) {}

  static keyOf(t: DialTarget): string {
    const scheme = t.plain ? `http:${t.plain.address}` : "https";
    return `${scheme}|${t.endpoint?.ref ?? "-"}|${t.host}|${t.port}|${t.sni}${t.clientCert ? `|${t.clientCert.ref}` : ""}`;
  }

  /** An idle pooled connection, if one is alive. */
  takeIdle(t: DialTarget): UpstreamConn | undefined {
    const list = this.idle.get(UpstreamPool.keyOf(t));
    while (list && list.length > 0) {
      const entry = list.pop()!;
      this.idleTotal -= 1;
      clearTimeout(entry.timer);
      // Bytes that arrived while idle belong to no request: never hand them to the next one.
      if (!entry.conn.closed && !entry.conn.sock.destroyed && entry.conn.atCleanBoundary) return entry.conn;
      entry.conn.destroy();
    }
    return undefined;
  }

  /** For /metrics: idle pooled connections, and dials in progress. */
  stats(): { idle: number; dialing: number } {
    return { idle: this.idleTotal, dialing: this.dialing };
  }

  /** A new upstream connection; `alpn`: what to offer (h2 only for an h2 agent's streams; see h2upstream.ts). */
  dial(t: DialTarget, alpn: string[] = ["http/1.1"]): Promise<UpstreamConn> {
    if (t.plain) return this.dialPlain(t, t.plain.address);
    const endpoint = t.endpoint;
    if (!endpoint) return Promise.reject(new Error("an HTTPS upstream needs its endpoint"));
    return new Promise((resolve, reject) => {
      const isIp = /^[0-9.]+$|:/.test(t.sni);
      const sock = tls.connect({
        host: t.host,
        port: t.port,
        ...(isIp ? {} : { servername: t.sni }),
        secureContext: t.clientCert ? mutualTlsContext(this.trust, endpoint.caCertPem, t.clientCert) : this.contextFor(endpoint),
        ALPNProtocols: alpn,
        rejectUnauthorized: true,
        checkServerIdentity: (_host, cert) => tls.checkServerIdentity(t.sni, cert),
      });
      this.dialing += 1;
      let counted = true;
      const done = () => {
        if (counted) this.dialing -= 1;
        counted = false;
        cancelTimeout();
      };
      const cancelTimeout = stallCorrectedTimeout(this.connectTimeoutMs, () => {
        sock.destroy(Object.assign(new Error(`connect timeout after ${this.connectTimeoutMs} ms`), { code: "UPSTREAM_CONNECT_TIMEOUT" }));
      });
      sock.once("secureConnect", () => {
        done();
        sock.setNoDelay(true);
        sock.removeListener("error", onError);
        sock.on("error", () => {
          /* surfaced through reads and writes */
        });
        resolve(new UpstreamConn(sock, UpstreamPool.keyOf(t)));
      });
      const onError = (e: Error) => {
        done();
        reject(e);
      };
      sock.once("error", onError);
    });
  }

  private dialPlain(t: DialTarget, address: string): Promise<UpstreamConn> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: address, port: t.port, allowHalfOpen: true });
      const timer = setTimeout(() => {
        sock.destroy(new Error(`connect timeout after ${this.connectTimeoutMs} ms`));
      }, this.connectTimeoutMs);
      const onError = (e: Error) => {
        clearTimeout(timer);
        reject(e);
      };
      sock.once("connect", () => {
        clearTimeout(timer);
        sock.setNoDelay(true);
        sock.removeListener("error", onError);
        sock.on("error", () => {
          /* surfaced through reads and writes */
        });
        resolve(new UpstreamConn(sock, UpstreamPool.keyOf(t)));
      });
      sock.once("error", onError);
    });
  }

  /** Returns a connection that finished its exchange cleanly to the pool. */
  release(conn: UpstreamConn): void {
    if (conn.closed || conn.sock.destroyed) return;
    let list = this.idle.get(conn.key);
    if (!list) {
      list = [];
      this.idle.set(conn.key, list);
    }
    if (list.length >= MAX_IDLE_PER_KEY) {
      conn.destroy();
      return;
    }
    const entry = {
      conn,
      timer: setTimeout(() => {
        const i = list!.indexOf(entry);
        if (i >= 0) {
          list!.splice(i, 1);
          this.idleTotal -= 1;
        }
        // An emptied key goes, or keys of upstreams long gone pile up.
        if (list!.length === 0 && this.idle.get(conn.key) === list) this.idle.delete(conn.key);
        conn.destroy();
      }, IDLE_TIMEOUT_MS),
    };
    list.push(entry);
    this.idleTotal += 1;
  }

  /** Called by closeAll (the h2 upstream sessions kept beside the pool). */
  private readonly closers: (() => void)[] = [];

  onCloseAll(fn: () => void): void {
    this.closers.push(fn);
  }

  closeAll(): void {
    for (const fn of this.closers) fn();
    for (const list of this.idle.values()) {
      for (const e of list) {
        clearTimeout(e.timer);
        e.conn.destroy();
      }
    }
    this.idle.clear();
    this.idleTotal = 0;
  }

  private contextFor(endpoint: Endpoint): tls.SecureContext {
    return this.trust.secureContext(endpoint.caCertPem, endpoint.settings?.["trustGatewayCa"] === true);
  }
}

/** Writes and resolves when the stream can take more (backpressure). */
export function writeWithBackpressure(
  stream: {
    write(d: Uint8Array | string): boolean;
    once(ev: "drain" | "close", fn: () => void): unknown;
    off(ev: "drain" | "close", fn: () => void): unknown;
    destroyed?: boolean;
  },
  data: Uint8Array | string,
): Promise<void> {
  if (stream.destroyed) return Promise.reject(new Error("stream closed"));
  if (stream.write(data)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    // Each blocked write waits for one of the two; the other listener must
    // go, or a long transfer piles up listeners on the socket.
    const onDrain = () => {
      stream.off("close", onClose);
      resolve();
    };
    const onClose = () => {
      stream.off("drain", onDrain);
      reject(new Error("stream closed"));
    };
    stream.once("drain", onDrain);
    stream.once("close", onClose);
  });
}
