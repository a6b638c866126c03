import { beforeAll, describe, expect, test } from "bun:test";
import { decide, httpFactsFromRequest, matchEndpoint, needsBody, normalizeHost } from "../../../app/policy/engine.ts";
import type { Endpoint, HttpFacts, Policy } from "../../../app/policy/types.ts";
import { policyFrom } from "./helpers.ts";

const CONFIG = `
schema_version = 1
defaults { verdict = "allow" }

endpoint "https" "github" {
  hosts      = ["api.github.com", "*.github.com"]
  credential = github_token.gh
}
endpoint "https" "gist" {
  hosts = ["gist.github.com"]
}
endpoint "https" "raw" {
  hosts = ["*.raw.github.com"]
}
endpoint "https" "internal" {
  hosts = ["*.corp.example", "corp.example"]
}

credential "github_token" "gh" {}
credential "bearer_token" "ro" {}

profile "default" { credentials = [github_token.gh] }
profile "contractor" {
  credentials = [bearer_token.ro]
  endpoints   = [https.github]
}

rule "low-first-declared" {
  endpoint  = https.github
  condition = "http.path.startsWith('/tie')"
  verdict   = "deny"
}
rule "low-second-declared" {
  endpoint  = https.github
  condition = "http.path.startsWith('/tie')"
  verdict   = "allow"
}
rule "high" {
  endpoint  = https.github
  priority  = 10
  condition = "http.method == 'DELETE'"
  verdict   = "deny"
  reason    = "no deletes"
}
rule "disabled" {
  endpoint = https.github
  priority = 100
  disabled = true
  verdict  = "deny"
}
rule "contractor-only" {
  endpoint   = https.github
  priority   = 5
  profiles   = [profile.contractor]
  condition  = "http.method == 'GET'"
  verdict    = "allow"
  credential = bearer_token.ro
}
rule "merge" {
  endpoint  = https.github
  priority  = 4
  condition = "http.path.endsWith('/merge')"
  approve   = [dashboard]
}
rule "needs-header" {
  endpoint  = https.github
  priority  = 3
  condition = "http.headers['x-need'] == 'yes'"
  verdict   = "deny"
}
rule "body" {
  endpoint  = https.gist
  condition = "http.body_json.public == true"
  verdict   = "deny"
}
rule "all-internal" {
  endpoint = https.internal
  verdict  = "deny"
}
`;

let policy: Policy;
beforeAll(async () => {
  policy = await policyFrom(CONFIG);
});

const endpoint = (ref: string): Endpoint => policy.endpoints.get(ref)!;

// Rule "needs-header" reads x-need, so requests carry it unless a test drops it.
function facts(method: string, target: string, headers: [string, string][] = [["x-need", "no"]], body?: string, truncated = false): HttpFacts {
  return httpFactsFromRequest(method, "api.github.com", target, headers, body === undefined ? undefined : new TextEncoder().encode(body), truncated);
}

function decideFor(ref: string, f: HttpFacts, profile = "default") {
  return decide(policy, { device: "laptop", profile, endpoint: endpoint(ref) }, f);
}

describe("matchEndpoint", () => {
  test.each([
    ["api.github.com", "https.github"],
    ["API.GitHub.com.", "https.github"],
    ["api.github.com:443", "https.github"],
    ["gist.github.com", "https.gist"], // exact beats wildcard
    ["x.gist.github.com", "https.github"], // *.github.com, no *.gist.github.com
    ["a.raw.github.com", "https.raw"], // longest suffix wins
    ["a.b.raw.github.com", "https.raw"],
    ["raw.github.com", "https.github"], // *.raw.github.com does not match raw.github.com itself
    ["github.com", undefined],
    ["notgithub.com", undefined],
    ["corp.example", "https.internal"],
    ["deep.a.corp.example", "https.internal"],
    ["example.org", undefined],
  ])("%s -> %p", (host, ref) => {
    expect(matchEndpoint(policy, host, "default")?.ref).toBe(ref as string);
  });

  test("only endpoints visible to the profile", () => {
    expect(matchEndpoint(policy, "api.github.com", "contractor")?.ref).toBe("https.github");
    // gist.github.com is hidden from contractors, so the wildcard endpoint claims it.
    expect(matchEndpoint(policy, "gist.github.com", "contractor")?.ref).toBe("https.github");
    expect(matchEndpoint(policy, "a.raw.github.com", "contractor")?.ref).toBe("https.github");
    expect(matchEndpoint(policy, "corp.example", "contractor")).toBeUndefined();
  });

  test("an unknown profile sees nothing", () => {
    expect(matchEndpoint(policy, "api.github.com", "stranger")).toBeUndefined();
  });

  test("normalizeHost", () => {
    expect(normalizeHost("[::1]:8443")).toBe("::1");
    expect(normalizeHost("fe80::1")).toBe("fe80::1");
    expect(normalizeHost(" Example.COM.:80 ")).toBe("example.com");
  });
});

