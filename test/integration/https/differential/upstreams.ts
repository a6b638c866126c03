// The upstreams of the differential tests. Each is a plain-HTTP server behind
// a TLS tap (test CA) that records the exact bytes the gateway sent; each
// reports the requests it parsed, in its own reading, as SeenRequest.
//
//   lenient  a raw-socket server that answers any method (CONNECT and `get`
//            included) with 200, honours Content-Length on every request,
//            sends a body after HEAD, ignores Accept-Encoding, and on a few
//            paths answers in the ways a careless server does (below)
//   bun      Bun.serve
//   python   http.server (py_upstream.py)
//   nginx    nginx-light, `return 200` with the request echoed
//
// Every one echoes the Authorization header it received back in the body,
// so a credential the gateway injects comes back unless it is scrubbed.
import net from "node:net";
import tls from "node:tls";
import { brotliCompressSync, deflateSync, gzipSync } from "node:zlib";
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import path from "node:path";
import type { TestPki } from "../../support/pki.ts";

export interface SeenRequest {
  method: string;
  target: string;
  host: string | undefined;
  authorization: string | undefined;
}

export interface DiffUpstream {
  name: string;
  /** The TLS tap's port, what the gateway dials. */
  port: number;
  /** Every byte the tap passed to the server. */
  received(): Buffer;
  /** Requests the server parsed so far (async for servers that log to a file). */
  seen(): Promise<SeenRequest[]>;
  stop(): Promise<void>;
}

/** A TLS server that records and pipes every connection to 127.0.0.1:backendPort. */
function startTap(pki: TestPki, backendPort: number): Promise<{ port: number; received: Buffer[]; close(): void }> {
  const received: Buffer[] = [];
  const socks = new Set<net.Socket>();
  const server = tls.createServer({ cert: pki.certPem, key: pki.keyPem, ALPNProtocols: ["http/1.1"] }, (front) => {
    const back = net.connect(backendPort, "127.0.0.1");
    socks.add(front);
    socks.add(back);
    front.on("data", (d: Buffer) => {
      received.push(Buffer.from(d));
      back.write(d);
    });
    back.on("data", (d: Buffer) => front.write(d));
    front.on("end", () => back.end());
    back.on("end", () => front.end());
    const both = () => {
      front.destroy();
      back.destroy();
      socks.delete(front);
      socks.delete(back);
    };
    front.on("error", both);
    back.on("error", both);
    front.on("close", both);
    back.on("close", both);
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        received,
        close: () => {
          for (const s of socks) s.destroy();
          server.close();
        },
      });
    });
  });
}

async function withTap(pki: TestPki, name: string, backendPort: number, seen: () => Promise<SeenRequest[]>, stop: () => Promise<void> | void): Promise<DiffUpstream> {
  const tap = await startTap(pki, backendPort);
  return {
    name,
    port: tap.port,
    received: () => Buffer.concat(tap.received),
    seen,
    async stop() {
      tap.close();
      await stop();
    },
  };
}

// ---- lenient ---------------------------------------------------------------

/** A WebSocket text frame from a server (unmasked, RFC 6455 §5.2). */
export function wsTextFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  if (payload.length >= 126) throw new Error("short frames only");
  return Buffer.concat([Buffer.from([0x81, payload.length]), payload]);
}

/** How the lenient server answers: by path, a careless server's habits. */
function lenientAnswer(method: string, target: string, headers: Map<string, string>): Buffer {
  const auth = headers.get("authorization") ?? "";
  const echo = Buffer.from(`${method} ${target}\nauthorization: ${auth}\n`);
  const plain = (status: string, body: Buffer, extra = "") =>
    Buffer.concat([Buffer.from(`HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n${extra}\r\n`), body]);
  const p = target.replace(/\?.*/, "");
  switch (p) {
    case "/gzip":
      return plain("200 OK", gzipSync(echo), "Content-Encoding: gzip\r\n");
    case "/gzip-chunked": {
      const z = gzipSync(echo);
      return Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n${z.length.toString(16)}\r\n`), z, Buffer.from("\r\n0\r\n\r\n")]);
    }
    case "/deflate":
      return plain("200 OK", deflateSync(echo), "Content-Encoding: deflate\r\n");
    case "/br":
      return plain("200 OK", brotliCompressSync(echo), "Content-Encoding: br\r\n");
    case "/stacked":
      return plain("200 OK", brotliCompressSync(gzipSync(echo)), "Content-Encoding: gzip, br\r\n");
    case "/bad-gzip":
      return plain("200 OK", Buffer.concat([Buffer.from([0x1f, 0x8b]), echo]), "Content-Encoding: gzip\r\n");
    case "/hints":
      return Buffer.concat([Buffer.from(`HTTP/1.1 103 Early Hints\r\nLink: <${auth}>\r\nX-Auth: ${auth}\r\n\r\n`), plain("200 OK", echo)]);
    case "/b64":
      return plain("200 OK", Buffer.concat([echo, Buffer.from(`echo: ${Buffer.from(`authorization: ${auth}\n`).toString("base64")}\n`)]));
    case "/ws-deflate":
      // permessage-deflate although the gateway offered no extension.
      return Buffer.concat([
        Buffer.from("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"),
        wsTextFrame(`auth=${auth}`),
      ]);
    case "/reason":
      return plain(`200 ${auth}`, echo);
    case "/header-name":
      return plain("200 OK", echo, `${auth.replace(/[^A-Za-z0-9-]/g, "-")}: x\r\n`);
    case "/trailers":
      return Buffer.concat([
        Buffer.from(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Auth\r\n\r\n`),
        Buffer.from(`${echo.length.toString(16)}\r\n`),
        echo,
        Buffer.from(`\r\n0\r\nX-Auth: ${auth}\r\n\r\n`),
      ]);
    case "/ws":
      return Buffer.concat([
        Buffer.from("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n"),
        wsTextFrame(`auth=${auth}`),
      ]);
    case "/switch":
      return Buffer.from(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n`);
    case "/both-lengths":
      // TE and CL together: the gateway must frame by TE and drop CL.
      return Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n${echo.length.toString(16)}\r\n`), echo, Buffer.from("\r\n0\r\n\r\n")]);
    default:
      // A body even after HEAD; 200 to anything, CONNECT included.
      return plain("200 OK", echo);
  }
}

