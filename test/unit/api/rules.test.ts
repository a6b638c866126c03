// POST /api/rules/suggest and /api/rules/validate in-process: admins only
// (viewers and approvers are refused), CSRF on a session, a rule generated
// from a recorded request, a bad snippet answered with line-numbered errors,
// and validation that writes nothing: not the config, not the policy.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { errorOf, harness, type Harness } from "./harness.ts";
import { sampleEvent } from "../events/fixtures.ts";
import { insertActions, queryActions } from "../../../app/store/actions.ts";
import { setLogWriter } from "../../../app/log.ts";
import { loadPolicy } from "../../../app/policy/load.ts";
import type { Policy } from "../../../app/policy/types.ts";

const CONFIG = `
schema_version = 1
defaults {
  verdict = "allow"
}
endpoint "https" "github" { hosts = ["api.github.com"] }
endpoint "postgres" "db" { host = "db.internal:5432" }
profile "dev" {}
rule "read-only" {
  endpoint  = https.github
  condition = "http.method == 'GET' && http.path.startsWith('/repos')"
  verdict   = "allow"
}
`;

let h: Harness;
let configPath: string;
let policy: Policy;
let eventId: number;

beforeEach(async () => {
  setLogWriter(() => {});
  const dir = (await import("../events/fixtures.ts")).tempDir();
  configPath = join(dir.dir, "gateway.hcl");
  writeFileSync(configPath, CONFIG);
  const loaded = await loadPolicy(configPath, { env: {} });
  if (!loaded.ok) throw new Error("config");
  policy = loaded.policy;
  h = harness({ policy: () => policy });
  insertActions(h.db, [sampleEvent({ path: "/repos/acme/app/issues?state=open", method: "DELETE", verdict: "allow", rule: undefined })]);
  eventId = queryActions(h.db, { limit: 1 })[0]!.id;
});
afterEach(() => h.close());

describe("who may", () => {
  test("viewers and approvers are refused both routes; admins pass", async () => {
    for (const role of ["viewer", "approver"] as const) {
      const s = await h.as(role);
      for (const path of ["/api/rules/suggest", "/api/rules/validate"]) {
        const e = await errorOf(await h.call("POST", path, { session: s, body: { eventId, hcl: "" } }));
        expect({ role, path, status: e.status, code: e.code }).toEqual({ role, path, status: 403, code: "forbidden" });
      }
    }
    const admin = await h.as("admin");
    expect((await h.call("POST", "/api/rules/suggest", { session: admin, body: { eventId, scope: { path: "exact" } } })).status).toBe(200);
  });

  test("a session without the CSRF token is refused; an admin API token needs none", async () => {
    const admin = await h.as("admin", "ada");
    const e = await errorOf(await h.call("POST", "/api/rules/validate", { session: admin, csrf: null, body: { hcl: "" } }));
    expect(e).toMatchObject({ status: 403, code: "csrf_failed" });
    const { token } = h.store.createToken("ada", "ci", "admin");
    expect((await h.call("POST", "/api/rules/validate", { token, body: { hcl: "" } })).status).toBe(200);
  });
});

