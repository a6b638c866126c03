import { describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseSize } from "../../../app/policy/build.ts";
import { mixedFamilies } from "../../../app/policy/build-rule.ts";
import { formatConfigError, loadPolicy } from "../../../app/policy/load.ts";
import { policyFrom, tempDir } from "./helpers.ts";

const example = join(import.meta.dir, "../../../config/example.hcl");
const configDir = resolve(import.meta.dir, "../../../config");

describe("loadPolicy: config/example.hcl", () => {
  test("loads without errors or warnings", async () => {
    const result = await loadPolicy(example, { env: {} });
    if (!result.ok) throw new Error(result.errors.map(formatConfigError).join("\n"));
    expect(result.warnings).toEqual([]);
    expect(result.policy.files).toEqual([example]);
    expect(result.policy.schemaVersion).toBe(1);
  });

  test("gateway paths resolve against the config file's directory", async () => {
    const result = await loadPolicy(example, { env: {} });
    if (!result.ok) throw new Error("load failed");
    const g = result.policy.gateway;
    expect(g.stateDir).toBe(resolve(configDir, "../.state"));
    expect(g.controlSocket).toBe(join(g.stateDir, "control.sock"));
    expect(g.eventsJsonl).toBe(join(g.stateDir, "events.jsonl"));
    expect(g.eventsRetentionDays).toBe(30);
    expect(g.dashboardListen).toBe("127.0.0.1:8080");
    expect(g.proxy).toEqual({ listen: "127.0.0.1:3128", socks5Listen: "127.0.0.1:1080" });
  });

  test("CLAWPATROL_STATE_DIR overrides state_dir", async () => {
    const result = await loadPolicy(example, { env: { CLAWPATROL_STATE_DIR: "/srv/cp" } });
    if (!result.ok) throw new Error("load failed");
    expect(result.policy.gateway.stateDir).toBe("/srv/cp");
    expect(result.policy.gateway.controlSocket).toBe("/srv/cp/control.sock");
  });

  test("defaults, endpoints, credentials, profiles, approvers", async () => {
    const result = await loadPolicy(example, { env: {} });
    if (!result.ok) throw new Error("load failed");
    const p = result.policy;
    expect(p.defaults).toEqual({
      verdict: "allow",
      unknownHost: "passthrough",
      profile: "default",
      udp: "drop",
      inspectLimitBytes: 1024 * 1024,
      headerTimeoutMs: 30_000,
      idleTimeoutMs: 120_000,
      minRateBytesPerSec: 1024,
    });
    const github = p.endpoints.get("https.github")!;
    expect(github).toMatchObject({ type: "https", name: "github", ref: "https.github", family: "http", credential: "github_token.gh" });
    expect(github.hosts).toEqual(["api.github.com", "*.githubusercontent.com"]);
    expect(github.source).toEqual({ file: example, line: expect.any(Number) });
    expect(p.credentials.get("bearer_token.gh_readonly")?.secretFile).toBe(join(configDir, "secrets/gh-readonly.token"));
    expect(p.profiles.get("contractor")).toMatchObject({ credentials: ["bearer_token.gh_readonly"], endpoints: ["https.github"] });
    expect(p.profiles.get("default")?.endpoints).toBeUndefined();
    expect(p.approvers.get("human_approver.oncall")?.settings).toEqual({ channel: "slack", target: "#agent-approvals", timeout: "5m" });
  });

  test("rules are sorted by priority, keep their settings, and know when they read the body", async () => {
    const result = await loadPolicy(example, { env: {} });
    if (!result.ok) throw new Error("load failed");
    const rules = result.policy.rules;
    expect(rules.map((r) => r.name)).toEqual([
      "no-deletes",
      "merge-needs-approval",
      "contractor-readonly",
      "contractor-no-writes",
      "db-no-pii",
      "no-opus-in-batch",
      "db-read-only",
      "no-force-push",
      "no-admin-api",
      "warehouse-read-only",
      "warehouse-http-read-only",
      "git-push-needs-a-person",
      "no-rm-rf-outside-the-workspace",
      "npm-install-in-a-ghost",
    ]);
    expect(rules.find((r) => r.name === "no-force-push")!.mode).toBe("shadow");
    const merge = rules[1]!;
    expect(merge.approve).toEqual(["dashboard", "human_approver.oncall"]);
    expect(merge.verdict).toBeUndefined();
    expect(rules[2]!.profiles).toEqual(["contractor"]);
    expect(rules[2]!.credential).toBe("bearer_token.gh_readonly");
    expect(rules.find((r) => r.name === "no-opus-in-batch")!.readsDeferred).toBe(true);
    expect(rules.find((r) => r.name === "no-deletes")!.readsDeferred).toBe(false);
    expect(rules.find((r) => r.name === "no-admin-api")!.disabled).toBe(true);
  });
});

