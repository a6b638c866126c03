// `make bench-postgres`: pgbench -S (select-only, `-M simple` and
// `-M prepared`, scale 10, 8 clients, -j 2), in one run, against
//   1. PostgreSQL 15 directly (SCRAM),
//   2. pgbouncer 1.18, session pooling, SCRAM passthrough (its userlist
//      holds the role's SCRAM secret, so clients log in with the real one),
//   3. pgbouncer behind a socat TCP hop (the forwarder's own cost),
//   4. clawpatrol, as a process of its own, with a rule that reads
//      `sql.tables` (every statement is parsed and judged, one event per
//      statement to sqlite and events.jsonl), reached through socat's HTTP
//      CONNECT to the gateway's explicit proxy as a device (libpq speaks no
//      proxy protocol): the same hop as 3, so 4 / 3 is the fair ratio.
// It prints TPS, the ratios and the CPU time per statement of the gateway
// (and of pgbouncer). It asserts nothing about timing; it fails only when a
// path does not do what it claims (the gateway does not judge, a pgbench
// transaction fails).
//
// Every client uses sslmode=disable (the gateway would otherwise terminate
// TLS with the device, which neither other path does).
//
// Needs root: PostgreSQL and pgbouncer run as the `postgres` user.
// Knobs (environment): BENCH_SECONDS (per measurement, default 12),
// BENCH_CPU_PROF=DIR (the gateway under `bun --cpu-prof`, profile written to
// DIR on exit), BENCH_KEEP=1 (keep the work directory), BENCH_MODES
// (default "simple,prepared"), BENCH_PATHS (default all four, by key).
// `--smoke` (or BENCH_SMOKE=1): scale 1, -t 20, 2 clients, no warm-up: only
// proves that the bench still runs (postgres-smoke.test.ts).
import { cpuSeconds, firstLine, machineCpu, tail } from "./proc-stats.ts";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect } from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startPostgres, type TestPostgres } from "../integration/support/postgres.ts";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BUN = process.execPath;
const PLACEHOLDER = "clawpatrol-placeholder-pgbench";
const DB = "bench";
const USER = "bench_rw";
const bin = (name: string) => Bun.which(name) ?? (["/usr/sbin", "/sbin", "/usr/lib/postgresql/15/bin"].map((d) => `${d}/${name}`).find((f) => existsSync(f)) ?? name);

export type Mode = "simple" | "prepared";
export type PathKey = "direct" | "pgbouncer" | "pgbouncer+socat" | "clawpatrol+socat";

export interface BenchSettings {
  smoke: boolean;
  seconds: number;
  scale: number;
  clients: number;
  threads: number;
  /** Transactions per client (smoke) instead of a duration. */
  transactions?: number;
  warmupSeconds: number;
  modes: Mode[];
  paths: PathKey[];
  cpuProfDir?: string;
  keep: boolean;
}

export interface BenchRow {
  path: PathKey;
  mode: Mode;
  tps: number;
  transactions: number;
  failed: number;
  /** CPU time (user + system) of the gateway or pgbouncer process over the run, per statement (µs). */
  cpuUsPerStatement?: number;
  /** The system (kernel) part of it. */
  sysUsPerStatement?: number;
  stealPct: number;
}

export interface BenchResult {
  settings: BenchSettings;
  rows: BenchRow[];
  /** Statement events the gateway wrote to events.jsonl over the whole run. */
  gatewayEvents: number;
  versions: { postgres: string; pgbouncer: string; socat: string; pgbench: string };
}

export function settingsFromEnv(smoke: boolean): BenchSettings {
  const all: PathKey[] = ["direct", "pgbouncer", "pgbouncer+socat", "clawpatrol+socat"];
  const paths = process.env.BENCH_PATHS ? (process.env.BENCH_PATHS.split(",") as PathKey[]) : all;
  const modes = process.env.BENCH_MODES ? (process.env.BENCH_MODES.split(",") as Mode[]) : (["simple", "prepared"] as Mode[]);
  const base = { modes, paths, keep: process.env.BENCH_KEEP === "1", ...(process.env.BENCH_CPU_PROF ? { cpuProfDir: path.resolve(process.env.BENCH_CPU_PROF) } : {}) };
  if (smoke) return { ...base, smoke, seconds: 0, scale: 1, clients: 2, threads: 1, transactions: 20, warmupSeconds: 0 };
  return { ...base, smoke, seconds: Number(process.env.BENCH_SECONDS ?? 12), scale: 10, clients: 8, threads: 2, warmupSeconds: 3 };
}

