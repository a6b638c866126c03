// A body cut at the inspection limit fails closed only for a condition that
// actually reads it: short-circuiting past the body (another path, another
// method) leaves large uploads free to stream.
import { describe, expect, test } from "bun:test";
import { decide, httpFactsFromRequest } from "../../../app/policy/engine.ts";
import { policyFrom } from "./helpers.ts";

const HCL = `
schema_version = 1
gateway { state_dir = "state" }
defaults { verdict = "allow" }
endpoint "https" "api" { hosts = ["api.test"] }
profile "p" {}
rule "prod-in-body" {
  endpoint = https.api
  condition = "http.path == '/deploy' && http.body_json.env == 'prod'"
  verdict = "deny"
}
rule "secret-word" {
  endpoint = https.api
  condition = "http.method == 'PUT' && http.body.contains('drop table')"
  verdict = "deny"
}
`;

const body = new TextEncoder().encode('{"env":"prod"}');

describe("truncated bodies", async () => {
  const policy = await policyFrom(HCL);
  const endpoint = policy.endpoints.get("https.api")!;
  const ctx = { device: "d", profile: "p", endpoint };
  const run = (method: string, path: string, truncated: boolean) =>
    decide(policy, ctx, httpFactsFromRequest(method, "api.test", path, [], body, truncated));

  test.each([
    // method, path, truncated, verdict, rule, fails closed
    ["POST", "/deploy", false, "deny", "prod-in-body", false],
    ["POST", "/deploy", true, "deny", "prod-in-body", true],
    ["POST", "/upload", true, "allow", undefined, false],
    ["PUT", "/upload", true, "deny", "secret-word", true],
    ["PUT", "/upload", false, "allow", undefined, false],
  ] as const)("%s %s truncated=%p → %s", (method, path, truncated, verdict, rule, failedClosed) => {
    const d = run(method, path, truncated);
    expect(d.verdict).toBe(verdict);
    expect(d.rule).toBe(rule);
    expect(d.detail?.includes("truncated") ?? false).toBe(failedClosed);
    // The agent-facing reason never carries the detail.
    expect(d.reason.includes("truncated")).toBe(false);
  });
});
