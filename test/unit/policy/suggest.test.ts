// "Block requests like this": the generated rule, merged with the config the
// request was decided under, loads through the real loader, and the real
// engine then denies the original request with it and leaves different
// requests alone — for each scope the operator can pick.
import { beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { decide, judge, matchEndpoint } from "../../../app/policy/engine.ts";
import { loadSqlParser, sqlFacts } from "../../../app/families/sql/index.ts";
import { checkSnippet, SNIPPET_FILE } from "../../../app/policy/snippet.ts";
import { parseScope, prefixOf, suggestRule, type SuggestInput, type SuggestScope } from "../../../app/policy/suggest.ts";
import type { HttpFacts, Policy } from "../../../app/policy/types.ts";
import { policyFrom, tempDir } from "./helpers.ts";

const CONFIG = `
schema_version = 1
defaults {
  verdict = "allow"
  profile = profile.dev
}
endpoint "https" "gh" { hosts = ["api.github.com", "*.githubusercontent.com"] }
endpoint "https" "other" { hosts = ["example.org"] }
profile "dev" {}
profile "ci" {}
rule "reads-ok" {
  endpoint  = https.gh
  priority  = 5
  condition = "http.method == 'GET'"
  verdict   = "allow"
}
`;

function configFile(text = CONFIG): string {
  const file = join(tempDir(), "gateway.hcl");
  writeFileSync(file, text);
  return file;
}

const event = (over: Partial<SuggestInput> = {}): SuggestInput => ({
  id: 7,
  kind: "http",
  endpoint: "https.gh",
  host: "api.github.com",
  method: "GET",
  path: "/repos/acme/app/git/refs?per_page=5",
  profile: "dev",
  device: "laptop",
  ...over,
});

function facts(method: string, host: string, path: string): HttpFacts {
  return { method, host, path, query: {}, headers: {}, body: "", bodyJson: null, bodyTruncated: false };
}

function decideFor(policy: Policy, method: string, host: string, path: string, profile = "dev") {
  const endpoint = matchEndpoint(policy, host, profile);
  if (!endpoint) throw new Error(`no endpoint for ${host}`);
  return decide(policy, { device: "laptop", profile, endpoint }, facts(method, host, path));
}

async function merged(hcl: string, config = CONFIG): Promise<Policy> {
  const r = await checkSnippet([configFile(config)], hcl, {});
  if (!r.ok) throw new Error(r.errors.map((e) => `${e.file}:${e.line}: ${e.message}`).join("\n") + "\n" + hcl);
  return r.policy;
}

describe("suggestRule", () => {
  test("exact path, this method: the whole block, as the loader reads it", async () => {
    const base = await policyFrom(CONFIG);
    const s = suggestRule(event(), { path: "exact" }, base.rules);
    if (!s.ok) throw new Error(s.error);
    expect(s.hcl).toBe(
      [
        "# Generated from request #7 (GET api.github.com/repos/acme/app/git/refs by laptop).",
        "# Denies GET api.github.com/repos/acme/app/git/refs. Copy it into your config; a reload applies it.",
        'rule "block-get-api-github-com-repos-acme-app-git-refs" {',
        "  endpoint  = https.gh",
        "  priority  = 6 # checked before this endpoint's other rules",
        `  condition = "http.host == 'api.github.com' && http.method == 'GET' && http.path == '/repos/acme/app/git/refs'"`,
        '  verdict   = "deny"',
        '  reason    = "blocked by an operator: GET api.github.com/repos/acme/app/git/refs"',
        "}",
        "",
      ].join("\n"),
    );
    const p = await merged(s.hcl);
    const rule = p.rules.find((r) => r.name === s.name)!;
    expect(rule.source.file).toBe(SNIPPET_FILE);
    expect(decideFor(p, "GET", "api.github.com", "/repos/acme/app/git/refs")).toMatchObject({ verdict: "deny", rule: s.name });
    // Other paths, methods and hosts of the same endpoint keep their old decision.
    expect(decideFor(p, "GET", "api.github.com", "/repos/acme/app/git/refs/heads")).toMatchObject({ verdict: "allow", rule: "reads-ok" });
    expect(decideFor(p, "POST", "api.github.com", "/repos/acme/app/git/refs")).toEqual({ verdict: "allow", reason: "no rule matched (default allow)" });
    expect(decideFor(p, "GET", "raw.githubusercontent.com", "/repos/acme/app/git/refs")).toMatchObject({ verdict: "allow", rule: "reads-ok" });
  });

  const cases: { scope: SuggestScope; blocked: [string, string][]; kept: [string, string][] }[] = [
    {
      scope: { path: "prefix" },
      blocked: [["GET", "/repos/acme/app/git/refs"], ["GET", "/repos/acme/app/git"], ["GET", "/repos/acme/app/git/blobs/1"]],
      kept: [["GET", "/repos/acme/app/gitx"], ["GET", "/repos/acme/app"], ["POST", "/repos/acme/app/git/refs"]],
    },
    {
      scope: { path: "host" },
      blocked: [["GET", "/"], ["GET", "/user"]],
      kept: [["DELETE", "/user"]],
    },
    {
      scope: { path: "exact", anyMethod: true },
      blocked: [["GET", "/repos/acme/app/git/refs"], ["DELETE", "/repos/acme/app/git/refs"]],
      kept: [["GET", "/repos/acme/app/git/refs/x"]],
    },
    {
      scope: { path: "host", anyMethod: true },
      blocked: [["PUT", "/anything"], ["GET", "/"]],
      kept: [],
    },
  ];
  for (const c of cases) {
    test(`scope ${JSON.stringify(c.scope)}: blocks requests like it and only those`, async () => {
      const base = await policyFrom(CONFIG);
      const s = suggestRule(event(), c.scope, base.rules);
      if (!s.ok) throw new Error(s.error);
      const p = await merged(s.hcl);
      for (const [m, path] of c.blocked) expect({ m, path, ...decideFor(p, m, "api.github.com", path) }).toMatchObject({ m, path, verdict: "deny", rule: s.name });
      for (const [m, path] of c.kept) expect({ m, path, rule: decideFor(p, m, "api.github.com", path).rule }).not.toEqual({ m, path, rule: s.name });
      // The endpoint's other host is never caught by a rule made from this one.
      expect(decideFor(p, "GET", "raw.githubusercontent.com", "/repos/acme/app/git/refs").rule).not.toBe(s.name);
    });
  }

  test("only this profile: another profile's identical request is not blocked", async () => {
    const base = await policyFrom(CONFIG);
    const s = suggestRule(event(), { path: "exact", onlyProfile: true }, base.rules);
    if (!s.ok) throw new Error(s.error);
    expect(s.hcl).toContain("  profiles  = [profile.dev]\n");
    const p = await merged(s.hcl);
    expect(decideFor(p, "GET", "api.github.com", "/repos/acme/app/git/refs", "dev").rule).toBe(s.name);
    expect(decideFor(p, "GET", "api.github.com", "/repos/acme/app/git/refs", "ci").rule).toBe("reads-ok");
  });

  test("quotes, backslashes and template markers in the path survive CEL-in-HCL escaping", async () => {
    const base = await policyFrom(CONFIG);
    for (const path of ["/it's/a \"quote\"", "/back\\slash", "/tmpl/${x}/%{y}", "/ünï/%2F"]) {
      const s = suggestRule(event({ path }), { path: "exact" }, base.rules);
      if (!s.ok) throw new Error(s.error);
      const p = await merged(s.hcl);
      expect({ path, rule: decideFor(p, "GET", "api.github.com", path).rule }).toEqual({ path, rule: s.name });
      expect({ path, rule: decideFor(p, "GET", "api.github.com", path + "x").rule }).toEqual({ path, rule: "reads-ok" });
    }
  });

  test("a free name: an existing rule's name gets a suffix", async () => {
    const first = suggestRule(event(), { path: "host" });
    if (!first.ok) throw new Error(first.error);
    const taken = [{ name: first.name, endpoints: ["https.other"], priority: 0 }];
    const second = suggestRule(event(), { path: "host" }, taken);
    expect(second.ok && second.name).toBe(`${first.name}-2`);
    // A rule on another endpoint does not raise the priority.
    expect(second.ok && second.priority).toBe(0);
  });

  test("relayed connections and requests outside an endpoint cannot become rules", () => {
    expect(suggestRule(event({ kind: "connection", method: undefined }), { path: "exact" })).toMatchObject({ ok: false });
    expect(suggestRule(event({ endpoint: undefined }), { path: "exact" })).toMatchObject({ ok: false });
    expect(suggestRule(event({ endpoint: "https.x\" }" }), { path: "exact" })).toMatchObject({ ok: false });
    expect(suggestRule(event({ profile: "a b" }), { path: "exact", onlyProfile: true })).toMatchObject({ ok: false });
  });

  test("prefixOf", () => {
    expect(["/a/b/c", "/a/b/", "/echo", "/", ""].map(prefixOf)).toEqual(["/a/b", "/a", "/echo", "", ""]);
  });
});

describe("checkSnippet", () => {
  test("errors carry the snippet's own line numbers; nothing in the config changes", async () => {
    const file = configFile();
    const before = await Bun.file(file).text();
    const r = await checkSnippet([file], 'rule "x" {\n  endpoint = https.nope\n  condition = "http.path =="\n  verdict = "deny"\n}\n', {});
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => `${e.file}:${e.line}`)).toEqual(["snippet.hcl:2", "snippet.hcl:3"]);
    expect(r.errors[0]!.message).toContain("unknown endpoint https.nope");
    expect(await Bun.file(file).text()).toBe(before);
  });

  test("a syntax error is reported at its line; a duplicate name points at the config's rule", async () => {
    const file = configFile();
    const syntax = await checkSnippet([file], 'rule "x" {\n  verdict = "deny"\n  condition = \n}\n', {});
    expect(syntax.ok || syntax.errors[0]!.file).toBe("snippet.hcl");
    const dup = await checkSnippet([file], 'rule "reads-ok" {\n  endpoint = https.gh\n  verdict = "deny"\n}\n', {});
    expect(dup.ok).toBe(false);
    if (!dup.ok) expect(dup.errors[0]).toMatchObject({ file: "snippet.hcl", line: 1, message: expect.stringContaining(`first declared at ${file}:`) });
  });
});

