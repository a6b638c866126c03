// "Block commands like this": a recorded gated command -> a deny rule over
// exec.*, as wide as the operator picks (this argv, the same first words,
// the command at all), that the loader accepts and that denies exactly
// commands like it; the recorded command judged again (replay) by it.
import { describe, expect, test } from "bun:test";
import { judge } from "../../../app/policy/engine.ts";
import { judgeRecorded } from "../../../app/policy/replay.ts";
import { parseScope, suggestRule, type SuggestInput } from "../../../app/policy/suggest.ts";
import type { ExecFacts } from "../../../app/families/exec.ts";
import type { Policy } from "../../../app/policy/types.ts";
import type { StoredAction } from "../../../app/store/actions.ts";
import { policyFrom } from "../policy/helpers.ts";

const CONFIG = `schema_version = 1
defaults {
  verdict = "allow"
}
endpoint "exec" "tools" {}
profile "dev" {}
profile "ci" {}
rule "ls-ok" {
  endpoint  = exec.tools
  condition = "exec.command == 'ls'"
  verdict   = "allow"
}
`;

const recorded = (argv: string[]): SuggestInput => ({
  kind: "exec",
  endpoint: "exec.tools",
  host: argv[0]!,
  method: "EXEC",
  path: argv.join(" "),
  profile: "dev",
  device: "laptop",
  id: 7,
  action: { command: argv[0], path: `/usr/bin/${argv[0]}`, argv, cwd: "/work", paths: [], tty: false, uid: 1000, env: ["HOME", "PATH"] },
});

const facts = (argv: string[]): ExecFacts => ({ command: argv[0]!, path: `/usr/bin/${argv[0]}`, argv, cwd: "/work", env: {}, paths: [], tty: false, uid: 1000 });

function judged(p: Policy, argv: string[], profile = "dev") {
  return judge(p, { device: "laptop", profile, endpoint: p.endpoints.get("exec.tools")! }, facts(argv));
}

describe("suggestRule for a gated command", () => {
  test("the default (prefix): the command and its first argument, with exec.prefix", async () => {
    const base = await policyFrom(CONFIG);
    const s = suggestRule(recorded(["git", "push", "--force", "origin"]), {}, base.rules);
    if (!s.ok) throw new Error(s.error);
    expect(s.name).toBe("block-git-push");
    expect(s.condition).toBe("exec.prefix(['git', 'push'])");
    expect(s.hcl).toContain("#   git push --force origin");
    const p = await policyFrom(CONFIG + s.hcl);
    expect(judged(p, ["git", "push"])).toMatchObject({ verdict: "deny", rule: "block-git-push" });
    expect(judged(p, ["git", "push", "-f", "upstream"])).toMatchObject({ verdict: "deny", rule: "block-git-push" });
    expect(judged(p, ["git", "pull"]).rule).toBeUndefined();
    expect(judged(p, ["ls"]).rule).toBe("ls-ok");
  });

  const cases = [
    { scope: { exec: "exact" as const }, blocked: [["rm", "-rf", "/work/x"]], kept: [["rm", "-rf", "/work/y"], ["rm", "-rf"]] },
    { scope: { exec: "prefix" as const }, blocked: [["rm", "-rf", "/work/x"], ["rm", "-rf", "/"]], kept: [["rm", "/work/x"], ["ls", "-rf"]] },
    { scope: { exec: "command" as const }, blocked: [["rm", "/work/x"], ["rm"]], kept: [["ls", "/work/x"]] },
    { scope: { exec: "command" as const, onlyProfile: true }, blocked: [["rm"]], kept: [["ls"]] },
  ];
  for (const c of cases) {
    test(`scope ${JSON.stringify(c.scope)}: blocks commands like it and only those`, async () => {
      const base = await policyFrom(CONFIG);
      const s = suggestRule(recorded(["rm", "-rf", "/work/x"]), c.scope, base.rules);
      if (!s.ok) throw new Error(s.error);
      const p = await policyFrom(CONFIG + s.hcl);
      for (const argv of c.blocked) expect({ argv, ...judged(p, argv) }).toMatchObject({ argv, verdict: "deny", rule: s.name });
      for (const argv of c.kept) expect(judged(p, argv).rule).not.toBe(s.name);
      if (c.scope.onlyProfile) expect(judged(p, ["rm"], "ci").rule).not.toBe(s.name);
      // The recorded command, judged again from what its event kept.
      const stored = { ...recorded(["rm", "-rf", "/work/x"]), time: "", flowId: "f", port: 0, bytesUp: 0, bytesDown: 0, durationMs: 0, verdict: "allow", reason: "" } as unknown as StoredAction;
      expect(judgeRecorded(p, stored)).toMatchObject({ verdict: "deny", rule: s.name });
    });
  }

  test("quotes and template markers in arguments stay inert; scopes parse", async () => {
    const argv = ["sh", "-c", "echo '${HOME}' \"%{x}\""];
    const s = suggestRule(recorded(argv), { exec: "exact" });
    if (!s.ok) throw new Error(s.error);
    const p = await policyFrom(CONFIG + s.hcl);
    expect(judged(p, argv)).toMatchObject({ verdict: "deny", rule: s.name });
    expect(parseScope({ exec: "command", onlyProfile: true })).toEqual({ exec: "command", anyMethod: false, onlyProfile: true });
    expect(parseScope({ exec: "everything" })).toBeUndefined();
    expect(suggestRule({ ...recorded(["ls"]), action: {} }, {})).toMatchObject({ ok: false });
    expect(suggestRule({ ...recorded(["ls"]), endpoint: undefined }, {})).toMatchObject({ ok: false });
  });
});
