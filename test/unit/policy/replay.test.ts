// Replay: a recorded day (generated here into a real state database) judged
// under the running config and a candidate that tightens one rule; exactly
// the expected changes are reported, by the library and by the CLI.
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { openStateDb } from "../../../app/store/db.ts";
import { insertActions, queryActions } from "../../../app/store/actions.ts";
import { formatReplay, replayActions } from "../../../app/policy/replay.ts";
import type { GatewayEvent } from "../../../app/events/types.ts";
import { policyFrom, tempDir } from "./helpers.ts";

const COMMON = `
endpoint "https" "gh" { hosts = ["api.github.com"] }
endpoint "postgres" "db" {
  host       = "db.internal:5432"
  credential = postgres_password.app
}
credential "postgres_password" "app" { user = "app" }
profile "default" {}
rule "no-deletes" {
  endpoint  = https.gh
  condition = "http.method == 'DELETE'"
  verdict   = "deny"
}
`;

const CURRENT = (stateDir: string) => `schema_version = 1
gateway { state_dir = "${stateDir}" }
defaults { verdict = "allow" }
${COMMON}`;

// Tightened: pushes to main need a human, and writes to the database are denied.
const CANDIDATE = (stateDir: string) => `${CURRENT(stateDir)}
rule "main-needs-a-human" {
  endpoint  = https.gh
  condition = "http.method == 'POST' && http.path.endsWith('/git/refs/heads/main')"
  approve   = [dashboard]
}
rule "no-db-writes" {
  endpoint  = postgres.db
  condition = "sql.verb in ['insert', 'update', 'delete']"
  verdict   = "deny"
}
`;

function event(i: number, e: Partial<GatewayEvent>): GatewayEvent {
  return {
    time: new Date(Date.now() - (1000 - i) * 60_000).toISOString(),
    kind: "http",
    flowId: `f${i}`,
    device: i % 2 === 0 ? "laptop" : "ci",
    profile: "default",
    host: "api.github.com",
    port: 443,
    bytesUp: 0,
    bytesDown: 0,
    durationMs: 1,
    verdict: "allow",
    reason: "",
    ...e,
  };
}

function recordedDay(): GatewayEvent[] {
  const out: GatewayEvent[] = [];
  for (let i = 0; i < 40; i++) out.push(event(i, { method: "GET", path: `/repos/o/r/issues/${i}`, endpoint: "https.gh", family: "http" }));
  for (let i = 40; i < 43; i++) out.push(event(i, { method: "POST", path: "/repos/o/r/git/refs/heads/main", endpoint: "https.gh", family: "http" }));
  out.push(event(43, { method: "POST", path: "/repos/o/r/git/refs/heads/feature", endpoint: "https.gh", family: "http" }));
  out.push(event(44, { method: "DELETE", path: "/repos/o/r", endpoint: "https.gh", family: "http", verdict: "deny", rule: "no-deletes" }));
  const sql = (i: number, verb: string, statement: string): GatewayEvent =>
    event(i, { kind: "sql", family: "sql", endpoint: "postgres.db", host: "db.internal", port: 5432, path: statement, summary: `${verb} public.users`, action: { database: "app", user: "app", verb, tables: ["public.users"], functions: [], statement } });
  out.push(sql(45, "select", "select * from users"));
  out.push(sql(46, "update", "update users set name = 'x'"));
  out.push(sql(47, "insert", "insert into users values (1)"));
  // a relayed connection: no rule judges it
  out.push(event(48, { kind: "connection", host: "1.2.3.4", verdict: "relay" }));
  return out;
}