class BenchFailure extends Error {}
function fail(msg: string): never {
  throw new BenchFailure(msg);
}

// ---------------------------------------------------------------------------
// Processes.

interface Proc {
  name: string;
  proc: Bun.Subprocess;
  log: string;
}


function run(cmd: string[], env?: Record<string, string | undefined>): { code: number; out: string; err: string } {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", stdin: "ignore", env: env ?? process.env });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
}

/** A command run without blocking this process; its output and exit code. */
async function runAsync(cmd: string[], env: Record<string, string | undefined>, timeoutMs: number): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn(cmd, { env, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const timer = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { code, out, err };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, alive: () => string | undefined, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const dead = alive();
    if (dead) fail(dead);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: "127.0.0.1", port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    await Bun.sleep(50);
  }
  fail(`nothing listened on 127.0.0.1:${port} within ${timeoutMs} ms`);
}



/** The pids of a process's children (socat forks one per connection). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function killTree(pid: number, sig: NodeJS.Signals): void {
  for (const c of childrenOf(pid)) killTree(c, sig);
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** As the postgres user, exec'd in place (runuser would stay as a parent that outlives a SIGTERM). */
function asPostgresUser(cmd: string[]): string[] {
  return [bin("setpriv"), "--reuid=postgres", "--regid=postgres", "--init-groups", "--", ...cmd];
}

function postgresOwns(p: string): void {
  const uid = Number(run(["id", "-u", "postgres"]).out.trim());
  const gid = Number(run(["id", "-g", "postgres"]).out.trim());
  chownSync(p, uid, gid);
}

// ---------------------------------------------------------------------------
// The servers.

class Servers {
  readonly procs: Proc[] = [];
  db: TestPostgres | undefined;
  bouncerPidFile: string | undefined;
  /** The work directory (removed on an interrupt unless kept). */
  dir: string | undefined;

  spawn(name: string, cmd: string[], log: string, opts: { env?: Record<string, string | undefined>; stdout?: "pipe" } = {}): Proc {
    const file = Bun.file(log);
    const proc = Bun.spawn(cmd, { env: opts.env ?? process.env, stdin: "ignore", stdout: opts.stdout ?? file, stderr: file });
    const p = { name, proc, log };
    this.procs.push(p);
    return p;
  }

  bouncerPid(): number | undefined {
    if (!this.bouncerPidFile) return undefined;
    const pid = Number(readFileSync(this.bouncerPidFile, "utf8").trim());
    return pid > 0 ? pid : undefined;
  }

  private stopping: Promise<void> | undefined;

  /** Stops everything; a second call (an interrupt during the first) waits for the same stop. */
  stopAll(): Promise<void> {
    this.stopping ??= this.stopEverything();
    return this.stopping;
  }

  private async stopEverything(): Promise<void> {
    // socat's per-connection children and pgbouncer (under runuser) first, then the rest.
    for (const p of [...this.procs].reverse()) if (p.proc.exitCode === null) killTree(p.proc.pid, "SIGTERM");
    if (this.bouncerPidFile && existsSync(this.bouncerPidFile)) {
      const pid = this.bouncerPid();
      if (pid) killTree(pid, "SIGTERM");
    }
    await Promise.race([Promise.all(this.procs.map((p) => p.proc.exited)), Bun.sleep(5000)]);
    for (const p of this.procs) {
      if (p.proc.exitCode !== null) continue;
      console.error(`bench-postgres: ${p.name} did not stop on SIGTERM within 5 s: killed`);
      killTree(p.proc.pid, "SIGKILL");
    }
    await this.db?.stop().catch(() => {});
  }
}

function pgbouncerConfig(dir: string, listenPort: number, pgPort: number): string {
  return `[databases]
${DB} = host=127.0.0.1 port=${pgPort} dbname=${DB}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${listenPort}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = ${dir}/userlist.txt
pool_mode = session
max_client_conn = 100
default_pool_size = 20
logfile = ${dir}/pgbouncer.log
pidfile = ${dir}/pgbouncer.pid
log_connections = 0
log_disconnections = 0
`;
}

