import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { openStateDb } from "../../../app/store/db.ts";
import {
  OperatorError,
  OperatorStore,
  SESSION_IDLE_MS,
  generatePassword,
  roleAtLeast,
} from "../../../app/store/operators.ts";
import { FailureLimiter } from "../../../app/control/auth/ratelimit.ts";
import { parseCookies, isLoopbackHost } from "../../../app/control/auth/auth.ts";
import { tempDir } from "../events/fixtures.ts";
import { HASHING, harness } from "../api/harness.ts";
import { setLogWriter } from "../../../app/log.ts";

let t: ReturnType<typeof tempDir>;
let db: Database;
let now = 1_000_000;
let store: OperatorStore;
beforeEach(() => {
  t = tempDir();
  db = openStateDb(t.dir);
  now = 1_000_000;
  store = new OperatorStore(db, { now: () => now, hashing: HASHING });
});
afterEach(() => {
  db.close();
  t.cleanup();
});

/** Every byte of the state database on disk (main file, WAL, shm). */
function dbBytes(dir: string): string {
  return readdirSync(dir)
    .filter((f) => f.startsWith("state.db"))
    .map((f) => readFileSync(path.join(dir, f)).toString("latin1"))
    .join("");
}

describe("OperatorStore", () => {
  test("roles nest: admin ⊃ approver ⊃ viewer", () => {
    expect(roleAtLeast("admin", "approver")).toBe(true);
    expect(roleAtLeast("approver", "viewer")).toBe(true);
    expect(roleAtLeast("approver", "admin")).toBe(false);
    expect(roleAtLeast("viewer", "approver")).toBe(false);
  });

  test("generated passwords: 20 unambiguous characters in four groups, all different", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const p = generatePassword();
      expect(p).toMatch(/^([a-km-zA-HJ-NP-Z2-9]{5}-){3}[a-km-zA-HJ-NP-Z2-9]{5}$/);
      seen.add(p);
    }
    expect(seen.size).toBe(200);
  });

  test("add: argon2id hash, unique names, valid roles", async () => {
    const { password, operator } = await store.add("ann", "approver");
    expect(operator).toMatchObject({ name: "ann", role: "approver", disabled: false, passwordTemporary: true, createdAt: now });
    const row = db.query("SELECT password_hash FROM operators").get() as { password_hash: string };
    expect(row.password_hash).toStartWith("$argon2id$");
    expect(await store.verify("ann", password)).toMatchObject({ name: "ann" });
    expect(await store.verify("ann", password + "x")).toBeUndefined();
    expect(store.add("ann", "viewer")).rejects.toThrow(OperatorError);
    expect(store.add("bad name", "viewer")).rejects.toThrow(OperatorError);
    expect(store.add("bob", "root" as never)).rejects.toThrow(OperatorError);
  });

  test("passwords, tokens and session ids are stored only hashed (the database file's bytes)", async () => {
    const { password } = await store.add("ann", "admin");
    const reset = await store.resetPassword("ann");
    const { token } = store.createToken("ann", "ci", "viewer");
    const session = store.createSession(store.get("ann")!.id, "192.0.2.1");
    db.run("PRAGMA wal_checkpoint(PASSIVE)");
    const bytes = dbBytes(t.dir);
    expect(bytes).toContain("ann"); // the file is readable: the test looks in the right place
    for (const secret of [password, reset, token, token.slice(4), session.id]) expect(bytes).not.toContain(secret);
    // And nothing that decodes to them either: hex or base64 of the raw value.
    for (const secret of [reset, token, session.id]) {
      expect(bytes).not.toContain(Buffer.from(secret).toString("hex"));
      expect(bytes).not.toContain(Buffer.from(secret).toString("base64"));
    }
  });

  test("a token's role cannot exceed its operator's; names are unique per operator", async () => {
    await store.add("ann", "approver");
    expect(() => store.createToken("ann", "x", "admin")).toThrow(OperatorError);
    store.createToken("ann", "ci", "viewer");
    expect(() => store.createToken("ann", "ci", "viewer")).toThrow(/already has a token/);
    expect(() => store.createToken("nobody", "ci", "viewer")).toThrow(/no operator/);
    expect(store.lookupToken("cpo_unknown")).toBeUndefined();
    expect(store.lookupToken("cpd_whatever")).toBeUndefined();
  });

  test("sessions: lookup, idle expiry, touch throttled to once a minute", async () => {
    await store.add("ann", "viewer");
    const s = store.createSession(store.get("ann")!.id);
    expect(store.lookupSession(s.id)).toMatchObject({ operator: { name: "ann" }, csrf: s.csrf, expiresAt: now + SESSION_IDLE_MS });
    expect(store.lookupSession(s.id + "x")).toBeUndefined();
    expect(store.lookupSession("")).toBeUndefined();
    now += 30_000;
    expect(store.lookupSession(s.id, { touch: true })!.lastSeen).toBe(1_000_000);
    now += 30_000;
    expect(store.lookupSession(s.id, { touch: true })!.lastSeen).toBe(now);
    now += SESSION_IDLE_MS;
    expect(store.lookupSession(s.id)).toBeUndefined();
  });

  test("pruneSessions deletes the expired ones", async () => {
    await store.add("ann", "viewer");
    const id = store.get("ann")!.id;
    store.createSession(id);
    now += SESSION_IDLE_MS - 1;
    store.createSession(id);
    now += 1;
    expect(store.pruneSessions()).toBe(1);
    expect(db.query("SELECT count(*) AS n FROM operator_sessions").get()).toEqual({ n: 1 });
  });

  test("remove takes the operator's tokens and sessions with it", async () => {
    await store.add("ann", "viewer");
    const { token } = store.createToken("ann", "ci", "viewer");
    const s = store.createSession(store.get("ann")!.id);
    expect(store.remove("ann")).toBe(true);
    expect(store.remove("ann")).toBe(false);
    expect(store.lookupToken(token)).toBeUndefined();
    expect(store.lookupSession(s.id)).toBeUndefined();
    expect(db.query("SELECT (SELECT count(*) FROM operator_tokens) + (SELECT count(*) FROM operator_sessions) AS n").get()).toEqual({ n: 0 });
  });
});

