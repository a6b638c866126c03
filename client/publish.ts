// `clawpatrol run --publish [HOSTADDR:]HOSTPORT[:PORT]`: a service the
// command listens on at 127.0.0.1:PORT inside its network namespace,
// reachable from the host at HOSTADDR:HOSTPORT (default 127.0.0.1).
//
//   host client ──TCP──▶ outer stage (host netns) listens on HOSTADDR:HOSTPORT
//                         │ per connection: connect to DIR/PORT.sock
//                         ▼ (a Unix socket path crosses network namespaces)
//                        inner stage (pid 1, the run's netns) listens on DIR/PORT.sock
//                         │ per connection: connect to 127.0.0.1:PORT inside
//                         ▼
//                        the command's service
//
// DIR is a fresh 0700 directory of the invoking user; the inner stage hides
// it from the command under a tmpfs once it listens (the outer, in the host
// mount namespace, still reaches the sockets). Nothing crosses the gateway:
// this is the host talking to its own command, as with `docker run -p`.
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import net from "node:net";
import path from "node:path";

export interface PublishSpec {
  hostAddress: string;
  hostPort: number;
  /** the port inside, on 127.0.0.1 */
  port: number;
}

/** Where one published port is handed from the outer stage to the inner one. */
export interface PublishedSocket {
  port: number;
  socket: string;
}

export class PublishError extends Error {}

function port(s: string, what: string, spec: string): number {
  if (!/^\d{1,5}$/.test(s) || Number(s) < 1 || Number(s) > 65535) throw new PublishError(`--publish ${spec}: ${what} must be a port (1-65535)`);
  return Number(s);
}

/** "8080", "18080:8080", "0.0.0.0:18080:8080", "[::1]:18080:8080", "127.0.0.1:8080". */
export function parsePublish(spec: string): PublishSpec {
  let rest = spec;
  let hostAddress: string | undefined;
  const v6 = /^\[([^\]]+)\]:(.*)$/.exec(spec);
  if (v6) {
    hostAddress = v6[1]!;
    rest = v6[2]!;
  }
  const parts = rest.split(":");
  if (!hostAddress && parts.length >= 2 && net.isIP(parts[0]!) !== 0) hostAddress = parts.shift()!;
  if (parts.length < 1 || parts.length > 2 || parts.some((p) => p === "")) {
    throw new PublishError(`--publish ${spec}: expected [HOSTADDR:]HOSTPORT[:PORT], e.g. 18080:8080`);
  }
  if (hostAddress !== undefined && net.isIP(hostAddress) === 0) throw new PublishError(`--publish ${spec}: ${hostAddress} is not an IP address`);
  const hostPort = port(parts[0]!, "HOSTPORT", spec);
  return { hostAddress: hostAddress ?? "127.0.0.1", hostPort, port: parts[1] === undefined ? hostPort : port(parts[1], "PORT", spec) };
}

function pipeBoth(a: net.Socket, b: net.Socket): void {
  a.pipe(b).pipe(a);
  const kill = () => {
    a.destroy();
    b.destroy();
  };
  a.on("error", kill);
  b.on("error", kill);
  a.on("close", () => b.destroy());
  b.on("close", () => a.destroy());
}

function listen(server: net.Server, how: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(how, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

export interface HostListeners {
  /** The private directory holding the sockets (removed by close). */
  dir: string;
  sockets: PublishedSocket[];
  close(): void;
}

/** Outer stage: binds every HOSTADDR:HOSTPORT now (so a busy port fails before the command starts). */
export async function listenOnHost(specs: PublishSpec[], runtimeDir: string): Promise<HostListeners> {
  mkdirSync(runtimeDir, { recursive: true, mode: 0o700 });
  const dir = mkdtempSync(path.join(runtimeDir, "pub-"));
  const servers: net.Server[] = [];
  const close = () => {
    for (const s of servers) s.close();
    rmSync(dir, { recursive: true, force: true });
  };
  const sockets: PublishedSocket[] = [];
  try {
    for (const spec of specs) {
      const socket = path.join(dir, `${spec.port}.sock`);
      if (!sockets.some((s) => s.port === spec.port)) sockets.push({ port: spec.port, socket });
      const server = net.createServer((conn) => pipeBoth(conn, net.connect(socket)));
      servers.push(server);
      try {
        await listen(server, { host: spec.hostAddress, port: spec.hostPort, exclusive: true });
      } catch (e) {
        throw new PublishError(`cannot publish on ${spec.hostAddress}:${spec.hostPort}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    }
  } catch (e) {
    close();
    throw e;
  }
  return { dir, sockets, close };
}

/** Inner stage: one Unix listener per published port, each connection to 127.0.0.1:PORT here. */
export async function serveInside(sockets: PublishedSocket[]): Promise<() => void> {
  const servers: net.Server[] = [];
  for (const s of sockets) {
    const server = net.createServer((conn) => pipeBoth(conn, net.connect(s.port, "127.0.0.1")));
    servers.push(server);
    await listen(server, { path: s.socket });
  }
  return () => {
    for (const s of servers) s.close();
  };
}
