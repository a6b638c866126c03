// The plain-TCP upstream on Bun's native socket against a real listener on
// loopback: bytes in order under back-pressure, drain, end after the queue,
// and a refused connect rejected.
import { expect, test } from "bun:test";
import type { Socket } from "bun";
import { NativeUpstream } from "../../../app/endpoints/postgres/upstream-native.ts";

type Pausable = Socket<undefined> & { pause(): void; resume(): void };

/** A server that reads nothing until `release()`, then collects everything until the peer ends. */
function slowReader() {
  const chunks: Uint8Array[] = [];
  let conn: Pausable | undefined;
  let resolveEnded!: () => void;
  const ended = new Promise<void>((r) => (resolveEnded = r));
  const server = Bun.listen<undefined>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open: (s) => {
        conn = s as Pausable;
        conn.pause();
      },
      data: (_s, d) => {
        chunks.push(d);
      },
      end: (s) => {
        resolveEnded();
        s.end();
      },
      close: () => resolveEnded(),
    },
  });
  return {
    port: server.port,
    release: () => conn?.resume(),
    connected: () => conn !== undefined,
    received: () => Buffer.concat(chunks),
    ended,
    stop: () => server.stop(true),
  };
}

test("writes past what the kernel takes are queued in order, drain follows, end waits for the queue", async () => {
  const srv = slowReader();
  try {
    const up = await NativeUpstream.connect("127.0.0.1", srv.port, 5000);
    up.resume();
    // Far more than loopback's socket buffers hold while the server reads nothing.
    const total = 16 * 1024 * 1024;
    const payload = new Uint8Array(total);
    for (let i = 0; i < total; i++) payload[i] = i % 251;
    let drained = false;
    up.once("drain", () => (drained = true));
    const accepted = [];
    for (let off = 0; off < total; off += 1 << 20) accepted.push(up.write(payload.subarray(off, off + (1 << 20))));
    expect(accepted.at(-1)).toBe(false);
    up.end(new Uint8Array([7, 7, 7]));
    while (!srv.connected()) await Bun.sleep(1);
    srv.release();
    await srv.ended;
    const got = srv.received();
    expect(got.length).toBe(total + 3);
    expect(Buffer.compare(got.subarray(0, total), Buffer.from(payload))).toBe(0);
    expect([...got.subarray(total)]).toEqual([7, 7, 7]);
    expect(drained).toBe(true);
  } finally {
    srv.stop();
  }
});

test("data reaches the shell once resumed, and close follows the server's end", async () => {
  const server = Bun.listen<undefined>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open: (s) => {
        s.write("hello");
        s.end();
      },
      data: () => {},
    },
  });
  try {
    const up = await NativeUpstream.connect("127.0.0.1", server.port, 5000);
    const got: string[] = [];
    const closed = new Promise<void>((r) => up.once("close", r));
    up.on("data", (d) => got.push(new TextDecoder().decode(d)));
    up.resume();
    await closed;
    expect(got.join("")).toBe("hello");
  } finally {
    server.stop(true);
  }
});

test("a refused connect rejects", async () => {
  // A port just released: nothing listens there.
  const probe = Bun.listen<undefined>({ hostname: "127.0.0.1", port: 0, socket: { data: () => {} } });
  const port = probe.port;
  probe.stop(true);
  await expect(NativeUpstream.connect("127.0.0.1", port, 5000)).rejects.toThrow();
});
