import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { DeviceError, DeviceRegistry, hashDeviceToken } from "../../../app/store/devices.ts";
import { MIGRATIONS, migrate, openStateDb } from "../../../app/store/db.ts";
import { AddressPool } from "../../../app/store/addresses.ts";
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
    expect(reg.list()).toEqual([{ name: "laptop", kind: "proxy", profile: "dev", createdAt: 1000, revokedAt: 2000 }]);

    clock = 3000;
    const again = reg.add("laptop", "ops").token;
    expect(reg.lookupByToken(token)).toBeUndefined();
    expect(reg.lookupByToken(again)).toEqual({ name: "laptop", profile: "ops" });
    expect(reg.list()).toEqual([{ name: "laptop", kind: "proxy", profile: "ops", createdAt: 3000 }]);
  });

  test("list is sorted by name; get returns one", () => {
    reg.add("b", "p2");
    reg.add("a", "p1");
    expect(reg.list().map((d) => d.name)).toEqual(["a", "b"]);
    expect(reg.get("b")).toEqual({ name: "b", kind: "proxy", profile: "p2", createdAt: 1000 });
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

describe("DeviceRegistry: WireGuard devices", () => {
  const key = (b: number) => Buffer.alloc(32, b).toString("base64");
  let pool: AddressPool;
  beforeEach(() => {
    pool = new AddressPool(db, "10.77.0.0/24");
  });

  test("addWireguard: lookups by key, address and API token; the proxy token path does not see them", () => {
    const dev = reg.addWireguard("laptop", "dev", key(1), pool);
    expect(dev).toEqual({ id: expect.any(Number), name: "laptop", profile: "dev", publicKey: key(1), address: "10.77.0.2" });
    expect(reg.get("laptop")).toEqual({
      name: "laptop",
      kind: "wireguard",
      profile: "dev",
      createdAt: 1000,
      publicKey: key(1),
      address: "10.77.0.2",
    });
    expect(reg.lookupByPublicKey(key(1))?.name).toBe("laptop");
    expect(reg.lookupByAddress("10.77.0.2")?.name).toBe("laptop");
    const token = reg.issueApiToken("laptop")!;
    expect(token).toMatch(/^cpa_[A-Za-z0-9_-]{43}$/);
    expect(reg.lookupByApiToken(token)?.name).toBe("laptop");
    expect(reg.lookupByToken(token)).toBeUndefined();
    expect(reg.lookupByApiToken("cpd_" + token.slice(4))).toBeUndefined();
    expect(JSON.stringify(db.query("SELECT * FROM devices").all())).not.toContain(token.slice(4));
    expect(reg.activeWireguard()).toEqual([{ name: "laptop", profile: "dev", publicKey: key(1), address: "10.77.0.2" }]);
  });

  test("a name or key held by an active device is refused; revoked ones give them up", () => {
    reg.addWireguard("laptop", "dev", key(1), pool);
    reg.add("ci", "dev");
    expect(() => reg.addWireguard("laptop", "dev", key(2), pool)).toThrow(/already exists/);
    expect(() => reg.addWireguard("ci", "dev", key(2), pool)).toThrow(/already exists/);
    expect(() => reg.addWireguard("other", "dev", key(1), pool)).toThrow(/already belongs to device "laptop"/);
    reg.revoke("laptop");
    expect(reg.lookupByPublicKey(key(1))).toBeUndefined();
    expect(reg.activeWireguard()).toEqual([]);
    expect(reg.addWireguard("other", "dev", key(1), pool).address).toBe("10.77.0.3");
    expect(reg.get("laptop")?.publicKey).toBeUndefined();
  });

  test("revoke ends the API token; issueApiToken refuses revoked devices and replaces the old token", () => {
    reg.addWireguard("laptop", "dev", key(1), pool);
    const t1 = reg.issueApiToken("laptop")!;
    const t2 = reg.issueApiToken("laptop")!;
    expect(reg.lookupByApiToken(t1)).toBeUndefined();
    expect(reg.lookupByApiToken(t2)?.name).toBe("laptop");
    reg.revoke("laptop");
    expect(reg.lookupByApiToken(t2)).toBeUndefined();
    expect(reg.issueApiToken("laptop")).toBeUndefined();
    expect(reg.lookupByAddress("10.77.0.2")).toBeUndefined();
    expect(reg.wireguardPeer("laptop")).toEqual({ name: "laptop", profile: "dev", publicKey: key(1), address: "10.77.0.2" });
  });

  test("markSeen records last_seen for active devices", () => {
    reg.addWireguard("laptop", "dev", key(1), pool);
    reg.markSeen("laptop", 5000);
    expect(reg.get("laptop")?.lastSeen).toBe(5000);
    clock = 6000;
    reg.markSeen("laptop");
    expect(reg.list()[0]?.lastSeen).toBe(6000);
  });

  test("a version-1 database keeps its proxy devices through the migration", () => {
    const t2 = tempDir();
    const old = new Database(`${t2.dir}/state.db`);
    migrate(old, MIGRATIONS.slice(0, 1));
    old.query("INSERT INTO devices (name, profile, token_hash, created_at) VALUES ('ci', 'dev', ?, 7)").run(hashDeviceToken("cpd_x"));
    old.close();
    const db2 = openStateDb(t2.dir);
    const r2 = new DeviceRegistry(db2);
    expect(r2.lookupByToken("cpd_x")).toEqual({ name: "ci", profile: "dev" });
    expect(r2.get("ci")).toEqual({ name: "ci", kind: "proxy", profile: "dev", createdAt: 7 });
    db2.close();
    t2.cleanup();
  });
});
