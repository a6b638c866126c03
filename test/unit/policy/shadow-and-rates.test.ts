// Shadow rules and rate limits, through the real config loader and judge().
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { decide, httpFactsFromRequest } from "../../../app/policy/engine.ts";
import { runFixtures } from "../../../app/policy/fixtures.ts";
import { formatConfigError, loadPolicy } from "../../../app/policy/load.ts";
import { parseRate, RateLimiter, type RateSpec } from "../../../app/policy/rate-limits.ts";
import type { HttpFacts, Policy } from "../../../app/policy/types.ts";
import { policyFrom, tempDir } from "./helpers.ts";

const BASE = `
schema_version = 1
defaults { verdict = "allow" }
endpoint "https" "api" { hosts = ["api.example.com"] }
profile "default" {}
`;

function facts(method: string, path: string): HttpFacts {
  return httpFactsFromRequest(method, "api.example.com", path, [], undefined, false);
}

function ctx(policy: Policy, device = "laptop") {
  return { device, profile: "default", endpoint: policy.endpoints.get("https.api")! };
}

async function errorsOf(hcl: string): Promise<string[]> {
  const dir = tempDir();
  const file = join(dir, "gateway.hcl");
  writeFileSync(file, hcl);
  const r = await loadPolicy(file, { env: {} });
  return r.ok ? [] : r.errors.map(formatConfigError);
}

describe("shadow rules", () => {
  test("a shadow rule is recorded with what it would decide and the next rule decides", async () => {
    const policy = await policyFrom(`${BASE}
rule "try-no-deletes" {
  endpoint  = https.api
  priority  = 10
  mode      = "shadow"
  condition = "http.method == 'DELETE'"
  verdict   = "deny"
}
rule "try-approvals" {
  endpoint  = https.api
  priority  = 5
  mode      = "shadow"
  condition = "http.path.startsWith('/admin')"
  approve   = [dashboard]
}
rule "no-admin-deletes" {
  endpoint  = https.api
  condition = "http.method == 'DELETE' && http.path.startsWith('/admin')"
  verdict   = "deny"
}
`);
    const d = decide(policy, ctx(policy), facts("DELETE", "/repos/x"), { limiter: null });
    expect(d.verdict).toBe("allow");
    expect(d.rule).toBeUndefined();
    expect(d.shadow).toEqual([{ rule: "try-no-deletes", would: "deny" }]);

    const both = decide(policy, ctx(policy), facts("DELETE", "/admin/x"), { limiter: null });
    expect(both.verdict).toBe("deny");
    expect(both.rule).toBe("no-admin-deletes");
    expect(both.shadow).toEqual([
      { rule: "try-no-deletes", would: "deny" },
      { rule: "try-approvals", would: "approve" },
    ]);

    const none = decide(policy, ctx(policy), facts("GET", "/repos/x"), { limiter: null });
    expect(none.shadow).toBeUndefined();
  });

  test("defaults { mode = \"shadow\" } makes every rule without its own mode a shadow rule", async () => {
    const policy = await policyFrom(`
schema_version = 1
defaults {
  verdict = "allow"
  mode    = "shadow"
}
endpoint "https" "api" { hosts = ["api.example.com"] }
profile "default" {}
rule "watched" {
  endpoint  = https.api
  condition = "http.method == 'POST'"
  verdict   = "deny"
}
rule "enforced" {
  endpoint  = https.api
  mode      = "enforce"
  condition = "http.path == '/never'"
  verdict   = "deny"
}
`);
    const post = decide(policy, ctx(policy), facts("POST", "/x"), { limiter: null });
    expect(post.verdict).toBe("allow");
    expect(post.shadow).toEqual([{ rule: "watched", would: "deny" }]);
    const never = decide(policy, ctx(policy), facts("GET", "/never"), { limiter: null });
    expect(never.verdict).toBe("deny");
    expect(never.rule).toBe("enforced");
  });

  test("a shadow rule whose condition cannot be evaluated records a would-deny and applies nothing", async () => {
    const policy = await policyFrom(`${BASE}
rule "reads-json" {
  endpoint  = https.api
  mode      = "shadow"
  condition = "http.body_json.amount > 10"
  verdict   = "deny"
}
`);
    const d = decide(policy, ctx(policy), facts("POST", "/pay"), { limiter: null });
    expect(d.verdict).toBe("allow");
    expect(d.shadow).toEqual([{ rule: "reads-json", would: "deny" }]);
  });

  test("mode is checked", async () => {
    const errors = await errorsOf(`${BASE}
rule "x" {
  endpoint = https.api
  mode     = "dry-run"
  verdict  = "deny"
}
`);
    expect(errors.join("\n")).toMatch(/gateway\.hcl:\d+: .*mode/);
  });
});

