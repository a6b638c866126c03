import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { LruCache } from "../../../app/tls/lru.ts";

describe("LruCache", () => {
  test("evicts the least recently used entry past the bound", () => {
    const lru = new LruCache<string, number>(2);
    lru.set("a", 1);
    lru.set("b", 2);
    lru.set("c", 3);
    expect(lru.has("a")).toBe(false);
    expect(lru.keys()).toEqual(["b", "c"]);
    expect(lru.size).toBe(2);
  });

  test("a get refreshes recency, a has does not", () => {
    const lru = new LruCache<string, number>(2);
    lru.set("a", 1);
    lru.set("b", 2);
    expect(lru.get("a")).toBe(1);
    lru.set("c", 3);
    expect(lru.keys()).toEqual(["a", "c"]);
    expect(lru.has("a")).toBe(true);
    lru.set("d", 4);
    expect(lru.keys()).toEqual(["c", "d"]);
  });

  test("set on an existing key replaces it and refreshes recency", () => {
    const lru = new LruCache<string, number>(2);
    lru.set("a", 1);
    lru.set("b", 2);
    lru.set("a", 10);
    lru.set("c", 3);
    expect(lru.get("a")).toBe(10);
    expect(lru.has("b")).toBe(false);
  });

  test("undefined values are cached like any other", () => {
    const lru = new LruCache<string, undefined>(1);
    lru.set("a", undefined);
    expect(lru.has("a")).toBe(true);
    expect(lru.get("a")).toBeUndefined();
  });

  test("delete and a missing key", () => {
    const lru = new LruCache<string, number>(3);
    lru.set("a", 1);
    expect(lru.delete("a")).toBe(true);
    expect(lru.delete("a")).toBe(false);
    expect(lru.get("a")).toBeUndefined();
  });

  test("rejects a bound that is not a positive integer", () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) expect(() => new LruCache(bad)).toThrow(RangeError);
  });

  test("matches a reference model under random operations (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.array(fc.tuple(fc.constantFrom("get", "set", "delete"), fc.integer({ min: 0, max: 7 })), { maxLength: 60 }),
        (bound, ops) => {
          const lru = new LruCache<number, number>(bound);
          let model: number[] = []; // keys, least recent first
          for (const [op, key] of ops) {
            if (op === "set") {
              lru.set(key, key * 10);
              model = [...model.filter((k) => k !== key), key].slice(-bound);
            } else if (op === "get") {
              const hit = model.includes(key);
              expect(lru.get(key)).toBe(hit ? key * 10 : undefined);
              if (hit) model = [...model.filter((k) => k !== key), key];
            } else {
              expect(lru.delete(key)).toBe(model.includes(key));
              model = model.filter((k) => k !== key);
            }
            expect(lru.keys()).toEqual(model);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
