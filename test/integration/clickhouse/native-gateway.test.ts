// ClickHouse's native protocol through the gateway, with real parts on both
// sides:
//
//   clickhouse-client 18.16 (placeholder user and password)
//     -> a local port forwarded through the gateway's SOCKS5 listener as a
//        device with a token (clickhouse-client speaks no SOCKS)
//     -> the gateway: dispatch (the endpoint names the server's address),
//        the clickhouse_native session, the sql family's rules
//     -> a real clickhouse-server 18.16 (protocol revision 54412) with a
//        password user
//
// Reads pass; DROP and INSERT are refused with Exception 497 and the session
// goes on; USE changes sql.database; compressed and uncompressed INSERT
// blocks stream; the secret is in no event and no byte the client received.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startClickHouse, type TestClickHouse } from "../support/clickhouse.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { socksForward, type SocksForward } from "../support/socks-forward.ts";
import { waitFor } from "../support/netns.ts";
import { controlFetch } from "../../../app/control/client.ts";

const PLACEHOLDER = "clawpatrol-placeholder-ch";
const SECRET = "real-Ch-secret-5e7d1b";

async function run(cmd: string[], stdin?: string): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin) });
  const timer = setTimeout(() => p.kill("SIGKILL"), 60_000);
  const [stdout, stderr, exitCode] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { exitCode, stdout, stderr };
}

const POLICY = (port: number) => `
defaults {
  verdict = "allow"
}
endpoint "clickhouse_native" "ch" {
  hosts      = ["127.0.0.1:${port}"]
  tls        = false
  credential = clickhouse_password.ch
}
credential "clickhouse_password" "ch" {
  user = "analyst"
}
profile "agents" {
  credentials = [clickhouse_password.ch]
}
rule "no-drops" {
  endpoint  = clickhouse_native.ch
  priority  = 10
  condition = "sql.verb in ['drop', 'truncate', 'alter', 'rename']"
  verdict   = "deny"
  reason    = "schema changes need a human"
}
rule "no-inserts-outside-scratch" {
  endpoint  = clickhouse_native.ch
  priority  = 9
  condition = "sql.verb == 'insert' && sql.database != 'scratch' && !sql.tables.all(t, t.startsWith('scratch.'))"
  verdict   = "deny"
  reason    = "inserts only into scratch"
}
rule "notes-need-a-human-once-a-minute" {
  endpoint  = clickhouse_native.ch
  priority  = 7
  condition = "sql.verb == 'select' && 'scratch.notes' in sql.tables"
  approve   = [dashboard]
  rate      = "1/m"
  reason    = "reading notes needs an operator"
}
rule "no-heavy-settings" {
  endpoint  = clickhouse_native.ch
  priority  = 8
  condition = "'max_threads' in sql.settings && int(sql.settings['max_threads']) > 4"
  verdict   = "deny"
  reason    = "at most 4 threads"
}
`;

