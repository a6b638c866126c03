import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { openStateDb } from "../../../app/store/db.ts";
import { OperatorStore } from "../../../app/store/operators.ts";
import { queryAudit } from "../../../app/store/audit.ts";
import { operatorCommand, OperatorUsage } from "../../../app/control/auth/cli.ts";
import { tempDir } from "../events/fixtures.ts";
import { HASHING } from "../api/harness.ts";

let t: ReturnType<typeof tempDir>;
let db: Database;
let out: string[];
let err: string[];
beforeEach(() => {
  t = tempDir();
  db = openStateDb(t.dir);
  out = [];
  err = [];
});
afterEach(() => {
  db.close();
  t.cleanup();
});

const run = (argv: string[], flags: Record<string, string> = {}) => {
  out = [];
  err = [];
  return operatorCommand(argv, new Map(Object.entries(flags)), {
    db,
    actor: "cli:tester",
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    now: () => 1_700_000_000_000,
    hashing: HASHING,
  });
};

const store = () => new OperatorStore(db, { hashing: HASHING });

describe("clawpatrol-gateway operator", () => {
  test("add prints the one-time password exactly once, alone on stdout, and it logs in", async () => {
    expect(await run(["add", "ann"], { role: "approver" })).toBe(0);
    expect(out).toHaveLength(1);
    const password = out[0]!;
    expect(password).toMatch(/^[A-Za-z0-9]{5}(-[A-Za-z0-9]{5}){3}$/);
    expect(err.join("\n")).not.toContain(password);
    expect(err.join("\n")).toContain("shown once");
    expect(await store().verify("ann", password)).toMatchObject({ name: "ann", role: "approver" });
    // Nothing shows it again.
    expect(await run(["list"])).toBe(0);
    expect(out.join("\n") + err.join("\n")).not.toContain(password);
    expect(out.join("\n")).toMatch(/ann\s+approver\s+one-time password/);
    // Adding the same name fails without printing a password.
    expect(await run(["add", "ann"], { role: "viewer" })).toBe(1);
    expect(out).toEqual([]);
  });

  test("add needs a valid role", async () => {
    expect(run(["add", "ann"])).rejects.toThrow(OperatorUsage);
    expect(run(["add", "ann"], { role: "root" })).rejects.toThrow(OperatorUsage);
    expect(store().list()).toEqual([]);
  });

  test("passwd prints a new one-time password; the old one stops working", async () => {
    await run(["add", "ann"], { role: "viewer" });
    const first = out[0]!;
    expect(await run(["passwd", "ann"])).toBe(0);
    expect(out).toHaveLength(1);
    const second = out[0]!;
    expect(second).not.toBe(first);
    expect(await store().verify("ann", first)).toBeUndefined();
    expect(await store().verify("ann", second)).toBeDefined();
    expect(await run(["passwd", "nobody"])).toBe(1);
  });

  test("token add prints a token once, capped by the operator's role", async () => {
    await run(["add", "ann"], { role: "approver" });
    expect(await run(["token", "add", "ann", "ci"], { role: "viewer" })).toBe(0);
    expect(out).toHaveLength(1);
    const token = out[0]!;
    expect(token).toMatch(/^cpo_/);
    expect(store().lookupToken(token)).toMatchObject({ role: "viewer", token: "ci" });
    expect(await run(["token", "add", "ann", "root"], { role: "admin" })).toBe(1);
    expect(err.join("")).toContain("cannot exceed");
    expect(await run(["list"])).toBe(0);
    expect(out.join("\n")).toContain("ci(viewer)");
    expect(out.join("\n")).not.toContain(token);
    expect(await run(["token", "remove", "ann", "ci"])).toBe(0);
    expect(store().lookupToken(token)).toBeUndefined();
  });

  test("remove, role, disable, enable", async () => {
    await run(["add", "ann"], { role: "viewer" });
    expect(await run(["role", "ann", "admin"])).toBe(0);
    expect(store().get("ann")!.role).toBe("admin");
    expect(await run(["disable", "ann"])).toBe(0);
    expect(store().get("ann")!.disabled).toBe(true);
    expect(await run(["enable", "ann"])).toBe(0);
    expect(await run(["remove", "ann"])).toBe(0);
    expect(await run(["remove", "ann"])).toBe(1);
    expect(store().list()).toEqual([]);
  });

  test("every change is audited as the CLI user, without secrets", async () => {
    await run(["add", "ann"], { role: "approver" });
    const pw = out[0]!;
    await run(["passwd", "ann"]);
    await run(["token", "add", "ann", "ci"], { role: "viewer" });
    const token = out[0]!;
    await run(["remove", "ann"]);
    const rows = queryAudit(db, { limit: 100 }).reverse();
    expect(rows.map((r) => [r.operator, r.action, r.target, r.source])).toEqual([
      ["cli:tester", "operator.add", "ann", "cli"],
      ["cli:tester", "operator.passwd", "ann", "cli"],
      ["cli:tester", "token.create", "ann", "cli"],
      ["cli:tester", "operator.remove", "ann", "cli"],
    ]);
    const dump = JSON.stringify(rows);
    expect(dump).not.toContain(pw);
    expect(dump).not.toContain(token);
  });
});

describe("through main (clawpatrol-gateway operator …)", () => {
  test("add writes the state db named by the config; the password is printed once; bad usage exits 2", async () => {
    const { spyOn } = await import("bun:test");
    const { writeFileSync } = await import("node:fs");
    const { join } = await import("node:path");
    const { main } = await import("../../../app/main.ts");
    const state = join(t.dir, "state2");
    const config = join(t.dir, "gateway.hcl");
    writeFileSync(config, `schema_version = 1\ngateway {\n  state_dir = "${state}"\n}\ndefaults {\n  verdict = "allow"\n  unknown_host = "passthrough"\n}\nprofile "dev" {}\n`);
    const lines: string[] = [];
    const errs: string[] = [];
    const log = spyOn(console, "log").mockImplementation((...a: unknown[]) => void lines.push(a.join(" ")));
    const error = spyOn(console, "error").mockImplementation((...a: unknown[]) => void errs.push(a.join(" ")));
    try {
      expect(await main(["operator", "add", "ann", "--role", "admin", "--config", config])).toBe(0);
      expect(lines).toHaveLength(1);
      const password = lines[0]!;
      expect(errs.join("\n")).not.toContain(password);
      const other = openStateDb(state);
      try {
        expect(await new OperatorStore(other).verify("ann", password)).toMatchObject({ role: "admin" });
        expect(queryAudit(other, { limit: 10 })[0]).toMatchObject({ action: "operator.add", target: "ann" });
      } finally {
        other.close();
      }
      expect(main(["operator", "add", "bob", "--config", config])).rejects.toThrow(/--role/);
    } finally {
      log.mockRestore();
      error.mockRestore();
    }
  });
});
