// `import clawrden`: a clawrden policy (the seed's shape, plus args patterns
// and timeouts) becomes HCL the loader accepts and that judges commands as
// clawrden would (first match in clawrden's order, then default_action);
// what it cannot map is named, never silently dropped.
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { judge } from "../../../app/policy/engine.ts";
import { globToRegex, importClawrden, ImportError } from "../../../app/gate/import-clawrden.ts";
import type { Policy } from "../../../app/policy/types.ts";
import { policyFrom, tempDir } from "../policy/helpers.ts";

const CLAWRDEN = `default_action: deny

rules:
  - command: ls
    action: allow

  - command: npm
    action: ask
    patterns:
      - "install*"

  - command: npm
    action: allow
    timeout: 2m

  - command: git
    action: deny
    args: ["push --force*", "push -f*"]

  - command: git
    action: allow
    timeout: 90

  - command: sudo
    action: deny
    image: alpine

  - command: "../evil"
    action: allow

  - command: rm
    action: maybe
mirror: true
`;

const BASE = `schema_version = 1
defaults {
  verdict = "allow"
}
`;

const verdictOf = (p: Policy, argv: string[]) => {
  const d = judge(p, { device: "laptop", profile: "default", endpoint: p.endpoints.get("exec.clawrden")! }, { command: argv[0]!, path: `/usr/bin/${argv[0]}`, argv, cwd: "/work", env: {}, paths: [], tty: false, uid: 1000 });
  return d.approvers ? "approve" : String(d.verdict);
};

describe("import clawrden", () => {
  test("the rules judge as clawrden's would; timeouts kept; the rest named", async () => {
    const r = importClawrden(CLAWRDEN);
    const p = await policyFrom(BASE + r.hcl + `profile "default" {}\n`);
    const cases: [string[], string][] = [
      [["ls", "-l"], "allow"],
      [["npm", "install", "left-pad"], "approve"],
      [["npm", "--version"], "allow"],
      [["git", "push", "--force", "origin"], "deny"],
      [["git", "push", "-f"], "deny"],
      [["git", "push", "origin"], "allow"],
      [["sudo", "ls"], "deny"],
      [["curl", "x"], "deny"],
      [["rm", "-rf", "/"], "deny"],
    ];
    for (const [argv, want] of cases) expect({ argv, got: verdictOf(p, argv) }).toEqual({ argv, got: want });
    const npm = p.rules.find((x) => x.name === "clawrden-npm-2")!;
    expect(npm.exec?.timeoutMs).toBe(120_000);
    expect(p.rules.find((x) => x.name === "clawrden-git-2")!.exec?.timeoutMs).toBe(90_000);
    expect(r.notes).toEqual([
      "mirror: not mapped (the command gate has no such setting)",
      "rules[5].image: not mapped",
      'rules[6]: command "../evil" is not a command name; skipped',
      'rules[7] (rm): action "maybe" is not allow, deny or ask; skipped',
    ]);
    expect(r.hcl).toContain('gate = ["ls", "npm", "git", "sudo"]');
  });

  test("default_action allow; globs escape regex characters; bad input is an ImportError", async () => {
    const r = importClawrden(`default_action: allow\nrules:\n  - command: make\n    action: deny\n    args: ["deploy.prod*"]\n`, "tools");
    const p = await policyFrom(BASE + r.hcl.replaceAll("exec.tools", "exec.clawrden").replace('endpoint "exec" "tools"', 'endpoint "exec" "clawrden"') + `profile "default" {}\n`);
    expect(verdictOf(p, ["make", "deploy.prod", "now"])).toBe("deny");
    expect(verdictOf(p, ["make", "deployXprod"])).toBe("allow");
    expect(verdictOf(p, ["cat"])).toBe("allow");
    expect(globToRegex("a.b*c?(d)")).toBe("^a\\.b.*c.\\(d\\)$");
    for (const bad of ["- just\n- a list\n", "rules: 3\n", "a: [unclosed\n"]) expect(() => importClawrden(bad)).toThrow(ImportError);
  });

  test("clawpatrol-gateway import clawrden FILE prints HCL and the notes", async () => {
    const dir = tempDir();
    const file = path.join(dir, "policy.yaml");
    writeFileSync(file, CLAWRDEN);
    const root = path.resolve(import.meta.dir, "../../..");
    const p = Bun.spawn([path.join(root, "node_modules/.bin/bun"), path.join(root, "app/main.ts"), "import", "clawrden", file], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    expect(code).toBe(0);
    expect(out).toContain('endpoint "exec" "clawrden" {}');
    expect(out).toContain('rule "clawrden-default"');
    expect(err).toContain("not mapped: rules[5].image: not mapped");
  });
});
