// The DNS-VIP responder's shell: the only code here that touches sockets.
// UDP and TCP (RFC 7766: two-byte length prefix, several queries per
// connection, answers in any order) on the same address; each query goes
// through decideQuery() and is answered locally, forwarded to the upstream
// over the same transport it came in on, or dropped. An upstream that does
// not answer in time gets the client a SERVFAIL. A bad query never ends
// more than its own connection.
import dgram from "node:dgram";
import net from "node:net";
import { parseHostPort } from "../net/stack/udp-sockets.ts";
import type { LocalName } from "../net/stack/local-names.ts";
import { log } from "../log.ts";
import { decideQuery, errorAnswer, RCODE } from "./message.ts";
import { UpstreamResolver } from "./upstream.ts";

/** How long a forwarded query waits (stub resolvers retry after ~5 s). */
export const DNS_UPSTREAM_TIMEOUT_MS = 4_000;
/**
 * RFC 7766 §6.2.3: idle TCP connections are closed after a few seconds. A
 * connection must bring a whole query within this long (of opening, or of
 * its previous answer): bytes that trickle in do not extend it.
 */
export const TCP_IDLE_MS = 10_000;
const MAX_TCP_CONNECTIONS = 256;

export interface DnsResponderOptions {
  /** ip:port for both UDP and TCP; port 0 picks one free for both. */
  listen: string;
  /** ip:port of the upstream resolver. */
  upstream: string;
  /** Names answered here (clawpatrol.internal and the VIP-bound hostnames); read per query. */
  names(): Map<string, LocalName>;
  timeoutMs?: number;
  /** How long a TCP connection has for its next whole query (default TCP_IDLE_MS). */
  tcpQueryDeadlineMs?: number;
}

export interface DnsCounters {
  local: number;
  forwarded: number;
  formerr: number;
  servfail: number;
  dropped: number;
}

export interface DnsResponder {
  address: { host: string; port: number };
  counters: DnsCounters;
  close(): Promise<void>;
}

export async function startDnsResponder(opts: DnsResponderOptions): Promise<DnsResponder> {
  // parseHostPort refuses port 0; a listener may ask for any free port.
  const anyPort = /:0$/.test(opts.listen);
  const parsed = parseHostPort(anyPort ? opts.listen.replace(/:0$/, ":53") : opts.listen);
  const { host, addr } = parsed;
  const wantedPort = anyPort ? 0 : parsed.port;
  const upstream = new UpstreamResolver(opts.upstream, opts.timeoutMs ?? DNS_UPSTREAM_TIMEOUT_MS);
  const counters: DnsCounters = { local: 0, forwarded: 0, formerr: 0, servfail: 0, dropped: 0 };

  /** One query in, at most one answer out. */
  const handle = async (query: Uint8Array, transport: "udp" | "tcp"): Promise<Uint8Array | undefined> => {
    let d;
    try {
      d = decideQuery(query, opts.names());
    } catch (e) {
      log.error("dns: names table unavailable", { error: (e as Error).message });
      counters.servfail++;
      return query.length >= 12 && !(query[2]! & 0x80) ? errorAnswer(query, RCODE.SERVFAIL) : undefined;
    }
    switch (d.kind) {
      case "drop":
        counters.dropped++;
        return undefined;
      case "answer":
        if (d.why === "local") counters.local++;
        else counters.formerr++;
        return d.message;
      case "forward": {
        counters.forwarded++;
        const answer = transport === "udp" ? await upstream.queryUdp(query) : await upstream.queryTcp(query);
        if (answer) return answer;
        counters.servfail++;
        return errorAnswer(query, RCODE.SERVFAIL);
      }
    }
  };

  // UDP first: with port 0 its port is the one TCP takes too.
  const udp = dgram.createSocket(addr.length === 16 ? "udp6" : "udp4");
  udp.on("message", (msg, rinfo) => {
    void handle(new Uint8Array(msg), "udp").then((answer) => {
      if (answer) udp.send(answer, rinfo.port, rinfo.address);
    });
  });
  udp.on("error", (e) => log.error("dns: udp socket error", { error: e.message }));
  await new Promise<void>((resolve, reject) => {
    udp.once("error", reject);
    udp.bind(wantedPort, host, () => {
      udp.off("error", reject);
      resolve();
    });
  });
  const port = udp.address().port;

  const conns = new Set<net.Socket>();
  const tcp = net.createServer((conn) => {
    if (conns.size >= MAX_TCP_CONNECTIONS) {
      conn.destroy();
      return;
    }
    conns.add(conn);
    conn.on("close", () => conns.delete(conn));
    conn.on("error", () => conn.destroy());
    // A whole query within the deadline, counted from the open or the last answer; trickled bytes do not count.
    const deadlineMs = opts.tcpQueryDeadlineMs ?? TCP_IDLE_MS;
    let pending = 0;
    let deadline: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      if (deadline) clearTimeout(deadline);
      deadline = pending > 0 ? undefined : setTimeout(() => conn.destroy(), deadlineMs);
    };
    conn.on("close", () => deadline && clearTimeout(deadline));
    arm();
    let buf: Buffer = Buffer.alloc(0);
    conn.on("data", (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (len === 0) {
          // Not a DNS message at all: this connection is done.
          counters.dropped++;
          conn.destroy();
          return;
        }
        if (buf.length < 2 + len) break;
        const query = new Uint8Array(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        // While a query is answered (the upstream may take its time), no deadline runs.
        pending++;
        arm();
        void handle(query, "tcp").then((answer) => {
          pending--;
          if (conn.destroyed) return;
          arm();
          if (!answer) return;
          const frame = Buffer.alloc(2 + answer.length);
          frame.writeUInt16BE(answer.length, 0);
          frame.set(answer, 2);
          conn.write(frame);
        }, () => {
          pending--;
          if (!conn.destroyed) arm();
        });
      }
    });
  });
  try {
    await new Promise<void>((resolve, reject) => {
      tcp.once("error", reject);
      tcp.listen({ host, port, exclusive: true }, () => {
        tcp.off("error", reject);
        resolve();
      });
    });
  } catch (e) {
    udp.close();
    upstream.close();
    throw e;
  }
  tcp.on("error", (e) => log.error("dns: tcp listener error", { error: e.message }));

  let closed = false;
  return {
    address: { host, port },
    counters,
    async close() {
      if (closed) return;
      closed = true;
      upstream.close();
      udp.close();
      for (const c of conns) c.destroy();
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
    },
  };
}
