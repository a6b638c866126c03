// The UDP boundary (udp.ts), both backends, over loopback: a batch handed to
// sendMany arrives whole, byte for byte, datagram by datagram.
import { afterEach, describe, expect, test } from "bun:test";
import * as dgram from "node:dgram";
import { bindUdp, nativeSocketOf, type UdpBackend, type UdpTransport } from "../../../app/net/wireguard/udp.ts";

let closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers) c();
  closers = [];
});

async function receiver(): Promise<{ port: number; got: Buffer[] }> {
  const got: Buffer[] = [];
  const s = dgram.createSocket({ type: "udp4", recvBufferSize: 4 << 20 });
  s.on("message", (m) => got.push(m));
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  closers.push(() => s.close());
  return { port: s.address().port, got };
}

async function sender(backend: UdpBackend): Promise<UdpTransport> {
  const t = await bindUdp({ host: "127.0.0.1", port: 0, backend, recvBufferSize: 1 << 20, sendBufferSize: 4 << 20 }, {
    datagram: () => {},
    drain: () => {},
    error: (e) => {
      throw e;
    },
  });
  closers.push(() => t.close());
  return t;
}

describe.each(["node", "bun"] as const)("sendMany (%s backend)", (backend) => {
  // 100 datagrams (~70 KB) fit the receiver's buffer at the default rmem_max.
  test("a batch of 100 datagrams of different sizes arrives complete and intact", async () => {
    const rx = await receiver();
    const tx = await sender(backend);
    const flat: (Uint8Array | number | string)[] = [];
    const want: string[] = [];
    for (let i = 0; i < 100; i++) {
      const d = new Uint8Array(1 + ((i * 37) % 1400)).fill(i & 0xff);
      d[0] = i >> 8;
      flat.push(d, rx.port, "127.0.0.1");
      want.push(Buffer.from(d).toString("hex"));
    }
    expect(tx.sendMany(flat)).toBe(100);
    const deadline = Date.now() + 4000;
    while (rx.got.length < 100 && Date.now() < deadline) await Bun.sleep(10);
    expect(rx.got.length).toBe(100);
    const got = rx.got.map((b) => b.toString("hex")).sort();
    want.sort();
    expect(got.every((g, i) => g === want[i])).toBe(true);
  });
});

test("the pinned Bun's node:dgram exposes the native socket's sendMany (one sendmmsg per batch)", () => {
  const s = dgram.createSocket("udp4");
  return new Promise<void>((resolve) =>
    s.bind(0, "127.0.0.1", () => {
      expect(nativeSocketOf(s)).not.toBeNull();
      s.close();
      resolve();
    }),
  );
});
