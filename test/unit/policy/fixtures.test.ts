import { beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runFixtures } from "../../../app/policy/fixtures.ts";
import { loadPolicy } from "../../../app/policy/load.ts";
import type { Policy } from "../../../app/policy/types.ts";
import { tempDir } from "./helpers.ts";

const examplePath = join(import.meta.dir, "../../../config/example.hcl");
const exampleFixtures = join(import.meta.dir, "fixtures/example.json");

let policy: Policy;
beforeAll(async () => {
  const result = await loadPolicy(examplePath, { env: {} });
  if (!result.ok) throw new Error("example.hcl does not load");
  policy = result.policy;
});

function writeCases(cases: unknown, name = "cases.json"): string {
  const dir = tempDir();
  const file = join(dir, name);
  writeFileSync(file, typeof cases === "string" ? cases : JSON.stringify(cases));
  return file;
}

describe("runFixtures", () => {
  test("exit 0 when every case matches", async () => {
    const run = await runFixtures(policy, exampleFixtures);
    expect(run.report).toEndWith("9 passed, 0 failed\n");
    expect(run.exitCode).toBe(0);
  });

  test("exit 1 on drift, with expected vs got for each mismatch", async () => {
    const file = writeCases([
      { name: "still fine", request: { method: "DELETE", url: "https://api.github.com/x" }, expect: { verdict: "deny", rule: "no-deletes" } },
      { name: "wrong verdict", request: { method: "GET", url: "https://api.github.com/x" }, expect: { verdict: "deny" } },
      { name: "wrong rule", request: { method: "DELETE", url: "https://api.github.com/x" }, expect: { verdict: "deny", rule: "other" } },
      { name: "expected no rule", request: { method: "DELETE", url: "https://api.github.com/x" }, expect: { verdict: "deny", rule: null } },
    ]);
    const run = await runFixtures(policy, file);
    expect(run.exitCode).toBe(1);
    expect(run.report).toBe(
      [
        "ok    still fine",
        `FAIL  wrong verdict  (${file} #2)`,
        "      expected: deny",
        "      got:      allow, no rule matched (default allow), credential github_token.gh",
        `FAIL  wrong rule  (${file} #3)`,
        '      expected: deny by rule "other"',
        '      got:      deny by rule "no-deletes", credential none',
        `FAIL  expected no rule  (${file} #4)`,
        "      expected: deny, no rule matched",
        '      got:      deny by rule "no-deletes", credential none',
        "1 passed, 3 failed",
        "",
      ].join("\n"),
    );
  });

  test("a directory of *.json files is read in name order", async () => {
    const dir = tempDir();
    mkdirSync(join(dir, "cases"));
    const one = { name: "one", request: { method: "GET", url: "https://example.org/" }, expect: { verdict: "passthrough" } };
    writeFileSync(join(dir, "cases", "b.json"), JSON.stringify([{ ...one, name: "second" }]));
    writeFileSync(join(dir, "cases", "a.json"), JSON.stringify([{ ...one, name: "first" }]));
    writeFileSync(join(dir, "cases", "notes.md"), "ignored");
    const run = await runFixtures(policy, join(dir, "cases"));
    expect(run.exitCode).toBe(0);
    expect(run.report).toBe("ok    first\nok    second\n2 passed, 0 failed\n");
  });

  test("unknown_host = deny makes unclaimed hosts expect deny", async () => {
    const deny = { ...policy, defaults: { ...policy.defaults, unknownHost: "deny" as const } };
    const file = writeCases([{ name: "x", request: { url: "https://example.org/" }, expect: { verdict: "deny", rule: null } }]);
    expect((await runFixtures(deny, file)).exitCode).toBe(0);
  });

  test("a body past the inspection limit fails closed on body rules", async () => {
    const small = { ...policy, defaults: { ...policy.defaults, inspectLimitBytes: 16 } };
    const file = writeCases([
      {
        name: "truncated",
        request: { method: "POST", url: "https://api.anthropic.com/v1/messages", headers: { "x-batch-job": "1" }, body: { model: "claude-haiku-4-with-a-long-name" } },
        expect: { verdict: "deny", rule: "no-opus-in-batch" },
      },
    ]);
    expect((await runFixtures(small, file)).exitCode).toBe(0);
  });

  test.each([
    ["missing file", null, "cannot read fixtures"],
    ["invalid JSON", "[{", "invalid JSON"],
    ["not an array", "{}", "must hold a JSON array of cases"],
    ["empty array", "[]", "no fixture cases"],
    ["no name", [{ request: { url: "https://a.test/" }, expect: { verdict: "allow" } }], 'case #1: needs a "name" string'],
    ["bad url", [{ name: "x", request: { url: "/relative" }, expect: { verdict: "allow" } }], "case #1: request.url must be an absolute URL"],
    ["bad verdict", [{ name: "x", request: { url: "https://a.test/" }, expect: { verdict: "maybe" } }], "case #1: expect.verdict must be one of"],
    ["bad header", [{ name: "x", request: { url: "https://a.test/", headers: { a: 1 } }, expect: { verdict: "allow" } }], "request.headers.a must be a string"],
    ["bad rule", [{ name: "x", request: { url: "https://a.test/" }, expect: { verdict: "allow", rule: 3 } }], "expect.rule must be a string or null"],
  ])("exit 2: %s", async (_label, content, message) => {
    const path = content === null ? "/nonexistent/fixtures.json" : writeCases(content);
    const run = await runFixtures(policy, path);
    expect(run.exitCode).toBe(2);
    expect(run.report).toContain(message);
  });
});

