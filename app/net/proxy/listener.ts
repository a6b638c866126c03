// The explicit-proxy capture mode: an HTTP CONNECT and SOCKS5 listener that
// turns each tunnel into a Flow with its original destination. The first
// byte tells the two apart (SOCKS5 starts with 0x05), so one port serves both.
// A plain-HTTP request in absolute-form (`GET http://host/path`) makes a
// Flow too (`forwardProxy`): its bytes, head included, go to the plain-HTTP
// session, which judges and forwards each request as a forward proxy does.
//
// 1. accept, read the handshake (bounded in size and time)
// 2. identify the device from its token (or the default profile)
// 3. admit the flow against the device's quotas (refused: 429, or SOCKS5's
//    "not allowed by ruleset", before any success is answered)
// 4. answer the handshake, re-inject any early bytes, hand the Flow on
import net from "node:net";
import type { DeviceIdentity, Flow } from "../../dispatch/flow.ts";
import { newFlowId } from "../../dispatch/flow.ts";
import { parseConnectHead } from "./connect.ts";
import { Socks5Handshake, reply, Reply } from "./socks5.ts";
import { log } from "../../log.ts";

/** How long a client may take to finish the proxy handshake. */
const HANDSHAKE_TIMEOUT_MS = 15_000;
/**
 * Clients in the handshake at once, from one address and in all: before its
 * token no client is a device with quotas, and each holds a descriptor for
 * up to the handshake timeout. Past either, a new connection is closed at once.
 * One machine's agents open hundreds at once (npm, a parallel curl, a burst
 * of 500 in the soak), so one address gets a quarter of the whole.
 */
export const MAX_HANDSHAKING_PER_SOURCE = 1024;
export const MAX_HANDSHAKING = 4096;

export type DeviceLookup = (token: string | undefined) => DeviceIdentity | undefined;

export interface ProxyListenerOptions {
  listen: string;
  /** Which protocols this port accepts. */
  protocols: "both" | "socks5";
  identify: DeviceLookup;
  /** Whether a client without a token may proceed (a default profile exists). */
  allowAnonymous: () => boolean;
  onFlow: (flow: Flow) => void;
  /**
   * The device's quotas for a new flow (app/dispatch/quotas.ts), asked
   * before the handshake is answered: admitted, `release` runs when the
   * connection closes; refused, the client gets the protocol's refusal (the
   * caller records the event, naming the device and the quota).
   */
  admit?: (device: DeviceIdentity, dst: { host: string; port: number }, flowId: string) => { ok: true; release: () => void } | { ok: false; reason: string };
  /** A client refused before any Flow (405, 407, 400, 431): recorded as an event. */
  onRefusal?: (r: ProxyRefusal) => void;
  /** Bounds on clients in the handshake (defaults MAX_HANDSHAKING_PER_SOURCE, MAX_HANDSHAKING). */
  maxHandshakingPerSource?: number;
  maxHandshaking?: number;
}

export interface ProxyRefusal {
  src: { host: string; port: number };
  /** The destination asked for, when the request named one. */
  dst?: { host: string; port: number };
  /** The HTTP status answered (none for SOCKS5, which answers with its own reply code). */
  status?: number;
  reason: string;
}

export interface ProxyListener {
  address: { host: string; port: number };
  close(): Promise<void>;
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(listen);
  if (!m) throw new Error(`invalid listen address "${listen}" (want host:port)`);
  return { host: m[1]!, port: Number(m[2]) };
}

export function startProxyListener(opts: ProxyListenerOptions): Promise<ProxyListener> {
  const { host, port } = parseListen(opts.listen);
  // Clients still in the proxy handshake: closed with the listener (a Flow is its owner's to end).
  const handshaking = new Set<net.Socket>();
  const perSource = new Map<string, number>();
  let warnedAt = 0;
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, (sock) => {
    const source = sock.remoteAddress ?? "unknown";
    const fromSource = perSource.get(source) ?? 0;
    if (fromSource >= (opts.maxHandshakingPerSource ?? MAX_HANDSHAKING_PER_SOURCE) || handshaking.size >= (opts.maxHandshaking ?? MAX_HANDSHAKING)) {
      if (Date.now() - warnedAt > 10_000) {
        warnedAt = Date.now();
        log.warn("proxy: too many clients in the handshake, connection closed", { source, fromSource, total: handshaking.size });
      }
      sock.destroy();
      return;
    }
    sock.setNoDelay(true);
    handshaking.add(sock);
    perSource.set(source, fromSource + 1);
    let counted = true;
    const done = () => {
      if (!counted) return;
      counted = false;
      handshaking.delete(sock);
      const n = (perSource.get(source) ?? 1) - 1;
      if (n > 0) perSource.set(source, n);
      else perSource.delete(source);
    };
    sock.once("close", done);
    handleClient(sock, { ...opts, onFlow: (flow) => (done(), opts.onFlow(flow)) });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const addr = server.address() as net.AddressInfo;
      resolve({
        address: { host: addr.address, port: addr.port },
        // Resolves once every connection it accepted is gone.
        close: () =>
          new Promise<void>((r) => {
            server.close(() => r());
            for (const s of handshaking) s.destroy();
          }),
      });
    });
  });
}

