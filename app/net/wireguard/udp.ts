/**
 * The UDP boundary of the userspace WireGuard shell, with two
 * implementations: Bun.udpSocket (sendMany; no socket buffer sizing) and
 * node:dgram (one send per datagram; SO_RCVBUF/SO_SNDBUF settable, which
 * absorbs bursts: wireguard-go asks for 7 MB).
 */
import * as dgram from "node:dgram";

export interface UdpHandlers {
  datagram(data: Uint8Array, port: number, address: string): void;
  /** The socket can take more after send() returned less than asked. */
  drain(): void;
  error(err: Error): void;
}

export interface UdpTransport {
  readonly host: string;
  readonly port: number;
  /** flat [data, port, address, …]; returns how many datagrams were taken */
  sendMany(flat: readonly (Uint8Array | number | string)[]): number;
  close(): void;
}

export type UdpBackend = "bun" | "node";

export interface UdpBindOptions {
  host: string;
  port: number;
  backend?: UdpBackend;
  /** bytes; node backend only (the kernel caps it at net.core.rmem_max) */
  recvBufferSize?: number;
  sendBufferSize?: number;
}

export async function bindUdp(o: UdpBindOptions, h: UdpHandlers): Promise<UdpTransport> {
  return (o.backend ?? "bun") === "node" ? bindNode(o, h) : bindBun(o, h);
}

async function bindBun(o: UdpBindOptions, h: UdpHandlers): Promise<UdpTransport> {
  const sock = await Bun.udpSocket({
    hostname: o.host,
    port: o.port,
    binaryType: "uint8array",
    socket: {
      data: (_s, data, port, address) => h.datagram(data, port, address),
      drain: () => h.drain(),
      error: (_s, err) => h.error(err),
    },
  });
  return {
    host: sock.hostname,
    port: sock.port,
    sendMany(flat) {
      if (flat.length === 3) return sock.send(flat[0] as Uint8Array, flat[1] as number, flat[2] as string) ? 1 : 0;
      return sock.sendMany(flat);
    },
    close: () => sock.close(),
  };
}

interface NativeUdpSocket {
  sendMany(flat: readonly (Uint8Array | number | string)[]): number;
}

/**
 * Bun implements node:dgram over its own UDP socket, whose sendMany is one
 * sendmmsg(2): per-datagram dgram.send (a lookup callback, then one
 * sendmsg each) was 40% of the gateway's CPU when it sends bulk data. An
 * internal of the pinned Bun, looked up defensively: without it, send().
 */
export function nativeSocketOf(sock: dgram.Socket): NativeUdpSocket | null {
  const state = Object.getOwnPropertySymbols(sock)
    .filter((s) => s.description === "state symbol")
    .map((s) => (sock as unknown as Record<symbol, unknown>)[s])[0] as { handle?: { socket?: Partial<NativeUdpSocket> } } | undefined;
  const native = state?.handle?.socket;
  return native !== undefined && typeof native.sendMany === "function" ? (native as NativeUdpSocket) : null;
}

async function bindNode(o: UdpBindOptions, h: UdpHandlers): Promise<UdpTransport> {
  const type = o.host.includes(":") ? "udp6" : "udp4";
  const sock = dgram.createSocket({ type, recvBufferSize: o.recvBufferSize, sendBufferSize: o.sendBufferSize });
  sock.on("message", (m, r) => h.datagram(new Uint8Array(m.buffer, m.byteOffset, m.byteLength), r.port, r.address));
  sock.on("error", (e) => h.error(e));
  await new Promise<void>((resolve, reject) => {
    sock.once("error", reject);
    sock.bind(o.port, o.host, () => {
      sock.off("error", reject);
      resolve();
    });
  });
  const addr = sock.address();
  const native = nativeSocketOf(sock);
  return {
    host: addr.address,
    port: addr.port,
    sendMany(flat) {
      // One sendmmsg for the batch where Bun exposes it; whatever it could
      // not take (a full socket buffer) goes through dgram's own queue,
      // which waits for the socket to drain.
      let taken = 0;
      if (native !== null && flat.length > 3) {
        try {
          taken = native.sendMany(flat) * 3;
        } catch {
          taken = 0;
        }
      }
      for (let i = taken; i < flat.length; i += 3) sock.send(flat[i] as Uint8Array, flat[i + 1] as number, flat[i + 2] as string);
      return flat.length / 3;
    },
    close: () => sock.close(),
  };
}