describe("loadPolicy: schema details", () => {
  test("defaults apply when gateway and defaults are absent", async () => {
    const p = await policyFrom('schema_version = 1\nendpoint "https" "a" { hosts = ["A.Example.COM."] }\n');
    expect(p.gateway.stateDir).toBe("/var/lib/clawpatrol");
    expect(p.gateway.controlSocket).toBe("/var/lib/clawpatrol/control.sock");
    expect(p.defaults).toEqual({
      verdict: "deny",
      unknownHost: "passthrough",
      udp: "drop",
      inspectLimitBytes: 1048576,
      headerTimeoutMs: 30_000,
      idleTimeoutMs: 120_000,
      minRateBytesPerSec: 1024,
    });
    expect(p.endpoints.get("https.a")!.hosts).toEqual(["a.example.com"]);
    expect(p.rules).toEqual([]);
  });

  test("credential settings by type", async () => {
    const p = await policyFrom(`schema_version = 1
credential "header_token" "x" {
  header = "X-Api-Key"
  prefix = "Key "
}
credential "basic_auth" "b" { username = "bob" }
credential "cookie_token" "c" { cookie = "session" }
credential "passthrough" "p" {}
`);
    expect(p.credentials.get("header_token.x")!.settings).toEqual({ header: "X-Api-Key", prefix: "Key " });
    expect(p.credentials.get("basic_auth.b")!.settings).toEqual({ username: "bob" });
    expect(p.credentials.get("cookie_token.c")!.settings).toEqual({ cookie: "session" });
    expect(p.credentials.get("passthrough.p")!.settings).toEqual({});
  });

  test("ca_cert is read relative to the config file", async () => {
    const dir = tempDir();
    mkdirSync(join(dir, "certs"));
    const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    writeFileSync(join(dir, "certs", "ca.pem"), pem);
    writeFileSync(join(dir, "g.hcl"), 'schema_version = 1\nendpoint "https" "a" {\n  hosts = ["a.test"]\n  ca_cert = "certs/ca.pem"\n}\n');
    const result = await loadPolicy(join(dir, "g.hcl"), { env: {} });
    expect(result.ok && result.policy.endpoints.get("https.a")!.caCertPem).toBe(pem);
  });

  test("inspect_limit accepts a byte count or a size string", async () => {
    const p = await policyFrom('schema_version = 1\ndefaults { inspect_limit = "64KiB" }\n');
    expect(p.defaults.inspectLimitBytes).toBe(65536);
    const q = await policyFrom("schema_version = 1\ndefaults { inspect_limit = 1000 }\n");
    expect(q.defaults.inspectLimitBytes).toBe(1000);
    expect(parseSize("2MiB")).toBe(2 * 1024 * 1024);
    expect(parseSize("10 B")).toBe(10);
    expect(parseSize("1.5MiB")).toBeUndefined();
    expect(parseSize("1 MB")).toBeUndefined();
    expect(parseSize(-1)).toBeUndefined();
  });

  test("defaults.profile accepts a plain name or a reference", async () => {
    const hcl = (v: string) => `schema_version = 1\nprofile "dev" { credentials = [] }\ndefaults { profile = ${v} }\n`;
    expect((await policyFrom(hcl('"dev"'))).defaults.profile).toBe("dev");
    expect((await policyFrom(hcl("profile.dev"))).defaults.profile).toBe("dev");
  });

  test("a profile that grants no credentials is a warning, not an error", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "g.hcl"), 'schema_version = 1\n\nprofile "empty" {}\n');
    const result = await loadPolicy(join(dir, "g.hcl"), { env: {} });
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.warnings.map(formatConfigError)).toEqual([`${join(dir, "g.hcl")}:3: profile "empty" grants no credentials`]);
  });

  test("two endpoints claiming the same host is a warning", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "g.hcl"), 'schema_version = 1\nendpoint "https" "a" { hosts = ["x.test"] }\nendpoint "https" "b" { hosts = ["X.test", "y.test"] }\n');
    const result = await loadPolicy(join(dir, "g.hcl"), { env: {} });
    expect(result.ok && result.warnings.map((w) => w.message)).toEqual([
      'endpoint https.b: host "x.test" is also claimed by https.a, which wins for profiles that see both',
    ]);
  });

  test("a directory merges *.hcl in name order; equal priorities keep file order", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "b.hcl"), 'rule "from-b" {\n  endpoint = https.a\n  verdict = "deny"\n}\n');
    writeFileSync(join(dir, "a.hcl"), 'schema_version = 1\nendpoint "https" "a" { hosts = ["a.test"] }\nrule "from-a" {\n  endpoint = https.a\n  verdict = "allow"\n}\n');
    writeFileSync(join(dir, "c.hcl"), 'rule "from-c" {\n  endpoint = https.a\n  priority = 5\n  verdict = "allow"\n}\n');
    writeFileSync(join(dir, "notes.txt"), "ignored");
    const result = await loadPolicy(dir, { env: {} });
    if (!result.ok) throw new Error(result.errors.map(formatConfigError).join("\n"));
    expect(result.policy.files).toEqual(["a.hcl", "b.hcl", "c.hcl"].map((n) => join(dir, n)));
    expect(result.policy.rules.map((r) => r.name)).toEqual(["from-c", "from-a", "from-b"]);
    expect(result.policy.rules[2]!.source).toEqual({ file: join(dir, "b.hcl"), line: 1 });
  });

  test("a missing path or an empty directory is an error, not a crash", async () => {
    const missing = await loadPolicy("/nonexistent/gateway.hcl");
    expect(missing.ok ? [] : missing.errors.map(formatConfigError)).toEqual(["/nonexistent/gateway.hcl:1: cannot read: no such file"]);
    const dir = tempDir();
    const empty = await loadPolicy(dir);
    expect(empty.ok ? [] : empty.errors.map(formatConfigError)).toEqual([`${dir}:1: no *.hcl files in this directory`]);
  });

  test("formatConfigError", () => {
    expect(formatConfigError({ file: "conf/a.hcl", line: 7, message: "boom" })).toBe("conf/a.hcl:7: boom");
  });

  test("rules may not mix endpoint families", () => {
    expect(mixedFamilies(new Map<string, "http">([["https.a", "http"], ["https.b", "http"]]))).toBeUndefined();
    // Only https exists today; a second family (cast in) must be refused.
    const mixed = new Map<string, "http">([["https.a", "http"], ["postgres.db", "sql" as "http"]]);
    expect(mixedFamilies(mixed)).toBe("endpoints mix rule families (https.a is http, postgres.db is sql)");
  });
});
