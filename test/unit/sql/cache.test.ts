// The LRU behind sqlFacts: bounded by count and by weight, recency refreshed
// on a hit; and sqlFacts itself: one frozen result per cached text.
import { beforeAll, expect, test } from "bun:test";
import { BoundedLru } from "../../../app/families/sql/cache.ts";
import { clearSqlFactsCache, loadSqlParser, MAX_CACHED_TEXT, sqlFacts, sqlFactsCacheStats } from "../../../app/families/sql/index.ts";

beforeAll(async () => {
  await loadSqlParser();
});

test("evicts the least recently used beyond maxEntries", () => {
  const lru = new BoundedLru<string, number>({ maxEntries: 2, maxWeight: 100, maxEntryWeight: 100 });
  lru.set("a", 1, 1);
  lru.set("b", 2, 1);
  expect(lru.get("a")).toBe(1); // a is now the most recent
  lru.set("c", 3, 1);
  expect(lru.get("b")).toBeUndefined();
  expect(lru.get("a")).toBe(1);
  expect(lru.get("c")).toBe(3);
  expect(lru.size).toBe(2);
});

test("evicts by total weight, and keeps nothing heavier than maxEntryWeight", () => {
  const lru = new BoundedLru<string, number>({ maxEntries: 100, maxWeight: 10, maxEntryWeight: 6 });
  lru.set("a", 1, 4);
  lru.set("b", 2, 4);
  lru.set("c", 3, 4);
  expect(lru.get("a")).toBeUndefined();
  expect(lru.totalWeight).toBe(8);
  lru.set("huge", 4, 7);
  expect(lru.get("huge")).toBeUndefined();
  expect(lru.totalWeight).toBe(8);
  lru.set("b", 5, 1); // replacing an entry replaces its weight
  expect(lru.totalWeight).toBe(5);
  lru.clear();
  expect(lru.size).toBe(0);
  expect(lru.totalWeight).toBe(0);
});

test("sqlFacts returns the cached, frozen result for the same text", () => {
  clearSqlFactsCache();
  const first = sqlFacts("SELECT * FROM cached_t");
  expect(sqlFacts("SELECT * FROM cached_t")).toBe(first);
  expect(Object.isFrozen(first)).toBe(true);
  if (!first.ok) throw new Error(first.error);
  expect(Object.isFrozen(first.statements[0]?.tables)).toBe(true);
  expect(sqlFactsCacheStats().entries).toBe(1);
  const error = sqlFacts("SELEC 1");
  expect(sqlFacts("SELEC 1")).toBe(error);
});

test("a text longer than MAX_CACHED_TEXT is parsed but not kept", () => {
  clearSqlFactsCache();
  const long = `SELECT 1 FROM big_t WHERE a IN (${Array.from({ length: MAX_CACHED_TEXT / 4 }, (_, i) => i).join(",")})`;
  expect(long.length).toBeGreaterThan(MAX_CACHED_TEXT);
  const r = sqlFacts(long);
  if (!r.ok) throw new Error(r.error);
  expect(r.statements[0]?.tables).toEqual(["big_t"]);
  expect(sqlFacts(long)).not.toBe(r);
  expect(sqlFactsCacheStats().entries).toBe(0);
});
