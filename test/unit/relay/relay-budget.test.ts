// A relay's held bytes count against the device's buffered-bytes budget
// (quota_buffered_bytes): into a stalled upstream it reads no more than the
// budget has room for and stops reading (the bytes stay with the agent's
// side: backpressure, no drop); another device's budget is untouched; once
// the upstream takes them every byte arrives, in order, and the budget is
// empty again.
import { expect, test } from "bun:test";
import { Duplex, Writable } from "node:stream";
import { relay, type Dialer } from "../../../app/endpoints/relay.ts";
import { pipeWithin, HeldBytes } from "../../../app/dispatch/held-bytes.ts";
import { DeviceQuotas, DEFAULT_QUOTAS } from "../../../app/dispatch/quotas.ts";
import net from "node:net";
import { deviceRecv, deviceSend, harness, until as stackUntil } from "../netstack/helpers.ts";

const QUOTA = 64 * 1024;

function quotas() {
  const limited: string[] = [];
  const q = new DeviceQuotas(() => ({ ...DEFAULT_QUOTAS, bufferedBytes: QUOTA }), () => performance.now(), (d) => limited.push(d));
  return { q, limited };
}

/**
 * An upstream that takes nothing until `open()`, then everything (a write's
 * callback is the upstream having taken it). Its own buffer is far larger
 * than the quota (as a socket's may be), so the budget is what stops the relay.
 */
class StalledUpstream extends Duplex {
  received: Buffer[] = [];
  private waiting: (() => void)[] = [];
  private opened = false;
  constructor() {
    super({ allowHalfOpen: true, writableHighWaterMark: 4 * 1024 * 1024 });
  }
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.received.push(chunk);
    if (this.opened) cb();
    else this.waiting.push(cb);
  }
  override _final(cb: () => void): void {
    this.push(null);
    cb();
  }
  open(): void {
    this.opened = true;
    for (const cb of this.waiting.splice(0)) cb();
  }
  get bytes(): number {
    return this.received.reduce((n, c) => n + c.length, 0);
  }
}

/** An agent side whose bytes are `total` in 32 KiB chunks, pushed only as it is read (a socket's read-ahead). */
class PushingAgent extends Duplex {
  sent = 0;
  written: Buffer[] = [];
  constructor(private readonly total: number) {
    super({ allowHalfOpen: true, readableHighWaterMark: 64 * 1024 });
  }
  override _read(): void {
    if (this.sent >= this.total) return void this.push(null);
    const n = Math.min(32 * 1024, this.total - this.sent);
    const chunk = Buffer.alloc(n);
    for (let i = 0; i < n; i++) chunk[i] = byteAt(this.sent + i);
    this.sent += n;
    this.push(chunk);
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.written.push(chunk);
    cb();
  }
}

/** Not periodic in the chunk size: a chunk lost or repeated shows. */
const byteAt = (pos: number) => (Math.imul(pos, 2654435761) >>> 24) & 0xff;

const until = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await Bun.sleep(5);
  }
};

test("into a stalled upstream: held within the budget, the agent side read no further, another device untouched; opened: every byte in order", async () => {
  const { q, limited } = quotas();
  const a = q.bufferAccount("a");
  const upstream = new StalledUpstream();
  const agent = new PushingAgent(8 * 1024 * 1024);
  const dial: Dialer = () => upstream;
  const done = relay(agent, "upstream", 1, undefined, dial, 60_000, a);
  await until(() => limited.includes("a"));
  // the relay holds what the upstream has not taken, never more than the quota
  const held = q.held("a").buffered;
  expect(held).toBeLessThanOrEqual(QUOTA);
  expect(held).toBeGreaterThan(QUOTA / 2);
  expect(upstream.writableLength).toBe(held); // every byte held is one the upstream has not taken
  // the agent side is no longer read: at most its read-ahead past what the relay took
  expect(agent.sent).toBeLessThanOrEqual(held + 2 * 64 * 1024);
  // another device's budget is its own
  expect(q.bufferAccount("b").remaining).toBe(QUOTA);
  upstream.open();
  await until(() => upstream.bytes === 8 * 1024 * 1024);
  const all = Buffer.concat(upstream.received);
  let wrong = 0;
  for (let i = 0; i < all.length; i++) if (all[i] !== byteAt(i)) wrong++;
  expect(wrong).toBe(0);
  upstream.end();
  const r = await done;
  expect(r.bytesUp).toBe(8 * 1024 * 1024);
  expect(r.error).toBeUndefined();
  expect(q.held("a").buffered).toBe(0);
});

test("a relay that ends with bytes still held gives them back", async () => {
  const { q } = quotas();
  const a = q.bufferAccount("a");
  const upstream = new StalledUpstream();
  const agent = new PushingAgent(1024 * 1024);
  const done = relay(agent, "upstream", 1, undefined, () => upstream, 60_000, a);
  await until(() => q.held("a").buffered > 0);
  agent.destroy(new Error("gone"));
  const r = await done;
  expect(r.error).toContain("agent");
  expect(q.held("a").buffered).toBe(0);
});

test("pipeWithin: a pipe waiting for room resumes when another gives bytes back", async () => {
  const { q } = quotas();
  const a = q.bufferAccount("a");
  const first = new StalledUpstream();
  const second = new StalledUpstream();
  const p1 = pipeWithin(new PushingAgent(1024 * 1024), first, a);
  await until(() => a.remaining === 0);
  const p2 = pipeWithin(new PushingAgent(1024 * 1024), second, a);
  // the second may take nothing while the first holds the whole budget
  await Bun.sleep(20);
  expect(second.bytes).toBe(0);
  p1.stop();
  await until(() => second.bytes > 0);
  expect(q.held("a").buffered).toBeLessThanOrEqual(QUOTA);
  p2.stop();
  expect(q.held("a").buffered).toBe(0);
});

test("HeldBytes: charges what a shell says it holds, waits for room at the quota, gives all back on close", async () => {
  const { q, limited } = quotas();
  const a = q.bufferAccount("a");
  const h = new HeldBytes(a);
  h.set(1000);
  expect(q.held("a").buffered).toBe(1000);
  h.set(QUOTA);
  expect(limited).toEqual(["a"]);
  let roomy = false;
  const room = h.room().then(() => (roomy = true));
  await Bun.sleep(5);
  expect(roomy).toBe(false);
  h.set(100);
  await room;
  expect(roomy).toBe(true);
  h.close();
  h.set(5000); // after close: nothing more is charged
  expect(q.held("a").buffered).toBe(0);
});

test("over the stack: bytes the device sent before the relay started are relayed (a TcpDuplex pushes the moment it is read)", async () => {
  const echo = net.createServer((sock) => sock.pipe(sock));
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()));
  const h = harness();
  try {
    const { q } = quotas();
    const c = h.device.connect("10.0.0.2", 40000, "93.184.216.34", 8080);
    await stackUntil(() => h.flows.length === 1);
    const conn = h.flows[0]!.conn;
    await deviceSend(h.device, c, new TextEncoder().encode("early"));
    await stackUntil(() => (conn as unknown as { conn: { recvQueued: number } }).conn.recvQueued === 5);
    const done = relay(conn, "127.0.0.1", (echo.address() as net.AddressInfo).port, undefined, undefined, 60_000, q.bufferAccount("a"));
    expect(Buffer.from(await deviceRecv(h.device, c, 5)).toString()).toBe("early");
    conn.destroy();
    await done;
    expect(q.held("a").buffered).toBe(0);
  } finally {
    h.close();
    echo.close();
  }
});
