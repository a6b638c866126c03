import { describe, expect, test } from "bun:test";
import { celActivation, compileCondition, conditionOf } from "../../../app/policy/cel.ts";
import type { HttpFacts, Rule } from "../../../app/policy/types.ts";

const facts = (over: Partial<HttpFacts> = {}): HttpFacts => ({
  method: "POST",
  host: "api.example.com",
  path: "/v1/messages",
  query: { page: "2" },
  headers: { "content-type": "application/json", "x-team": "infra" },
  body: '{"model":"opus","max_tokens":1000}',
  bodyJson: { model: "opus", max_tokens: 1000, tags: ["a", "b"] },
  bodyTruncated: false,
  ...over,
});

function evaluate(source: string, f = facts()): boolean {
  const c = compileCondition(source);
  if (!c.ok) throw new Error(c.message);
  return c.condition.test(celActivation(f, "laptop", "default"));
}

function compileError(source: string): string {
  const c = compileCondition(source);
  return c.ok ? "compiled" : c.message;
}

describe("compileCondition: errors", () => {
  test.each([
    ["http.method ==", "condition does not parse: Unexpected token: EOF"],
    ["http.method == 1", "condition is not valid: no such overload: string == int"],
    ["http.path", "condition must be a bool, not string"],
    ["size(http.headers)", "condition must be a bool, not int"],
    ["req.method == 'GET'", "condition is not valid: Unknown variable: req"],
    ["device.owner == 'x'", "condition is not valid: No such key: owner"],
    ["http.query == 'x'", "condition is not valid: no such overload: map<string, string> == string"],
  ])("%s", (source, message) => {
    expect(compileError(source)).toBe(message);
  });

  test("oversized expressions are refused at parse time", () => {
    const huge = Array.from({ length: 1500 }, (_, i) => `http.path == '/${i}'`).join(" || ");
    expect(compileError(huge)).toStartWith("condition does not parse:");
  });
});

describe("compileCondition: evaluation", () => {
  test.each([
    ["http.method == 'POST' && http.path.startsWith('/v1/')", true],
    ["http.host.endsWith('.example.com')", true],
    ["http.query['page'] == '2'", true],
    ["'x-team' in http.headers && http.headers['x-team'] == 'infra'", true],
    ["http.body.contains('opus')", true],
    ["http.body_json.model == 'opus'", true],
    ["http.body_json.max_tokens > 500", true],
    ["'b' in http.body_json.tags", true],
    ["device.name == 'laptop' && device.profile == 'default'", true],
    ["http.method in ['GET', 'HEAD']", false],
    ["http.path.matches('^/v1/[a-z]+$')", true],
  ])("%s -> %p", (source, want) => {
    expect(evaluate(source)).toBe(want);
  });

  test("a missing map key throws (the engine fails closed on it)", () => {
    expect(() => evaluate("http.headers['authorization'] == 'x'")).toThrow("No such key: authorization");
    expect(() => evaluate("http.body_json.model == 'x'", facts({ bodyJson: null }))).toThrow();
  });

  test("a dyn condition must produce a bool at run time", () => {
    expect(evaluate("http.body_json.flag", facts({ bodyJson: { flag: true } }))).toBe(true);
    expect(() => evaluate("http.body_json.flag", facts({ bodyJson: { flag: "yes" } }))).toThrow("not a bool");
  });
});

describe("readsDeferred", () => {
  test.each([
    ["http.method == 'POST'", false],
    ["http.headers['x'] == 'body'", false],
    ["http.query.body == 'x'", false],
    ["'body' in http.headers", false],
    ["device.name == 'body_json'", false],
    ["http.body.contains('x')", true],
    ["http.body_json.model == 'x'", true],
    ["has(http.body_json.model)", true],
    ["http['body'] == ''", true],
    ["http['method'] == 'GET'", false],
    ["[http.path, http.body].exists(s, s == '')", true],
    ["http.method == 'GET' || size(http.body) > 10", true],
  ])("%s -> %p", (source, want) => {
    const c = compileCondition(source);
    if (!c.ok) throw new Error(c.message);
    expect(c.condition.readsDeferred).toBe(want);
  });
});

describe("conditionOf", () => {
  const rule = (condition?: string): Rule => ({
    name: "r",
    endpoints: ["https.a"],
    family: "http",
    priority: 0,
    disabled: false,
    readsDeferred: false,
    verdict: "deny",
    source: { file: "x.hcl", line: 1 },
    ...(condition === undefined ? {} : { condition }),
  });

  test("compiles a hand-built rule once and caches it", () => {
    const r = rule("http.method == 'POST'");
    const c = conditionOf(r)!;
    expect(conditionOf(r)).toBe(c);
    expect(c.test(celActivation(facts(), "d", "p"))).toBe(true);
  });

  test("a rule without a condition has none; a broken one always throws", () => {
    expect(conditionOf(rule())).toBeUndefined();
    const broken = conditionOf(rule("http.method =="))!;
    expect(broken.readsDeferred).toBe(true);
    expect(() => broken.test(celActivation(facts(), "d", "p"))).toThrow("does not parse");
  });
});
