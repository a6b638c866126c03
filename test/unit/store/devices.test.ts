import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { DeviceError, DeviceRegistry, hashDeviceToken } from "../../../app/store/devices.ts";
import { openStateDb } from "../../../app/store/db.ts";
import { tempDir } from "../events/fixtures.ts";

let t: ReturnType<typeof tempDir>;
let db: Database;
let clock = 1000;
let reg: DeviceRegistry;
beforeEach(() => {
  t = tempDir();
  db = openStateDb(t.dir);
  clock = 1000;
  reg = new DeviceRegistry(db, { now: () => clock });
});
afterEach(() => {
  db.close();
  t.cleanup();
});

describe("DeviceRegistry", () => {
  test("add issues a cpd_ token that looks up the device", () => {
    const { token } = reg.add("laptop", "dev");
    expect(token).toMatch(/^cpd_[A-Za-z0-9_-]{43}$/);
    expect(reg.lookupByToken(token)).toEqual({ name: "laptop", profile: "dev" });
    expect(reg.lookupByToken(token + "x")).toBeUndefined();
    expect(reg.lookupByToken("nonsense")).toBeUndefined();
    expect(reg.lookupByToken("")).toBeUndefined();
  });

  test("stores only the token's hash", () => {
    const { token } = reg.add("laptop", "dev");
    const row = db.query("SELECT * FROM devices").get() as Record<string, unknown>;
    expect(JSON.stringify(row)).not.toContain(token);
    expect(JSON.stringify(row)).not.toContain(token.slice(4));
    expect(row.token_hash).toBe(hashDeviceToken(token));
  });

  test("tokens differ per device", () => {
    const a = reg.add("a", "dev").token;
    const b = reg.add("b", "dev").token;
    expect(a).not.toBe(b);
    expect(reg.lookupByToken(b)?.name).toBe("b");
  });

  test("a duplicate name is a clear error and keeps the first token", () => {
    const { token } = reg.add("laptop", "dev");
    expect(() => reg.add("laptop", "ops")).toThrow(DeviceError);
    expect(() => reg.add("laptop", "ops")).toThrow(/"laptop" already exists/);
    expect(reg.lookupByToken(token)).toEqual({ name: "laptop", profile: "dev" });
  });

  test("validates names", () => {
    for (const bad of ["", "-lead", ".x", "a b", "a/b", "x".repeat(65), "é"]) {
      expect(() => reg.add(bad, "dev")).toThrow(/invalid device name/);
    }
    reg.add("x".repeat(64), "dev");
    reg.add("ci-runner_01.eu", "dev");
    expect(() => reg.add("ok", "")).toThrow(/profile/);
  });

  test("revoke stops the token; the name can then be reused with a new token", () => {
    const { token } = reg.add("laptop", "dev");
    clock = 2000;
    expect(reg.revoke("laptop")).toBe(true);
    expect(reg.revoke("laptop")).toBe(false);
    expect(reg.revoke("nobody")).toBe(false);
    expect(reg.lookupByToken(token)).toBeUndefined();
    expect(reg.list()).toEqual([{ name: "laptop", profile: "dev", createdAt: 1000, revokedAt: 2000 }]);

    clock = 3000;
    const again = reg.add("laptop", "ops").token;
    expect(reg.lookupByToken(token)).toBeUndefined();
    expect(reg.lookupByToken(again)).toEqual({ name: "laptop", profile: "ops" });
    expect(reg.list()).toEqual([{ name: "laptop", profile: "ops", createdAt: 3000 }]);
  });

  test("list is sorted by name; get returns one", () => {
    reg.add("b", "p2");
    reg.add("a", "p1");
    expect(reg.list().map((d) => d.name)).toEqual(["a", "b"]);
    expect(reg.get("b")).toEqual({ name: "b", profile: "p2", createdAt: 1000 });
    expect(reg.get("c")).toBeUndefined();
  });

  test("setProfile moves an active device only", () => {
    const { token } = reg.add("laptop", "dev");
    expect(reg.setProfile("laptop", "ops")).toBe(true);
    expect(reg.lookupByToken(token)).toEqual({ name: "laptop", profile: "ops" });
    expect(reg.setProfile("nobody", "ops")).toBe(false);
    reg.revoke("laptop");
    expect(reg.setProfile("laptop", "dev")).toBe(false);
  });

  test("a revoke through another handle takes effect at once", () => {
    const { token } = reg.add("laptop", "dev");
    const other = openStateDb(t.dir);
    new DeviceRegistry(other).revoke("laptop");
    other.close();
    expect(reg.lookupByToken(token)).toBeUndefined();
  });
});
