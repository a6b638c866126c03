// The exec family: conditions over exec.*, the prefix helper, path arguments,
// env scrubbing and allowed_paths; the HCL settings of the gate.
import { describe, expect, test } from "bun:test";
import { argvHasPrefix, envToScrub, execFamily, normalisePaths, pathArguments, pathOutside, type ExecFacts } from "../../../app/families/exec.ts";
import { compileCondition } from "../../../app/policy/cel.ts";
import { activationFor } from "../../../app/policy/cel.ts";
import { judge } from "../../../app/policy/engine.ts";
import { loadPolicy, formatConfigError } from "../../../app/policy/load.ts";
import { policyFrom, tempDir } from "../policy/helpers.ts";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const facts = (argv: string[], over: Partial<ExecFacts> = {}): ExecFacts => ({
  command: argv[0]!,
  path: `/usr/bin/${argv[0]}`,
  argv,
  cwd: "/home/a/proj",
  env: { HOME: "/home/a", AWS_SECRET_ACCESS_KEY: "s3cr3t", LD_PRELOAD: "/tmp/x.so" },
  paths: [],
  tty: false,
  uid: 1000,
  ...over,
});

function holds(condition: string, f: ExecFacts): boolean {
  const c = compileCondition(condition, "exec");
  if (!c.ok) throw new Error(c.message);
  return c.condition.test(activationFor("exec", f, "laptop", "dev"));
}

describe("exec conditions", () => {
  const cases: [string, string[], boolean][] = [
    ["exec.command == 'git'", ["git", "status"], true],
    ["exec.prefix(['git', 'push'])", ["git", "push"], true],
    ["exec.prefix(['git', 'push'])", ["git", "push", "--force", "origin"], true],
    ["exec.prefix(['git', 'push'])", ["git", "pull"], false],
    ["exec.prefix(['git', 'push'])", ["git"], false],
    ["prefix(exec.argv, ['rm', '-rf'])", ["rm", "-rf", "/x"], true],
    ["exec.args.contains('--force')", ["git", "push", "--force"], true],
    ["exec.args == 'install left-pad'", ["npm", "install", "left-pad"], true],
    ["'--force' in exec.argv", ["git", "push", "-f"], false],
    ["exec.uid == 1000 && !exec.tty", ["ls"], true],
    ["exec.cwd.startsWith('/home/a/')", ["ls"], true],
    ["exec.path == '/usr/bin/ls'", ["ls"], true],
    ["'AWS_SECRET_ACCESS_KEY' in exec.env", ["ls"], true],
    ["exec.paths.exists(p, p.startsWith('/etc'))", ["cat"], false],
    ["device.name == 'laptop'", ["ls"], true],
  ];
  for (const [condition, argv, want] of cases) {
    test(`${condition} on ${argv.join(" ")} is ${want}`, () => expect(holds(condition, facts(argv))).toBe(want));
  }

  test("conditions of another family are refused with a message naming exec", () => {
    const c = compileCondition("http.method == 'GET'", "exec");
    expect(c.ok).toBe(false);
    if (!c.ok) expect(c.message).toContain("exec family");
  });

  test("argvHasPrefix compares whole words", () => {
    expect(argvHasPrefix(["git", "pushx"], ["git", "push"])).toBe(false);
    expect(argvHasPrefix(["git"], [])).toBe(true);
  });
});

describe("summary, action and fingerprint", () => {
  test("the action names env variables but never their values", () => {
    const a = execFamily.action(facts(["aws", "s3", "ls"]));
    expect(a.env).toEqual(["AWS_SECRET_ACCESS_KEY", "HOME", "LD_PRELOAD"]);
    expect(JSON.stringify(a)).not.toContain("s3cr3t");
    expect(execFamily.summary(facts(["aws", "s3", "ls"]))).toBe("aws s3 ls");
  });
  test("identical commands share a fingerprint; another cwd does not", () => {
    expect(execFamily.fingerprint(facts(["rm", "x"]))).toBe(execFamily.fingerprint(facts(["rm", "x"])));
    expect(execFamily.fingerprint(facts(["rm", "x"]))).not.toBe(execFamily.fingerprint(facts(["rm", "x"], { cwd: "/" })));
  });
});