function handleClient(sock: net.Socket, opts: ProxyListenerOptions): void {
  let buf = new Uint8Array(0);
  let socks: Socks5Handshake | undefined;
  let done = false;
  const timer = setTimeout(() => {
    if (!done) sock.destroy();
  }, HANDSHAKE_TIMEOUT_MS);

  const finish = () => {
    done = true;
    clearTimeout(timer);
    sock.off("data", onData);
  };

  const src = () => ({ host: sock.remoteAddress ?? "unknown", port: sock.remotePort ?? 0 });
  /** The device's quotas admit a flow (its id), or the client has been refused in its protocol's form (undefined). */
  const admitted = (device: DeviceIdentity, dst: { host: string; port: number }, socks5: boolean): string | undefined => {
    const id = newFlowId();
    const a = opts.admit?.(device, dst, id) ?? { ok: true as const, release: () => undefined };
    if (a.ok) {
      sock.once("close", a.release);
      return id;
    }
    finish();
    sock.end(socks5 ? reply(Reply.NOT_ALLOWED) : proxyError(429, a.reason));
    return undefined;
  };
  const emitFlow = (id: string, dstHost: string, dstPort: number, device: DeviceIdentity, rest: Uint8Array, forwardProxy = false) => {
    finish();
    sock.pause();
    if (rest.length > 0) sock.unshift(Buffer.from(rest));
    opts.onFlow({
      id,
      proto: "tcp",
      src: src(),
      dst: { host: dstHost, port: dstPort },
      device,
      conn: sock,
      startedAt: Date.now(),
      ...(forwardProxy ? { forwardProxy: true } : {}),
    });
  };
  const refuse = (status: number, message: string, dst?: { host: string; port: number }, extra: [string, string][] = []) => {
    finish();
    sock.end(proxyError(status, message, extra));
    opts.onRefusal?.({ src: src(), ...(dst ? { dst } : {}), status, reason: message });
  };

  const onData = (chunk: Buffer) => {
    if (done) return;
    if (!socks && buf.length === 0 && chunk[0] === 0x05) {
      socks = new Socks5Handshake(opts.allowAnonymous());
    }
    if (socks) {
      const step = socks.push(chunk);
      if (step.send) sock.write(step.send);
      if (step.kind === "need-more") return;
      if (step.kind === "fail") {
        finish();
        log.debug("socks5 handshake failed", { reason: step.reason });
        sock.end();
        return;
      }
      const token = step.password || step.username || undefined;
      const device = opts.identify(token);
      if (!device) {
        finish();
        sock.end(reply(Reply.NOT_ALLOWED));
        const reason = `socks5: ${token ? "unknown or revoked device token" : "a device token is required"}`;
        opts.onRefusal?.({ src: src(), dst: { host: step.host, port: step.port }, reason });
        return;
      }
      const id = admitted(device, { host: step.host, port: step.port }, true);
      if (id === undefined) return;
      sock.write(reply(Reply.SUCCEEDED));
      emitFlow(id, step.host, step.port, device, step.rest);
      return;
    }
    if (opts.protocols === "socks5") {
      finish();
      sock.destroy();
      return;
    }
    buf = buf.length === 0 ? new Uint8Array(chunk) : Buffer.concat([buf, chunk]);
    const parsed = parseConnectHead(buf);
    if (parsed.kind === "need-more") return;
    if (parsed.kind === "reject") {
      refuse(parsed.status, parsed.message);
      return;
    }
    const device = opts.identify(parsed.token);
    if (!device) {
      const message = parsed.token ? "unknown or revoked device token" : "a device token is required";
      refuse(407, message, { host: parsed.host, port: parsed.port }, [["Proxy-Authenticate", 'Basic realm="clawpatrol"']]);
      return;
    }
    const id = admitted(device, { host: parsed.host, port: parsed.port }, false);
    if (id === undefined) return;
    if (parsed.kind === "forward") {
      emitFlow(id, parsed.host, parsed.port, device, parsed.rest, true);
      return;
    }
    sock.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    emitFlow(id, parsed.host, parsed.port, device, parsed.rest);
  };

  sock.on("data", onData);
  sock.on("error", () => {
    if (!done) finish();
  });
  sock.on("end", () => {
    if (!done) {
      finish();
      sock.end();
    }
  });
}

function proxyError(status: number, message: string, extra: [string, string][] = []): string {
  const reason = STATUS_TEXT[status] ?? "Error";
  const body = JSON.stringify({ error: message }) + "\n";
  const headers = [
    ["Content-Type", "application/json"],
    ["Content-Length", String(Buffer.byteLength(body))],
    ["Connection", "close"],
    ...extra,
  ];
  return `HTTP/1.1 ${status} ${reason}\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join("")}\r\n${body}`;
}

const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  405: "Method Not Allowed",
  407: "Proxy Authentication Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
};