describe("rate limits", () => {
  const RATE_RULE = `${BASE}
rule "api-calls" {
  endpoint = https.api
  verdict  = "allow"
  rate     = "10/s"
}
`;

  test("parseRate reads a count per period and refuses the rest", () => {
    expect(parseRate("60/m")).toEqual({ count: 60, periodMs: 60_000 });
    expect(parseRate("10 / s")).toEqual({ count: 10, periodMs: 1000 });
    expect(parseRate("500/day")).toEqual({ count: 500, periodMs: 86_400_000 });
    for (const bad of ["", "60", "0/s", "-1/s", "1.5/s", "10/fortnight", "ten/s"]) expect(parseRate(bad)).toBeUndefined();
  });

  test("the bucket lets `burst` through at once, then one per 1/rate, and says when to retry", () => {
    let now = 1_000_000;
    const limiter = new RateLimiter(() => now);
    const spec: RateSpec = { count: 10, periodMs: 1000, burst: 10, per: "device", text: "10/s" };
    const results = Array.from({ length: 12 }, () => limiter.take("r", "device:a", spec));
    expect(results.filter((r) => r.ok)).toHaveLength(10);
    const refused = results[10]!;
    expect(refused.ok).toBe(false);
    if (!refused.ok) expect(refused.retryAfterMs).toBe(100);
    now += 100;
    expect(limiter.take("r", "device:a", spec).ok).toBe(true);
    expect(limiter.take("r", "device:a", spec).ok).toBe(false);
    // another key has its own bucket
    expect(limiter.take("r", "device:b", spec).ok).toBe(true);
  });

  test("saved buckets restore into a new limiter (a restart within the window keeps the count)", () => {
    const now = 5_000;
    const spec: RateSpec = { count: 2, periodMs: 60_000, burst: 2, per: "device", text: "2/m" };
    const first = new RateLimiter(() => now);
    first.take("r", "device:a", spec);
    first.take("r", "device:a", spec);
    const saved = first.save();
    expect(saved.changed).toBe(true);
    expect(first.save().changed).toBe(false);
    const second = new RateLimiter(() => now + 1000);
    second.restore(saved.buckets);
    expect(second.take("r", "device:a", spec).ok).toBe(false);
    second.retain(new Set(["other"]));
    expect(second.size).toBe(0);
  });

  test("over the rate the rule denies with a limited decision, counted per device", async () => {
    const policy = await policyFrom(RATE_RULE);
    let now = 0;
    const limiter = new RateLimiter(() => now);
    const verdicts = Array.from({ length: 15 }, () => decide(policy, ctx(policy), facts("GET", "/x"), { limiter }));
    expect(verdicts.filter((d) => d.verdict === "allow")).toHaveLength(10);
    const over = verdicts[14]!;
    expect(over.verdict).toBe("deny");
    expect(over.rule).toBe("api-calls");
    expect(over.reason).toContain("rate limit");
    expect(over.limited?.rate).toBe("10/s");
    expect(over.limited!.retryAfterMs).toBeGreaterThan(0);
    // another device is not affected
    expect(decide(policy, ctx(policy, "other"), facts("GET", "/x"), { limiter }).verdict).toBe("allow");
    now += 1000;
    expect(decide(policy, ctx(policy), facts("GET", "/x"), { limiter }).verdict).toBe("allow");
    // a preview (no limiter) counts nothing and sees the rule's own verdict
    expect(decide(policy, ctx(policy), facts("GET", "/x"), { limiter: null }).verdict).toBe("allow");
  });

  test("over_limit may send the action for approval; per = \"profile\" shares one bucket", async () => {
    const policy = await policyFrom(`${BASE}
rule "bulk" {
  endpoint   = https.api
  verdict    = "allow"
  rate       = "2/m"
  per        = "profile"
  over_limit = [dashboard]
}
`);
    const limiter = new RateLimiter(() => 0);
    expect(decide(policy, ctx(policy, "a"), facts("GET", "/"), { limiter }).verdict).toBe("allow");
    expect(decide(policy, ctx(policy, "b"), facts("GET", "/"), { limiter }).verdict).toBe("allow");
    const third = decide(policy, ctx(policy, "c"), facts("GET", "/"), { limiter });
    expect(third.verdict).toBe("approve");
    expect(third.approvers).toEqual(["dashboard"]);
    expect(third.limited?.rate).toBe("2/m");
  });

  test("rate attributes are checked with FILE:LINE", async () => {
    const errors = (
      await errorsOf(`${BASE}
rule "bad-rate" {
  endpoint = https.api
  verdict  = "allow"
  rate     = "lots"
}
rule "deny-with-rate" {
  endpoint = https.api
  verdict  = "deny"
  rate     = "1/s"
}
rule "burst-alone" {
  endpoint = https.api
  verdict  = "allow"
  burst    = 5
}
rule "bad-per" {
  endpoint = https.api
  verdict  = "allow"
  rate     = "1/s"
  per      = "planet"
}
`)
    ).join("\n");
    expect(errors).toMatch(/gateway\.hcl:\d+: .*rate must be a count per period/);
    expect(errors).toMatch(/gateway\.hcl:\d+: .*rate has no effect on a rule with verdict "deny"/);
    expect(errors).toMatch(/gateway\.hcl:\d+: .*burst has no effect without rate/);
    expect(errors).toMatch(/gateway\.hcl:\d+: .*per/);
  });

  test("test fixtures assert shadow verdicts and limits, in order at one instant", async () => {
    const policy = await policyFrom(`${BASE}
rule "watch-posts" {
  endpoint  = https.api
  mode      = "shadow"
  condition = "http.method == 'POST'"
  verdict   = "deny"
}
rule "two-a-minute" {
  endpoint = https.api
  verdict  = "allow"
  rate     = "2/m"
}
`);
    const dir = tempDir();
    const file = join(dir, "cases.json");
    const post = { method: "POST", url: "https://api.example.com/x" };
    writeFileSync(
      file,
      JSON.stringify([
        { name: "first", request: post, expect: { verdict: "allow", shadow: { "watch-posts": "deny" }, limited: false } },
        { name: "second", request: post, expect: { verdict: "allow", limited: false } },
        { name: "third is limited", request: post, expect: { verdict: "deny", rule: "two-a-minute", limited: true } },
        { name: "wrong shadow", request: post, expect: { verdict: "deny", shadow: {} } },
      ]),
    );
    const run = await runFixtures(policy, file);
    expect(run.report).toContain("ok    first");
    expect(run.report).toContain("ok    third is limited");
    expect(run.report).toContain("FAIL  wrong shadow");
    expect(run.report).toContain("shadow: watch-posts would deny");
    expect(run.report).toEndWith("3 passed, 1 failed\n");
  });
});