function gatewayConfig(pgPort: number): string {
  return `schema_version = 1
gateway {
  state_dir = "state"
  dashboard_listen = "127.0.0.1:0"
  proxy { listen = "127.0.0.1:0" }
  events { jsonl = "events.jsonl" }
}
defaults {
  verdict = "allow"
}
endpoint "postgres" "bench" {
  host       = "127.0.0.1:${pgPort}"
  sslmode    = "disable"
  credential = postgres_password.bench
}
credential "postgres_password" "bench" {
  user = "${USER}"
}
profile "bench" {
  credentials = [postgres_password.bench]
}
rule "no-secrets" {
  endpoint  = postgres.bench
  condition = "'secrets' in sql.tables"
  verdict   = "deny"
  reason    = "the secrets table is off limits"
}
`;
}

async function startGatewayProc(servers: Servers, dir: string, pgPort: number, password: string, cpuProfDir: string | undefined): Promise<{ proc: Proc; proxyPort: number; device: string; token: string }> {
  const configPath = path.join(dir, "gateway.hcl");
  writeFileSync(configPath, gatewayConfig(pgPort));
  const env: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("CLAWPATROL_")) env[k] = v;
  env.CLAWPATROL_SECRET_BENCH = password;
  const prof = cpuProfDir ? ["--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${cpuProfDir}`] : [];
  const p = servers.spawn("clawpatrol", [BUN, ...prof, path.join(HERE, "postgres-gateway-proc.ts"), configPath, "bench"], path.join(dir, "stderr.log"), { env, stdout: "pipe" });
  const ready = await firstLine(p.proc.stdout as ReadableStream<Uint8Array>, 30_000);
  if ("error" in ready) {
    if (ready.error === "timeout") fail(`clawpatrol did not start within 30 s:\n${tail(p.log)}`);
    fail(`clawpatrol exited (${await p.proc.exited}) before listening:\n${tail(p.log)}`);
  }
  const info = JSON.parse(ready.line) as { proxy: string; device: string; token: string };
  return { proc: p, proxyPort: Number(info.proxy.slice(info.proxy.lastIndexOf(":") + 1)), device: info.device, token: info.token };
}

// ---------------------------------------------------------------------------
// pgbench.

interface PgbenchOut {
  tps: number;
  transactions: number;
  failed: number;
}

function parsePgbench(out: string): PgbenchOut {
  const tps = out.match(/tps = ([\d.]+) \(without initial connection time\)/);
  const done = out.match(/number of transactions actually processed: (\d+)/);
  const failed = out.match(/number of failed transactions: (\d+)/);
  return { tps: tps ? Number(tps[1]) : NaN, transactions: done ? Number(done[1]) : 0, failed: failed ? Number(failed[1]) : 0 };
}

const clientEnv = (password: string): Record<string, string | undefined> => ({
  ...process.env,
  PGPASSWORD: password,
  PGSSLMODE: "disable",
  PGGSSENCMODE: "disable",
  PGCONNECT_TIMEOUT: "20",
});

async function pgbench(s: BenchSettings, port: number, user: string, password: string, mode: Mode, seconds: number | undefined): Promise<PgbenchOut> {
  const length = seconds !== undefined ? ["-T", String(seconds)] : ["-t", String(s.transactions ?? 20)];
  const cmd = [bin("pgbench"), "-h", "127.0.0.1", "-p", String(port), "-U", user, "-n", "-S", "-M", mode, "-c", String(s.clients), "-j", String(s.threads), ...length, DB];
  const r = await runAsync(cmd, clientEnv(password), 60_000 + (seconds ?? 0) * 2000);
  const parsed = parsePgbench(r.out);
  if (r.code !== 0 || !Number.isFinite(parsed.tps)) fail(`pgbench on port ${port} (${mode}) exited ${r.code}:\n${r.err.trim().split("\n").slice(-8).join("\n")}\n${r.out.trim().split("\n").slice(-5).join("\n")}`);
  return parsed;
}

async function psql(port: number, user: string, password: string, sql: string): Promise<{ code: number; out: string; err: string }> {
  return runAsync([bin("psql"), "-X", "-A", "-t", "-v", "VERBOSITY=verbose", "-h", "127.0.0.1", "-p", String(port), "-U", user, "-d", DB, "-c", sql], clientEnv(password), 30_000);
}

