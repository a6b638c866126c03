import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import * as fs from "node:fs";
import * as path from "node:path";
import { openStateDb } from "../../../app/store/db.ts";
import { SecretError, SecretStore, loadOrCreateMasterKey } from "../../../app/store/secrets.ts";
import { setLogWriter } from "../../../app/log.ts";
import { tempDir } from "../events/fixtures.ts";

let t: ReturnType<typeof tempDir>;
let db: Database;
const open: Database[] = [];
beforeEach(() => {
  t = tempDir();
  db = openStateDb(t.dir);
  open.push(db);
});
afterEach(() => {
  for (const d of open.splice(0)) d.close();
  t.cleanup();
});

function reopen(): Database {
  const d = openStateDb(t.dir);
  open.push(d);
  return d;
}

const SECRET = "ghp_SuperSecretValue_1234567890abcdef";

describe("SecretStore", () => {
  test("round-trips, lists names, deletes", () => {
    const s = new SecretStore(db, t.dir);
    expect(s.get("gh")).toBeUndefined();
    s.set("gh", SECRET);
    s.set("openai.key", "sk-other-secret");
    expect(s.get("gh")).toBe(SECRET);
    expect(s.names()).toEqual(["gh", "openai.key"]);
    s.set("gh", "replaced-value");
    expect(s.get("gh")).toBe("replaced-value");
    expect(s.delete("gh")).toBe(true);
    expect(s.delete("gh")).toBe(false);
    expect(s.get("gh")).toBeUndefined();
    expect(s.names()).toEqual(["openai.key"]);
  });

  test("survives a reopen with a fresh store (values come from disk)", () => {
    new SecretStore(db, t.dir).set("gh", SECRET);
    expect(new SecretStore(reopen(), t.dir).get("gh")).toBe(SECRET);
  });

  test("unicode and empty values round-trip", () => {
    const s = new SecretStore(db, t.dir);
    s.set("u", "pässwörd-🔑");
    s.set("empty", "");
    const fresh = new SecretStore(reopen(), t.dir);
    expect(fresh.get("u")).toBe("pässwörd-🔑");
    expect(fresh.get("empty")).toBe("");
  });

  test("rejects invalid names", () => {
    const s = new SecretStore(db, t.dir);
    for (const bad of ["", "a b", "a/b", "x".repeat(129), "ünï"]) {
      expect(() => s.set(bad, "v")).toThrow(SecretError);
    }
    s.set("x".repeat(128), "value");
    s.set("A-z_0.9", "value");
  });

  test("is encrypted on disk: plaintext appears in no database file", () => {
    const s = new SecretStore(db, t.dir);
    s.set("gh", SECRET);
    s.set("gh2", SECRET + "-again");
    for (const f of fs.readdirSync(t.dir)) {
      const bytes = fs.readFileSync(path.join(t.dir, f));
      expect(bytes.includes(Buffer.from(SECRET))).toBe(false);
    }
    // and a checkpoint into the main file does not change that
    db.run("PRAGMA wal_checkpoint(TRUNCATE)");
    expect(fs.readFileSync(path.join(t.dir, "state.db")).includes(Buffer.from(SECRET))).toBe(false);
    const row = db.query("SELECT nonce, ciphertext FROM secrets WHERE name = 'gh'").get() as {
      nonce: Uint8Array;
      ciphertext: Uint8Array;
    };
    expect(row.nonce.length).toBe(12);
    expect(row.ciphertext.length).toBe(Buffer.byteLength(SECRET) + 16);
  });

  test("master key is 32 bytes, mode 0600, created once", () => {
    const s = new SecretStore(db, t.dir);
    expect(fs.existsSync(path.join(t.dir, "master.key"))).toBe(false); // created on first use
    s.set("gh", SECRET);
    const file = path.join(t.dir, "master.key");
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const key = fs.readFileSync(file);
    expect(key.length).toBe(32);
    expect(loadOrCreateMasterKey(t.dir).equals(key)).toBe(true);
    expect(fs.readdirSync(t.dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  test("a world-readable master key is tightened to 0600", () => {
    const file = path.join(t.dir, "master.key");
    fs.writeFileSync(file, Buffer.alloc(32, 7));
    fs.chmodSync(file, 0o644);
    const lines: string[] = [];
    setLogWriter((l) => lines.push(l));
    try {
      expect(loadOrCreateMasterKey(t.dir).equals(Buffer.alloc(32, 7))).toBe(true);
    } finally {
      setLogWriter(undefined);
    }
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(lines[0]).toContain("mode set to 0600");
  });

  test("a truncated master key is a clear error", () => {
    fs.writeFileSync(path.join(t.dir, "master.key"), Buffer.alloc(7), { mode: 0o600 });
    expect(() => new SecretStore(db, t.dir).set("gh", SECRET)).toThrow(/7 bytes, expected 32/);
  });

  test("a wrong master key fails clearly without the value", () => {
    new SecretStore(db, t.dir).set("gh", SECRET);
    fs.writeFileSync(path.join(t.dir, "master.key"), Buffer.alloc(32, 1));
    const s = new SecretStore(reopen(), t.dir);
    let msg = "";
    try {
      s.get("gh");
    } catch (err) {
      expect(err).toBeInstanceOf(SecretError);
      msg = (err as Error).message;
    }
    expect(msg).toMatch(/"gh" cannot be decrypted: wrong master key or tampered row/);
    expect(msg).not.toContain(SECRET);
  });

  test("a tampered ciphertext or nonce is detected", () => {
    const s = new SecretStore(db, t.dir);
    s.set("a", SECRET);
    s.set("b", "another-secret-value");
    const row = db.query("SELECT nonce, ciphertext FROM secrets WHERE name = 'a'").get() as {
      nonce: Uint8Array;
      ciphertext: Uint8Array;
    };
    const flipped = Buffer.from(row.ciphertext);
    flipped[0]! ^= 1;
    db.query("UPDATE secrets SET ciphertext = ? WHERE name = 'a'").run(flipped);
    expect(() => new SecretStore(reopen(), t.dir).get("a")).toThrow(/tampered/);

    const nonce = Buffer.from(row.nonce);
    nonce[3]! ^= 0x80;
    db.query("UPDATE secrets SET nonce = ?, ciphertext = ? WHERE name = 'a'").run(nonce, row.ciphertext);
    expect(() => new SecretStore(reopen(), t.dir).get("a")).toThrow(/tampered/);

    db.query("UPDATE secrets SET nonce = x'00', ciphertext = x'00' WHERE name = 'a'").run();
    expect(() => new SecretStore(reopen(), t.dir).get("a")).toThrow(/tampered/);
  });

  test("a ciphertext moved to another name does not decrypt (name is bound)", () => {
    const s = new SecretStore(db, t.dir);
    s.set("prod", "prod-secret-value");
    s.set("dev", "dev-secret-value");
    db.run(
      "UPDATE secrets SET nonce = (SELECT nonce FROM secrets WHERE name = 'prod'), ciphertext = (SELECT ciphertext FROM secrets WHERE name = 'prod') WHERE name = 'dev'",
    );
    expect(() => new SecretStore(reopen(), t.dir).get("dev")).toThrow(/"dev" cannot be decrypted/);
  });

  test("values() skips undecryptable rows and returns the rest", () => {
    const s = new SecretStore(db, t.dir);
    s.set("a", "value-a-123");
    s.set("b", "value-b-456");
    db.run("UPDATE secrets SET ciphertext = x'00112233445566778899aabbccddeeff00' WHERE name = 'a'");
    const lines: string[] = [];
    setLogWriter((line) => lines.push(line));
    try {
      expect(new SecretStore(reopen(), t.dir).values()).toEqual(["value-b-456"]);
    } finally {
      setLogWriter(undefined);
    }
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("secret unreadable name=a");
    expect(lines[0]).not.toContain("value-a-123");
  });

  test("another process's write is seen on the next get (data_version)", () => {
    const gateway = new SecretStore(db, t.dir);
    const cli = new SecretStore(reopen(), t.dir);
    cli.set("gh", "first-value");
    expect(gateway.get("gh")).toBe("first-value");
    const v1 = gateway.version();
    expect(gateway.values()).toEqual(["first-value"]);

    cli.set("gh", "second-value");
    expect(gateway.version()).not.toBe(v1);
    expect(gateway.get("gh")).toBe("second-value");
    expect(gateway.values()).toEqual(["second-value"]);

    cli.delete("gh");
    expect(gateway.get("gh")).toBeUndefined();
    expect(gateway.values()).toEqual([]);
  });

  test("a write from a real second process is seen by the running store", () => {
    const gateway = new SecretStore(db, t.dir);
    expect(gateway.get("gh")).toBeUndefined();
    const script = path.join(t.dir, "set.ts");
    const mod = path.resolve(import.meta.dir, "../../../app/store");
    fs.writeFileSync(
      script,
      `import { openStateDb } from ${JSON.stringify(mod + "/db.ts")};
       import { SecretStore } from ${JSON.stringify(mod + "/secrets.ts")};
       const db = openStateDb(process.argv[2]);
       new SecretStore(db, process.argv[2]).set("gh", await Bun.stdin.text());
       db.close();`,
    );
    const res = Bun.spawnSync([process.execPath, script, t.dir], { stdin: Buffer.from("from-the-cli-process") });
    expect(res.exitCode).toBe(0);
    expect(gateway.get("gh")).toBe("from-the-cli-process");
  });

  test("get is served from cache while nothing changes", () => {
    const s = new SecretStore(db, t.dir);
    s.set("gh", SECRET);
    const v = s.version();
    // Break the row behind the cache's back through the same connection:
    // data_version does not move for one's own writes, so the cache stands.
    db.run("UPDATE secrets SET ciphertext = x'00' WHERE name = 'gh'");
    expect(s.get("gh")).toBe(SECRET);
    expect(s.version()).toBe(v);
  });

  test("updated_at comes from the injected clock", () => {
    new SecretStore(db, t.dir, { now: () => 1234 }).set("gh", SECRET);
    expect(db.query("SELECT updated_at FROM secrets").get()).toEqual({ updated_at: 1234 });
  });
});
