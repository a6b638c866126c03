// The ssh family: the CEL variable `ssh`, its deferred stdin, summary, action and fingerprint.
import { describe, expect, test } from "bun:test";
import { compileCondition, activationFor } from "../../../app/policy/cel.ts";
import { sshFamily, type SshFacts } from "../../../app/families/ssh.ts";
import { FAMILIES, FAMILY_VARIABLES } from "../../../app/families/index.ts";

const base: SshFacts = { verb: "exec", host: "git.internal", user: "agent", command: "git-upload-pack 'repo.git'", env: {} };

function holds(condition: string, facts: SshFacts): boolean {
  const c = compileCondition(condition, "ssh");
  if (!c.ok) throw new Error(c.message);
  return c.condition.test(activationFor("ssh", facts, "laptop", "agents"));
}

describe("ssh family", () => {
  test("is registered under its variable", () => {
    expect(FAMILIES.ssh).toBe(sshFamily as never);
    expect(FAMILY_VARIABLES.get("ssh")).toBe("ssh");
  });

  test.each([
    ["ssh.verb == 'exec' && ssh.command.startsWith('git-upload-pack')", base, true],
    ["ssh.command.startsWith('git-receive-pack')", base, false],
    ["ssh.verb == 'subsystem' && ssh.subsystem == 'sftp'", { ...base, verb: "subsystem", command: undefined, subsystem: "sftp" } as SshFacts, true],
    ["ssh.forward_host == 'db.internal' && ssh.forward_port == 5432", { ...base, verb: "forward", forwardHost: "db.internal", forwardPort: 5432 } as SshFacts, true],
    ["ssh.forward_port > 1024", { ...base, verb: "remote_forward", forwardHost: "0.0.0.0", forwardPort: 80 } as SshFacts, false],
    ["ssh.env['LANG'] == 'C.UTF-8'", { ...base, verb: "env", env: { LANG: "C.UTF-8" } } as SshFacts, true],
    ["'GIT_PROTOCOL' in ssh.env", base, false],
    ["ssh.user == 'agent' && device.profile == 'agents'", base, true],
    // Facts a verb does not have read as empty, never as an error.
    ["ssh.command == '' && ssh.forward_port == 0", { ...base, verb: "shell", command: undefined }, true],
  ] as [string, SshFacts, boolean][])("%s", (condition, facts, expected) => {
    expect(holds(condition, facts)).toBe(expected);
  });

  test("a condition reading another family's variable is refused at compile time", () => {
    const c = compileCondition("http.method == 'GET'", "ssh");
    expect(c.ok).toBe(false);
  });

  test("stdin is deferred: only conditions that read it say so, and reading it unknown fails closed", () => {
    const reads = compileCondition("ssh.verb == 'exec' && ssh.stdin.contains('rm -rf')", "ssh");
    const not = compileCondition("ssh.command == 'sh'", "ssh");
    if (!reads.ok || !not.ok) throw new Error("compile");
    expect(reads.condition.readsDeferred).toBe(true);
    expect(not.condition.readsDeferred).toBe(false);
    const act = (f: SshFacts) => activationFor("ssh", f, "d", "p");
    expect(() => reads.condition.test(act({ ...base, stdinUnknown: "stdin past 1048576 bytes" }))).toThrow(/stdin past 1048576 bytes/);
    expect(reads.condition.test(act({ ...base, stdin: "echo hi; rm -rf /" }))).toBe(true);
    // Short-circuit: a verb that is not exec never reaches the unknown stdin.
    expect(reads.condition.test(act({ ...base, verb: "shell" }))).toBe(false);
  });

  test("summary, action and fingerprint", () => {
    expect(sshFamily.summary(base)).toBe("exec git-upload-pack 'repo.git' (agent@git.internal)");
    expect(sshFamily.summary({ ...base, verb: "forward", forwardHost: "::1", forwardPort: 22 })).toBe("forward [::1]:22 (agent@git.internal)");
    expect(sshFamily.summary({ ...base, verb: "agent" })).toBe("agent (agent@git.internal)");
    const action = sshFamily.action({ ...base, env: { TOKEN: "s3cret-value" }, stdin: "abc" });
    expect(action).toEqual({ verb: "exec", user: "agent", host: "git.internal", command: "git-upload-pack 'repo.git'", env: ["TOKEN"], stdin_bytes: 3 });
    // Env values never reach the action.
    expect(JSON.stringify(action)).not.toContain("s3cret-value");
    expect(sshFamily.action({ ...base, command: "x".repeat(10_000) }).command).toHaveLength(4096);
    const fp = sshFamily.fingerprint(base);
    expect(sshFamily.fingerprint({ ...base })).toBe(fp);
    expect(sshFamily.fingerprint({ ...base, command: "git-receive-pack 'repo.git'" })).not.toBe(fp);
    expect(sshFamily.fingerprint({ ...base, host: "other.internal" })).not.toBe(fp);
  });
});
