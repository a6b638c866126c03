import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Database } from "bun:sqlite";
import { MIGRATIONS, dataVersion, migrate, openStateDb, userVersion } from "../../../app/store/db.ts";
import { tempDir } from "../events/fixtures.ts";

let t: ReturnType<typeof tempDir>;
beforeEach(() => {
  t = tempDir();
});
afterEach(() => t.cleanup());

describe("openStateDb", () => {
  test("creates a private state dir and database with the schema", () => {
    const stateDir = path.join(t.dir, "state", "nested");
    const db = openStateDb(stateDir);
    expect(fs.statSync(stateDir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(stateDir, "state.db")).mode & 0o777).toBe(0o600);
    const tables = (db.query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map(
      (r) => r.name,
    );
    expect(tables).toEqual(["actions", "address_cursor", "audit", "devices", "gate_kills", "onboarding", "operator_sessions", "operator_tokens", "operators", "rate_limits", "run_peers", "secrets", "spend_daily", "ssh_host_keys", "ssh_upstream_keys", "vips"]);
    const indexes = (db.query("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'actions_%'").all() as {
      name: string;
    }[]).map((r) => r.name);
    expect(indexes.sort()).toEqual(["actions_device", "actions_time"]);
    expect(userVersion(db)).toBe(MIGRATIONS.length);
    expect((db.query("PRAGMA journal_mode").get() as { journal_mode: string }).journal_mode).toBe("wal");
    expect((db.query("PRAGMA busy_timeout").get() as Record<string, number>)["timeout"]).toBe(5000);
    expect((db.query("PRAGMA foreign_keys").get() as { foreign_keys: number }).foreign_keys).toBe(1);
    db.close();
  });

  test("the -wal and -shm files are private too", () => {
    const db = openStateDb(t.dir);
    db.query("INSERT INTO secrets VALUES ('x', x'00', x'00', 1)").run();
    for (const f of ["state.db-wal", "state.db-shm"]) {
      expect(fs.statSync(path.join(t.dir, f)).mode & 0o777).toBe(0o600);
    }
    db.close();
  });

  test("reopening applies nothing twice and keeps data", () => {
    const db1 = openStateDb(t.dir);
    db1.query("INSERT INTO devices (name, profile, token_hash, created_at) VALUES ('a', 'p', 'h', 1)").run();
    db1.close();
    const db2 = openStateDb(t.dir);
    expect(userVersion(db2)).toBe(MIGRATIONS.length);
    expect(db2.query("SELECT count(*) AS n FROM devices").get()).toEqual({ n: 1 });
    db2.close();
  });

  test("tightens an existing world-readable database file", () => {
    fs.writeFileSync(path.join(t.dir, "state.db"), "", { mode: 0o644 });
    fs.chmodSync(path.join(t.dir, "state.db"), 0o644);
    openStateDb(t.dir).close();
    expect(fs.statSync(path.join(t.dir, "state.db")).mode & 0o777).toBe(0o600);
  });
});

describe("migrate", () => {
  test("applies each step once, in order, counting in user_version", () => {
    const db = new Database(":memory:");
    const steps = ["CREATE TABLE a (x)", "CREATE TABLE b (y); INSERT INTO a VALUES (1)"];
    migrate(db, steps);
    migrate(db, steps);
    expect(userVersion(db)).toBe(2);
    expect(db.query("SELECT count(*) AS n FROM a").get()).toEqual({ n: 1 });
    migrate(db, [...steps, "INSERT INTO a VALUES (2)"]);
    expect(userVersion(db)).toBe(3);
    expect(db.query("SELECT count(*) AS n FROM a").get()).toEqual({ n: 2 });
  });

  test("a failing step rolls back entirely and leaves the version", () => {
    const db = new Database(":memory:");
    expect(() => migrate(db, ["CREATE TABLE a (x); CREATE TABLE a (x)"])).toThrow();
    expect(userVersion(db)).toBe(0);
    expect(db.query("SELECT count(*) AS n FROM sqlite_master").get()).toEqual({ n: 0 });
  });

  test("refuses a database newer than the code", () => {
    const db = new Database(":memory:");
    db.run("PRAGMA user_version = 99");
    expect(() => migrate(db, ["SELECT 1"])).toThrow(/newer than this build/);
  });
});

test("dataVersion changes when another connection commits", () => {
  const a = openStateDb(t.dir);
  const b = openStateDb(t.dir);
  const before = dataVersion(a);
  a.query("INSERT INTO secrets VALUES ('own', x'00', x'00', 1)").run();
  expect(dataVersion(a)).toBe(before);
  b.query("INSERT INTO secrets VALUES ('other', x'00', x'00', 1)").run();
  expect(dataVersion(a)).not.toBe(before);
  a.close();
  b.close();
});