describe("suggestRule for an SQL statement", () => {
  const SQL_CONFIG = `
schema_version = 1
defaults {
  verdict = "allow"
  profile = profile.dev
}
endpoint "postgres" "db" { host = "db.internal:5432" }
profile "dev" {}
profile "ci" {}
rule "reads-ok" {
  endpoint  = postgres.db
  priority  = 3
  condition = "sql.verb == 'select'"
  verdict   = "allow"
}
`;

  beforeAll(async () => {
    await loadSqlParser();
  });

  /** The event the postgres endpoint records for one statement (action from the real parser). */
  function sqlEvent(text: string, over: Partial<SuggestInput> = {}): SuggestInput {
    const r = sqlFacts(text);
    if (!r.ok) throw new Error(r.error);
    const f = r.statements[0]!;
    return {
      id: 12,
      kind: "sql",
      endpoint: "postgres.db",
      host: "db.internal",
      method: f.verb.toUpperCase(),
      path: f.statement,
      profile: "dev",
      device: "laptop",
      action: { database: "app", user: "agent", verb: f.verb, tables: f.tables, functions: f.functions, statement: f.statement, rows: 1 },
      ...over,
    };
  }

  /** Every statement of `text` judged as the postgres endpoint judges it; the first deny wins. */
  function judgeSql(policy: Policy, text: string, profile = "dev") {
    const endpoint = policy.endpoints.get("postgres.db")!;
    const r = sqlFacts(text);
    const statements = r.ok ? r.statements : [undefined];
    let last;
    for (const facets of statements) {
      last = judge(policy, { device: "laptop", profile, endpoint }, { database: "app", user: "agent", text, facets, ...(r.ok ? {} : { unknownReason: r.error }) });
      if (last.verdict === "deny") return last;
    }
    return last!;
  }

  test("this verb on these tables (the default): the whole block, as the loader reads it", async () => {
    const base = await policyFrom(SQL_CONFIG);
    const s = suggestRule(sqlEvent("DELETE FROM users WHERE id = 7"), {}, base.rules);
    if (!s.ok) throw new Error(s.error);
    expect(s.hcl).toBe(
      [
        "# Generated from statement #12 (delete on app by laptop):",
        "#   DELETE FROM users WHERE id = 7",
        "# Denies delete on users. Copy it into your config; a reload applies it.",
        'rule "block-delete-users" {',
        "  endpoint  = postgres.db",
        "  priority  = 4 # checked before this endpoint's other rules",
        `  condition = "sql.verb == 'delete' && sql.tables.exists(t, t in ['users', 'public.users'])"`,
        '  verdict   = "deny"',
        '  reason    = "blocked by an operator: delete on users"',
        "}",
        "",
      ].join("\n"),
    );
    const p = await merged(s.hcl, SQL_CONFIG);
    expect(judgeSql(p, "DELETE FROM users WHERE id = 7")).toMatchObject({ verdict: "deny", rule: s.name });
    expect(judgeSql(p, "delete from public.users")).toMatchObject({ verdict: "deny", rule: s.name });
    // A delete hidden in a CTE is a delete statement of its own.
    expect(judgeSql(p, "WITH d AS (DELETE FROM users RETURNING id) SELECT count(*) FROM d")).toMatchObject({ verdict: "deny", rule: s.name });
    expect(judgeSql(p, "select * from users")).toMatchObject({ verdict: "allow", rule: "reads-ok" });
    expect(judgeSql(p, "delete from orders")).toEqual({ verdict: "allow", reason: "no rule matched (default allow)" });
  });

  const cases: { scope: SuggestScope; blocked: string[]; kept: string[] }[] = [
    { scope: { sql: "verb" }, blocked: ["delete from orders", "delete from users"], kept: ["update users set a = 1", "select 1"] },
    { scope: { sql: "tables" }, blocked: ["update users set a = 1", "select * from public.users", "delete from users"], kept: ["delete from orders", "select 1"] },
    { scope: { sql: "verb-tables", onlyProfile: true }, blocked: ["delete from users"], kept: ["delete from orders", "update users set a = 1"] },
  ];
  for (const c of cases) {
    test(`scope ${JSON.stringify(c.scope)}: blocks statements like it and only those`, async () => {
      const base = await policyFrom(SQL_CONFIG);
      const s = suggestRule(sqlEvent("DELETE FROM users WHERE id = 7"), c.scope, base.rules);
      if (!s.ok) throw new Error(s.error);
      const p = await merged(s.hcl, SQL_CONFIG);
      for (const text of c.blocked) expect({ text, ...judgeSql(p, text) }).toMatchObject({ text, verdict: "deny", rule: s.name });
      for (const text of c.kept) expect({ text, rule: judgeSql(p, text).rule }).not.toEqual({ text, rule: s.name });
      if (c.scope.onlyProfile) expect(judgeSql(p, "delete from users", "ci").rule).not.toBe(s.name);
    });
  }

  test("names, descriptions and a schema other than public", async () => {
    const e = sqlEvent("UPDATE billing.invoices SET paid = true FROM users WHERE users.id = invoices.owner");
    const names = (["verb-tables", "verb", "tables"] as const).map((sql) => {
      const s = suggestRule(e, { sql });
      if (!s.ok) throw new Error(s.error);
      return [s.name, s.description, s.condition];
    });
    expect(names).toEqual([
      ["block-update-billing-invoices-users", "update on billing.invoices, users", "sql.verb == 'update' && sql.tables.exists(t, t in ['billing.invoices', 'users', 'public.users'])"],
      ["block-any-update", "any update", "sql.verb == 'update'"],
      ["block-any-sql-on-billing-invoices-users", "any statement touching billing.invoices, users", "sql.tables.exists(t, t in ['billing.invoices', 'users', 'public.users'])"],
    ]);
    const touching = suggestRule(e, { sql: "tables" }, (await policyFrom(SQL_CONFIG)).rules);
    if (!touching.ok) throw new Error(touching.error);
    const p = await merged(touching.hcl, SQL_CONFIG);
    expect(judgeSql(p, "select * from billing.invoices").verdict).toBe("deny");
    expect(judgeSql(p, "select * from invoices").verdict).toBe("allow");
  });

  test("a statement without tables falls back to its verb; the tables scope is refused", () => {
    const vacuum = sqlEvent("SET work_mem = '64MB'");
    expect(suggestRule(vacuum, {})).toMatchObject({ ok: true, condition: "sql.verb == 'set'", name: "block-any-set" });
    expect(suggestRule(vacuum, { sql: "tables" })).toMatchObject({ ok: false, error: "this set names no table; block the verb instead" });
  });

  test("quotes and template markers in names and statements survive CEL-in-HCL escaping", async () => {
    const text = `DELETE FROM "it's ${"${x}"}" WHERE note = '%{y}'`;
    const base = await policyFrom(SQL_CONFIG);
    const s = suggestRule(sqlEvent(text), {}, base.rules);
    if (!s.ok) throw new Error(s.error);
    const p = await merged(s.hcl, SQL_CONFIG);
    expect(judgeSql(p, text)).toMatchObject({ verdict: "deny", rule: s.name });
    expect(judgeSql(p, "delete from other")).toMatchObject({ verdict: "allow" });
  });

  test("a statement the parser rejected cannot become a rule (rules reading sql.* already deny it)", () => {
    const e = sqlEvent("select 1", { action: { database: "app", user: "agent", verb: null, tables: null, functions: null, statement: "selec oops" } });
    expect(suggestRule(e, {})).toMatchObject({ ok: false, error: expect.stringContaining("could not read this statement") });
  });

  test("parseScope reads either form and refuses others", () => {
    expect(parseScope({ sql: "tables", onlyProfile: true })).toEqual({ sql: "tables", anyMethod: false, onlyProfile: true });
    expect(parseScope({ path: "host" })).toEqual({ path: "host", anyMethod: false, onlyProfile: false });
    for (const bad of [{}, { sql: "everything" }, { path: "nope" }, { sql: "verb", onlyProfile: "yes" }, null]) expect(parseScope(bad)).toBeUndefined();
  });
});
