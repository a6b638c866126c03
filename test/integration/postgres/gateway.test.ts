// PostgreSQL through the gateway, with real parts on both sides:
//
//   psql / pgbench / node-postgres `pg` / `postgres` (npm, pipelining)
//     -> a local port forwarded through the gateway's SOCKS5 listener
//        (libpq speaks no SOCKS) as a device with a token
//     -> the gateway: dispatch (the endpoint names the server's address),
//        the Postgres session, the sql family's rules
//     -> a real PostgreSQL 15 with SCRAM (and one with TLS only)
//
// The agent authenticates with a placeholder password; the upstream gets the
// real one. Reads pass, writes are refused with 42501 and the session goes
// on, inside transactions too; events record each statement; the secret is
// in no event, log line or byte the client received.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import pg from "pg";
import postgres from "postgres";
import { startPostgres, type TestPostgres } from "../support/postgres.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { socksForward, type SocksForward } from "../support/socks-forward.ts";
import { waitFor } from "../support/netns.ts";
import { controlFetch } from "../../../app/control/client.ts";

const PLACEHOLDER = "clawpatrol-placeholder-db";

/** A client program, run without blocking this process (the gateway under test runs in it). */
async function run(cmd: string[], env: Record<string, string>, stdin?: string): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const p = Bun.spawn(cmd, { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe", stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin) });
  const timer = setTimeout(() => p.kill("SIGKILL"), 60_000);
  const [stdout, stderr, exitCode] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { exitCode, stdout, stderr };
}

const POLICY = (pgPort: number, extra = "") => `
defaults {
  verdict = "allow"
}
endpoint "postgres" "db" {
  host       = "127.0.0.1:${pgPort}"
  sslmode    = "disable"
  credential = postgres_password.db
}
credential "postgres_password" "db" {
  user = "app_rw"
}
profile "agents" {
  credentials = [postgres_password.db]
}
rule "audit-needs-a-human" {
  endpoint  = postgres.db
  priority  = 20
  condition = "sql.verb == 'insert' && 'public.audit' in sql.tables"
  approve   = [dashboard]
  reason    = "writing the audit table"
}
rule "no-writes" {
  endpoint  = postgres.db
  priority  = 10
  condition = "sql.verb in ['insert', 'update', 'delete', 'drop', 'truncate', 'alter', 'create', 'grant']"
  verdict   = "deny"
  reason    = "writes need a human"
}
${extra}
`;

describe("postgres through the gateway (SOCKS5 capture)", () => {
  let db: TestPostgres;
  let t: TestGateway;
  let fwd: SocksForward;
  const stderr: string[] = [];
  let token = "";

  beforeAll(async () => {
    db = await startPostgres({ auth: "scram-sha-256", user: "app_rw", password: "real-Pg-secret-7f3a9c", database: "app" });
    db.superuserSql(`
      CREATE TABLE public.users (id int primary key, name text);
      INSERT INTO public.users VALUES (1, 'ada'), (2, 'grace');
      GRANT ALL ON public.users TO app_rw;
      CREATE TABLE public.audit (note text);
      GRANT ALL ON public.audit TO app_rw;
      GRANT CREATE ON SCHEMA public TO app_rw;
    `, "app");
    t = await startTestGateway(POLICY(db.port), { CLAWPATROL_SECRET_DB: db.password }, { stderrWrite: (l) => stderr.push(l) });
    const added = await t.gw.devices.add("agent-box", "agents");
    token = added.token;
    const proxy = t.gw.proxies[0]!.address;
    fwd = await socksForward(proxy, { host: "127.0.0.1", port: db.port }, { user: "agent-box", password: token });
  });

  afterAll(async () => {
    fwd?.close();
    await t?.stop();
    await db?.stop();
  });

  const psql = (sql: string[], extra: string[] = [], stdin?: string) =>
    run(
      ["psql", "-X", "-v", "ON_ERROR_STOP=0", "-h", "127.0.0.1", "-p", String(fwd.port), "-U", "whoever", "-d", "app", ...extra, ...sql.flatMap((s) => ["-c", s])],
      { PGPASSWORD: PLACEHOLDER, PGCONNECT_TIMEOUT: "20" },
      stdin,
    );
  const connect = async (extra: Partial<pg.ClientConfig> = {}) => {
    const client = new pg.Client({ host: "127.0.0.1", port: fwd.port, user: "x", password: PLACEHOLDER, database: "app", ...extra });
    await client.connect();
    return client;
  };

  test("psql reads with a placeholder password; a write is denied with 42501 and the session goes on", async () => {
    const r = await psql(["select name from public.users order by id", "delete from public.users", "select count(*) from public.users"], ["-A", "-t", "-v", "VERBOSITY=verbose"]);
    const out = r.stdout;
    const err = r.stderr;
    expect({ out: out.split("\n").filter(Boolean), err: out ? "" : err }).toEqual({ out: ["ada", "grace", "2"], err: "" });
    expect(err).toContain("42501");
    expect(err).toContain("writes need a human");
    // Nothing was deleted.
    expect(db.superuserSql("select count(*) from public.users", "app").trim()).toBe("2");
  });

  test("psql meta-commands (\\d, \\dt, \\l) work under a policy that denies writes", async () => {
    const r = await psql(["\\dt", "\\d public.users", "\\l"]);
    expect(r.stderr).not.toContain("ERROR");
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("users");
    expect(r.stdout).toContain("name");
  });

  test("a denial inside a transaction fails the server's transaction too", async () => {
    const client = new pg.Client({ host: "127.0.0.1", port: fwd.port, user: "x", password: PLACEHOLDER, database: "app" });
    await client.connect();
    try {
      await client.query("BEGIN");
      await client.query("select 1");
      const denied = await client.query("update public.users set name = 'eve'").then(
        () => undefined,
        (e: { code?: string; message: string }) => e,
      );
      expect(denied?.code).toBe("42501");
      // The server agrees the transaction is aborted.
      const next = await client.query("select 1").then(
        () => undefined,
        (e: { code?: string }) => e,
      );
      expect(next?.code).toBe("25P02");
      await client.query("ROLLBACK");
      const after = await client.query("select count(*)::int as n from public.users");
      expect(after.rows[0].n).toBe(2);
    } finally {
      await client.end();
    }
  });

  test("node-postgres prepared statements: reads run, a prepared write is denied, the connection stays usable", async () => {
    const client = new pg.Client({ host: "127.0.0.1", port: fwd.port, user: "x", password: PLACEHOLDER, database: "app" });
    await client.connect();
    try {
      for (const id of [1, 2, 1]) {
        const r = await client.query({ name: "by-id", text: "select name from public.users where id = $1", values: [id] });
        expect(r.rows[0].name).toBe(id === 1 ? "ada" : "grace");
      }
      const denied = await client.query({ name: "del", text: "delete from public.users where id = $1", values: [1] }).then(
        () => undefined,
        (e: { code?: string }) => e,
      );
      expect(denied?.code).toBe("42501");
      const r = await client.query("select count(*)::int as n from public.users");
      expect(r.rows[0].n).toBe(2);
    } finally {
      await client.end();
    }
  });

  test("a pipelining driver (postgres from npm) stays in sync around denials", async () => {
    const sql = postgres({ host: "127.0.0.1", port: fwd.port, user: "x", password: PLACEHOLDER, database: "app", max: 1, prepare: true, onnotice: () => {} });
    try {
      const results = await Promise.allSettled([
        sql`select name from public.users where id = ${1}`,
        sql`delete from public.users where id = ${2}`,
        sql`select name from public.users where id = ${2}`,
        sql`insert into public.users values (${3}, ${"eve"})`,
        sql`select count(*)::int as n from public.users`,
      ]);
      expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled", "rejected", "fulfilled"]);
      const value = (i: number) => (results[i] as PromiseFulfilledResult<Record<string, unknown>[]>).value;
      expect(value(0)[0]!.name).toBe("ada");
      expect(value(2)[0]!.name).toBe("grace");
      expect(value(4)[0]!.n).toBe(2);
      expect(((results[1] as PromiseRejectedResult).reason as { code?: string }).code).toBe("42501");
    } finally {
      await sql.end();
    }
  });

  test("every statement is an event with its verb, tables and rows; the secret is in no sink", async () => {
    const client = new pg.Client({ host: "127.0.0.1", port: fwd.port, user: "x", password: PLACEHOLDER, database: "app", application_name: "evtest" });
    await client.connect();
    await client.query("select id from public.users where id = 2");
    await client.query("truncate public.users").catch(() => undefined);
    await client.end();
    expect(await waitFor(() => t.events.some((e) => e.kind === "sql" && e.action?.verb === "truncate"), 10_000)).toBe(true);
    const read = t.events.find((e) => e.kind === "sql" && e.path === "select id from public.users where id = 2");
    expect(read?.verdict).toBe("allow");
    expect(read?.family).toBe("sql");
    expect(read?.action?.tables).toEqual(["public.users"]);
    expect(read?.action?.rows).toBe(1);
    expect(read?.credential).toBe("postgres_password.db");
    const denied = t.events.find((e) => e.kind === "sql" && e.action?.verb === "truncate");
    expect(denied?.verdict).toBe("deny");
    expect(denied?.rule).toBe("no-writes");
    const everything = JSON.stringify(t.events) + stderr.join("\n");
    expect(everything).not.toContain(db.password);
  });

  test("Ctrl-C in psql (a CancelRequest) cancels the running statement on the server", async () => {
    const client = new pg.Client({ host: "127.0.0.1", port: fwd.port, user: "x", password: PLACEHOLDER, database: "app" });
    await client.connect();
    try {
      const sleeping = client.query("select pg_sleep(60)").then(
        () => "finished",
        (e: { code?: string }) => e.code ?? "error",
      );
      // The statement is running once the server shows it.
      expect(await waitFor(() => db.superuserSql("select count(*) from pg_stat_activity where query like 'select pg_sleep(60)%'").trim() === "1", 20_000)).toBe(true);
      // pg's cancel opens a new connection with the key it was given: the gateway's.
      const canceller = new pg.Client({ host: "127.0.0.1", port: fwd.port, user: "x", password: PLACEHOLDER, database: "app" });
      (canceller as unknown as { cancel(target: pg.Client, q: unknown): void }).cancel(client, (client as unknown as { activeQuery: unknown }).activeQuery);
      expect(await sleeping).toBe("57014");
    } finally {
      await client.end();
    }
  });

  test("COPY streams both ways (FROM STDIN and TO STDOUT)", async () => {
    const rows = Array.from({ length: 2000 }, (_, i) => `${1000 + i}\tbulk-${i}`).join("\n") + "\n";
    const into = await psql(["copy public.users (id, name) from stdin"], [], rows);
    expect(into.stderr).toBe("");
    expect(into.stdout).toContain("COPY 2000");
    const out = await psql(["copy (select id, name from public.users where id >= 1000 order by id) to stdout"], ["-A", "-t"]);
    expect(out.stdout.split("\n").filter(Boolean)).toHaveLength(2000);
    expect(out.stdout).toContain("2999\tbulk-1999");
    db.superuserSql("delete from public.users where id >= 1000", "app");
  });

  test("notices and NOTIFY pass through", async () => {
    const listener = await connect();
    const talker = await connect();
    try {
      const got: string[] = [];
      listener.on("notification", (n) => got.push(`${n.channel}:${n.payload}`));
      await listener.query("LISTEN jobs");
      const notices: string[] = [];
      talker.on("notice", (n) => notices.push(n.message ?? ""));
      await talker.query("select pg_notify('jobs', 'built')");
      await talker.query("DO $$BEGIN RAISE NOTICE 'hello from the server'; END$$");
      expect(await waitFor(() => got.includes("jobs:built"), 10_000)).toBe(true);
      expect(notices).toContain("hello from the server");
    } finally {
      await listener.end();
      await talker.end();
    }
  });

  test("an approval holds that statement only; the operator's allow lets it run", async () => {
    const held = await connect();
    const other = await connect();
    try {
      const pending = held.query("insert into public.audit values ('from the agent')").then(
        () => "ran",
        (e: { code?: string }) => e.code ?? "error",
      );
      const socket = t.gw.policy().gateway.controlSocket;
      let id: string | undefined;
      await waitFor(async () => {
        const res = await controlFetch(socket, "/api/approvals");
        const { approvals } = (await res.json()) as { approvals: { id: string; rule: string }[] };
        id = approvals.find((a) => a.rule === "audit-needs-a-human")?.id;
        return id !== undefined;
      }, 20_000);
      expect(id).toBeDefined();
      // Another session goes on while this one waits.
      expect((await other.query("select count(*)::int as n from public.users")).rows[0].n).toBe(2);
      const res = await controlFetch(socket, `/api/approvals/${id}/approve`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ operator: "cli:tester", reason: "fine" }),
      });
      expect(res.status).toBe(200);
      expect(await pending).toBe("ran");
      expect(db.superuserSql("select note from public.audit", "app").trim()).toBe("from the agent");
      const event = t.events.find((e) => e.kind === "sql" && e.rule === "audit-needs-a-human");
      expect(event?.verdict).toBe("allow");
      expect(event?.operator).toBe("cli:tester");
    } finally {
      await held.end();
      await other.end();
    }
  });

  test("pgbench (simple and prepared) runs its read-only transactions through the gateway", async () => {
    // Initialised directly (its CREATE TABLEs are writes the policy denies).
    const init = await run(["pgbench", "-i", "-s", "1", "-h", "127.0.0.1", "-p", String(db.port), "-U", db.user, "app"], { PGPASSWORD: db.password });
    expect(init.exitCode).toBe(0);
    for (const mode of ["simple", "prepared"]) {
      const r = await run(["pgbench", "-S", "-n", "-M", mode, "-c", "2", "-t", "50", "-h", "127.0.0.1", "-p", String(fwd.port), "-U", "x", "app"], { PGPASSWORD: PLACEHOLDER });
      expect(r.stderr).not.toContain("error");
      expect(r.stdout).toContain("number of transactions actually processed: 100/100");
    }
  });
});

