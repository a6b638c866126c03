// The two places UDP from devices leaves the gateway through its own
// sockets (node:dgram), kept apart from the packet code:
//
//   DnsForwarder: every :53 query goes to one resolver over one socket. The
//     query id is rewritten to one unique among pending queries (devices
//     pick ids independently) and restored on the answer, which is sent
//     back from the address and port the device queried. Pending queries
//     are bounded in number and time, and per source address (a device) in
//     number and rate, so one device's flood cannot take the others' share;
//     a late or unknown answer is dropped.
//   UdpRelay: one socket per (src, sport, dst, dport) flow, created on the
//     first datagram, closed after an idle time. Only datagrams from the
//     flow's destination are accepted back (address-and-port-dependent
//     filtering, RFC 4787 §5), written to the device with the addresses swapped.
//
// Time comes in as `now`; the stack calls expire(now) at pollAt().
import dgram from "node:dgram";
import { formatIp, parseIp } from "../ipaddr.ts";

export interface UdpTuple {
  src: Uint8Array;
  srcPort: number;
  dst: Uint8Array;
  dstPort: number;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Bytes of a socket's peer address, with IPv4-mapped IPv6 reduced to IPv4. */
function addrBytes(address: string): Uint8Array | undefined {
  const b = parseIp(address);
  if (b === undefined || b.length === 4) return b;
  let mapped = b[10] === 0xff && b[11] === 0xff;
  for (let i = 0; i < 10 && mapped; i++) if (b[i] !== 0) mapped = false;
  return mapped ? b.slice(12) : b;
}

/** "host:port", "[v6]:port", or a bare host (port 53). */
export function parseHostPort(s: string, defaultPort = 53): { host: string; addr: Uint8Array; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s) ?? /^([^:]+)(?::(\d+))?$/.exec(s) ?? /^([0-9a-fA-F:]+)()$/.exec(s);
  const host = m?.[1];
  const addr = host === undefined ? undefined : parseIp(host);
  const port = m?.[2] ? Number(m[2]) : defaultPort;
  if (host === undefined || addr === undefined || !(port > 0 && port < 65536)) {
    throw new Error(`invalid resolver address "${s}" (want ip:port)`);
  }
  return { host, addr, port };
}

// ------------------------------------------------------------------- DNS

/** RFC 1035 §4.1.1: the fixed header; anything shorter is not a DNS message. */
export const DNS_HEADER_LEN = 12;
/** How long a forwarded query waits for its answer (stub resolvers retry after ~5 s). */
export const DNS_QUERY_TIMEOUT_MS = 5_000;

/** One source address's share of the forwarder: pending queries, and new queries a second (a burst of two seconds' worth). */
export const DNS_MAX_PENDING_PER_SOURCE = 256;
export const DNS_QUERIES_PER_SECOND_PER_SOURCE = 500;

export interface DnsForwarderOptions {
  resolver: string;
  maxPending: number;
  timeoutMs: number;
  /** Pending queries one source address may have (default DNS_MAX_PENDING_PER_SOURCE). */
  maxPendingPerSource?: number;
  /** New queries a second one source address may send (default DNS_QUERIES_PER_SECOND_PER_SOURCE). */
  queriesPerSecondPerSource?: number;
  /** Deliver an answer (id restored) to the device that asked. */
  reply(query: UdpTuple, answer: Uint8Array): void;
  drop(reason: string): void;
  now(): number;
  /** Whether a new flow may open (the device's quota); default: yes. */
  admit?(flow: UdpTuple): boolean;
  /** An admitted flow has ended. */
  released?(flow: UdpTuple): void;
}

interface PendingQuery {
  tuple: UdpTuple;
  originalId: number;
  deadline: number;
  source: SourceShare;
}

interface SourceShare {
  key: string;
  pending: number;
  tokens: number;
  at: number;
}

export class DnsForwarder {
  readonly resolver: { host: string; addr: Uint8Array; port: number };
  private readonly opts: DnsForwarderOptions;
  private readonly pending = new Map<number, PendingQuery>(); // by rewritten id, in deadline order
  /** Per source address; forgotten once it has nothing pending and a full bucket. */
  private readonly sources = new Map<string, SourceShare>();
  private socket: dgram.Socket | null = null;
  private closed = false;

