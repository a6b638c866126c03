import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { randomBytes } from "node:crypto";
import { openStateDb } from "../../../app/store/db.ts";
import { DeviceRegistry } from "../../../app/store/devices.ts";
import {
  AddressError,
  AddressPool,
  deviceCapacity,
  gatewayAddress,
  parseSubnet,
} from "../../../app/store/addresses.ts";
import { tempDir } from "../events/fixtures.ts";

let t: ReturnType<typeof tempDir>;
let db: Database;
let reg: DeviceRegistry;
beforeEach(() => {
  t = tempDir();
  db = openStateDb(t.dir);
  reg = new DeviceRegistry(db, { now: () => 1000 });
});
afterEach(() => {
  db.close();
  t.cleanup();
});

const key = () => randomBytes(32).toString("base64");

describe("parseSubnet", () => {
  test.each([
    ["10.77.0.0/16", "10.77.0.1", 65533n],
    ["10.77.0.0/24", "10.77.0.1", 253n],
    ["10.77.0.0/30", "10.77.0.1", 1n],
    ["fd77:7a70::/64", "fd77:7a70::1", 2n ** 64n - 2n],
    ["FD77:7A70:0::/120", "fd77:7a70::1", 254n],
  ])("%s: gateway %s, %d device addresses", (cidr, gw, cap) => {
    const s = parseSubnet(cidr);
    expect(gatewayAddress(s)).toBe(gw);
    expect(deviceCapacity(s)).toBe(cap);
  });

  test.each([
    ["10.77.0.0", /ADDRESS\/PREFIX/],
    ["10.77.0.1/16", /host bits are set \(did you mean 10\.77\.0\.0\/16\?\)/],
    ["10.77.0.0/31", /too small/],
    ["10.77.0.0/33", /at most 32/],
    ["10.77.0.0/x", /bad prefix/],
    ["10.777.0.0/16", /not an IP address/],
    ["fd77::/127", /too small/],
  ])("%s is rejected", (cidr, re) => {
    expect(() => parseSubnet(cidr)).toThrow(re);
    expect(() => parseSubnet(cidr)).toThrow(AddressError);
  });
});

describe("AddressPool", () => {
  test("sequential from the first address after the gateway's", () => {
    const pool = new AddressPool(db, "10.77.0.0/24");
    expect(pool.gateway()).toEqual({ address: "10.77.0.1" });
    const got = ["a", "b", "c"].map((n) => reg.addWireguard(n, "dev", key(), pool).address);
    expect(got).toEqual(["10.77.0.2", "10.77.0.3", "10.77.0.4"]);
  });

  test("crosses octet boundaries; skips network, gateway and broadcast", () => {
    const pool = new AddressPool(db, "10.77.0.0/23");
    db.query("INSERT INTO address_cursor VALUES ('10.77.0.0/23', '254')").run();
    const got = ["a", "b", "c"].map((n) => reg.addWireguard(n, "dev", key(), pool).address);
    expect(got).toEqual(["10.77.0.255", "10.77.1.0", "10.77.1.1"]);
  });

  test("a revoked device keeps its address; a deleted one releases it, but only after the pool goes round", () => {
    const pool = new AddressPool(db, "10.77.0.0/29"); // devices .2 .. .6
    for (const n of ["a", "b", "c"]) reg.addWireguard(n, "dev", key(), pool);
    reg.revoke("b");
    expect(reg.addWireguard("d", "dev", key(), pool).address).toBe("10.77.0.5");
    // Re-adding "b" deletes the revoked row, releasing .3; the cursor is past it.
    expect(reg.addWireguard("b", "dev", key(), pool).address).toBe("10.77.0.6");
    // Wraps: .2 and .4 are held, .3 is free again.
    expect(reg.addWireguard("e", "dev", key(), pool).address).toBe("10.77.0.3");
  });

  test("a full subnet is a clear error, and nothing is written", () => {
    const pool = new AddressPool(db, "10.77.0.0/30"); // one device: .2
    reg.addWireguard("a", "dev", key(), pool);
    reg.revoke("a");
    let err: unknown;
    try {
      reg.addWireguard("b", "dev", key(), pool);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AddressError);
    expect((err as AddressError).code).toBe("subnet_full");
    expect((err as Error).message).toMatch(/subnet 10\.77\.0\.0\/30 is full: all 1 device addresses/);
    expect(reg.get("b")).toBeUndefined();
  });

  test("persisted: a new pool over a reopened database continues after the last address", () => {
    let pool = new AddressPool(db, "10.77.0.0/24");
    reg.addWireguard("a", "dev", key(), pool);
    reg.addWireguard("b", "dev", key(), pool);
    db.close();
    db = openStateDb(t.dir);
    reg = new DeviceRegistry(db);
    pool = new AddressPool(db, "10.77.0.0/24");
    expect(reg.get("a")?.address).toBe("10.77.0.2");
    expect(reg.addWireguard("c", "dev", key(), pool).address).toBe("10.77.0.4");
  });

  test("addresses outside the configured subnet (an older subnet) are ignored, not counted", () => {
    const old = new AddressPool(db, "10.1.0.0/24");
    reg.addWireguard("a", "dev", key(), old);
    const pool = new AddressPool(db, "10.77.0.0/30");
    expect(reg.addWireguard("b", "dev", key(), pool).address).toBe("10.77.0.2");
  });

  test("IPv6: a /128 from the ULA subnet beside the /32", () => {
    const pool = new AddressPool(db, "10.77.0.0/24", "fd77:7a70::/64");
    expect(pool.gateway()).toEqual({ address: "10.77.0.1", address6: "fd77:7a70::1" });
    const a = reg.addWireguard("a", "dev", key(), pool);
    const b = reg.addWireguard("b", "dev", key(), pool);
    expect([a.address6, b.address6]).toEqual(["fd77:7a70::2", "fd77:7a70::3"]);
    expect(reg.lookupByAddress("fd77:7a70::3")?.name).toBe("b");
  });

  test("a wrong family is a configuration error", () => {
    expect(() => new AddressPool(db, "fd77::/64")).toThrow(/must be IPv4/);
    expect(() => new AddressPool(db, "10.0.0.0/24", "10.1.0.0/24")).toThrow(/must be IPv6/);
  });
});
