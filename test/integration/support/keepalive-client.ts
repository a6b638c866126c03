// An agent's keep-alive HTTPS connection through the gateway's explicit
// proxy, kept open across requests so a test can see a connection dropped
// (not silently redialed, as curl, fetch or Go would): CONNECT to the
// upstream's loopback address, TLS with the test host in SNI trusting only
// the gateway's CA, then HTTP/1.1 requests one after another. Responses
// must carry Content-Length (the test upstream's and the gateway's do).
import net from "node:net";
import tls from "node:tls";

export interface KeepAliveResponse {
  status: number;
  headers: Map<string, string>;
  body: string;
}

export class KeepAliveClient {
  private buf: Buffer = Buffer.alloc(0);
  private waiting: (() => void) | undefined;
  private ended: Error | undefined;

  private constructor(
    private readonly sock: tls.TLSSocket,
    private readonly host: string,
  ) {
    sock.on("data", (d: Buffer) => {
      this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
      this.waiting?.();
    });
    const end = (e?: Error) => {
      this.ended ??= e ?? new Error("connection closed by the gateway");
      this.waiting?.();
    };
    sock.on("end", () => end());
    sock.on("close", () => end());
    sock.on("error", (e) => end(e));
  }

  static async open(o: { proxy: { host: string; port: number }; host: string; port: number; caPem: string; token?: string; timeoutMs?: number }): Promise<KeepAliveClient> {
    const raw = net.connect(o.proxy.port, o.proxy.host);
    raw.setTimeout(o.timeoutMs ?? 30_000, () => raw.destroy(new Error("proxy handshake timed out")));
    await new Promise<void>((resolve, reject) => {
      raw.once("connect", resolve);
      raw.once("error", reject);
    });
    const auth = o.token ? `Proxy-Authorization: Basic ${Buffer.from(`device:${o.token}`).toString("base64")}\r\n` : "";
    raw.write(`CONNECT 127.0.0.1:${o.port} HTTP/1.1\r\nHost: 127.0.0.1:${o.port}\r\n${auth}\r\n`);
    await new Promise<void>((resolve, reject) => {
      let head = Buffer.alloc(0);
      const onData = (d: Buffer) => {
        head = Buffer.concat([head, d]);
        const cut = head.indexOf("\r\n\r\n");
        if (cut < 0) return;
        raw.off("data", onData);
        raw.pause();
        if (!/^HTTP\/1\.1 200/.test(head.toString("latin1"))) return reject(new Error(`CONNECT refused: ${head.toString("latin1").split("\r\n")[0]}`));
        resolve();
      };
      raw.on("data", onData);
      raw.once("error", reject);
      raw.once("close", () => reject(new Error("proxy closed during CONNECT")));
    });
    raw.setTimeout(0);
    const sock = tls.connect({ socket: raw, servername: o.host, ca: o.caPem, ALPNProtocols: ["http/1.1"] });
    await new Promise<void>((resolve, reject) => {
      sock.once("secureConnect", resolve);
      sock.once("error", reject);
    });
    return new KeepAliveClient(sock, o.host);
  }

  /** One request on this connection; rejects when the connection ended before its whole response. */
  async request(method: string, path: string, headers: Record<string, string> = {}, timeoutMs = 30_000): Promise<KeepAliveResponse> {
    if (this.ended) throw this.ended;
    const lines = [`${method} ${path} HTTP/1.1`, `Host: ${this.host}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), "Content-Length: 0", "", ""];
    this.sock.write(lines.join("\r\n"));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.parse();
      if (r) return r;
      if (this.ended) throw this.ended;
      if (Date.now() > deadline) throw new Error(`no response to ${method} ${path} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiting = () => {
          clearTimeout(t);
          this.waiting = undefined;
          resolve();
        };
      });
    }
  }

  private parse(): KeepAliveResponse | undefined {
    const cut = this.buf.indexOf("\r\n\r\n");
    if (cut < 0) return undefined;
    const [statusLine, ...rest] = this.buf.subarray(0, cut).toString("latin1").split("\r\n");
    const headers = new Map<string, string>();
    for (const l of rest) {
      const i = l.indexOf(":");
      headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
    }
    const length = Number(headers.get("content-length"));
    if (!Number.isInteger(length)) throw new Error(`a response without Content-Length: ${statusLine}`);
    if (this.buf.length < cut + 4 + length) return undefined;
    const body = this.buf.subarray(cut + 4, cut + 4 + length).toString("utf8");
    this.buf = this.buf.subarray(cut + 4 + length);
    return { status: Number(statusLine!.split(" ")[1]), headers, body };
  }

  close(): void {
    this.sock.destroy();
  }
}
