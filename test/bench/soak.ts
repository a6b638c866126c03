// `make soak`: the gateway under sustained load and bursts, through its
// explicit proxy (TLS interception with a minted leaf, one CEL rule,
// a bearer_token credential injected, events to SQLite + JSON lines),
// against a local nginx that answers 200 only to the real secret.
//
//   1. checks: 200 with injection, DELETE denied by the rule
//   2. a cold burst: B new connections at once (CONNECT + TLS + one request each)
//   3. N keep-alive connections for SOAK_SECONDS, with a second burst of B
//      new connections halfway through; RSS (from /proc) and the JS heap
//      (from /metrics on the control socket) sampled every SOAK_SAMPLE_SECONDS
//   4. the gateway stopped with SIGTERM; its events counted against what
//      nginx served (its access log): one event per request, none lost
//
// It prints requests, errors by kind, p50/p99 per phase, the samples and the
// RSS/heap slope after the warm-up. It fails (exit 1) on any error or a lost
// event; it asserts nothing about speed or the slope.
//
// Needs root: it re-runs itself in a network namespace of its own (only
// `lo`), so nginx can listen on localhost:443 (hey puts a non-443 port into
// the SNI) and nothing collides with other users' loopback ports.
//
// Knobs (environment): SOAK_CONNECTIONS (N, default 200), SOAK_BURST
// (B, default N), SOAK_SECONDS (default 120), SOAK_SAMPLE_SECONDS (default
// 10), SOAK_WARMUP_SECONDS (samples before this are not in the slope;
// default 30), SOAK_GC=1 (a full collection in the gateway before each
// sample), SOAK_KEEP=1 (keep the work directory), SOAK_LOG_LEVEL (the
// gateway's, e.g. debug; its log is in the work directory).
import { firstLine, tail } from "./proc-stats.ts";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Database } from "bun:sqlite";
import { makeTestPki, type TestPki } from "../integration/support/pki.ts";
import { CA_CERT_FILE } from "../../app/tls/ca.ts";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BUN = process.execPath;
const bin = (name: string) => Bun.which(name) ?? (["/usr/sbin", "/sbin"].map((d) => `${d}/${name}`).find((f) => existsSync(f)) ?? name);

if (process.env.CLAWPATROL_SOAK_NETNS !== "1") {
  if (process.getuid?.() !== 0) {
    console.error("soak: needs root (it runs in a network namespace with the upstream on port 443)");
    process.exit(1);
  }
  const child = Bun.spawn([bin("unshare"), "--net", "--", BUN, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    env: { ...process.env, CLAWPATROL_SOAK_NETNS: "1" },
    stdio: ["inherit", "inherit", "inherit"],
  });
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => child.kill(sig));
  process.exit(await child.exited);
}

const N = Number(process.env.SOAK_CONNECTIONS ?? 200);
const BURST = Number(process.env.SOAK_BURST ?? N);
const SECONDS = Number(process.env.SOAK_SECONDS ?? 120);
const SAMPLE_SECONDS = Number(process.env.SOAK_SAMPLE_SECONDS ?? 10);
const WARMUP_SECONDS = Number(process.env.SOAK_WARMUP_SECONDS ?? 30);
/** A full collection in the gateway before each sample: the heap then shows what is held, not garbage. */
const FORCE_GC = process.env.SOAK_GC === "1";
const HOST = "localhost";
const URL_PATH = "/v1/soak";
const URL = `https://${HOST}${URL_PATH}`;
const PROXY = "127.0.0.1:3128";

const rand = (n: number) => Buffer.from(crypto.getRandomValues(new Uint8Array(n))).toString("hex");
const SECRET = `sk-soak-${rand(16)}`;
const PLACEHOLDER = `sk-place-${"0".repeat(32)}`;
const BODY = '{"ok":true,"answer":"soak"}';

class SoakFailure extends Error {}
const fail = (msg: string): never => {
  throw new SoakFailure(msg);
};

interface Proc {
  name: string;
  proc: Bun.Subprocess;
  log: string;
}
const procs: Proc[] = [];

function spawnLogged(name: string, cmd: string[], logPath: string, env?: Record<string, string | undefined>, stdout: "pipe" | "log" = "log"): Proc {
  const file = Bun.file(logPath);
  const proc = Bun.spawn(cmd, { env: env ?? process.env, stdin: "ignore", stdout: stdout === "pipe" ? "pipe" : file, stderr: file });
  const p = { name, proc, log: logPath };
  procs.push(p);
  return p;
}