describe("postgres upstream authentication methods through the gateway", () => {
  let md5db: TestPostgres;
  let t: TestGateway;
  const forwards: SocksForward[] = [];

  beforeAll(async () => {
    md5db = await startPostgres({ auth: "md5", user: "legacy", password: "real-md5-secret-44aa", database: "app" });
    t = await startTestGateway(
      `
defaults {
  verdict = "allow"
  profile = profile.agents
}
endpoint "postgres" "allowed" {
  hosts      = ["127.0.0.1:${md5db.port}"]
  allow_md5  = true
  sslmode    = "prefer" # this server answers SSLRequest with 'N': plain TCP follows
  credential = postgres_password.legacy
}
credential "postgres_password" "legacy" {
  user = "legacy"
}
profile "agents" {
  credentials = [postgres_password.legacy]
}
`,
      { CLAWPATROL_SECRET_LEGACY: md5db.password },
    );
  });

  afterAll(async () => {
    for (const f of forwards) f.close();
    await t?.stop();
    await md5db?.stop();
  });

  test("sslmode = prefer against a server without TLS, and md5 only with allow_md5; without it the agent gets 28P01 and the server never sees a hash", async () => {
    const fwd = await socksForward(t.gw.proxies[0]!.address, { host: "127.0.0.1", port: md5db.port });
    forwards.push(fwd);
    const client = new pg.Client({ host: "127.0.0.1", port: fwd.port, user: "anyone", password: PLACEHOLDER, database: "app" });
    await client.connect();
    expect((await client.query("select current_user as u")).rows[0].u).toBe("legacy");
    await client.end();

    // The same server, the endpoint without allow_md5: refused before any hash leaves.
    const config = (await Bun.file(t.configPath).text()).replace("allow_md5  = true", "allow_md5  = false");
    await Bun.write(t.configPath, config);
    await t.gw.reload();
    const refused = new pg.Client({ host: "127.0.0.1", port: fwd.port, user: "anyone", password: PLACEHOLDER, database: "app" });
    const err = await refused.connect().then(
      () => undefined,
      (e: { code?: string; message: string }) => e,
    );
    expect(err?.code).toBe("28P01");
    expect(err?.message).not.toContain("legacy");
    expect(err?.message).not.toContain(md5db.password);
  });
});
