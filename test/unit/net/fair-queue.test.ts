// The fair queue of handshake slots: a bound, round-robin between keys,
// a refusal past the waiting bound, and cancellation.
import { describe, expect, test } from "bun:test";
import { FairQueue, type Release } from "../../../app/net/fair-queue.ts";

type Slot = { granted: Promise<Release | undefined>; cancel: () => void };

function take(q: FairQueue, key: string): Slot {
  const s = q.acquire(key);
  if ("refused" in s) throw new Error("refused");
  return s;
}

/** The order in which waiting slots are granted, as releases free them. */
async function grantOrder(q: FairQueue, slots: [string, Slot][]): Promise<string[]> {
  const order: string[] = [];
  for (const [name, s] of slots) void s.granted.then((r) => r && order.push(name));
  return new Promise((resolve) => {
    const step = async () => {
      await Promise.resolve();
      await Promise.resolve();
      if (order.length === slots.length) return resolve(order);
      setTimeout(step, 0);
    };
    void step();
  });
}

describe("FairQueue", () => {
  test("grants up to the limit at once, then queues", async () => {
    const q = new FairQueue(2, 10);
    const a = await take(q, "d1").granted;
    const b = await take(q, "d1").granted;
    const c = take(q, "d1");
    expect(q.stats()).toEqual({ active: 2, waiting: 1 });
    a!();
    const rc = await c.granted;
    expect(rc).toBeDefined();
    expect(q.stats()).toEqual({ active: 2, waiting: 0 });
    b!();
    rc!();
    rc!(); // a second release does nothing
    expect(q.stats()).toEqual({ active: 0, waiting: 0 });
  });

  test("one device's burst does not hold back another's first connection", async () => {
    const q = new FairQueue(1, 100);
    const first = await take(q, "busy").granted;
    const slots: [string, Slot][] = [];
    for (let i = 0; i < 5; i++) slots.push([`busy${i}`, take(q, "busy")]);
    slots.push(["quiet0", take(q, "quiet")]);
    slots.push(["other0", take(q, "other")]);
    const order = grantOrder(q, slots);
    // Release each slot as soon as it is granted.
    for (const [, s] of slots) void s.granted.then((r) => setTimeout(() => r?.(), 0));
    first!();
    expect(await order).toEqual(["busy0", "quiet0", "other0", "busy1", "busy2", "busy3", "busy4"]);
  });

  test("past the waiting bound a request is refused at once", async () => {
    const q = new FairQueue(1, 2);
    await take(q, "d").granted;
    take(q, "d");
    take(q, "e");
    expect("refused" in q.acquire("f")).toBe(true);
    expect(q.stats()).toEqual({ active: 1, waiting: 2 });
  });

  test("a cancelled waiter resolves undefined and leaves its place to the next", async () => {
    const q = new FairQueue(1, 10);
    const held = await take(q, "d").granted;
    const gone = take(q, "d");
    const next = take(q, "e");
    gone.cancel();
    expect(await gone.granted).toBeUndefined();
    expect(q.stats().waiting).toBe(1);
    held!();
    expect(await next.granted).toBeDefined();
    expect(q.stats()).toEqual({ active: 1, waiting: 0 });
  });
});
