// A device for netstack tests: the other end of an in-memory link, with a
// client-side TcpTable (the engine's connect()) as its TCP stack. Non-TCP
// packets the gateway sends are collected for assertions.
import { createMemoryLinkPair, type MemoryLink } from "../../../app/net/tun/memory-link.ts";
import { emitTcpPacket } from "../../../app/net/stack/ip.ts";
import * as ipv4 from "../../../app/net/stack/wire/ipv4.ts";
import * as ipv6 from "../../../app/net/stack/wire/ipv6.ts";
import * as tcp from "../../../app/net/stack/wire/tcp.ts";
import { IPPROTO_TCP } from "../../../app/net/stack/wire/checksum.ts";
import { DEFAULT_TCP_SETTINGS, type TcpConnection, type TcpSettings } from "../../../app/net/stack/tcp/connection.ts";
import { TcpTable } from "../../../app/net/stack/tcp/table.ts";
import { NetStack, type NetStackOptions, type TcpFlowInit } from "../../../app/net/stack/netstack.ts";
import { parseIp } from "../../../app/net/ipaddr.ts";

export function ip(s: string): Uint8Array {
  const b = parseIp(s);
  if (b === undefined) throw new Error(`bad ip ${s}`);
  return b;
}

export interface Received {
  version: 4 | 6;
  src: Uint8Array;
  dst: Uint8Array;
  protocol: number;
  payload: Uint8Array;
  raw: Uint8Array;
}

export class Device {
  readonly table: TcpTable;
  readonly other: Received[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(readonly link: MemoryLink, settings: Partial<TcpSettings> = {}) {
    const s: TcpSettings = { ...DEFAULT_TCP_SETTINGS, rtoMinMs: 200, mss: link.mtu - 40, ...settings };
    this.table = new TcpTable({
      tcp: s,
      tcpV6: { ...s, mss: link.mtu - 60, defaultPeerMss: 1220 },
      issSecret: new Uint32Array([1, 2, 3, 4]),
    });
    link.onPackets((ps) => {
      const now = performance.now();
      for (const p of ps) this.input(p, now);
      this.pump();
    });
  }

  private input(p: Uint8Array, now: number): void {
    const version = p[0]! >> 4;
    let src: Uint8Array, dst: Uint8Array, protocol: number, payload: Uint8Array;
    if (version === 4) {
      const r = ipv4.parse(p);
      if (!r.ok) throw new Error(`device got a bad packet: ${r.reason}`);
      ({ src, dst, protocol } = r.repr);
      payload = r.payload;
    } else {
      const r = ipv6.parse(p);
      if (!r.ok) throw new Error(`device got a bad packet: ${r.reason}`);
      ({ src, dst } = r.repr);
      protocol = r.repr.nextHeader;
      payload = r.payload;
    }
    if (protocol === IPPROTO_TCP) {
      const t = tcp.parse(payload, src, dst);
      if (!t.ok) throw new Error(`device got a bad segment: ${t.reason}`);
      this.table.process(src, dst, t.repr, t.payload, now);
      return;
    }
    this.other.push({ version: version as 4 | 6, src, dst, protocol, payload: payload.slice(), raw: p.slice() });
  }

  connect(src: string, srcPort: number, dst: string, dstPort: number): TcpConnection {
    const c = this.table.connect(ip(src), srcPort, ip(dst), dstPort, performance.now());
    this.pump();
    return c;
  }

  /** Send whatever the table has due, and arm the timer for the rest. */
  pump(): void {
    const out = this.table.dispatch(performance.now());
    this.table.takeEvents();
    for (const o of out) this.link.write(emitTcpPacket(o.src, o.dst, o.segment.repr, o.segment.payload));
    const t = this.table.pollAt();
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (t !== null) {
      this.timer = setTimeout(() => this.pump(), Math.max(0, Math.ceil(t - performance.now())));
      this.timer.unref?.();
    }
  }

  /** Send raw IP packets into the gateway. */
  inject(...packets: Uint8Array[]): void {
    for (const p of packets) this.link.write(p);
  }

  close(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.link.close();
  }
}

export interface Harness {
  stack: NetStack;
  device: Device;
  flows: TcpFlowInit[];
  gatewayLink: MemoryLink;
  close(): void;
}

export function harness(opts: Partial<Omit<NetStackOptions, "link">> = {}, deviceSettings: Partial<TcpSettings> = {}): Harness {
  const [gatewayLink, deviceLink] = createMemoryLinkPair({ mtu: 1500, queueLimit: 1 << 16, batchLimit: 64 });
  const flows: TcpFlowInit[] = [];
  const stack = new NetStack({
    onTcpFlow: (f) => flows.push(f),
    settings: { ownAddresses: ["10.0.0.1", "fd00::1"] },
    ...opts,
    link: gatewayLink,
  });
  const device = new Device(deviceLink, deviceSettings);
  return {
    stack,
    device,
    flows,
    gatewayLink,
    close() {
      stack.close();
      device.close();
      gatewayLink.close();
    },
  };
}

/** Wait (yielding to I/O) until `pred` holds, or fail after `ms`. */
export async function until(pred: () => boolean, ms = 5000, what = "condition"): Promise<void> {
  const deadline = performance.now() + ms;
  while (!pred()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

export function pattern(n: number, seed: number): Uint8Array {
  let a = seed >>> 0;
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1103515245) + 12345) >>> 0;
    b[i] = a >>> 24;
  }
  return b;
}

/** Push all of `data` through a device-side connection, pumping as the window allows. */
export async function deviceSend(dev: Device, c: TcpConnection, data: Uint8Array, ms = 10_000): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const n = c.send(data.subarray(off));
    off += n;
    dev.pump();
    if (off < data.length) await until(() => c.sendCapacity > 0 || c.state === "CLOSED", ms, "device send space");
    if (c.state === "CLOSED") throw new Error("device connection closed while sending");
  }
}

/** Read from a device-side connection until `n` bytes or the peer's FIN. */
export async function deviceRecv(dev: Device, c: TcpConnection, n: number, ms = 10_000): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  await until(() => {
    while (got < n && c.recvQueued > 0) {
      const b = c.recv(n - got);
      out.set(b, got);
      got += b.length;
      dev.pump();
    }
    return got >= n || c.recvEnded;
  }, ms, `device to receive ${n} bytes`);
  return out.subarray(0, got);
}

export function concat(chunks: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const c of chunks) n += c.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
}