describe("replay", () => {
  test("exactly the tightened rule's changes, grouped per rule", async () => {
    const dir = tempDir();
    const db = openStateDb(join(dir, "state"));
    insertActions(db, recordedDay());
    const current = await policyFrom(CURRENT(join(dir, "state")));
    const candidate = await policyFrom(CANDIDATE(join(dir, "state")));
    const actions = queryActions(db, { limit: 1000 });
    db.close();

    const report = replayActions(current, candidate, actions);
    expect(report.replayed).toBe(48);
    expect(report.skipped).toBe(1);
    const summary = report.changes.map((c) => `${c.to.rule}: ${c.from.verdict}→${c.to.verdict}`).sort();
    expect(summary).toEqual([
      "main-needs-a-human: allowed→held",
      "main-needs-a-human: allowed→held",
      "main-needs-a-human: allowed→held",
      "no-db-writes: allowed→denied",
      "no-db-writes: allowed→denied",
    ]);
    const text = formatReplay(report, 2);
    expect(text).toStartWith("replayed 48 recorded actions (1 not judged by rules); 5 would change\n");
    expect(text).toContain('  rule "main-needs-a-human": allowed → held: 3\n');
    expect(text).toContain('  rule "no-db-writes": allowed → denied: 2\n');
    expect(text).toContain("… and 1 more");

    // The same config against itself changes nothing.
    expect(replayActions(current, current, actions).changes).toEqual([]);
  });

  test("the CLI: exit 1 with the report when something changes, exit 0 when nothing does", async () => {
    const dir = tempDir();
    const stateDir = join(dir, "state");
    const db = openStateDb(stateDir);
    insertActions(db, recordedDay());
    db.close();
    const currentPath = join(dir, "current.hcl");
    const candidatePath = join(dir, "candidate.hcl");
    writeFileSync(currentPath, CURRENT(stateDir));
    writeFileSync(candidatePath, CANDIDATE(stateDir));
    const main = join(import.meta.dir, "../../../app/main.ts");
    const run = async (candidate: string, since = "24h") => {
      const proc = Bun.spawn([process.execPath, main, "replay", "--current", currentPath, "--config", candidate, "--since", since], { stdout: "pipe", stderr: "pipe" });
      const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      return { out, err, code };
    };
    const changed = await run(candidatePath);
    expect(changed.err).toBe("");
    expect(changed.code).toBe(1);
    expect(changed.out).toContain("5 would change");
    expect(changed.out).toContain('rule "no-db-writes": allowed → denied: 2');

    const same = await run(currentPath);
    expect(same.code).toBe(0);
    expect(same.out).toContain("0 would change");

    // only the last 10 minutes: none of the generated day is that recent
    const recent = await run(candidatePath, "10m");
    expect(recent.code).toBe(0);
    expect(recent.out).toStartWith("replayed 0 recorded actions");

    const bad = await run(candidatePath, "yesterday-ish");
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("--since must be a duration");
  }, 120_000);

  test("ssh requests and gated commands are replayed from their recorded actions; an ssh channel's close is not judged again", async () => {
    const dir = tempDir();
    const db = openStateDb(join(dir, "state"));
    const base = `schema_version = 1
defaults { verdict = "allow" }
endpoint "ssh" "git" {
  hosts      = ["git.internal"]
  credential = ssh_key.git
}
credential "ssh_key" "git" { user = "git" }
endpoint "exec" "tools" {}
profile "default" {}
`;
    const tightened = `${base}
rule "no-push" {
  endpoint  = ssh.git
  condition = "ssh.verb == 'exec' && ssh.command.startsWith('git-receive-pack')"
  verdict   = "deny"
}
rule "no-rm-rf" {
  endpoint  = exec.tools
  condition = "exec.prefix(['rm', '-rf'])"
  verdict   = "deny"
}
rule "no-secrets-in-env" {
  endpoint  = exec.tools
  condition = "'AWS_SECRET_ACCESS_KEY' in exec.env"
  verdict   = "deny"
}
`;
    const ssh = (i: number, command: string, closed = false): GatewayEvent =>
      event(i, { kind: "ssh", family: "ssh", endpoint: "ssh.git", host: "git.internal", port: 22, method: closed ? "exec-closed" : "exec", path: command, action: { verb: "exec", user: "git", host: "git.internal", command } });
    const exec = (i: number, argv: string[], env: string[] = []): GatewayEvent =>
      event(i, { kind: "exec", family: "exec", endpoint: "exec.tools", host: argv[0]!, port: 0, method: "EXEC", path: argv.join(" "), action: { command: argv[0], path: `/usr/bin/${argv[0]}`, argv, cwd: "/work", paths: [], tty: false, uid: 1000, env } });
    insertActions(db, [
      ssh(0, "git-upload-pack 'o/r.git'"),
      ssh(1, "git-receive-pack 'o/r.git'"),
      ssh(2, "git-receive-pack 'o/r.git'", true),
      exec(3, ["ls", "-la"]),
      exec(4, ["rm", "-rf", "build"]),
      exec(5, ["env"], ["AWS_SECRET_ACCESS_KEY", "HOME"]),
    ]);
    const actions = queryActions(db, { limit: 100 });
    db.close();
    const report = replayActions(await policyFrom(base), await policyFrom(tightened), actions);
    expect(report.replayed).toBe(5);
    expect(report.skipped).toBe(1);
    expect(report.changes.map((c) => `${c.to.rule}: ${c.from.verdict}→${c.to.verdict}`).sort()).toEqual([
      "no-push: allowed→denied",
      "no-rm-rf: allowed→denied",
      "no-secrets-in-env: allowed→denied",
    ]);
  });
});