async function stopAll(): Promise<void> {
  for (const p of [...procs].reverse()) if (p.proc.exitCode === null) p.proc.kill("SIGTERM");
  await Promise.race([Promise.all(procs.map((p) => p.proc.exited)), Bun.sleep(10_000)]);
  for (const p of procs) if (p.proc.exitCode === null) p.proc.kill("SIGKILL");
}

async function waitForPort(host: string, port: number, p: Proc, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (p.proc.exitCode !== null) fail(`${p.name} exited (${p.proc.exitCode}) before listening:\n${tail(p.log)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    await Bun.sleep(50);
  }
  fail(`${p.name} did not listen on ${host}:${port} within ${timeoutMs} ms:\n${tail(p.log)}`);
}

function startNginx(dir: string, pki: TestPki): Proc {
  const ndir = path.join(dir, "nginx");
  const tmp = path.join(ndir, "tmp");
  mkdirSync(tmp, { recursive: true });
  writeFileSync(path.join(ndir, "leaf.crt"), pki.certPem);
  writeFileSync(path.join(ndir, "leaf.key"), pki.keyPem, { mode: 0o600 });
  writeFileSync(
    path.join(ndir, "nginx.conf"),
    `daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
pid ${ndir}/nginx.pid;
error_log ${ndir}/error.log warn;
events { worker_connections 16384; }
http {
  # One line per request served: the events are counted against these.
  log_format served '$status';
  access_log ${ndir}/access.log served;
  server_tokens off;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  client_body_temp_path ${tmp}/body;
  proxy_temp_path ${tmp}/proxy;
  fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi;
  scgi_temp_path ${tmp}/scgi;
  server {
    listen 127.0.0.1:443 ssl backlog=4096;
    server_name ${HOST};
    ssl_certificate ${ndir}/leaf.crt;
    ssl_certificate_key ${ndir}/leaf.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location = ${URL_PATH} {
      default_type application/json;
      if ($http_authorization != "Bearer ${SECRET}") {
        return 401 '{"error":"missing or wrong credential"}';
      }
      return 200 '${BODY}';
    }
  }
}
`,
  );
  return spawnLogged("nginx", [bin("nginx"), "-e", `${ndir}/error.log`, "-p", ndir, "-c", `${ndir}/nginx.conf`], path.join(ndir, "stdout.log"));
}

function gatewayConfig(pki: TestPki): string {
  return `schema_version = 1
gateway {
  state_dir = "state"
  dashboard_listen = "127.0.0.1:0"
  proxy { listen = "${PROXY}" }
  events { jsonl = "events.jsonl" }
}
defaults {
  verdict = "allow"
  unknown_host = "deny"
  profile = profile.soak
  # Every connection of the soak is one device's (anonymous): its burst of
  # new connections is over the default quotas (200 new flows/s with a
  # burst of 400, 1024 open), which refuse the rest by design.
  quota_new_flows_per_second = 5000
  quota_tcp_flows = 8192
}
endpoint "https" "upstream" {
  hosts = ["${HOST}"]
  ports = [443]
  ca_cert = "${pki.caCertPath}"
  credential = bearer_token.soak
}
credential "bearer_token" "soak" {}
profile "soak" {
  credentials = [bearer_token.soak]
}
rule "no-deletes" {
  endpoint = https.upstream
  condition = "http.method == 'DELETE'"
  verdict = "deny"
  reason = "deletes need a human"
}
`;
}

async function startGateway(gdir: string): Promise<Proc> {
  const env: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("CLAWPATROL_")) env[k] = v;
  env.CLAWPATROL_SECRET_SOAK = SECRET;
  if (process.env.SOAK_LOG_LEVEL) env.CLAWPATROL_LOG_LEVEL = process.env.SOAK_LOG_LEVEL;
  const p = spawnLogged("clawpatrol", [BUN, path.join(HERE, "gateway-proc.ts"), path.join(gdir, "gateway.hcl")], path.join(gdir, "stderr.log"), env, "pipe");
  const ready = await firstLine(p.proc.stdout as ReadableStream<Uint8Array>, 60_000);
  if ("error" in ready) fail(`clawpatrol did not start (${ready.error}):\n${tail(p.log)}`);
  return p;
}

// ---------------------------------------------------------------------------
// Load (hey) and what it reports.

interface HeyResult {
  statuses: Map<number, number>;
  /** hey's error distribution: kind → count. */
  errors: Map<string, number>;
  total: number;
  p50ms: number;
  p99ms: number;
  rps: number;
}

function parseHey(out: string): HeyResult {
  const num = (re: RegExp) => Number(out.match(re)?.[1] ?? NaN);
  const statuses = new Map<number, number>();
  const sc = out.split("Status code distribution:")[1]?.split("Error distribution:")[0] ?? "";
  for (const m of sc.matchAll(/\[(\d+)\]\s+(\d+) responses/g)) statuses.set(Number(m[1]), Number(m[2]));
  const errors = new Map<string, number>();
  for (const line of (out.split("Error distribution:")[1] ?? "").split("\n")) {
    const m = /^\s*\[(\d+)\]\s+(.*)$/.exec(line);
    if (m) errors.set(errorKind(m[2]!), (errors.get(errorKind(m[2]!)) ?? 0) + Number(m[1]));
  }
  let total = 0;
  for (const n of statuses.values()) total += n;
  return { statuses, errors, total, p50ms: num(/50% in ([\d.]+) secs/) * 1000, p99ms: num(/99% in ([\d.]+) secs/) * 1000, rps: num(/Requests\/sec:\s+([\d.]+)/) };
}

/** hey's error lines name the request; the kind is what follows the last colon-separated cause. */
function errorKind(line: string): string {
  if (/request canceled|context deadline exceeded|Client\.Timeout/.test(line)) return "client timeout";
  if (/connection reset/.test(line)) return "connection reset";
  if (/EOF/.test(line)) return "EOF";
  if (/connection refused/.test(line)) return "connection refused";
  if (/tls|x509|certificate/i.test(line)) return "TLS";
  if (/proxyconnect/.test(line)) return "proxy CONNECT";
  return line.replace(/^.*?: /, "").slice(0, 80);
}

function heyCommand(args: string[]): string[] {
  return ["hey", ...args, "-H", `Authorization: Bearer ${PLACEHOLDER}`, "-x", `http://${PROXY}`, URL];
}

async function hey(args: string[]): Promise<HeyResult> {
  const proc = Bun.spawn(heyCommand(args), { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) fail(`hey ${args.join(" ")} exited ${code}: ${err.trim()}`);
  return parseHey(out);
}

/** B new connections at once, one request each (CONNECT, the agent's TLS, the upstream dial). */
const burst = () => hey(["-n", String(BURST), "-c", String(BURST), "-disable-keepalive", "-t", "60"]);
/** N keep-alive connections, as fast as they go, for `seconds`. */
const keepAlive = (seconds: number) => hey(["-z", `${seconds}s`, "-c", String(N), "-t", "60"]);

/** Errors of a phase: every non-200 answer and every transport error, by kind. */
function errorsOf(r: HeyResult): Map<string, number> {
  const out = new Map<string, number>();
  for (const [s, n] of r.statuses) if (s !== 200) out.set(`HTTP ${s}`, n);
  for (const [k, n] of r.errors) out.set(k, (out.get(k) ?? 0) + n);
  return out;
}

// ---------------------------------------------------------------------------
// Samples: RSS from /proc, heap from the gateway's /metrics.

interface Sample {
  t: number;
  rssMb: number;
  heapMb: number;
  flowsOpen: number;
  pooled: number;
  /** Agents' TLS handshakes running and queued. */
  handshakes: number;
  queued: number;
  /** Events waiting for the SQLite sink, and memory outside the JS heap. */
  sinkPending: number;
  externalMb: number;
}

function rssMb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function scrape(socket: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  try {
    const text = await (await fetch("http://localhost/metrics", { unix: socket, signal: AbortSignal.timeout(5_000) } as RequestInit)).text();
    for (const line of text.split("\n")) {
      const m = /^([a-z_]+(?:\{[^}]*\})?) ([-\d.e+]+)$/.exec(line);
      if (m) out.set(m[1]!, Number(m[2]));
    }
  } catch {
    /* a missed scrape is a gap in the samples, not a failure */
  }
  return out;
}

async function sample(pid: number, socket: string, t0: number): Promise<Sample> {
  if (FORCE_GC) {
    process.kill(pid, "SIGUSR2");
    await Bun.sleep(500);
  }
  const m = await scrape(socket);
  return {
    t: (performance.now() - t0) / 1000,
    rssMb: rssMb(pid),
    heapMb: (m.get("clawpatrol_heap_used_bytes") ?? NaN) / 1048576,
    flowsOpen: m.get("clawpatrol_flows_open") ?? NaN,
    pooled: m.get("clawpatrol_upstream_pool_idle") ?? NaN,
    handshakes: m.get("clawpatrol_tls_handshakes_active") ?? NaN,
    queued: m.get("clawpatrol_tls_handshakes_waiting") ?? NaN,
    sinkPending: m.get('clawpatrol_event_sink_pending{sink="sqlite"}') ?? NaN,
    externalMb: (m.get("clawpatrol_external_memory_bytes") ?? NaN) / 1048576,
  };
}

/** Least-squares slope of y over t, per minute. */
export function slopePerMinute(points: { t: number; y: number }[]): number {
  const pts = points.filter((p) => Number.isFinite(p.y));
  if (pts.length < 2) return NaN;
  const mt = pts.reduce((a, p) => a + p.t, 0) / pts.length;
  const my = pts.reduce((a, p) => a + p.y, 0) / pts.length;
  let num = 0;
  let den = 0;
  for (const p of pts) {
    num += (p.t - mt) * (p.y - my);
    den += (p.t - mt) ** 2;
  }
  return den === 0 ? NaN : (num / den) * 60;
}

// ---------------------------------------------------------------------------

const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : "—");
const kinds = (m: Map<string, number>) => (m.size === 0 ? "none" : [...m].map(([k, n]) => `${n}× ${k}`).join(", "));

