import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Database } from "bun:sqlite";
import { openStateDb } from "../../../app/store/db.ts";
import { VipRangeExhausted, VipTable, vipRangeBounds } from "../../../app/store/vips.ts";

const dirs: string[] = [];
const dbs: Database[] = [];
function open(dir?: string): { db: Database; dir: string } {
  const d = dir ?? mkdtempSync(path.join(os.tmpdir(), "clawpatrol-vips-"));
  if (!dir) dirs.push(d);
  const db = openStateDb(d);
  dbs.push(db);
  return { db, dir: d };
}
afterEach(() => {
  for (const db of dbs.splice(0)) db.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const addr = (t: VipTable) => Object.fromEntries(t.active().map((b) => [b.hostname, b.address]));

test("range bounds exclude the network and broadcast addresses", () => {
  expect(vipRangeBounds("100.80.0.0/16")).toEqual({ first: (100 * 2 ** 24 + 80 * 2 ** 16 + 1) >>> 0, last: (100 * 2 ** 24 + 80 * 2 ** 16 + 65534) >>> 0 });
  expect(() => vipRangeBounds("10.0.0.0/31")).toThrow();
  expect(() => vipRangeBounds("fd00::/64")).toThrow();
});

test("allocates in order and keeps bindings across syncs and reopening the database", () => {
  const { db, dir } = open();
  const t = new VipTable(db);
  t.sync(["b.test", "a.test"], "100.80.0.0/24", 1);
  expect(addr(t)).toEqual({ "a.test": "100.80.0.1", "b.test": "100.80.0.2" });
  t.sync(["c.test", "b.test", "a.test"], "100.80.0.0/24", 2);
  expect(addr(t)).toEqual({ "a.test": "100.80.0.1", "b.test": "100.80.0.2", "c.test": "100.80.0.3" });
  db.close();
  dbs.pop();
  const again = new VipTable(open(dir).db);
  expect(again.lookup("c.test")).toBe("100.80.0.3");
  expect(again.hostnameOf("100.80.0.2")).toBe("b.test");
});

test("a hostname that leaves the policy is released, keeps its address, and gets it back when it returns", () => {
  const t = new VipTable(open().db);
  t.sync(["a.test", "b.test"], "100.80.0.0/24", 1);
  t.sync(["b.test", "new.test"], "100.80.0.0/24", 2);
  expect(t.lookup("a.test")).toBeUndefined();
  // The released address is not handed to the newcomer while fresh ones remain.
  expect(addr(t)).toEqual({ "b.test": "100.80.0.2", "new.test": "100.80.0.3" });
  expect(t.all().find((b) => b.hostname === "a.test")).toMatchObject({ address: "100.80.0.1", releasedAt: 2 });
  t.sync(["a.test", "b.test", "new.test"], "100.80.0.0/24", 3);
  expect(t.lookup("a.test")).toBe("100.80.0.1");
});

test("released addresses are reused only when the range runs out, oldest release first; never one in use", () => {
  const t = new VipTable(open().db);
  // /30: two usable addresses.
  t.sync(["a.test", "b.test"], "100.80.0.0/30", 1);
  t.sync(["b.test"], "100.80.0.0/30", 2); // a released
  t.sync(["b.test", "c.test"], "100.80.0.0/30", 3);
  expect(addr(t)).toEqual({ "b.test": "100.80.0.2", "c.test": "100.80.0.1" });
  expect(t.all().map((b) => b.hostname)).toEqual(["b.test", "c.test"]);
  expect(() => t.sync(["b.test", "c.test", "d.test"], "100.80.0.0/30", 4)).toThrow(VipRangeExhausted);
  // Nothing changed by the failed sync.
  expect(addr(t)).toEqual({ "b.test": "100.80.0.2", "c.test": "100.80.0.1" });
});

test("a changed range moves the bindings into it", () => {
  const t = new VipTable(open().db);
  t.sync(["a.test"], "100.80.0.0/24", 1);
  t.sync(["a.test"], "100.90.0.0/24", 2);
  expect(t.lookup("a.test")).toBe("100.90.0.1");
});