describe("suggest then validate", () => {
  test("the suggested rule validates against the running config and would deny the request", async () => {
    const admin = await h.as("admin");
    const res = await h.call("POST", "/api/rules/suggest", { session: admin, body: { eventId, scope: { path: "prefix" } } });
    const s = (await res.json()) as { hcl: string; name: string; description: string };
    expect(s.name).toBe("block-delete-api-github-com-repos-acme-app");
    expect(s.description).toBe("DELETE api.github.com/repos/acme/app/…");
    expect(s.hcl).toContain("endpoint  = https.github");
    expect(s.hcl).toContain("priority  = 1");
    expect(s.hcl).not.toContain("state=open");

    const v = await h.call("POST", "/api/rules/validate", { session: admin, body: { hcl: s.hcl, eventId } });
    const body = (await v.json()) as { ok: boolean; summary: { rules: number; added: { name: string; verdict: string; source: string }[]; request: { verdict: string; rule: string } } };
    expect(body.ok).toBe(true);
    expect(body.summary.rules).toBe(2);
    expect(body.summary.added).toMatchObject([{ name: s.name, verdict: "deny", source: "snippet.hcl:3" }]);
    expect(body.summary.request).toMatchObject({ verdict: "deny", rule: s.name });
    expect(h.auditRows("rules.validate")).toHaveLength(1);
  });

  test("unknown events, relays and bad scopes are refused with a reason", async () => {
    const admin = await h.as("admin");
    expect(await errorOf(await h.call("POST", "/api/rules/suggest", { session: admin, body: { eventId: 999, scope: { path: "exact" } } }))).toMatchObject({ status: 404, code: "no_such_event" });
    expect(await errorOf(await h.call("POST", "/api/rules/suggest", { session: admin, body: { eventId, scope: { path: "everything" } } }))).toMatchObject({ status: 400, code: "bad_scope" });
    insertActions(h.db, [sampleEvent({ kind: "connection", method: undefined, path: undefined, endpoint: undefined, verdict: "relay" })]);
    const relay = queryActions(h.db, { limit: 1 })[0]!.id;
    expect(await errorOf(await h.call("POST", "/api/rules/suggest", { session: admin, body: { eventId: relay, scope: { path: "exact" } } }))).toMatchObject({ status: 422, code: "not_blockable" });
  });

  test("a bad snippet gets every error with its line; validation writes nothing", async () => {
    const admin = await h.as("admin");
    const before = readFileSync(configPath, "utf8");
    const filesBefore = readdirSync(join(configPath, ".."));
    const rulesBefore = policy.rules;
    const hcl = ['rule "oops" {', "  endpoint  = https.gitlab", '  condition = "http.method = \'GET\'"', '  verdict   = "maybe"', "}", ""].join("\n");
    const res = await h.call("POST", "/api/rules/validate", { session: admin, body: { hcl } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { ok: boolean; errors: { file: string; line: number; message: string }[] };
    expect(body.ok).toBe(false);
    expect(body.errors.map((e) => `${e.file}:${e.line}`)).toEqual(["snippet.hcl:2", "snippet.hcl:3", "snippet.hcl:4"]);
    expect(body.errors[0]!.message).toContain("unknown endpoint https.gitlab");

    const syntax = (await (await h.call("POST", "/api/rules/validate", { session: admin, body: { hcl: 'rule "x" {\n  verdict = \n}' } })).json()) as typeof body;
    expect(syntax.ok).toBe(false);
    expect(syntax.errors[0]).toMatchObject({ file: "snippet.hcl", line: expect.any(Number) });

    expect(readFileSync(configPath, "utf8")).toBe(before);
    expect(readdirSync(join(configPath, ".."))).toEqual(filesBefore);
    expect(policy.rules).toBe(rulesBefore);
    expect(h.reloads()).toBe(0);
  });

  test("an SQL statement: the suggested rule reads sql.verb and sql.tables, and the stored statement is judged again with it", async () => {
    const statement = (verb: string, tables: string[], text: string) =>
      sampleEvent({
        kind: "sql", family: "sql", endpoint: "postgres.db", host: "db.internal", port: 5432, method: verb.toUpperCase(), path: text,
        status: undefined, credential: undefined, rule: undefined, verdict: "allow", summary: `${verb} ${tables.join(", ")}`,
        action: { database: "app", user: "agent", verb, tables, functions: [], statement: text, rows: 3 },
      });
    insertActions(h.db, [statement("delete", ["users"], "DELETE FROM users WHERE id = 7"), statement("select", ["users"], "SELECT * FROM users")]);
    const [select, del] = queryActions(h.db, { limit: 2 });
    const admin = await h.as("admin");
    const res = await h.call("POST", "/api/rules/suggest", { session: admin, body: { eventId: del!.id } });
    expect(res.status).toBe(200);
    const s = (await res.json()) as { hcl: string; name: string; description: string };
    expect(s).toMatchObject({ name: "block-delete-users", description: "delete on users" });
    expect(s.hcl).toContain("endpoint  = postgres.db");
    expect(s.hcl).toContain(`condition = "sql.verb == 'delete' && sql.tables.exists(t, t in ['users', 'public.users'])"`);

    type Validated = { ok: boolean; summary: { added: { name: string }[]; request: { id: number; verdict: string; rule: string | null } } };
    const validate = async (id: number) => (await (await h.call("POST", "/api/rules/validate", { session: admin, body: { hcl: s.hcl, eventId: id } })).json()) as Validated;
    expect((await validate(del!.id)).summary.request).toEqual({ id: del!.id, verdict: "deny", rule: s.name });
    expect((await validate(select!.id)).summary.request).toEqual({ id: select!.id, verdict: "allow", rule: null });

    const wide = (await (await h.call("POST", "/api/rules/suggest", { session: admin, body: { eventId: select!.id, scope: { sql: "tables" } } })).json()) as { hcl: string; name: string };
    expect(wide.name).toBe("block-any-sql-on-users");
    const both = (await (await h.call("POST", "/api/rules/validate", { session: admin, body: { hcl: wide.hcl, eventId: del!.id } })).json()) as Validated;
    expect(both.summary.request).toMatchObject({ verdict: "deny", rule: wide.name });
    // An http-only scope is not an sql scope: the statement's own default applies only when none is given.
    expect(await errorOf(await h.call("POST", "/api/rules/suggest", { session: admin, body: { eventId: del!.id, scope: { sql: "all" } } }))).toMatchObject({ status: 400, code: "bad_scope" });
  });

  test("a statement the parser rejected: no rule can describe it, and a rule reading sql.* judges it closed", async () => {
    insertActions(h.db, [
      sampleEvent({
        kind: "sql", family: "sql", endpoint: "postgres.db", host: "db.internal", port: 5432, method: "SQL", path: "selec oops", verdict: "deny",
        action: { database: "app", user: "agent", verb: null, tables: null, functions: null, statement: "selec oops" },
      }),
    ]);
    const id = queryActions(h.db, { limit: 1 })[0]!.id;
    const admin = await h.as("admin");
    expect(await errorOf(await h.call("POST", "/api/rules/suggest", { session: admin, body: { eventId: id } }))).toMatchObject({ status: 422, code: "not_blockable" });
    const hcl = ['rule "no-drops" {', "  endpoint  = postgres.db", '  condition = "sql.verb == \'drop\'"', '  verdict   = "deny"', "}", ""].join("\n");
    const v = (await (await h.call("POST", "/api/rules/validate", { session: admin, body: { hcl, eventId: id } })).json()) as { summary: { request: unknown } };
    expect(v.summary.request).toEqual({ id, verdict: "deny", rule: "no-drops" });
  });

  test("a body without hcl is a 400", async () => {
    const admin = await h.as("admin");
    expect(await errorOf(await h.call("POST", "/api/rules/validate", { session: admin, body: { hcl: 5 } }))).toMatchObject({ status: 400, code: "bad_request" });
  });
});