function curl(args: string[]): { code: number; status: number; body: string; err: string } {
  const r = Bun.spawnSync(["curl", "-sS", "--max-time", "15", "-w", "\n%{http_code}", ...args], { stdout: "pipe", stderr: "pipe" });
  const out = r.stdout.toString();
  const nl = out.lastIndexOf("\n");
  return { code: r.exitCode ?? -1, status: Number(out.slice(nl + 1)), body: out.slice(0, nl), err: r.stderr.toString() };
}

let workDir: string | undefined;

async function main(): Promise<void> {
  if (Bun.spawnSync([bin("ip"), "link", "set", "lo", "up"]).exitCode !== 0) fail("cannot bring lo up in the soak namespace");
  const dir = mkdtempSync(path.join(os.tmpdir(), "clawpatrol-soak-"));
  workDir = dir;
  let ok = false;
  try {
    const pki = makeTestPki(path.join(dir, "pki"), [HOST]);
    const gdir = path.join(dir, "gateway");
    mkdirSync(gdir, { recursive: true });
    writeFileSync(path.join(gdir, "gateway.hcl"), gatewayConfig(pki));
    const nginx = startNginx(dir, pki);
    const gateway = await startGateway(gdir);
    await waitForPort("127.0.0.1", 443, nginx);
    const caPath = path.join(gdir, "state", CA_CERT_FILE);
    const socket = path.join(gdir, "state", "control.sock");

    // 1. The path is what it claims: the gateway's CA, the secret injected, the rule live.
    const auth = ["-H", `Authorization: Bearer ${PLACEHOLDER}`];
    const good = curl(["--cacert", caPath, "-x", `http://${PROXY}`, ...auth, URL]);
    if (good.code !== 0 || good.status !== 200 || good.body !== BODY) fail(`check: expected 200 with injection, got curl ${good.code} HTTP ${good.status} ${good.err}${good.body.slice(0, 200)}`);
    const del = curl(["--cacert", caPath, "-x", `http://${PROXY}`, "-X", "DELETE", ...auth, URL]);
    if (del.status !== 403) fail(`check: DELETE should be denied by the rule, got HTTP ${del.status}`);
    let served = 1;
    const denied = 1;
    console.log(`soak: ${N} keep-alive connections for ${SECONDS} s, bursts of ${BURST} new connections, samples every ${SAMPLE_SECONDS} s (slope after ${WARMUP_SECONDS} s); ${os.cpus().length} CPUs, shared; load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
    console.log("checked: 200 through the gateway with the secret injected; DELETE denied by rule no-deletes\n");

    const t0 = performance.now();
    const samples: Sample[] = [await sample(gateway.proc.pid, socket, t0)];
    const phases: { name: string; r: HeyResult }[] = [];

    // 2. A cold burst.
    const cold = await burst();
    phases.push({ name: `cold burst c${BURST}`, r: cold });

    // 3. Keep-alive load, a second burst halfway, samples all along.
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        await Bun.sleep(SAMPLE_SECONDS * 1000);
        if (sampling) samples.push(await sample(gateway.proc.pid, socket, t0));
      }
    })();
    const loadStarted = (performance.now() - t0) / 1000;
    const steady = keepAlive(SECONDS);
    await Bun.sleep((SECONDS * 1000) / 2);
    const hot = await burst();
    const steadyResult = await steady;
    sampling = false;
    await sampler;
    phases.push({ name: `keep-alive c${N}`, r: steadyResult }, { name: `burst c${BURST} under load`, r: hot });
    samples.push(await sample(gateway.proc.pid, socket, t0));

    console.log(`${"phase".padEnd(28)}${"requests".padStart(10)}${"req/s".padStart(9)}${"p50 ms".padStart(9)}${"p99 ms".padStart(9)}  errors`);
    const allErrors = new Map<string, number>();
    for (const { name, r } of phases) {
      const e = errorsOf(r);
      for (const [k, n] of e) allErrors.set(k, (allErrors.get(k) ?? 0) + n);
      served += r.statuses.get(200) ?? 0;
      console.log(`${name.padEnd(28)}${String(r.total).padStart(10)}${fmt(r.rps).padStart(9)}${fmt(r.p50ms, 1).padStart(9)}${fmt(r.p99ms, 1).padStart(9)}  ${kinds(e)}`);
    }

    console.log(`\n${"t s".padStart(6)}${"RSS MB".padStart(9)}${"heap MB".padStart(9)}${"flows".padStart(7)}${"pooled".padStart(8)}${"TLS".padStart(6)}${"queued".padStart(8)}${"ext MB".padStart(8)}${"events".padStart(8)}`);
    for (const s of samples) console.log(`${fmt(s.t).padStart(6)}${fmt(s.rssMb, 1).padStart(9)}${fmt(s.heapMb, 1).padStart(9)}${fmt(s.flowsOpen).padStart(7)}${fmt(s.pooled).padStart(8)}${fmt(s.handshakes).padStart(6)}${fmt(s.queued).padStart(8)}${fmt(s.externalMb, 1).padStart(8)}${fmt(s.sinkPending).padStart(8)}`);
    const after = samples.filter((s) => s.t >= loadStarted + WARMUP_SECONDS);
    const rssSlope = slopePerMinute(after.map((s) => ({ t: s.t, y: s.rssMb })));
    const heapSlope = slopePerMinute(after.map((s) => ({ t: s.t, y: s.heapMb })));
    console.log(`slope after warm-up (${after.length} samples): RSS ${fmt(rssSlope, 2)} MB/min, heap ${fmt(heapSlope, 2)} MB/min; peak RSS ${fmt(Math.max(...samples.map((s) => s.rssMb)), 1)} MB`);

    // 4. Stop the gateway (SIGTERM flushes its sinks) and count its events against what nginx served.
    gateway.proc.kill("SIGTERM");
    const code = await Promise.race([gateway.proc.exited, Bun.sleep(30_000).then(() => "timeout" as const)]);
    if (code === "timeout") fail("the gateway did not exit within 30 s of SIGTERM");
    const upstreamServed = readFileSync(path.join(dir, "nginx", "access.log"), "utf8").split("\n").filter((l) => l === "200").length;
    const jsonl = readFileSync(path.join(gdir, "state", "events.jsonl"), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as { kind: string; status?: number; verdict: string; detail?: string });
    const http = jsonl.filter((e) => e.kind === "http");
    const allowed200 = http.filter((e) => e.verdict === "allow" && e.status === 200).length;
    const db = new Database(path.join(gdir, "state", "state.db"), { readonly: true });
    const rows = (db.query("SELECT COUNT(*) AS n FROM actions WHERE kind = 'http'").get() as { n: number }).n;
    db.close();
    const gatewayErrors = new Map<string, number>();
    for (const e of http) if (e.status !== undefined && e.status >= 500) gatewayErrors.set(e.detail ?? `HTTP ${e.status}`, (gatewayErrors.get(e.detail ?? `HTTP ${e.status}`) ?? 0) + 1);
    console.log(`\nrequests answered 200 (hey + checks): ${served}; upstream served ${upstreamServed}; gateway events: jsonl ${http.length} (200: ${allowed200}), sqlite ${rows}; denied ${denied}`);
    console.log(`errors by kind: ${kinds(allErrors)}; the gateway's own 5xx: ${kinds(gatewayErrors)}`);

    const problems: string[] = [];
    if (allErrors.size > 0) problems.push(`errors: ${kinds(allErrors)}`);
    if (allowed200 !== upstreamServed) problems.push(`${upstreamServed} requests served upstream but ${allowed200} allow/200 events`);
    if (upstreamServed !== served) problems.push(`the clients saw ${served} 200s but the upstream served ${upstreamServed}`);
    if (rows !== http.length) problems.push(`sqlite has ${rows} http events, jsonl ${http.length}`);
    if (problems.length > 0) fail(problems.join("; "));
    console.log("soak: 0 errors, every request recorded once");
    ok = true;
  } finally {
    await stopAll();
    if (process.env.SOAK_KEEP === "1" || !ok) console.error(`work directory kept: ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    void stopAll().finally(() => process.exit(130));
  });
}

try {
  await main();
  process.exit(0);
} catch (e) {
  if (e instanceof SoakFailure) {
    console.error(`soak FAILED: ${e.message}`);
    process.exit(1);
  }
  throw e;
}