/** Benches running in this process, for an interrupt to take their servers down. */
const active = new Set<Servers>();

// ---------------------------------------------------------------------------

export async function runPostgresBench(s: BenchSettings, say: (line: string) => void = () => {}): Promise<BenchResult> {
  if (process.getuid?.() !== 0) fail("needs root (PostgreSQL and pgbouncer run as the postgres user)");
  const servers = new Servers();
  active.add(servers);
  const dir = mkdtempSync(path.join(os.tmpdir(), "clawpatrol-bench-pg-"));
  servers.dir = dir;
  let ok = false;
  let result: BenchResult | undefined;
  let countEvents = () => 0;
  try {
    const t0 = performance.now();
    const password = `bench-${crypto.randomUUID()}`;
    const db = await startPostgres({ auth: "scram-sha-256", user: USER, password, database: DB });
    servers.db = db;

    // Data: pgbench's tables, and one the gateway's rule keeps clients away from.
    const init = run([bin("pgbench"), "-h", "127.0.0.1", "-p", String(db.port), "-U", USER, "-i", "-q", "-s", String(s.scale), DB], clientEnv(password));
    if (init.code !== 0) fail(`pgbench -i failed: ${init.err}`);
    db.superuserSql(`CREATE TABLE public.secrets (v text); GRANT ALL ON public.secrets TO ${USER};`, DB);

    // pgbouncer (runs as postgres: it refuses root), SCRAM passthrough.
    // The work directory is root's (0700): the postgres user may pass through it to its own.
    chmodSync(dir, 0o711);
    const bdir = path.join(dir, "pgbouncer");
    mkdirSync(bdir);
    postgresOwns(bdir);
    const scramSecret = db.superuserSql(`SELECT rolpassword FROM pg_authid WHERE rolname = '${USER}'`).trim();
    if (!scramSecret.startsWith("SCRAM-SHA-256$")) fail("the role has no SCRAM secret");
    writeFileSync(path.join(bdir, "userlist.txt"), `"${USER}" "${scramSecret}"\n`, { mode: 0o600 });
    postgresOwns(path.join(bdir, "userlist.txt"));
    const bouncerPort = await freePort();
    writeFileSync(path.join(bdir, "pgbouncer.ini"), pgbouncerConfig(bdir, bouncerPort, db.port));
    postgresOwns(path.join(bdir, "pgbouncer.ini"));
    servers.bouncerPidFile = path.join(bdir, "pgbouncer.pid");
    const bouncer = servers.spawn("pgbouncer", asPostgresUser([bin("pgbouncer"), path.join(bdir, "pgbouncer.ini")]), path.join(dir, "pgbouncer.out"));
    await waitForPort(bouncerPort, () => (bouncer.proc.exitCode !== null ? `pgbouncer exited:\n${tail(path.join(bdir, "pgbouncer.log"))}\n${tail(bouncer.log)}` : undefined));

    // The gateway, and the socat hops in front of it and of pgbouncer.
    const gdir = path.join(dir, "gateway");
    mkdirSync(gdir);
    const gw = await startGatewayProc(servers, gdir, db.port, password, s.cpuProfDir);
    const socat = async (name: string, target: string): Promise<number> => {
      const port = await freePort();
      const p = servers.spawn(name, [bin("socat"), `TCP-LISTEN:${port},bind=127.0.0.1,fork,reuseaddr,nodelay`, `${target},nodelay`], path.join(dir, `${name}.log`));
      await waitForPort(port, () => (p.proc.exitCode !== null ? `${name} exited:\n${tail(p.log)}` : undefined));
      return port;
    };
    const gwHop = await socat("socat-clawpatrol", `PROXY:127.0.0.1:127.0.0.1:${db.port},proxyport=${gw.proxyPort},proxyauth=${gw.device}:${gw.token}`);
    const bouncerHop = await socat("socat-pgbouncer", `TCP:127.0.0.1:${bouncerPort}`);
    say(`servers up in ${((performance.now() - t0) / 1000).toFixed(1)} s (scale ${s.scale} loaded)`);

    // Each path is what it claims: the gateway reads the placeholder, judges by table, and denies 42501.
    const viaGw = await psql(gwHop, "whoever", PLACEHOLDER, "select count(*) from pgbench_branches");
    if (viaGw.code !== 0 || viaGw.out.trim() !== String(s.scale)) fail(`clawpatrol: a read failed: ${viaGw.err.trim()}`);
    const denied = await psql(gwHop, "whoever", PLACEHOLDER, "select * from secrets");
    if (denied.code === 0 || !denied.err.includes("42501")) fail(`clawpatrol: the rule reading sql.tables did not deny: ${denied.err.trim()} ${denied.out.trim()}`);
    const direct = await psql(db.port, USER, PLACEHOLDER, "select 1");
    if (direct.code === 0) fail("PostgreSQL accepted the placeholder password: the gateway's credential would prove nothing");
    for (const [label, port] of [["pgbouncer", bouncerPort], ["pgbouncer+socat", bouncerHop]] as const) {
      const r = await psql(port, USER, password, "select count(*) from pgbench_branches");
      if (r.code !== 0 || r.out.trim() !== String(s.scale)) fail(`${label}: a read failed: ${r.err.trim()}`);
    }

    const paths: Record<PathKey, { port: number; user: string; password: string; pid?: () => number | undefined }> = {
      direct: { port: db.port, user: USER, password },
      pgbouncer: { port: bouncerPort, user: USER, password, pid: () => servers.bouncerPid() },
      "pgbouncer+socat": { port: bouncerHop, user: USER, password, pid: () => servers.bouncerPid() },
      "clawpatrol+socat": { port: gwHop, user: "whoever", password: PLACEHOLDER, pid: () => gw.proc.proc.pid },
    };
    const rows: BenchRow[] = [];
    for (const mode of s.modes) {
      for (const key of s.paths) {
        const p = paths[key];
        if (s.warmupSeconds > 0) await pgbench(s, p.port, p.user, p.password, mode, s.warmupSeconds);
        const pid = p.pid?.();
        const cpu0 = pid ? cpuSeconds(pid) : undefined;
        const m0 = machineCpu();
        const r = await pgbench(s, p.port, p.user, p.password, mode, s.smoke ? undefined : s.seconds);
        const cpu1 = pid ? cpuSeconds(pid) : undefined;
        const m1 = machineCpu();
        if (r.failed > 0) fail(`${key} ${mode}: ${r.failed} transactions failed`);
        // pgbench -S: one statement per transaction.
        const row: BenchRow = { path: key, mode, tps: r.tps, transactions: r.transactions, failed: r.failed, stealPct: (100 * (m1.steal - m0.steal)) / Math.max(1, m1.total - m0.total) };
        if (cpu0 && cpu1) {
          const per = (seconds: number) => (seconds / Math.max(1, r.transactions)) * 1e6;
          row.cpuUsPerStatement = per(cpu1.user + cpu1.system - cpu0.user - cpu0.system);
          row.sysUsPerStatement = per(cpu1.system - cpu0.system);
        }
        rows.push(row);
        say(`  ${mode.padEnd(8)} ${key.padEnd(18)} ${r.tps.toFixed(0).padStart(7)} TPS`);
      }
    }

    countEvents = () => {
      const jsonl = path.join(gdir, "state", "events.jsonl");
      return existsSync(jsonl) ? readFileSync(jsonl, "utf8").split("\n").filter((l) => l.includes('"kind":"sql"')).length : 0;
    };
    const versions = {
      postgres: db.superuserSql("SHOW server_version").trim(),
      pgbouncer: (run([bin("pgbouncer"), "--version"]).out.match(/PgBouncer (\S+)/) ?? [])[1] ?? "?",
      socat: (run([bin("socat"), "-V"]).out.match(/socat version (\S+)/) ?? [])[1] ?? "?",
      pgbench: run([bin("pgbench"), "--version"]).out.trim().replace(/^pgbench \(PostgreSQL\) /, ""),
    };
    ok = true;
    result = { settings: s, rows, gatewayEvents: 0, versions };
  } finally {
    // Still in `active` while stopping: an interrupt now stops what is left.
    await servers.stopAll();
    active.delete(servers);
    // The gateway flushed its batched events when it closed.
    if (result) result.gatewayEvents = countEvents();
    if (s.keep || !ok) console.error(`bench-postgres: work directory kept: ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
  return result!;
}

// ---------------------------------------------------------------------------
// Report.

const fmt = (n: number | undefined, d = 0) => (n !== undefined && Number.isFinite(n) ? n.toFixed(d) : "—");

export function report(r: BenchResult): string[] {
  const s = r.settings;
  const lines: string[] = [];
  const length = s.smoke ? `-t ${s.transactions}` : `-T ${s.seconds} after ${s.warmupSeconds} s warm-up`;
  lines.push(
    `bench-postgres: pgbench ${r.versions.pgbench} -S, scale ${s.scale}, -c ${s.clients} -j ${s.threads}, ${length}; ` +
      `PostgreSQL ${r.versions.postgres}, pgbouncer ${r.versions.pgbouncer} (session pooling), socat ${r.versions.socat}; sslmode=disable; ${os.cpus().length} CPUs shared by everything` +
      (s.smoke ? " (smoke: too short to mean anything)" : ""),
  );
  lines.push("");
  const header = `${"mode".padEnd(10)}${"path".padEnd(20)}${"TPS".padStart(9)}${"statements".padStart(12)}${"CPU µs/stmt".padStart(13)}${"of it sys".padStart(11)}${"steal%".padStart(8)}`;
  lines.push(header, "-".repeat(header.length));
  for (const row of r.rows) {
    lines.push(`${row.mode.padEnd(10)}${row.path.padEnd(20)}${fmt(row.tps).padStart(9)}${String(row.transactions).padStart(12)}${fmt(row.cpuUsPerStatement, 1).padStart(13)}${fmt(row.sysUsPerStatement, 1).padStart(11)}${fmt(row.stealPct, 1).padStart(8)}`);
  }
  lines.push("(CPU µs/stmt: user+system time of the gateway's or pgbouncer's process alone over the run, per statement; of it sys: the kernel's part, mostly loopback TCP)", "");
  lines.push("ratios (same run; goal: clawpatrol >= 1.0x pgbouncer):");
  for (const mode of s.modes) {
    const get = (k: PathKey) => r.rows.find((x) => x.mode === mode && x.path === k)?.tps;
    const g = get("clawpatrol+socat");
    const parts: string[] = [];
    const ratio = (label: string, v: number | undefined, goal = false) => {
      if (g === undefined || v === undefined) return;
      const x = g / v;
      parts.push(`${label} ${x.toFixed(2)}x${goal ? (x >= 1 ? " (goal met)" : " (goal NOT met)") : ""}`);
    };
    ratio("clawpatrol/pgbouncer", get("pgbouncer"), true);
    ratio("clawpatrol/(pgbouncer+socat)", get("pgbouncer+socat"));
    ratio("clawpatrol/direct", get("direct"));
    const b = get("pgbouncer"), bs = get("pgbouncer+socat");
    if (b !== undefined && bs !== undefined) parts.push(`socat hop costs pgbouncer ${((1 - bs / b) * 100).toFixed(0)}%`);
    lines.push(`  ${mode.padEnd(9)} ${parts.join("; ")}`);
  }
  const sent = r.rows.filter((x) => x.path === "clawpatrol+socat").reduce((n, x) => n + x.transactions, 0);
  lines.push("", `clawpatrol wrote ${r.gatewayEvents} sql events to events.jsonl (and sqlite); ${sent} measured statements went through it, plus warm-ups and pgbench's own startup queries`);
  return lines;
}

if (import.meta.main) {
  const smoke = process.argv.includes("--smoke") || process.env.BENCH_SMOKE === "1";
  const s = settingsFromEnv(smoke);
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      const stopping = [...active].map(async (x) => {
        await x.stopAll();
        if (x.dir && !s.keep) rmSync(x.dir, { recursive: true, force: true });
      });
      void Promise.all(stopping).finally(() => process.exit(130));
    });
  }
  try {
    const r = await runPostgresBench(s, (l) => console.log(l));
    console.log("");
    for (const l of report(r)) console.log(l);
    process.exit(0);
  } catch (e) {
    if (e instanceof BenchFailure) {
      console.error(`bench-postgres FAILED: ${e.message}`);
      process.exit(1);
    }
    throw e;
  }
}
