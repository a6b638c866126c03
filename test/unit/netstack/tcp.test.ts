// TCP through the NetStack: a device (client-side engine over an in-memory
// link) dials arbitrary addresses; the pipeline sees a Duplex per connection.
import { afterEach, describe, expect, test } from "bun:test";
import type { Duplex } from "node:stream";
import type { TcpDuplex } from "../../../app/net/stack/tcp-duplex.ts";
import { concat, deviceRecv, deviceSend, equalBytes, harness, pattern, until, type Harness } from "./helpers.ts";

let h: Harness | null = null;
afterEach(() => {
  h?.close();
  h = null;
});

function collect(d: Duplex): { chunks: Buffer[]; ended: boolean; bytes(): Uint8Array; total(): number } {
  const r = {
    chunks: [] as Buffer[],
    ended: false,
    bytes: () => concat(r.chunks),
    total: () => r.chunks.reduce((n, c) => n + c.length, 0),
  };
  d.on("data", (c: Buffer) => r.chunks.push(c));
  d.on("end", () => (r.ended = true));
  return r;
}

describe("netstack tcp", () => {
  test("a connection to any address becomes a flow with its 5-tuple", async () => {
    h = harness();
    const c = h.device.connect("10.0.0.2", 40000, "93.184.216.34", 8080);
    await until(() => h!.flows.length === 1 && c.state === "ESTABLISHED");
    const f = h.flows[0]!;
    expect(f.src).toEqual({ host: "10.0.0.2", port: 40000 });
    expect(f.dst).toEqual({ host: "93.184.216.34", port: 8080 });
    expect(f.ipVersion).toBe(4);
    expect(h.stack.stats().tcp.flows).toBe(1);
  });

  test("1 MB each way, byte-exact, then half-close from the device first", async () => {
    h = harness();
    const N = 1024 * 1024;
    const up = pattern(N, 1);
    const down = pattern(N, 2);
    const c = h.device.connect("10.0.0.2", 40001, "198.51.100.7", 443);
    await until(() => h!.flows.length === 1);
    const conn = h.flows[0]!.conn;
    const got = collect(conn);

    const t0 = performance.now();
    await deviceSend(h.device, c, up);
    await until(() => got.total() >= N, 10_000, "upload");
    const tUp = performance.now() - t0;

    const t1 = performance.now();
    conn.write(Buffer.from(down));
    const recv = await deviceRecv(h.device, c, N);
    const tDown = performance.now() - t1;
    expect(equalBytes(got.bytes(), up)).toBe(true);
    expect(equalBytes(recv, down)).toBe(true);
    const mbit = (ms: number) => ((N * 8) / (ms / 1000) / 1e6).toFixed(0);
    console.log(`1 MiB device→gateway ${tUp.toFixed(1)} ms (${mbit(tUp)} Mbit/s); gateway→device ${tDown.toFixed(1)} ms (${mbit(tDown)} Mbit/s)`);

    // Device half-closes; the gateway may still write; then the gateway closes.
    c.close();
    h.device.pump();
    await until(() => got.ended, 5000, "end on the duplex");
    expect(conn.writable).toBe(true);
    conn.write(Buffer.from("after-fin"));
    const tail = await deviceRecv(h.device, c, 9);
    expect(Buffer.from(tail).toString()).toBe("after-fin");
    let closed = false;
    conn.on("close", () => (closed = true));
    conn.end();
    await until(() => c.recvEnded && closed, 5000, "both sides closed");
    await until(() => h!.stack.stats().tcp.connections === 0, 5000, "table empty");
  });

  test("half-close from the gateway first: the device keeps sending", async () => {
    h = harness();
    const c = h.device.connect("10.0.0.2", 40002, "198.51.100.7", 22);
    await until(() => h!.flows.length === 1);
    const conn = h.flows[0]!.conn;
    const got = collect(conn);
    conn.end(Buffer.from("bye"));
    const b = await deviceRecv(h.device, c, 10);
    expect(Buffer.from(b).toString()).toBe("bye");
    expect(c.recvEnded).toBe(true);
    expect(c.state).toBe("CLOSE-WAIT");
    await deviceSend(h.device, c, new TextEncoder().encode("still talking"));
    c.close();
    h.device.pump();
    await until(() => got.ended, 5000, "end");
    expect(Buffer.from(got.bytes()).toString()).toBe("still talking");
    await until(() => c.state === "CLOSED", 5000, "device closed");
  });

  test("a RST from the device destroys the duplex with ECONNRESET", async () => {
    h = harness();
    const c = h.device.connect("10.0.0.2", 40003, "203.0.113.9", 5432);
    await until(() => h!.flows.length === 1);
    const conn = h.flows[0]!.conn;
    let err: NodeJS.ErrnoException | null = null;
    conn.on("error", (e) => (err = e));
    c.abort();
    h.device.pump();
    await until(() => err !== null, 5000, "error");
    expect(err!.code).toBe("ECONNRESET");
    expect(conn.destroyed).toBe(true);
    expect(h.stack.stats().tcp.connections).toBe(0);
  });

  test("destroying the duplex resets the device's connection", async () => {
    h = harness();
    const c = h.device.connect("10.0.0.2", 40004, "203.0.113.9", 80);
    await until(() => h!.flows.length === 1);
    h.flows[0]!.conn.destroy();
    await until(() => c.state === "CLOSED", 5000, "device reset");
    expect(c.closeReason).toBe("reset");
  });

  test("backpressure: a consumer that stops reading closes the device's window; resume drains", async () => {
    h = harness();
    const N = 2 * 1024 * 1024;
    const up = pattern(N, 3);
    const c = h.device.connect("10.0.0.2", 40005, "198.51.100.8", 9000);
    await until(() => h!.flows.length === 1);
    const conn = h.flows[0]!.conn;
    const chunks: Buffer[] = [];
    let total = 0;
    let paused = false;
    const onData = (b: Buffer) => {
      chunks.push(b);
      total += b.length;
      if (!paused && total >= 100_000) {
        paused = true;
        conn.pause();
      }
    };
    conn.on("data", onData);
    // Send without waiting: the device keeps what does not fit.
    let off = 0;
    const feed = () => {
      off += c.send(up.subarray(off));
      h!.device.pump();
    };
    await until(() => {
      feed();
      return c.sndWnd === 0 && c.sendQueued > 0;
    }, 5000, "zero window");
    const s = h.stack.stats();
    // Bytes held on the gateway side: the TCP receive ring plus the stream's buffer.
    const ring = (conn as TcpDuplex).conn.recvQueued;
    const held = ring + conn.readableLength;
    console.log(`backpressure: zero window with the consumer paused after ${total} bytes; gateway holds ${held} (TCP ring ${ring}, stream buffer ${conn.readableLength}); device has ${c.sendQueued} queued`);
    expect(off).toBeLessThan(N);
    expect(conn.readableLength).toBeLessThanOrEqual(64 * 1024);
    expect(held).toBeLessThanOrEqual(256 * 1024 + 64 * 1024);
    // Nothing moves while paused, however often the device is pumped (each turn lets the stack run).
    const before = total;
    for (let i = 0; i < 20; i++) {
      feed();
      await new Promise((r) => setImmediate(r));
    }
    expect(total).toBe(before);
    expect(c.sndWnd).toBe(0);
    expect(s.tcp.connections).toBe(1);
    conn.resume();
    await until(() => {
      feed();
      return total >= N;
    }, 10_000, "all bytes after resume");
    expect(equalBytes(concat(chunks), up)).toBe(true);
  });

  test("200 concurrent connections, echoed", async () => {
    h = harness();
    const n = 200;
    const size = 8 * 1024;
    const seen = new Set<string>();
    const echo = setInterval(() => {
      for (const f of h!.flows) {
        const k = `${f.src.port}`;
        if (seen.has(k)) continue;
        seen.add(k);
        f.conn.pipe(f.conn);
      }
    }, 1);
    try {
      const conns = Array.from({ length: n }, (_, i) => h!.device.connect(`10.0.${i >> 8}.${(i & 0xff) + 2}`, 30000 + i, `192.0.2.${(i % 250) + 1}`, 1000 + i));
      await until(() => conns.every((c) => c.state === "ESTABLISHED"), 10_000, "all established");
      const data = conns.map((_, i) => pattern(size, 100 + i));
      await Promise.all(conns.map((c, i) => deviceSend(h!.device, c, data[i]!)));
      const back = await Promise.all(conns.map((c) => deviceRecv(h!.device, c, size)));
      back.forEach((b, i) => expect(equalBytes(b, data[i]!)).toBe(true));
      expect(h.stack.stats().tcp.connections).toBe(n);
      const tuples = new Set(h.flows.map((f) => `${f.src.host}:${f.src.port}>${f.dst.host}:${f.dst.port}`));
      expect(tuples.size).toBe(n);
    } finally {
      clearInterval(echo);
    }
  });

  test("IPv6: connect, data both ways, close", async () => {
    h = harness();
    const c = h.device.connect("fd00::2", 41000, "2001:db8::80", 8443);
    await until(() => h!.flows.length === 1);
    const f = h.flows[0]!;
    expect(f.src).toEqual({ host: "fd00::2", port: 41000 });
    expect(f.dst).toEqual({ host: "2001:db8::80", port: 8443 });
    expect(f.ipVersion).toBe(6);
    const got = collect(f.conn);
    const up = pattern(200_000, 7);
    await deviceSend(h.device, c, up);
    await until(() => got.total() >= up.length);
    expect(equalBytes(got.bytes(), up)).toBe(true);
    f.conn.end(Buffer.from("v6 ok"));
    const b = await deviceRecv(h.device, c, 100);
    expect(Buffer.from(b).toString()).toBe("v6 ok");
    c.close();
    h.device.pump();
    await until(() => got.ended);
  });
});