export async function startLenient(pki: TestPki): Promise<DiffUpstream> {
  const seen: SeenRequest[] = [];
  const socks = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    socks.add(sock);
    sock.on("close", () => socks.delete(sock));
    sock.on("error", () => sock.destroy());
    let buf = Buffer.alloc(0);
    let upgraded = false;
    sock.on("data", (d: Buffer) => {
      if (upgraded) return;
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
        const [method = "", target = ""] = lines[0]!.split(" ");
        const headers = new Map<string, string>();
        for (const l of lines.slice(1)) {
          const c = l.indexOf(":");
          if (c > 0 && !headers.has(l.slice(0, c).trim().toLowerCase())) headers.set(l.slice(0, c).trim().toLowerCase(), l.slice(c + 1).trim());
        }
        // /early answers at the head and reads what follows as new requests (the
        // server that answers before the body and keeps reading).
        const len = target.startsWith("/early") ? 0 : Number(headers.get("content-length") ?? 0) || 0;
        if (buf.length < end + 4 + len) return;
        buf = buf.subarray(end + 4 + len);
        seen.push({ method, target, host: headers.get("host"), authorization: headers.get("authorization") });
        sock.write(lenientAnswer(method, target, headers));
        if (target.startsWith("/ws") || target.startsWith("/switch")) {
          // Frames (or nothing) after the 101, then the server goes away.
          upgraded = true;
          sock.end();
          return;
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return withTap(pki, "lenient", port, async () => [...seen], () => {
    for (const s of socks) s.destroy();
    server.close();
  });
}

// ---- Bun.serve -------------------------------------------------------------

export async function startBun(pki: TestPki): Promise<DiffUpstream> {
  const seen: SeenRequest[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      await req.arrayBuffer();
      const auth = req.headers.get("authorization") ?? "";
      seen.push({ method: req.method, target: url.pathname + url.search, host: req.headers.get("host") ?? undefined, authorization: auth || undefined });
      return new Response(`${req.method} ${url.pathname}${url.search}\nauthorization: ${auth}\n`);
    },
  });
  return withTap(pki, "bun", server.port!, async () => [...seen], () => server.stop(true));
}

// ---- python http.server ------------------------------------------------------

export async function startPython(pki: TestPki): Promise<DiffUpstream> {
  const proc = Bun.spawn(["python3", "-u", path.join(import.meta.dir, "py_upstream.py")], { stdout: "pipe", stderr: "ignore" });
  const lines: string[] = [];
  let partial = "";
  let portResolve!: (p: number) => void;
  const portP = new Promise<number>((r) => (portResolve = r));
  void (async () => {
    for await (const chunk of proc.stdout as unknown as AsyncIterable<Uint8Array>) {
      partial += Buffer.from(chunk).toString();
      let nl: number;
      while ((nl = partial.indexOf("\n")) >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        const j = JSON.parse(line) as { port?: number };
        if (j.port !== undefined) portResolve(j.port);
        else lines.push(line);
      }
    }
  })();
  const port = await portP;
  return withTap(
    pki,
    "python",
    port,
    async () =>
      lines.map((l) => {
        const j = JSON.parse(l) as { method: string; target: string; host: string | null; authorization: string | null };
        return { method: j.method, target: j.target, host: j.host ?? undefined, authorization: j.authorization ?? undefined };
      }),
    async () => {
      proc.kill();
      await proc.exited;
    },
  );
}

// ---- nginx -------------------------------------------------------------------

export function nginxAvailable(): boolean {
  return existsSync("/usr/sbin/nginx");
}

export async function startNginx(pki: TestPki, dir: string): Promise<DiffUpstream> {
  const root = path.join(dir, "nginx");
  mkdirSync(path.join(root, "logs"), { recursive: true });
  const port = await freePort();
  const log = path.join(root, "logs", "seen.log");
  writeFileSync(log, "");
  writeFileSync(
    path.join(root, "nginx.conf"),
    `worker_processes 1;
daemon off;
pid ${root}/nginx.pid;
error_log ${root}/logs/error.log;
events { worker_connections 64; }
http {
  client_body_temp_path ${root}/body;
  access_log off;
  log_format seen escape=json '{"method":"$request_method","target":"$request_uri","host":"$http_host","authorization":"$http_authorization"}';
  server {
    listen 127.0.0.1:${port};
    access_log ${log} seen;
    location / {
      default_type text/plain;
      return 200 "$request_method $request_uri\\nauthorization: $http_authorization\\n";
    }
  }
}
`,
  );
  const proc = Bun.spawn(["/usr/sbin/nginx", "-p", root, "-c", path.join(root, "nginx.conf")], { stdout: "ignore", stderr: "pipe" });
  await waitForPort(port);
  return withTap(
    pki,
    "nginx",
    port,
    async () =>
      readFileSync(log, "utf8")
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => {
          const j = JSON.parse(l) as { method: string; target: string; host: string; authorization: string };
          return { method: j.method, target: j.target, host: j.host || undefined, authorization: j.authorization || undefined };
        }),
    async () => {
      proc.kill();
      await proc.exited;
    },
  );
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await Bun.sleep(20);
  }
  throw new Error(`nothing listens on ${port}`);
}
