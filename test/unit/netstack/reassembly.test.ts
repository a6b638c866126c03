// IPv4 reassembly, table-driven over the ways fragments go wrong.
import { describe, expect, test } from "bun:test";
import { Ipv4Reassembler } from "../../../app/net/stack/reassembly.ts";
import type { Ipv4Repr } from "../../../app/net/stack/wire/ipv4.ts";

const base: Ipv4Repr = {
  src: new Uint8Array([10, 0, 0, 2]), dst: new Uint8Array([198, 51, 100, 1]), protocol: 17, ttl: 64, tos: 0,
  ident: 1, dontFragment: false, moreFragments: true, fragmentOffset: 0,
};
const frag = (off: number, len: number, more = true, ident = 1) =>
  [{ ...base, ident, fragmentOffset: off, moreFragments: more }, new Uint8Array(len).fill(off & 0xff)] as const;

describe("Ipv4Reassembler", () => {
  test("in any order, with a duplicate, completes once", () => {
    const r = new Ipv4Reassembler();
    expect(r.add(...frag(16, 16), 0).kind).toBe("incomplete");
    expect(r.add(...frag(32, 5, false), 0).kind).toBe("incomplete");
    expect(r.add(...frag(16, 16), 0).kind).toBe("incomplete");
    const done = r.add(...frag(0, 16), 0);
    expect(done.kind).toBe("complete");
    if (done.kind === "complete") expect(Array.from(done.payload)).toEqual([...Array(16).fill(0), ...Array(16).fill(16), ...Array(5).fill(32)]);
    expect(r.size).toBe(0);
    expect(r.bufferedBytes).toBe(0);
  });

  test.each([
    ["overlap", [frag(0, 16), frag(8, 16)], "frag: overlap"],
    ["non-multiple of 8", [frag(0, 12)], "frag: bad-length"],
    ["past the last fragment", [frag(8, 8, false), frag(16, 8)], "frag: inconsistent"],
    ["two different ends", [frag(16, 8, false), frag(32, 8, false)], "frag: inconsistent"],
    ["over 64 KiB", [frag(65528, 8)], "frag: too-big"],
  ] as const)("%s is dropped", (_name, frags, reason) => {
    const r = new Ipv4Reassembler();
    let last = r.add(...frags[0]!, 0);
    for (const f of frags.slice(1)) last = r.add(...f, 0);
    expect(last).toEqual({ kind: "drop", reason });
    expect(r.size).toBe(0);
  });

  test("bounded: datagrams, fragments per datagram, bytes; and timed out", () => {
    const r = new Ipv4Reassembler({ maxDatagrams: 4, maxFragmentsPerDatagram: 3, maxBufferedBytes: 64, timeoutMs: 1000 });
    for (let i = 0; i < 10; i++) r.add(...frag(0, 8, true, i), 0);
    expect(r.size).toBe(4);
    expect(r.stats.evicted).toBe(6);
    expect(r.add(...frag(8, 8, true, 9), 0).kind).toBe("incomplete");
    expect(r.add(...frag(16, 8, true, 9), 0).kind).toBe("incomplete");
    expect(r.add(...frag(24, 8, true, 9), 0)).toEqual({ kind: "drop", reason: "frag: too-many" });
    r.add(...frag(0, 56, true, 100), 0); // forces eviction for bytes
    expect(r.bufferedBytes).toBeLessThanOrEqual(64);
    expect(r.pollAt()).toBe(1000);
    r.expire(1000);
    expect(r.size).toBe(0);
    expect(r.bufferedBytes).toBe(0);
    expect(r.stats.timedOut).toBeGreaterThan(0);
  });
});
