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
});
