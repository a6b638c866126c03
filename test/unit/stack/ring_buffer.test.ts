// RingBuffer grows with use: nothing allocated before the first write, then
// doubling up to its capacity, with wrapped and out-of-order bytes kept in
// place across a growth.
import { expect, test } from "bun:test";
import { RingBuffer } from "../../../app/net/stack/tcp/buffer.ts";

const bytes = (n: number, from = 0) => new Uint8Array(n).map((_, i) => (from + i) & 0xff);

test("no storage until written; reads of nothing need none", () => {
  const r = new RingBuffer(256 * 1024);
  expect(r.allocated).toBe(0);
  expect(r.free).toBe(256 * 1024);
  expect(r.peek(0, 0).length).toBe(0);
  r.dequeue(0);
  r.enqueue(new Uint8Array(0));
  expect(r.allocated).toBe(0);
});

test("grows by doubling, never past its capacity", () => {
  const r = new RingBuffer(20_000);
  r.enqueue(bytes(10));
  expect(r.allocated).toBe(4096);
  r.enqueue(bytes(5000, 10));
  expect(r.allocated).toBe(8192);
  expect(r.enqueue(bytes(30_000, 5010))).toBe(20_000 - 5010);
  expect(r.allocated).toBe(20_000);
  expect(Array.from(r.peek(0, 20_000))).toEqual(Array.from(bytes(20_000)));
});

test("a wrapped ring and out-of-order bytes past the end survive a growth", () => {
  const r = new RingBuffer(64 * 1024);
  r.enqueue(bytes(4000));
  r.dequeue(3900); // read position near the end of the 4 KiB allocation
  r.enqueue(bytes(150, 4000)); // wraps
  expect(r.allocated).toBe(4096);
  r.writeUnassembled(100, bytes(50, 4250)); // out of order, still inside the 4 KiB
  r.writeUnassembled(1000, bytes(4000, 5150)); // forces a growth
  expect(r.allocated).toBe(8192);
  r.enqueue(bytes(100, 4150)); // fills the gap
  r.commit(50 + 850); // the first out-of-order range and (stale, but written) gap bytes up to the second
  expect(Array.from(r.peek(0, 350))).toEqual(Array.from(bytes(350, 3900)));
  expect(Array.from(r.peek(350, 50))).toEqual(Array.from(bytes(50, 4250))); // written before the growth
  r.commit(4000);
  expect(Array.from(r.peek(1250, 4000))).toEqual(Array.from(bytes(4000, 5150)));
});

test("emptied, a ring that never grew past its first 4 KiB gives it back; a grown one keeps its storage", () => {
  const small = new RingBuffer(256 * 1024);
  small.enqueue(bytes(6));
  small.dequeue(3);
  expect(small.allocated).toBe(4096); // not empty yet
  small.dequeue(3);
  expect(small.allocated).toBe(0); // an idle keep-alive flow holds nothing
  small.enqueue(bytes(5, 9));
  expect(Array.from(small.peek(0, 5))).toEqual(Array.from(bytes(5, 9)));
  const bulk = new RingBuffer(256 * 1024);
  bulk.enqueue(bytes(10_000));
  bulk.dequeue(10_000);
  expect(bulk.allocated).toBe(16_384); // a busy flow does not regrow from 4 KiB each time it drains
});

test("a view of unwrapped bytes shares the ring's storage; wrapped bytes come as a copy", () => {
  const r = new RingBuffer(8192);
  r.enqueue(bytes(4000));
  const v = r.view(10, 100);
  expect(Array.from(v)).toEqual(Array.from(bytes(100, 10)));
  r.dequeue(3900);
  r.enqueue(bytes(200, 4000)); // wraps at 4096
  expect(Array.from(r.view(0, 300))).toEqual(Array.from(bytes(300, 3900)));
});
