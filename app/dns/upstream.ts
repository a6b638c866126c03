// The upstream resolver, as the responder's shell reaches it:
//
//   UDP: one socket; each query's id is rewritten to one unique among the
//     pending (clients pick ids independently) and restored on the answer.
//     Only datagrams from the resolver's address and port are accepted.
//   TCP: one connection per query (RFC 7766 framing), for clients that
//     retried over TCP after a truncated answer.
//
// Either way the answer comes back verbatim (TC bit included), or undefined
// after `timeoutMs` — the caller answers SERVFAIL.
import dgram from "node:dgram";
import net from "node:net";
import { parseHostPort } from "../net/stack/udp-sockets.ts";
import { DNS_HEADER_LEN } from "./message.ts";

interface Pending {
  originalId: number;
  timer: ReturnType<typeof setTimeout>;
  done(answer: Uint8Array | undefined): void;
}

export class UpstreamResolver {
  readonly host: string;
  readonly port: number;
  private readonly family: 4 | 6;
  private socket: dgram.Socket | undefined;
  private readonly pending = new Map<number, Pending>();
  private closed = false;

  constructor(
    address: string,
    private readonly timeoutMs: number,
    private readonly maxPending = 4096,
  ) {
    const a = parseHostPort(address);
    this.host = a.host;
    this.port = a.port;
    this.family = a.addr.length === 16 ? 6 : 4;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /** Forward over UDP; resolves to the answer with the query's id, or undefined (timeout, overload). */
  queryUdp(query: Uint8Array): Promise<Uint8Array | undefined> {
    if (this.closed || this.pending.size >= this.maxPending) return Promise.resolve(undefined);
    let id = -1;
    for (let tries = 0; tries < 16 && id < 0; tries++) {
      const candidate = (Math.random() * 0x10000) | 0;
      if (!this.pending.has(candidate)) id = candidate;
    }
    if (id < 0) return Promise.resolve(undefined);
    const msg = Buffer.from(query);
    const originalId = msg.readUInt16BE(0);
    msg.writeUInt16BE(id, 0);
    return new Promise((resolve) => {
      const done = (answer: Uint8Array | undefined) => {
        clearTimeout(entry.timer);
        this.pending.delete(id);
        resolve(answer);
      };
      const entry: Pending = { originalId, done, timer: setTimeout(() => done(undefined), this.timeoutMs) };
      this.pending.set(id, entry);
      this.sock().send(msg, this.port, this.host, (err) => {
        if (err) done(undefined);
      });
    });
  }

  /** Forward over a fresh TCP connection; resolves to the answer, or undefined. */
  queryTcp(query: Uint8Array): Promise<Uint8Array | undefined> {
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      let buf: Buffer = Buffer.alloc(0);
      let settled = false;
      const finish = (answer: Uint8Array | undefined) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        conn.destroy();
        resolve(answer);
      };
      const conn = net.connect({ host: this.host, port: this.port });
      const timer = setTimeout(() => finish(undefined), this.timeoutMs);
      conn.on("connect", () => {
        const frame = Buffer.alloc(2 + query.length);
        frame.writeUInt16BE(query.length, 0);
        frame.set(query, 2);
        conn.write(frame);
      });
      conn.on("data", (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        if (buf.length < 2) return;
        const len = buf.readUInt16BE(0);
        if (buf.length >= 2 + len) finish(len >= DNS_HEADER_LEN ? new Uint8Array(buf.subarray(2, 2 + len)) : undefined);
      });
      conn.on("error", () => finish(undefined));
      conn.on("close", () => finish(undefined));
    });
  }

  close(): void {
    this.closed = true;
    for (const p of [...this.pending.values()]) p.done(undefined);
    this.socket?.close();
    this.socket = undefined;
  }

  private sock(): dgram.Socket {
    if (this.socket) return this.socket;
    const s = dgram.createSocket(this.family === 6 ? "udp6" : "udp4");
    s.on("message", (msg, rinfo) => {
      const from = rinfo.address.startsWith("::ffff:") ? rinfo.address.slice(7) : rinfo.address;
      if (from !== this.host || rinfo.port !== this.port || msg.length < DNS_HEADER_LEN) return;
      const p = this.pending.get(msg.readUInt16BE(0));
      if (!p) return; // late or unknown: dropped
      msg.writeUInt16BE(p.originalId, 0);
      p.done(new Uint8Array(msg));
    });
    s.on("error", () => {
      // A broken socket: the pending queries time out into SERVFAIL; the next query opens a new one.
      if (this.socket === s) this.socket = undefined;
      s.close();
    });
    this.socket = s;
    return s;
  }
}