describe("clickhouse-client through the gateway (SOCKS5 capture)", () => {
  let ch: TestClickHouse;
  let t: TestGateway;
  let fwd: SocksForward;
  const logs: string[] = [];

  beforeAll(async () => {
    ch = await startClickHouse({ user: "analyst", password: SECRET });
    ch.sql(`
      CREATE DATABASE analytics;
      CREATE TABLE analytics.events (id UInt32, name String, tags Array(String), score Nullable(Float64)) ENGINE = MergeTree() ORDER BY id;
      INSERT INTO analytics.events VALUES (1, 'ada', ['a'], 1.5), (2, 'grace', [], NULL);
      CREATE DATABASE scratch;
      CREATE TABLE scratch.notes (id UInt32, body String) ENGINE = MergeTree() ORDER BY id;
    `);
    t = await startTestGateway(POLICY(ch.tcpPort), { CLAWPATROL_SECRET_CH: SECRET }, { stderrWrite: (l) => logs.push(l) });
    const added = await t.gw.devices.add("agent-box", "agents");
    fwd = await socksForward(t.gw.proxies[0]!.address, { host: "127.0.0.1", port: ch.tcpPort }, { user: "agent-box", password: added.token });
  }, 60_000);

  afterAll(async () => {
    fwd?.close();
    await t?.stop();
    await ch?.stop();
  });

  const client = (args: string[], stdin?: string) =>
    run(["clickhouse-client", "--host", "127.0.0.1", "--port", String(fwd.port), "--user", "agent", "--password", PLACEHOLDER, ...args], stdin);

  test("a rule with approve and a rate is counted once: its first query is held, and the operator's allow lets it run", async () => {
    // Judged once before the hold and once after, the second look would find the 1/m bucket empty and deny.
    const pending = client(["-q", "SELECT count() FROM scratch.notes WHERE id > 1000"]);
    const socket = t.gw.policy().gateway.controlSocket;
    let id: string | undefined;
    await waitFor(async () => {
      const res = await controlFetch(socket, "/api/approvals");
      const { approvals } = (await res.json()) as { approvals: { id: string; rule: string }[] };
      id = approvals.find((a) => a.rule === "notes-need-a-human-once-a-minute")?.id;
      return id !== undefined;
    }, 20_000);
    expect(id).toBeDefined();
    const res = await controlFetch(socket, `/api/approvals/${id}/approve`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ operator: "cli:tester", reason: "fine" }),
    });
    expect(res.status).toBe(200);
    const r = await pending;
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("0");
    const event = t.events.findLast((e) => e.kind === "sql" && e.rule === "notes-need-a-human-once-a-minute");
    expect(event?.verdict).toBe("allow");
    expect(event?.operator).toBe("cli:tester");
  });

  test("a read passes with a placeholder password; DROP and INSERT are denied with 497 and the session goes on", async () => {
    const r = await client([
      "--multiquery",
      "--ignore-error",
      "-q",
      "SELECT name FROM analytics.events ORDER BY id; DROP TABLE analytics.events; INSERT INTO analytics.events (id, name) SELECT 3, 'x'; SELECT count() FROM analytics.events",
    ]);
    expect(r.stdout.split("\n").filter(Boolean)).toEqual(["ada", "grace", "2"]);
    expect(r.stderr).toContain("Code: 497");
    expect(r.stderr).toContain("schema changes need a human");
    expect(r.stderr).toContain("inserts only into scratch");
    expect(ch.sql("SELECT count() FROM analytics.events").trim()).toBe("2");
    expect(ch.sql("EXISTS TABLE analytics.events").trim()).toBe("1");
  });

  test("an INSERT with inline VALUES is denied before any data reaches the server", async () => {
    // clickhouse-client 18.16 ends the run after an INSERT's exception, as it does when the server refuses one.
    const r = await client(["-q", "INSERT INTO analytics.events (id, name) VALUES (4, 'y')"]);
    expect(r.stderr).toContain("Code: 497");
    expect(ch.sql("SELECT count() FROM analytics.events").trim()).toBe("2");
  });

  test("USE changes sql.database; an allowed INSERT streams its data (compressed and not)", async () => {
    const rows = Array.from({ length: 5000 }, (_, i) => `${i}\tnote number ${i} ${"x".repeat(i % 50)}`).join("\n") + "\n";
    const compressed = await client(["-d", "default", "-q", "INSERT INTO scratch.notes FORMAT TabSeparated"], rows);
    expect(compressed.stderr).toBe("");
    const plain = await client(["--compression", "0", "-q", "INSERT INTO scratch.notes FORMAT TabSeparated"], rows);
    expect(plain.stderr).toBe("");
    expect(ch.sql("SELECT count() FROM scratch.notes").trim()).toBe("10000");
    const used = await client(["--multiquery", "-q", "USE scratch; INSERT INTO notes VALUES (99999, 'via use')\n; SELECT count() FROM notes WHERE id = 99999"]);
    expect(used.stderr).toBe("");
    expect(used.stdout.trim()).toBe("1");
  });

  test("packet settings are judged as sql.settings", async () => {
    const ok = await client(["--max_threads", "2", "-q", "SELECT 1"]);
    expect(ok.stdout.trim()).toBe("1");
    const heavy = await client(["--max_threads", "16", "-q", "SELECT 1"]);
    expect(heavy.stderr).toContain("at most 4 threads");
    const clause = await client(["-q", "SELECT 1 SETTINGS max_threads = 8"]);
    expect(clause.stderr).toContain("at most 4 threads");
  });

  test("events record each query; the secret reaches no event, log line or client", async () => {
    expect(await waitFor(() => t.events.some((e) => e.kind === "sql" && e.verdict === "deny" && e.action?.verb === "drop"), 10_000)).toBe(true);
    const drop = t.events.find((e) => e.kind === "sql" && e.action?.verb === "drop")!;
    expect(drop.endpoint).toBe("clickhouse_native.ch");
    expect(drop.action?.tables).toEqual(["analytics.events"]);
    expect(drop.rule).toBe("no-drops");
    const use = t.events.find((e) => e.kind === "sql" && e.action?.verb === "insert" && e.verdict === "allow" && e.action?.database === "scratch");
    expect(use).toBeDefined();
    expect(JSON.stringify(t.events)).not.toContain(SECRET);
    expect(logs.join("\n")).not.toContain(SECRET);
    // The server saw the credential's user (the client named "agent").
    const r = await client(["-q", "SELECT user FROM system.processes"]);
    expect(r.stdout.trim()).toBe("analyst");
    expect(r.stdout + r.stderr).not.toContain(SECRET);
  });
});