describe("decide: ordering", () => {
  test("higher priority is evaluated first", () => {
    expect(decideFor("https.github", facts("DELETE", "/tie"))).toEqual({ verdict: "deny", rule: "high", reason: "no deletes" });
  });

  test("equal priority: declaration order, first match wins", () => {
    expect(decideFor("https.github", facts("GET", "/tie/x"))).toEqual({ verdict: "deny", rule: "low-first-declared", reason: 'rule "low-first-declared"' });
  });

  test("disabled rules never match", () => {
    expect(decideFor("https.github", facts("GET", "/anything")).rule).toBeUndefined();
  });

  test("profile-scoped rules apply only to their profiles", () => {
    const d = decideFor("https.github", facts("GET", "/repos"), "contractor");
    expect(d).toEqual({ verdict: "allow", rule: "contractor-only", reason: 'rule "contractor-only"', credential: "bearer_token.ro" });
    expect(decideFor("https.github", facts("GET", "/repos"), "default").rule).toBeUndefined();
  });

  test("rules apply only to their endpoints", () => {
    expect(decideFor("https.raw", facts("DELETE", "/x"))).toEqual({ verdict: "allow", reason: "no rule matched (default allow)" });
  });

  test("a map lookup that succeeds matches normally", () => {
    expect(decideFor("https.github", facts("GET", "/user", [["X-Need", "yes"]])).rule).toBe("needs-header");
  });

  test("a rule without a condition always matches", () => {
    expect(decideFor("https.internal", facts("GET", "/"))).toEqual({ verdict: "deny", rule: "all-internal", reason: 'rule "all-internal"' });
  });
});

describe("decide: verdicts and credentials", () => {
  test("approve carries the approvers and the endpoint's credential", () => {
    expect(decideFor("https.github", facts("PUT", "/repos/a/b/pulls/1/merge"))).toEqual({
      verdict: "approve",
      rule: "merge",
      reason: 'rule "merge"',
      approvers: ["dashboard"],
      credential: "github_token.gh",
    });
  });

  test("default allow injects the endpoint's credential", () => {
    expect(decideFor("https.github", facts("GET", "/user", [["x-need", "no"]]))).toEqual({
      verdict: "allow",
      reason: "no rule matched (default allow)",
      credential: "github_token.gh",
    });
  });

  test("default deny names no credential", async () => {
    const strict = await policyFrom(`schema_version = 1
endpoint "https" "a" {
  hosts = ["a.test"]
  credential = bearer_token.t
}
credential "bearer_token" "t" {}
rule "allow-get" {
  endpoint = https.a
  condition = "http.method == 'GET'"
  verdict = "allow"
}
`);
    const ctx = { device: "d", profile: "default", endpoint: strict.endpoints.get("https.a")! };
    expect(decide(strict, ctx, facts("POST", "/"))).toEqual({ verdict: "deny", reason: "no rule matched (default deny)" });
    expect(decide(strict, ctx, facts("GET", "/"))).toEqual({ verdict: "allow", rule: "allow-get", reason: 'rule "allow-get"', credential: "bearer_token.t" });
  });
});

