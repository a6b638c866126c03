// The SSH gate without sockets: facts per request, the verdict as applied
// (agent forwarding and X11 need an explicit rule), what a denial tells the
// agent, and the per-channel record at close. Judged through the real rule
// engine with a policy built from HCL.
import { describe, expect, test } from "bun:test";
import { SshGate, DENIED_EXIT_STATUS, type SshRequest, type Verdict } from "../../../app/endpoints/ssh/gate.ts";
import { judge } from "../../../app/policy/engine.ts";
import { policyFrom } from "../policy/helpers.ts";

const policy = await policyFrom(`
schema_version = 1
defaults {
  verdict = "allow"
}
endpoint "ssh" "git" {
  hosts      = ["git.internal"]
  credential = ssh_key.deploy
}
credential "ssh_key" "deploy" {
  user = "deploy"
}
profile "agents" {
  credentials = [ssh_key.deploy]
}
rule "no-push" {
  endpoint  = ssh.git
  condition = "ssh.verb == 'exec' && ssh.command.startsWith('git-receive-pack')"
  verdict   = "deny"
  reason    = "pushes need a review"
}
rule "no-debug-env" {
  endpoint  = ssh.git
  condition = "ssh.verb == 'exec' && 'GIT_TRACE' in ssh.env && ssh.env['GIT_TRACE'] == '1'"
  verdict   = "deny"
  reason    = "no tracing"
}
rule "x11-for-ops" {
  endpoint  = ssh.git
  profiles  = [profile.ops]
  condition = "ssh.verb == 'x11'"
  verdict   = "allow"
}
profile "ops" {
  credentials = [ssh_key.deploy]
}
`);
const endpoint = policy.endpoints.get("ssh.git")!;

function verdictFor(gate: SshGate, channel: number | undefined, req: SshRequest, profile = "agents"): Verdict {
  const facts = gate.facts(channel, req);
  const d = judge(policy, { device: "laptop", profile, endpoint }, facts);
  const v: Verdict = { allow: d.verdict === "allow", reason: d.reason, ...(d.rule !== undefined ? { rule: d.rule } : {}) };
  return gate.outcome(facts, v);
}

describe("SshGate", () => {
  test("git: upload-pack is allowed by default, receive-pack is denied by its rule with a line naming it and exit status 1", () => {
    const gate = new SshGate({ host: "git.internal", user: "git" });
    gate.opened(0, gate.facts(undefined, { verb: "session" }), 1000);
    expect(verdictFor(gate, 0, { verb: "exec", command: "git-upload-pack '/srv/repo.git'" }).allow).toBe(true);
    const push: SshRequest = { verb: "exec", command: "git-receive-pack '/srv/repo.git'" };
    const v = verdictFor(gate, 0, push);
    expect(v).toEqual({ allow: false, reason: "pushes need a review", rule: "no-push" });
    const denial = gate.denial(gate.facts(0, push), v);
    expect(denial).toEqual({
      stderr: `clawpatrol: exec git-receive-pack '/srv/repo.git' (git@git.internal) denied by rule "no-push": pushes need a review\r\n`,
      mode: "exit",
    });
    expect(DENIED_EXIT_STATUS).toBe(1);
  });

  test("an exec sees the env the channel was given before it", () => {
    const gate = new SshGate({ host: "git.internal", user: "git" });
    gate.opened(3, gate.facts(undefined, { verb: "session" }), 0);
    const env: SshRequest = { verb: "env", name: "GIT_TRACE", value: "1" };
    expect(verdictFor(gate, 3, env).allow).toBe(true);
    const exec: SshRequest = { verb: "exec", command: "git-upload-pack x" };
    expect(verdictFor(gate, 3, exec).allow).toBe(true);
    gate.applied(3, env, gate.facts(3, env));
    expect(gate.facts(3, exec).env).toEqual({ GIT_TRACE: "1" });
    expect(verdictFor(gate, 3, exec)).toMatchObject({ allow: false, rule: "no-debug-env" });
    // Another channel has its own env.
    gate.opened(4, gate.facts(undefined, { verb: "session" }), 0);
    expect(verdictFor(gate, 4, exec).allow).toBe(true);
  });

  test("agent forwarding and X11 are denied unless a rule allows them by name", () => {
    const gate = new SshGate({ host: "git.internal", user: "git" });
    gate.opened(0, gate.facts(undefined, { verb: "session" }), 0);
    const agent = verdictFor(gate, 0, { verb: "agent" });
    expect(agent).toEqual({ allow: false, reason: "agent forwarding needs a rule that allows it" });
    expect(verdictFor(gate, 0, { verb: "x11" }).allow).toBe(false);
    expect(verdictFor(gate, 0, { verb: "x11" }, "ops")).toMatchObject({ allow: true, rule: "x11-for-ops" });
    // Refused without ending the session: a failure reply and a line.
    expect(gate.denial(gate.facts(0, { verb: "agent" }), agent)).toEqual({
      stderr: "clawpatrol: agent (git@git.internal) denied by the gateway's default: agent forwarding needs a rule that allows it\r\n",
      mode: "failure",
    });
  });

  test("forwards carry their target; remote forwards the address the server should listen on", () => {
    const gate = new SshGate({ host: "bastion", user: "me" });
    expect(gate.facts(undefined, { verb: "forward", host: "db.internal", port: 5432 })).toEqual({
      verb: "forward",
      host: "bastion",
      user: "me",
      forwardHost: "db.internal",
      forwardPort: 5432,
      env: {},
    });
    expect(gate.facts(undefined, { verb: "remote_forward", host: "", port: 8080 })).toMatchObject({ verb: "remote_forward", forwardHost: "", forwardPort: 8080 });
  });

  test("a denial's line never spans lines (a reason with a newline is flattened)", () => {
    const gate = new SshGate({ host: "h", user: "u" });
    const facts = gate.facts(undefined, { verb: "shell" });
    const d = gate.denial(facts, { allow: false, reason: "one\ntwo\r\nthree", rule: "r" });
    expect(d.stderr).toBe('clawpatrol: shell (u@h) denied by rule "r": one two three\r\n');
    expect(d.mode).toBe("exit");
  });

  test("the channel record: the request that gave it its purpose, bytes each way, exit status, once", () => {
    const gate = new SshGate({ host: "git.internal", user: "git" });
    gate.opened(7, gate.facts(undefined, { verb: "session" }), 1_000);
    const exec: SshRequest = { verb: "exec", command: "wc -c" };
    gate.applied(7, exec, gate.facts(7, exec));
    gate.transferred(7, 100, 0);
    gate.transferred(7, 50, 7);
    gate.exited(7, { code: 0 });
    expect(gate.openChannels).toBe(1);
    const r = gate.closed(7, 1_250);
    expect(r).toMatchObject({ startedAt: 1_000, durationMs: 250, bytesUp: 150, bytesDown: 7, exit: { code: 0 } });
    expect(r?.facts).toMatchObject({ verb: "exec", command: "wc -c" });
    expect(gate.closed(7, 2_000)).toBeUndefined();
    expect(gate.openChannels).toBe(0);
    // Bookkeeping for a channel never opened is ignored, not an error.
    gate.transferred(99, 1, 1);
    gate.exited(99, { signal: "KILL" });
    expect(gate.closed(99, 0)).toBeUndefined();
  });

  test("a session closed before any command records the session itself", () => {
    const gate = new SshGate({ host: "h", user: "u" });
    gate.opened(1, gate.facts(undefined, { verb: "session" }), 5);
    expect(gate.closed(1, 6)?.facts.verb).toBe("session");
  });
});
