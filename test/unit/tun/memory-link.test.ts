// The in-memory twin of the TUN device.
import { describe, expect, test } from "bun:test";
import { createMemoryLinkPair } from "../../../app/net/tun/memory-link.ts";
import type { PacketLink } from "../../../app/net/tun/link.ts";

function collect(link: PacketLink): Uint8Array[][] {
  const batches: Uint8Array[][] = [];
  link.onPackets((ps) => batches.push(ps.map((p) => p.slice())));
  return batches;
}

const p = (...bytes: number[]) => new Uint8Array(bytes);

describe("createMemoryLinkPair", () => {
  test("what one side writes the other receives, in order, asynchronously, both ways", async () => {
    const [a, b] = createMemoryLinkPair();
    const atB = collect(b);
    const atA = collect(a);
    expect(a.write(p(1))).toBe(true);
    expect(a.write(p(2, 2))).toBe(true);
    expect(b.write(p(9))).toBe(true);
    expect(atB).toEqual([]); // not re-entrant: delivered after the writer returns
    await b.drained();
    await a.drained();
    expect(atB).toEqual([[p(1), p(2, 2)]]);
    expect(atA).toEqual([[p(9)]]);
    expect(a.stats).toMatchObject({ txPackets: 2, txBytes: 3, rxPackets: 1, rxBytes: 1, rxBatches: 1, txDropped: 0 });
  });

  test("the writer's buffer is copied", async () => {
    const [a, b] = createMemoryLinkPair();
    const got = collect(b);
    const buf = p(1, 2, 3);
    a.write(buf);
    buf.fill(0);
    await b.drained();
    expect(got[0]).toEqual([p(1, 2, 3)]);
  });

  test("batches are at most batchLimit packets", async () => {
    const [a, b] = createMemoryLinkPair({ batchLimit: 4 });
    const got = collect(b);
    for (let i = 0; i < 10; i++) a.write(p(i));
    await b.drained();
    expect(got.map((x) => x.length)).toEqual([4, 4, 2]);
    expect(got.flat()).toEqual([...Array(10).keys()].map((i) => p(i)));
  });

  test("packets wait for a handler; a full queue drops and counts", async () => {
    const [a, b] = createMemoryLinkPair({ queueLimit: 3 });
    expect([a.write(p(1)), a.write(p(2)), a.write(p(3)), a.write(p(4))]).toEqual([true, true, true, false]);
    expect(a.stats.txDropped).toBe(1);
    const got = collect(b);
    await b.drained();
    expect(got.flat()).toEqual([p(1), p(2), p(3)]);
    expect(a.write(p(5))).toBe(true); // room again
  });

  test("a packet larger than the MTU is dropped", () => {
    const [a] = createMemoryLinkPair({ mtu: 4 });
    expect(a.write(new Uint8Array(4))).toBe(true);
    expect(a.write(new Uint8Array(5))).toBe(false);
    expect(a.mtu).toBe(4);
  });

  test("after close, writes from either side are dropped and nothing more is delivered", async () => {
    const [a, b] = createMemoryLinkPair({ names: ["dev", "gw"] });
    expect([a.name, b.name]).toEqual(["dev", "gw"]);
    const got = collect(b);
    a.write(p(1));
    b.close();
    expect(b.closed).toBe(true);
    expect(a.write(p(2))).toBe(false);
    expect(b.write(p(3))).toBe(false);
    await Bun.sleep(0);
    expect(got).toEqual([]);
    b.close(); // idempotent
  });

  test("a handler may write back from inside the batch (echo)", async () => {
    const [a, b] = createMemoryLinkPair();
    b.onPackets((ps) => {
      for (const x of ps) b.write(x);
    });
    const back = collect(a);
    for (let i = 0; i < 100; i++) a.write(p(i));
    await b.drained();
    await a.drained();
    expect(back.flat()).toHaveLength(100);
  });
});