describe("decide: fails closed", () => {
  test("a condition that throws denies, naming the rule; the detail is for the log", () => {
    // Without the x-need header the map lookup fails.
    const d = decideFor("https.github", facts("GET", "/user", []));
    expect(d).toEqual({
      verdict: "deny",
      rule: "needs-header",
      reason: 'rule "needs-header" could not be evaluated',
      detail: "No such key: x-need",
    });
  });

  test("a body rule with a truncated body denies", () => {
    const d = decideFor("https.gist", facts("POST", "/gists", [["content-type", "application/json"]], '{"public": fal', true));
    expect(d).toMatchObject({ verdict: "deny", rule: "body", reason: 'rule "body" could not be evaluated' });
    expect(d.detail).toContain("truncated past the inspection limit");
  });

  test("a body rule with a whole body evaluates normally", () => {
    const json: [string, string][] = [["content-type", "application/json"]];
    expect(decideFor("https.gist", facts("POST", "/gists", json, '{"public": true}')).rule).toBe("body");
    expect(decideFor("https.gist", facts("POST", "/gists", json, '{"public": false}'))).toEqual({
      verdict: "allow",
      reason: "no rule matched (default allow)",
    });
  });

  test("a truncated body does not matter to rules that do not read it", () => {
    expect(decideFor("https.github", facts("DELETE", "/x", [], "x".repeat(10), true)).rule).toBe("high");
  });
});

describe("needsBody", () => {
  test("true only where an enabled, applicable rule reads the body", () => {
    expect(needsBody(policy, endpoint("https.gist"), "default")).toBe(true);
    expect(needsBody(policy, endpoint("https.github"), "default")).toBe(false);
    expect(needsBody(policy, endpoint("https.raw"), "default")).toBe(false);
  });

  test("profile filters apply", async () => {
    const p = await policyFrom(`schema_version = 1
endpoint "https" "a" { hosts = ["a.test"] }
profile "x" { credentials = [] }
rule "body-for-x" {
  endpoint = https.a
  profiles = [profile.x]
  condition = "http.body.contains('secret')"
  verdict = "deny"
}
rule "body-disabled" {
  endpoint = https.a
  disabled = true
  condition = "http.body == ''"
  verdict = "deny"
}
`);
    const a = p.endpoints.get("https.a")!;
    expect(needsBody(p, a, "x")).toBe(true);
    expect(needsBody(p, a, "y")).toBe(false);
  });
});

describe("httpFactsFromRequest", () => {
  test("splits the target, lower-cases and joins headers, parses JSON", () => {
    const f = httpFactsFromRequest(
      "post",
      "API.Example.com:443",
      "https://api.example.com/v1/x?a=1&a=2&b=%20c",
      [["Content-Type", "application/json"], ["X-Tag", "one"], ["x-tag", "two"]],
      new TextEncoder().encode('{"n": 1}'),
    );
    expect(f).toEqual({
      scheme: "https",
      method: "POST",
      host: "api.example.com",
      path: "/v1/x",
      rawPath: "/v1/x",
      query: { a: "1", b: " c" },
      headers: { "content-type": "application/json", "x-tag": "one, two" },
      body: '{"n": 1}',
      bodyJson: { n: 1 },
      bodyTruncated: false,
    });
  });

  test("no body; non-JSON body; invalid JSON; truncated body", () => {
    expect(httpFactsFromRequest("GET", "h", "/", [])).toMatchObject({ body: "", bodyJson: null, path: "/", query: {} });
    const text = new TextEncoder().encode("hello");
    expect(httpFactsFromRequest("POST", "h", "/p", [["content-type", "text/plain"]], text).bodyJson).toBeNull();
    const looksJson = new TextEncoder().encode('  [1, 2]');
    expect(httpFactsFromRequest("POST", "h", "/p", [], looksJson).bodyJson).toEqual([1, 2]);
    const bad = new TextEncoder().encode("{nope");
    expect(httpFactsFromRequest("POST", "h", "/p", [["content-type", "application/json"]], bad).bodyJson).toBeNull();
    const cut = httpFactsFromRequest("POST", "h", "/p", [["content-type", "application/json"]], new TextEncoder().encode('{"a":1}'), true);
    expect(cut).toMatchObject({ bodyJson: null, bodyTruncated: true });
  });

  test("header and query names like __proto__ are plain keys", () => {
    const f = httpFactsFromRequest("GET", "h", "/?__proto__=x", [["__proto__", "y"]]);
    expect(f.query["__proto__"]).toBe("x");
    expect(f.headers["__proto__"]).toBe("y");
  });
});
