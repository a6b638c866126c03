// "Block requests like this": the generated rule, merged with the config the
// request was decided under, loads through the real loader, and the real
// engine then denies the original request with it and leaves different
// requests alone — for each scope the operator can pick.
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { decide, matchEndpoint } from "../../../app/policy/engine.ts";
import { checkSnippet, SNIPPET_FILE } from "../../../app/policy/snippet.ts";
import { prefixOf, suggestRule, type SuggestInput, type SuggestScope } from "../../../app/policy/suggest.ts";
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