describe("FailureLimiter", () => {
  test("refuses at max failures and drains max per window", () => {
    const l = new FailureLimiter({ max: 3, windowMs: 60_000 });
    for (let i = 0; i < 2; i++) l.fail("k", 0);
    expect(l.blockedFor("k", 0)).toBe(0);
    l.fail("k", 0);
    expect(l.blockedFor("k", 0)).toBe(20_000);
    expect(l.blockedFor("k", 10_000)).toBe(10_000);
    expect(l.blockedFor("k", 20_000)).toBe(0);
    expect(l.blockedFor("other", 0)).toBe(0);
    l.reset("k");
    expect(l.blockedFor("k", 0)).toBe(0);
    l.fail("a", 0);
    l.prune(60_000);
    expect(l.size).toBe(0);
  });
});

describe("cookie helpers", () => {
  test("parseCookies keeps the first of a repeated name", () => {
    expect([...parseCookies("a=1; b=2; a=3; junk; =x")]).toEqual([
      ["a", "1"],
      ["b", "2"],
    ]);
  });
  test("loopback hosts", () => {
    for (const h of ["localhost", "LOCALHOST", "app.localhost", "127.0.0.1", "127.8.9.10", "[::1]", "::1"]) expect(isLoopbackHost(h)).toBe(true);
    for (const h of ["localhost.evil.com", "10.0.0.1", "gw.example.com", "128.0.0.1", "::2"]) expect(isLoopbackHost(h)).toBe(false);
  });
});

describe("on disk through the API", () => {
  test("nothing a login or the API hands out is stored in clear", async () => {
    setLogWriter(() => {});
    const h = harness();
    try {
      const pw = await h.addOperator("root", "admin");
      const s = await h.login("root", pw);
      const made = (await (await h.call("POST", "/api/auth/tokens", { session: s, body: { name: "ci" } })).json()) as { token: string };
      h.db.run("PRAGMA wal_checkpoint(PASSIVE)");
      const bytes = dbBytes(h.dir.dir);
      const sessionId = s.cookie.split("=")[1]!;
      for (const secret of [pw, sessionId, made.token]) expect(bytes).not.toContain(secret);
    } finally {
      h.close();
    }
  });
});