describe("runFixtures: sql cases", () => {
  const sqlConfig = join(import.meta.dir, "fixtures/sql/gateway.hcl");
  const sqlFixtures = join(import.meta.dir, "fixtures/sql/cases.json");
  let sqlPolicy: Policy;
  beforeAll(async () => {
    const result = await loadPolicy(sqlConfig, { env: {} });
    if (!result.ok) throw new Error("sql-gateway.hcl does not load");
    sqlPolicy = result.policy;
  });

  test("exit 0: every statement parsed by the real parser and judged as the gateway does", async () => {
    const run = await runFixtures(sqlPolicy, sqlFixtures);
    expect(run.report).toStartWith("ok    postgres.db: delete from users\n");
    expect(run.report).toEndWith("10 passed, 0 failed\n");
    expect(run.exitCode).toBe(0);
  });

  test("exit 1 on drift: one deny among allowed statements decides; a text the parser rejects fails closed", async () => {
    const file = writeCases([
      { name: "expects a lone write to pass", endpoint: "postgres.db", sql: "select 1; insert into t values (1)", database: "app", expect: { verdict: "allow" } },
      { name: "expects garbage to pass", endpoint: "postgres.db", sql: "drop tabel x", database: "app", expect: { verdict: "allow" } },
    ]);
    const run = await runFixtures(sqlPolicy, file);
    expect(run.exitCode).toBe(1);
    expect(run.report).toBe(
      [
        `FAIL  expects a lone write to pass  (${file} #1)`,
        "      expected: allow",
        '      got:      deny by rule "no-writes", credential none',
        `FAIL  expects garbage to pass  (${file} #2)`,
        "      expected: allow",
        '      got:      deny by rule "no-secrets-table", credential none',
        "0 passed, 2 failed",
        "",
      ].join("\n"),
    );
  });

  test("without a rule that reads the facets, an unparseable text is judged like any other (as the gateway, which then parses nothing)", async () => {
    const plain = await loadPolicy(sqlConfig, { env: {} });
    if (!plain.ok) throw new Error("config");
    const p = { ...plain.policy, rules: plain.policy.rules.filter((r) => r.name === "admin-db-needs-approval") };
    const file = writeCases([{ name: "x", endpoint: "postgres.db", sql: "selec oops", database: "app", expect: { verdict: "allow", rule: null } }]);
    expect((await runFixtures(p, file)).report).toBe("ok    x\n1 passed, 0 failed\n");
  });

  test("the database defaults to the user name, as PostgreSQL's does", async () => {
    const file = writeCases([{ name: "x", endpoint: "postgres.db", sql: "select 1", user: "admin", expect: { verdict: "approve", rule: "admin-db-needs-approval" } }]);
    expect((await runFixtures(sqlPolicy, file)).exitCode).toBe(0);
  });

  test.each([
    ["no endpoint", [{ sql: "select 1", expect: { verdict: "allow" } }], 'case #1: an sql case needs "endpoint"'],
    ["unknown endpoint", [{ endpoint: "postgres.nope", sql: "select 1", expect: { verdict: "allow" } }], "case #1: no endpoint postgres.nope in the config"],
    ["an http endpoint", [{ endpoint: "https.gh", sql: "select 1", expect: { verdict: "allow" } }], "endpoint https.gh is of the http family, not sql"],
    ["sql not text", [{ endpoint: "postgres.db", sql: 5, expect: { verdict: "allow" } }], '"sql" must be the statement text'],
    ["both kinds", [{ endpoint: "postgres.db", sql: "select 1", request: { url: "https://a.test/" }, expect: { verdict: "allow" } }], 'has both "request" and "sql"'],
    ["bad database", [{ endpoint: "postgres.db", sql: "select 1", database: 1, expect: { verdict: "allow" } }], '"database" must be a string'],
  ])("exit 2: %s", async (_label, content, message) => {
    const run = await runFixtures(sqlPolicy, writeCases(content));
    expect(run.exitCode).toBe(2);
    expect(run.report).toContain(message);
  });
});