describe("paths", () => {
  const exists = (p: string) => p === "/home/a/proj/README";
  test("arguments that name paths, absolute and normalised", () => {
    expect(pathArguments(["-rf", "../x/", "/etc//passwd", "--out=./build", "README", "install", "~/.ssh", "."], "/home/a/proj", "/home/a", exists)).toEqual([
      "/home/a/x",
      "/etc/passwd",
      "/home/a/proj/build",
      "/home/a/proj/README",
      "/home/a/.ssh",
      "/home/a/proj",
    ]);
  });
  test("the gateway normalises what the device sent", () => {
    expect(normalisePaths(["a/../b", "/x/./y/"], "/w")).toEqual(["/w/b", "/x/y"]);
  });
  test("allowed_paths: prefixes by whole components", () => {
    expect(pathOutside(["/work/a", "/work"], ["/work"])).toBeUndefined();
    expect(pathOutside(["/workshop"], ["/work"])).toBe("/workshop");
    expect(pathOutside(["/etc/passwd"], ["/"])).toBeUndefined();
    expect(pathOutside(["/x"], [])).toBe("/x");
  });
});

describe("env_scrub", () => {
  test("the built-in list, the defaults' and the rule's", () => {
    const env = { AWS_REGION: "x", LD_PRELOAD: "y", KUBECONFIG: "z", NPM_TOKEN: "t", MY_SECRET: "m", PATH: "/bin" };
    expect(envToScrub(env)).toEqual(["AWS_REGION", "KUBECONFIG", "LD_PRELOAD"]);
    expect(envToScrub(env, ["NPM_*"], ["MY_SECRET"])).toEqual(["AWS_REGION", "KUBECONFIG", "LD_PRELOAD", "MY_SECRET", "NPM_TOKEN"]);
  });
});

const BASE = `schema_version = 1
endpoint "exec" "tools" {}
profile "dev" {
  gate = ["npm", "rm", "git"]
}
`;

describe("HCL", () => {
  test("rules of an exec endpoint take timeout, env_scrub and allowed_paths; defaults take exec_timeout", async () => {
    const p = await policyFrom(`${BASE}
defaults {
  verdict       = "allow"
  exec_timeout  = "5m"
  env_scrub     = ["NPM_*"]
  allowed_paths = ["/work"]
}
rule "git-push" {
  endpoint  = exec.tools
  condition = "exec.prefix(['git', 'push'])"
  approve   = [dashboard]
  timeout   = "2m"
  env_scrub = ["GIT_ASKPASS"]
}
rule "no-rm-rf" {
  endpoint  = exec.tools
  condition = "prefix(exec.argv, ['rm', '-rf'])"
  verdict   = "deny"
  reason    = "rm -rf needs a person"
}
`);
    expect(p.profiles.get("dev")!.gate).toEqual(["npm", "rm", "git"]);
    expect(p.defaults.exec).toEqual({ timeoutMs: 300_000, envScrub: ["NPM_*"], allowedPaths: ["/work"] });
    expect(p.rules.find((r) => r.name === "git-push")!.exec).toEqual({ timeoutMs: 120_000, envScrub: ["GIT_ASKPASS"] });
    const endpoint = p.endpoints.get("exec.tools")!;
    expect(endpoint.family).toBe("exec");
    const ctx = { device: "laptop", profile: "dev", endpoint };
    expect(judge(p, ctx, facts(["git", "push", "--force"])).verdict).toBe("approve");
    expect(judge(p, ctx, facts(["rm", "-rf", "/work/x"]))).toMatchObject({ verdict: "deny", rule: "no-rm-rf", reason: "rm -rf needs a person" });
    expect(judge(p, ctx, facts(["ls"])).verdict).toBe("allow");
  });

  async function errorsOf(body: string): Promise<string> {
    const dir = tempDir();
    const file = join(dir, "gateway.hcl");
    writeFileSync(file, body);
    const r = await loadPolicy(file, { env: {} });
    return r.ok ? "" : r.errors.map(formatConfigError).join("\n");
  }

  test("exec settings on a rule of another family, bad names and bad paths are errors", async () => {
    const e = await errorsOf(`schema_version = 1
endpoint "https" "gh" {
  hosts = ["api.github.com"]
}
endpoint "exec" "tools" {}
profile "dev" {
  gate = ["../rm", "sh"]
}
rule "r" {
  endpoint = https.gh
  verdict  = "allow"
  timeout  = "1m"
}
rule "s" {
  endpoint      = exec.tools
  verdict       = "allow"
  allowed_paths = ["work"]
  env_scrub     = ["A B"]
}
`);
    expect(e).toContain("timeout applies only to rules of exec endpoints");
    expect(e).toContain(`gate: "../rm" is not a command name`);
    expect(e).toContain(`"sh" cannot be gated (the gate runs sh, mount and unshare`);
    expect(e).toContain("allowed_paths must be absolute");
    expect(e).toContain("env_scrub: not a variable name");
  });
});