  constructor(opts: DnsForwarderOptions) {
    this.opts = opts;
    this.resolver = parseHostPort(opts.resolver);
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /** Forward one query (`payload` is borrowed). */
  query(tuple: UdpTuple, payload: Uint8Array, now: number): void {
    if (this.closed) return;
    this.expire(now);
    if (payload.length < DNS_HEADER_LEN) return this.opts.drop("dns: malformed");
    if (payload[2]! & 0x80) return this.opts.drop("dns: not-a-query"); // QR set: a response
    if (this.pending.size >= this.opts.maxPending) return this.opts.drop("dns: pending-full");
    const source = this.shareOf(tuple.src.join("."), now);
    if (source.pending >= (this.opts.maxPendingPerSource ?? DNS_MAX_PENDING_PER_SOURCE)) return this.opts.drop("dns: source-pending-full");
    if (source.tokens < 1) return this.opts.drop("dns: source-rate");
    let id = -1;
    for (let tries = 0; tries < 16; tries++) {
      const candidate = (Math.random() * 0x10000) | 0;
      if (!this.pending.has(candidate)) {
        id = candidate;
        break;
      }
    }
    if (id < 0) return this.opts.drop("dns: pending-full");
    const msg = Buffer.from(payload); // a copy: the link reuses its buffers
    const originalId = msg.readUInt16BE(0);
    msg.writeUInt16BE(id, 0);
    source.tokens -= 1;
    source.pending += 1;
    this.pending.set(id, { tuple, originalId, deadline: now + this.opts.timeoutMs, source });
    this.sock().send(msg, this.resolver.port, this.resolver.host, (err) => {
      if (err) {
        if (this.settle(id)) this.opts.drop("dns: send-failed");
      }
    });
  }

  /** The source's share, its bucket refilled to `now`. */
  private shareOf(key: string, now: number): SourceShare {
    const rate = this.opts.queriesPerSecondPerSource ?? DNS_QUERIES_PER_SECOND_PER_SOURCE;
    let s = this.sources.get(key);
    if (!s) {
      s = { key, pending: 0, tokens: 2 * rate, at: now };
      this.sources.set(key, s);
    }
    s.tokens = Math.min(2 * rate, s.tokens + ((now - s.at) / 1000) * rate);
    s.at = now;
    return s;
  }

  /** A pending query is over (answered, timed out, failed); undefined when it was not pending. */
  private settle(id: number): PendingQuery | undefined {
    const q = this.pending.get(id);
    if (q === undefined) return undefined;
    this.pending.delete(id);
    const s = q.source;
    s.pending -= 1;
    // A source with nothing pending and a full bucket is forgotten (made again as it was: no tokens gained).
    if (s.pending === 0 && this.shareOf(s.key, this.opts.now()).tokens >= 2 * (this.opts.queriesPerSecondPerSource ?? DNS_QUERIES_PER_SECOND_PER_SOURCE)) this.sources.delete(s.key);
    return q;
  }

  private sock(): dgram.Socket {
    if (this.socket !== null) return this.socket;
    const s = dgram.createSocket(this.resolver.addr.length === 16 ? "udp6" : "udp4");
    s.on("message", (msg, rinfo) => this.onAnswer(msg, rinfo));
    s.on("error", () => {
      this.opts.drop("dns: socket-error");
      if (this.socket === s) this.socket = null;
      s.close();
    });
    this.socket = s;
    return s;
  }

  private onAnswer(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const from = addrBytes(rinfo.address);
    if (from === undefined || !bytesEqual(from, this.resolver.addr) || rinfo.port !== this.resolver.port) {
      return this.opts.drop("dns: foreign-source");
    }
    if (msg.length < DNS_HEADER_LEN) return this.opts.drop("dns: malformed-answer");
    const id = msg.readUInt16BE(0);
    const q = this.settle(id);
    if (q === undefined) return this.opts.drop("dns: unknown-answer");
    if (q.deadline <= this.opts.now()) return this.opts.drop("dns: late-answer");
    msg.writeUInt16BE(q.originalId, 0);
    this.opts.reply(q.tuple, msg);
  }

  expire(now: number): void {
    for (const [id, q] of this.pending) {
      if (q.deadline > now) break;
      this.settle(id);
      this.opts.drop("dns: timeout");
    }
  }

  pollAt(): number | null {
    const first = this.pending.values().next();
    return first.done ? null : first.value.deadline;
  }

  close(): void {
    this.closed = true;
    this.pending.clear();
    this.sources.clear();
    this.socket?.close();
    this.socket = null;
  }
}

// ----------------------------------------------------------------- relay

/** Idle time after which a relayed UDP flow's socket is closed (RFC 4787 REQ-5: at least 2 minutes for NAT bindings; 60 s is the common UDP conntrack default). */
export const UDP_FLOW_IDLE_MS = 60_000;

export interface UdpRelayOptions {
  maxFlows: number;
  idleMs: number;
  /** A datagram from the flow's destination, to be written to the device. */
  reply(flow: UdpTuple, payload: Uint8Array): void;
  drop(reason: string): void;
  now(): number;
  /** Whether a new flow may open (the device's quota); default: yes. */
  admit?(flow: UdpTuple): boolean;
  /** An admitted flow has ended. */
  released?(flow: UdpTuple): void;
}

interface RelayFlow {
  key: string;
  tuple: UdpTuple;
  socket: dgram.Socket;
  host: string;
  lastActive: number;
}

function flowKey(t: UdpTuple): string {
  let s = String.fromCharCode(t.srcPort, t.dstPort);
  for (let i = 0; i < t.src.length; i++) s += String.fromCharCode(t.src[i]!);
  for (let i = 0; i < t.dst.length; i++) s += String.fromCharCode(t.dst[i]!);
  return s;
}

export class UdpRelay {
  private readonly opts: UdpRelayOptions;
  private readonly flows = new Map<string, RelayFlow>();
  /** A lower bound on the earliest idle deadline (activity only moves deadlines later). */
  private earliest: number | null = null;
  private closed = false;
  created = 0;

  constructor(opts: UdpRelayOptions) {
    this.opts = opts;
  }

  get size(): number {
    return this.flows.size;
  }

  /** Relay one datagram from the device (`payload` is borrowed); false when its device's quota refused a new flow. */
  send(tuple: UdpTuple, payload: Uint8Array, now: number): boolean {
    if (this.closed) return true;
    const key = flowKey(tuple);
    let f = this.flows.get(key);
    if (f === undefined) {
      if (this.flows.size >= this.opts.maxFlows) {
        this.expire(now);
        if (this.flows.size >= this.opts.maxFlows) {
          this.opts.drop("udp: relay-table-full");
          return true;
        }
      }
      if (this.opts.admit && !this.opts.admit(tuple)) {
        this.opts.drop("udp: relay-device-quota");
        return false;
      }
      f = this.open(key, tuple, now);
    }
    f.lastActive = now;
    const flow = f;
    f.socket.send(Buffer.from(payload), tuple.dstPort, f.host, (err) => {
      if (err) {
        this.opts.drop("udp: relay-send-failed");
        this.remove(flow);
      }
    });
    return true;
  }

  private open(key: string, tuple: UdpTuple, now: number): RelayFlow {
    const socket = dgram.createSocket(tuple.dst.length === 16 ? "udp6" : "udp4");
    const f: RelayFlow = { key, tuple: { ...tuple }, socket, host: formatIp(tuple.dst), lastActive: now };
    socket.on("message", (msg, rinfo) => {
      const from = addrBytes(rinfo.address);
      if (from === undefined || !bytesEqual(from, tuple.dst) || rinfo.port !== tuple.dstPort) {
        return this.opts.drop("udp: relay-foreign-source");
      }
      f.lastActive = this.opts.now();
      this.opts.reply(f.tuple, msg);
    });
    socket.on("error", () => {
      this.opts.drop("udp: relay-socket-error");
      this.remove(f);
    });
    this.flows.set(key, f);
    this.created++;
    const deadline = now + this.opts.idleMs;
    if (this.earliest === null || deadline < this.earliest) this.earliest = deadline;
    return f;
  }

  private remove(f: RelayFlow): void {
    if (this.flows.get(f.key) !== f) return;
    this.flows.delete(f.key);
    if (this.opts.admit) this.opts.released?.(f.tuple);
    try {
      f.socket.close();
    } catch {
      /* already closed */
    }
  }

  expire(now: number): void {
    if (this.earliest === null || now < this.earliest) return;
    let next: number | null = null;
    for (const f of Array.from(this.flows.values())) {
      const deadline = f.lastActive + this.opts.idleMs;
      if (deadline <= now) this.remove(f);
      else if (next === null || deadline < next) next = deadline;
    }
    this.earliest = next;
  }

  pollAt(): number | null {
    return this.earliest;
  }

  close(): void {
    this.closed = true;
    for (const f of Array.from(this.flows.values())) this.remove(f);
    this.earliest = null;
  }
}
