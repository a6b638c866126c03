// `make bench-https`: one load generator (hey, HTTP/1.1 keep-alive, a
// 222-byte JSON answer), in one run, against
//   1. the upstream directly (nginx-light, TLS 1.3, its own CA),
//   2. through clawpatrol's explicit proxy (TLS interception with a minted
//      leaf, one CEL rule evaluated that does not match, a bearer_token
//      credential injected, events to sqlite + jsonl), the gateway running
//      as a process of its own,
//   3. through mitmproxy's mitmdump (Debian 8.1.1), verifying the upstream
//      against the same CA.
// It prints req/s, p50, p99 and the CPU time per request of each server
// process, and ratios against the baselines measured in the same run.
// Then HTTP/2: h2load (nghttp2-client), BENCH_H2 connections x streams
// each, against nginx's h2 port directly, through the gateway (to the
// HTTP/1.1 port, each stream translated, and to the h2 port, each stream on
// the gateway's own upstream session) and through mitmdump (h2 both ways).
// h2load speaks no proxy protocol: a socat per proxy (`PROXY:`, an HTTP
// CONNECT per connection) carries its connections, the same hop for both
// proxies, and `--connect-to` keeps the URL (SNI, :authority) the real one. It
// asserts nothing about timing; it fails only when a path does not do what
// it claims (no interception, no injection, a non-200 answer).
//
// Needs root: it re-runs itself in a network namespace of its own (only
// `lo`), where the upstream listens on localhost:443. That keeps the SNI a
// bare name (hey puts a non-443 port into the SNI, which the gateway rightly
// rejects as a host name) and keeps it off other users' loopback ports.
//
// Knobs (environment): BENCH_SECONDS (per measurement, default 6),
// BENCH_WARMUP_SECONDS (before each, default 2), BENCH_CONCURRENCY (default "16,64"; empty: no HTTP/1.1
// closed-loop rows), BENCH_FIXED_RATE (req/s for the latency row, default 500; 0 skips it),
// BENCH_H2 (h2load's connections x streams, default "16x10"; empty skips the HTTP/2 rows), BENCH_CPU_PROF=DIR (run the gateway
// under `bun --cpu-prof --cpu-prof-md`, profiles written to DIR on exit),
// BENCH_KEEP=1 (keep the work directory: configs, events, logs).
import { cpuSeconds, machineCpu } from "./proc-stats.ts";
import { BenchFailure, bin, fail, spawnLogged, startGatewayProc as startGatewayProcess, startNginx as startNginxProcess, stopAll, waitForPort, type Proc } from "./servers.ts";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { makeTestPki, type TestPki } from "../integration/support/pki.ts";
import { CA_CERT_FILE } from "../../app/tls/ca.ts";

const BUN = process.execPath;

// ---------------------------------------------------------------------------
// Re-run inside a network namespace of our own.

if (process.env.CLAWPATROL_BENCH_NETNS !== "1") {
  if (process.getuid?.() !== 0) {
    console.error("bench-https: needs root (it runs in a network namespace with the upstream on port 443)");
    process.exit(1);
  }
  const child = Bun.spawn([bin("unshare"), "--net", "--", BUN, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    env: { ...process.env, CLAWPATROL_BENCH_NETNS: "1" },
    stdio: ["inherit", "inherit", "inherit"],
  });
  const forward = (sig: NodeJS.Signals) => process.on(sig, () => child.kill(sig));
  forward("SIGINT");
  forward("SIGTERM");
  process.exit(await child.exited);
}

// ---------------------------------------------------------------------------
// Settings.

const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
// The gateway's JIT is still busy after 1 s of load; 2 s gets it mostly done.
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 2);
const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? "16,64").split(",").filter(Boolean).map(Number);
/** h2load's load: connections, and streams in flight on each. */
const H2 = /^(\d+)x(\d+)$/.exec(process.env.BENCH_H2 ?? "16x10");
/** nginx's HTTP/2 port (443 stays HTTP/1.1, as hey speaks). */
const H2_PORT = 8443;
// Latency added at a moderate fixed rate, where no path is saturated (the
// closed-loop p99 of a saturated proxy is mostly queueing: c / throughput).
// hey's rate-limited workers tick in phase, so requests arrive in bursts of
// FIXED_RATE_WORKERS: keep it small, or the row measures burst queueing.
const FIXED_RATE = Number(process.env.BENCH_FIXED_RATE ?? 500);
const FIXED_RATE_WORKERS = 4;
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF;
const HOST = "localhost";
const URL_PATH = "/v1/bench";
const URL = `https://${HOST}${URL_PATH}`;
const GATEWAY_PROXY = "127.0.0.1:3128";
const MITM_PROXY = "127.0.0.1:8080";
/** socat's ends of the hops from h2load to each proxy's CONNECT, and the upstream port each CONNECT names. */
const H2_HOPS = [
  { listen: "127.0.0.1:9443", proxy: GATEWAY_PROXY, port: 443 },
  { listen: "127.0.0.1:9444", proxy: GATEWAY_PROXY, port: H2_PORT },
  { listen: "127.0.0.1:9445", proxy: MITM_PROXY, port: H2_PORT },
] as const;

const rand = (n: number) => Buffer.from(crypto.getRandomValues(new Uint8Array(n))).toString("hex");
// Same length, so every path sends the same number of bytes.
const SECRET = `sk-bench-${rand(16)}`;
const PLACEHOLDER = `sk-place-${"0".repeat(32)}`;

/** A chat-completion-like JSON answer of exactly 222 bytes. */
function makeBody(size: number): string {
  const head = '{"id":"chatcmpl-bench","object":"chat.completion","model":"bench-1","choices":[{"index":0,"message":{"role":"assistant","content":"';
  const tail = '"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":12}}';
  const fill = size - head.length - tail.length;
  if (fill < 1) throw new Error("body template too long");
  return head + "ok ".repeat(fill).slice(0, fill) + tail;
}
const BODY = makeBody(222);

// ---------------------------------------------------------------------------
// Processes (servers.ts starts, logs and stops them).

function run(cmd: string[], opts: { cwd?: string } = {}): { code: number; out: string; err: string } {
  const r = Bun.spawnSync(cmd, { cwd: opts.cwd, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
}

// ---------------------------------------------------------------------------
// The three servers.

/** nginx on localhost:443 (v4 and v6), no access log: its CPU per request is a baseline. */
function startNginx(dir: string, pki: TestPki): Proc {
  // The h2 port speaks HTTP/2 by ALPN (the h2 rows' upstream); 443 stays HTTP/1.1.
  return startNginxProcess(dir, pki, { listen: ["127.0.0.1:443", "[::1]:443", `127.0.0.1:${H2_PORT} http2`], serverNames: [HOST], urlPath: URL_PATH, secret: SECRET, body: BODY });
}

function gatewayConfig(pki: TestPki): string {
  return `schema_version = 1
gateway {
  state_dir = "state"
  # Not the default 127.0.0.1:8080, which is mitmdump's port here.
  dashboard_listen = "127.0.0.1:0"
  proxy { listen = "${GATEWAY_PROXY}" }
  events { jsonl = "events.jsonl" }
}
defaults {
  verdict = "allow"
  unknown_host = "deny"
  profile = profile.bench
}
endpoint "https" "upstream" {
  hosts = ["${HOST}"]
  ports = [443, ${H2_PORT}]
  ca_cert = "${pki.caCertPath}"
  credential = bearer_token.bench
}
credential "bearer_token" "bench" {}
profile "bench" {
  credentials = [bearer_token.bench]
}
rule "no-deletes" {
  endpoint = https.upstream
  condition = "http.method == 'DELETE'"
  verdict = "deny"
  reason = "deletes need a human"
}
`;
}

async function startGatewayProc(dir: string, pki: TestPki): Promise<Proc> {
  const gdir = path.join(dir, "gateway");
  mkdirSync(gdir, { recursive: true });
  const configPath = path.join(gdir, "gateway.hcl");
  writeFileSync(configPath, gatewayConfig(pki));
  const bunFlags = CPU_PROF_DIR ? ["--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${path.resolve(CPU_PROF_DIR)}`] : [];
  const { p, ready } = await startGatewayProcess(configPath, { env: { CLAWPATROL_SECRET_BENCH: SECRET }, bunFlags, timeoutMs: 30_000 });
  if (ready.proxy !== GATEWAY_PROXY) fail(`clawpatrol listens on ${ready.proxy}, expected ${GATEWAY_PROXY}`);
  return p;
}

/** utime + stime of a process, in seconds. */
function cpuTotal(pid: number): number {
  const t = cpuSeconds(pid);
  return t.user + t.system;
}

function startMitmdump(dir: string, pki: TestPki): Proc {
  const mdir = path.join(dir, "mitmproxy");
  mkdirSync(mdir, { recursive: true });
  const [host, port] = MITM_PROXY.split(":") as [string, string];
  return spawnLogged(
    "mitmdump",
    [
      "mitmdump", "-q",
      "--listen-host", host, "--listen-port", port,
      "--set", `confdir=${mdir}`,
      "--set", `ssl_verify_upstream_trusted_ca=${pki.caCertPath}`,
      "--set", "flow_detail=0",
    ],
    path.join(mdir, "mitmdump.log"),
  );
}

/** A local port whose connections socat carries through `proxy`'s CONNECT to localhost:`port` (h2load speaks no proxy protocol). */
function startHop(name: string, listen: string, proxy: string, port: number, dir: string): Proc {
  const [lh, lp] = listen.split(":") as [string, string];
  const [ph, pp] = proxy.split(":") as [string, string];
  return spawnLogged(
    name,
    [bin("socat"), `TCP-LISTEN:${lp},bind=${lh},fork,reuseaddr,nodelay`, `PROXY:${ph}:${HOST}:${port},proxyport=${pp},nodelay`],
    path.join(dir, `${name}.log`),
  );
}

// ---------------------------------------------------------------------------
// Checks before load: each path really is what it claims.

function curl(args: string[]): { code: number; status: number; headers: string; body: string; err: string } {
  const r = run(["curl", "-sS", "--max-time", "15", "-D", "-", "-w", "\n%{http_code}", ...args]);
  const nl = r.out.lastIndexOf("\n");
  const all = r.out.slice(0, nl);
  // With a proxy, the CONNECT answer comes first: the body follows the last blank line.
  const split = all.lastIndexOf("\r\n\r\n");
  return { code: r.code, status: Number(r.out.slice(nl + 1)), headers: all.slice(0, split), body: all.slice(split + 4), err: r.err };
}

function verifyPaths(pki: TestPki, gatewayCa: string, mitmCa: string): void {
  const auth = (v: string) => ["-H", `Authorization: Bearer ${v}`];
  const expect200 = (label: string, r: ReturnType<typeof curl>) => {
    if (r.code !== 0 || r.status !== 200 || r.body !== BODY) {
      fail(`${label}: expected 200 with the bench body, got curl exit ${r.code}, HTTP ${r.status}: ${r.err.trim()} ${r.body.slice(0, 200)}`);
    }
  };
  // Direct: the upstream answers 200 only to the real secret.
  expect200("direct", curl(["--cacert", pki.caCertPath, ...auth(SECRET), URL]));
  const refused = curl(["--cacert", pki.caCertPath, ...auth(PLACEHOLDER), URL]);
  if (refused.status !== 401) fail(`direct with the placeholder: expected 401 from the upstream, got ${refused.status}`);

  // clawpatrol: the client trusts only clawpatrol's CA (so the TLS was
  // terminated by the gateway, not spliced) and sends the placeholder; a 200
  // means the upstream received the real secret.
  const gw = curl(["--cacert", gatewayCa, "-x", `http://${GATEWAY_PROXY}`, ...auth(PLACEHOLDER), URL]);
  expect200("clawpatrol (interception + injection)", gw);
  if (gw.headers.includes(SECRET) || gw.body.includes(SECRET)) fail("clawpatrol: the secret reached the client");
  const spliced = curl(["--cacert", pki.caCertPath, "-x", `http://${GATEWAY_PROXY}`, ...auth(PLACEHOLDER), URL]);
  if (spliced.code === 0) fail("clawpatrol: a client trusting only the upstream's CA got through: the gateway did not intercept");
  // The CEL rule is live: DELETE is refused by the gateway.
  const del = curl(["--cacert", gatewayCa, "-x", `http://${GATEWAY_PROXY}`, "-X", "DELETE", ...auth(PLACEHOLDER), URL]);
  if (del.status !== 403 || !del.body.includes("denied by clawpatrol")) {
    fail(`clawpatrol: DELETE should be denied by rule no-deletes, got HTTP ${del.status} ${del.body.slice(0, 200)}`);
  }

  // mitmproxy: terminated with its own CA, upstream verified against the test CA.
  expect200("mitmproxy", curl(["--cacert", mitmCa, "-x", `http://${MITM_PROXY}`, ...auth(SECRET), URL]));
}

/** HTTP/2 on every path the h2 rows load: h2 toward the client, the bench body, the secret injected by the gateway. */
function verifyH2Paths(pki: TestPki, gatewayCa: string, mitmCa: string): void {
  const h2 = (label: string, args: string[]) => {
    const r = run(["curl", "-sS", "--http2", "--max-time", "15", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", ...args]);
    if (r.code !== 0 || r.out.trim() !== "2 200") fail(`${label}: expected HTTP/2 200, got curl exit ${r.code}, ${r.out.trim()} ${r.err.trim()}`);
  };
  const h2Url = `https://${HOST}:${H2_PORT}${URL_PATH}`;
  h2("direct h2", ["--cacert", pki.caCertPath, "-H", `Authorization: Bearer ${SECRET}`, h2Url]);
  for (const u of [URL, h2Url]) h2(`clawpatrol h2 to ${u}`, ["--cacert", gatewayCa, "-x", `http://${GATEWAY_PROXY}`, "-H", `Authorization: Bearer ${PLACEHOLDER}`, u]);
  h2("mitmproxy h2", ["--cacert", mitmCa, "-x", `http://${MITM_PROXY}`, "-H", `Authorization: Bearer ${SECRET}`, h2Url]);
}

// ---------------------------------------------------------------------------
// Load.

interface HeyResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  statuses: Map<number, number>;
  errors: string[];
  total: number;
}

function parseHey(out: string): HeyResult {
  const num = (re: RegExp) => {
    const m = out.match(re);
    return m ? Number(m[1]) : NaN;
  };
  const statuses = new Map<number, number>();
  const sc = out.split("Status code distribution:")[1]?.split("Error distribution:")[0] ?? "";
  for (const m of sc.matchAll(/\[(\d+)\]\s+(\d+) responses/g)) statuses.set(Number(m[1]), Number(m[2]));
  const errors: string[] = [];
  const ed = out.split("Error distribution:")[1] ?? "";
  for (const line of ed.split("\n")) if (line.trim()) errors.push(line.trim());
  let total = 0;
  for (const n of statuses.values()) total += n;
  return {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50ms: num(/50% in ([\d.]+) secs/) * 1000,
    p99ms: num(/99% in ([\d.]+) secs/) * 1000,
    statuses,
    errors,
    total,
  };
}

async function hey(seconds: number, load: Load, auth: string, proxy?: string): Promise<HeyResult> {
  const cmd = ["hey", "-z", `${seconds}s`, "-c", String(load.c), "-H", `Authorization: Bearer ${auth}`];
  if (load.qpsPerWorker) cmd.push("-q", String(load.qpsPerWorker));
  if (proxy) cmd.push("-x", `http://${proxy}`);
  cmd.push(URL);
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) fail(`hey exited ${code}: ${err.trim()}`);
  return parseHey(out);
}

interface H2LoadResult {
  rps: number;
  meanMs: number;
  total: number;
  succeeded: number;
  non2xx: number;
  protocol: string;
}

/** h2load's summary: req/s, mean time per request, requests done and how they ended. */
function parseH2load(out: string): H2LoadResult {
  const num = (re: RegExp) => Number(out.match(re)?.[1] ?? NaN);
  const ms = (v: string | undefined) => (v === undefined ? NaN : v.endsWith("us") ? Number(v.slice(0, -2)) / 1000 : v.endsWith("ms") ? Number(v.slice(0, -2)) : Number(v.slice(0, -1)) * 1000);
  const codes = out.match(/status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/);
  return {
    rps: num(/finished in [\d.]+m?s, ([\d.]+) req\/s/),
    meanMs: ms(out.match(/time for request:\s+\S+\s+\S+\s+(\S+)/)?.[1]),
    total: num(/requests: \d+ total, \d+ started, (\d+) done/),
    succeeded: num(/requests: .* (\d+) succeeded/),
    non2xx: codes ? Number(codes[2]) + Number(codes[3]) + Number(codes[4]) : NaN,
    protocol: out.match(/Application protocol: (\S+)/)?.[1] ?? "?",
  };
}

async function h2load(seconds: number, warmup: number, conns: number, streams: number, port: number, auth: string, connectTo?: string): Promise<H2LoadResult> {
  const cmd = [bin("h2load"), "-D", String(seconds), "-c", String(conns), "-m", String(streams), "-H", `authorization: Bearer ${auth}`];
  if (warmup > 0) cmd.push("--warm-up-time", String(warmup));
  if (connectTo) cmd.push("--connect-to", connectTo);
  cmd.push(`https://${HOST}:${port}${URL_PATH}`);
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) fail(`h2load exited ${code}: ${err.trim()} ${out.slice(-500)}`);
  return parseH2load(out);
}

interface PathDef {
  key: "direct" | "clawpatrol" | "mitmproxy";
  label: string;
  auth: string;
  proxy?: string;
  pid: () => number;
}

/** Closed loop (as fast as it goes) at concurrency c, or a fixed rate spread over c workers. */
interface Load {
  name: string;
  c: number;
  qpsPerWorker?: number;
  paths: PathDef["key"][];
}

interface Row {
  path: PathDef;
  load: Load;
  r: HeyResult;
  cpuUsPerReq: number;
  stealPct: number;
}

function checkAll200(label: string, r: HeyResult, c: number): void {
  const non200 = [...r.statuses].filter(([s]) => s !== 200);
  if (r.total === 0) fail(`${label}: no responses at all`);
  if (non200.length > 0) fail(`${label}: not every response was 200: ${non200.map(([s, n]) => `${n}×${s}`).join(", ")}`);
  // hey cancels requests in flight when -z runs out; anything else is a failure.
  const real = r.errors.filter((e) => !/request canceled|context deadline exceeded|Client.Timeout/.test(e));
  const errCount = r.errors.reduce((n, e) => n + Number(e.match(/^\[(\d+)\]/)?.[1] ?? 1), 0);
  if (real.length > 0 || errCount > c) fail(`${label}: hey reported errors:\n  ${r.errors.join("\n  ")}`);
}

// ---------------------------------------------------------------------------

const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : "—");
const pad = (s: string, n: number, right = false) => (right ? s.padStart(n) : s.padEnd(n));

/** The HTTP/2 rows: h2load directly, through the gateway (to an HTTP/1.1 and to an h2 upstream), through mitmdump; then their ratios. */
async function h2Rows(conns: number, streams: number, pids: { gateway: number; mitm: number; nginx: number }, h1Rows: Row[]): Promise<void> {
  const [toH1, toH2, toMitm] = H2_HOPS;
  const h2Paths = [
    { key: "direct", label: "direct h2 (nginx, 1 worker)", port: H2_PORT, auth: SECRET, pid: pids.nginx },
    { key: "clawpatrol", label: "clawpatrol h2 -> HTTP/1.1 upstream", port: toH1.port, auth: PLACEHOLDER, hop: toH1.listen, pid: pids.gateway },
    { key: "clawpatrol-h2", label: "clawpatrol h2 -> h2 upstream", port: toH2.port, auth: PLACEHOLDER, hop: toH2.listen, pid: pids.gateway },
    { key: "mitmproxy", label: "mitmdump h2 -> h2 upstream", port: toMitm.port, auth: SECRET, hop: toMitm.listen, pid: pids.mitm },
  ] as const;
  const load = `${conns}x${streams}`;
  const rows: { key: string; label: string; r: H2LoadResult; cpuUsPerReq: number }[] = [];
  for (const p of h2Paths) {
    const before = cpuTotal(p.pid);
    // h2load's own warm-up: the CPU read spans it too, so CPU/req is a little high for every path alike.
    const r = await h2load(SECONDS, WARMUP_SECONDS, conns, streams, p.port, p.auth, "hop" in p ? p.hop : undefined);
    const cpu = cpuTotal(p.pid) - before;
    if (!(r.total > 0) || r.succeeded !== r.total || r.non2xx !== 0 || r.protocol !== "h2") {
      fail(`h2 ${p.key}: expected every request over h2 to succeed with 2xx, got ${r.succeeded}/${r.total} succeeded, ${r.non2xx} not 2xx, protocol ${r.protocol}`);
    }
    rows.push({ key: p.key, label: p.label, r, cpuUsPerReq: (cpu / (r.total * (1 + WARMUP_SECONDS / SECONDS))) * 1e6 });
    h2Sent += p.pid === pids.gateway ? r.total : 0;
    process.stdout.write(`  h2 ${p.key} ${load}: ${fmt(r.rps)} req/s\n`);
  }
  console.log("");
  const header = `${pad("HTTP/2 path (h2load)", 34)}${pad("load", 8, true)}${pad("req/s", 9, true)}${pad("mean ms", 9, true)}${pad("CPU µs/req", 12, true)}${pad("requests", 10, true)}`;
  console.log(header);
  console.log("-".repeat(header.length));
  for (const row of rows) {
    console.log(`${pad(row.label, 34)}${pad(load, 8, true)}${pad(fmt(row.r.rps), 9, true)}${pad(fmt(row.r.meanMs, 2), 9, true)}${pad(fmt(row.cpuUsPerReq), 12, true)}${pad(String(row.r.total), 10, true)}`);
  }
  console.log(`(load: ${conns} connections x ${streams} concurrent streams each; the proxies' rows go through a socat CONNECT hop, the same for both)\n`);
  const get = (k: string) => rows.find((r) => r.key === k)!;
  const g1 = get("clawpatrol"), g2 = get("clawpatrol-h2"), m = get("mitmproxy"), d = get("direct");
  const h1 = h1Rows.find((r) => r.path.key === "clawpatrol" && r.load.qpsPerWorker === undefined);
  const goal = (met: boolean) => (met ? "goal met" : "goal NOT met");
  console.log("HTTP/2 ratios (same run; goals from issue 15: ≥ the gateway's own HTTP/1.1 req/s, ≥ 10× mitmproxy's h2 req/s):");
  const parts: string[] = [];
  for (const [name, g] of [["to HTTP/1.1 upstream", g1], ["to h2 upstream", g2]] as const) {
    const vsMitm = g.r.rps / m.r.rps;
    const line = [`clawpatrol/mitmproxy req/s ${fmt(vsMitm, 1)}× (${goal(vsMitm >= 10)})`];
    if (h1) line.push(`clawpatrol h2/clawpatrol HTTP/1.1 ${h1.load.name} req/s ${fmt(g.r.rps / h1.r.rps, 2)} (${goal(g.r.rps >= h1.r.rps)})`);
    line.push(`clawpatrol/direct h2 req/s ${fmt(g.r.rps / d.r.rps, 2)}`, `CPU/req clawpatrol/mitmproxy ${fmt(g.cpuUsPerReq / m.cpuUsPerReq, 2)}`);
    parts.push(`  ${load} ${name}: ${line.join("; ")}`);
  }
  console.log(parts.join("\n"));
}
let h2Sent = 0;

const T0 = performance.now();
/** The work directory, removed at the end (or on interrupt) unless BENCH_KEEP=1. */
let workDir: string | undefined;
const since = () => ((performance.now() - T0) / 1000).toFixed(1);

async function main(): Promise<void> {
  if (run([bin("ip"), "link", "set", "lo", "up"]).code !== 0) fail("cannot bring lo up in the bench namespace");
  const dir = mkdtempSync(path.join(os.tmpdir(), "clawpatrol-bench-"));
  workDir = dir;
  let ok = false;
  try {
    const pki = makeTestPki(path.join(dir, "pki"), [HOST]);
    const nginxVersion = run([bin("nginx"), "-v"]).err.trim().replace(/^nginx version: /, "");
    const mitmVersion = (run(["mitmdump", "--version"]).out.match(/Mitmproxy: (\S+)/) ?? [])[1] ?? "?";
    const heyVersion = run(["dpkg-query", "-W", "-f=${Version}", "hey"]).out || "?";

    const nginx = startNginx(dir, pki);
    const mitm = startMitmdump(dir, pki);
    const gateway = await startGatewayProc(dir, pki);
    await waitForPort("127.0.0.1", 443, nginx);
    await waitForPort(MITM_PROXY.split(":")[0]!, Number(MITM_PROXY.split(":")[1]), mitm);
    const hops = H2 ? H2_HOPS.map((h) => ({ ...h, proc: startHop(`socat-${h.listen}`, h.listen, h.proxy, h.port, dir) })) : [];
    const gatewayCa = path.join(dir, "gateway", "state", CA_CERT_FILE);
    const mitmCa = path.join(dir, "mitmproxy", "mitmproxy-ca-cert.pem");
    for (const f of [gatewayCa, mitmCa]) if (!existsSync(f)) fail(`missing CA certificate ${f}`);
    for (const h of hops) await waitForPort(h.listen.split(":")[0]!, Number(h.listen.split(":")[1]), h.proc);

    const started = since();
    verifyPaths(pki, gatewayCa, mitmCa);
    if (H2) verifyH2Paths(pki, gatewayCa, mitmCa);

    const paths: PathDef[] = [
      { key: "direct", label: `direct (${nginxVersion}, 1 worker)`, auth: SECRET, pid: () => nginx.proc.pid },
      { key: "clawpatrol", label: "clawpatrol (MITM+CEL+inject)", auth: PLACEHOLDER, proxy: GATEWAY_PROXY, pid: () => gateway.proc.pid },
      { key: "mitmproxy", label: `mitmdump ${mitmVersion}`, auth: SECRET, proxy: MITM_PROXY, pid: () => mitm.proc.pid },
    ];
    console.log(
      `bench-https: hey ${heyVersion}, HTTP/1.1 keep-alive, GET ${URL} -> ${BODY.length}-byte JSON, ` +
        `${SECONDS} s per measurement after ${WARMUP_SECONDS} s warm-up, ${os.cpus().length} CPUs (shared; every process on them); ` +
        `servers up in ${started} s, checks done at ${since()} s`,
    );
    console.log(
      "checked: direct 200; clawpatrol intercepts (its CA only), injects the secret (upstream 200s only the real one), denies DELETE; mitmproxy 200" +
        (H2 ? "; HTTP/2 200 on every h2 path\n" : "\n"),
    );

    const loads: Load[] = CONCURRENCY.map((c) => ({ name: `c${c}`, c, paths: ["direct", "clawpatrol", "mitmproxy"] }));
    if (FIXED_RATE > 0) {
      loads.push({
        name: `${FIXED_RATE}/s`,
        c: FIXED_RATE_WORKERS,
        qpsPerWorker: Math.max(1, Math.round(FIXED_RATE / FIXED_RATE_WORKERS)),
        // mitmdump cannot sustain this rate here: it would only measure its queue.
        paths: ["direct", "clawpatrol"],
      });
    }
    const rows: Row[] = [];
    for (const load of loads) {
      for (const p of paths.filter((x) => load.paths.includes(x.key))) {
        await hey(load.qpsPerWorker ? 1 : WARMUP_SECONDS, load, p.auth, p.proxy);
        const before = cpuTotal(p.pid());
        const m0 = machineCpu();
        const r = await hey(SECONDS, load, p.auth, p.proxy);
        const cpu = cpuTotal(p.pid()) - before;
        const m1 = machineCpu();
        const stealPct = (100 * (m1.steal - m0.steal)) / Math.max(1, m1.total - m0.total);
        checkAll200(`${p.key} ${load.name}`, r, load.c);
        rows.push({ path: p, load, r, cpuUsPerReq: (cpu / r.total) * 1e6, stealPct });
        process.stdout.write(`  ${p.key} ${load.name}: ${fmt(r.rps)} req/s\n`);
      }
    }

    console.log("");
    const header = `${pad("path", 34)}${pad("load", 8, true)}${pad("req/s", 9, true)}${pad("p50 ms", 9, true)}${pad("p99 ms", 9, true)}${pad("CPU µs/req", 12, true)}${pad("requests", 10, true)}${pad("steal%", 8, true)}`;
    console.log(header);
    console.log("-".repeat(header.length));
    for (const row of rows) {
      console.log(
        `${pad(row.path.label, 34)}${pad(row.load.name, 8, true)}${pad(fmt(row.r.rps), 9, true)}${pad(fmt(row.r.p50ms, 2), 9, true)}` +
          `${pad(fmt(row.r.p99ms, 2), 9, true)}${pad(fmt(row.cpuUsPerReq), 12, true)}${pad(String(row.r.total), 10, true)}${pad(fmt(row.stealPct, 1), 8, true)}`,
      );
    }
    console.log(
      `(load: cN = N keep-alive connections as fast as they go; N/s = that fixed rate over ${FIXED_RATE_WORKERS} connections.\n` +
        " CPU µs/req: user+system time of the server process alone — nginx, the gateway, or mitmdump — over the measurement;\n" +
        " steal%: machine-wide CPU time taken by the hypervisor meanwhile — a noisy neighbour, not the bench)\n",
    );

    console.log("ratios (same run; goals from issue 2: ≥ 10× mitmproxy's req/s, ≤ 1 ms p99 added over direct):");
    const goal = (met: boolean) => (met ? "goal met" : "goal NOT met");
    for (const load of loads) {
      const get = (k: PathDef["key"]) => rows.find((r) => r.load === load && r.path.key === k);
      const d = get("direct")!, g = get("clawpatrol")!, m = get("mitmproxy");
      const added = g.r.p99ms - d.r.p99ms;
      const parts = [`clawpatrol p99 added over direct ${fmt(added, 2)} ms (${goal(added <= 1)})`];
      if (m) {
        const vsMitm = g.r.rps / m.r.rps;
        parts.unshift(`clawpatrol/mitmproxy req/s ${fmt(vsMitm, 1)}× (${goal(vsMitm >= 10)})`);
        parts.push(`clawpatrol/direct req/s ${fmt(g.r.rps / d.r.rps, 2)}`, `CPU/req clawpatrol/mitmproxy ${fmt(g.cpuUsPerReq / m.cpuUsPerReq, 2)}`);
      } else {
        parts.push(`p50 added ${fmt(g.r.p50ms - d.r.p50ms, 2)} ms`);
      }
      console.log(`  ${pad(load.name, 7)} ${parts.join("; ")}`);
    }
    console.log(
      "  (a closed-loop p99 through a saturated proxy is mostly queueing, about c / req/s; the fixed-rate row is the latency a request gains)",
    );

    if (H2) await h2Rows(Number(H2[1]), Number(H2[2]), { gateway: gateway.proc.pid, mitm: mitm.proc.pid, nginx: nginx.proc.pid }, rows);

    // The product's own cost is part of the measurement: one event per request.
    const jsonl = path.join(dir, "gateway", "state", "events.jsonl");
    const events = existsSync(jsonl) ? readFileSync(jsonl, "utf8").split("\n").filter(Boolean).length : 0;
    const sent = rows.filter((r) => r.path.key === "clawpatrol").reduce((n, r) => n + r.r.total, 0) + h2Sent;
    console.log(`\nclawpatrol had written ${events} events to events.jsonl (and sqlite); ${sent} measured requests went through it, plus warm-ups and checks`);
    ok = true;
  } finally {
    const stopping = performance.now();
    await stopAll();
    console.error(`bench-https: stopped the servers in ${((performance.now() - stopping) / 1000).toFixed(1)} s; total ${since()} s`);
    if (process.env.BENCH_KEEP === "1" || !ok) console.error(`work directory kept: ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

// Interrupted: take the servers down with us (they live in our namespace).
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    void stopAll().finally(() => {
      if (workDir && process.env.BENCH_KEEP !== "1") rmSync(workDir, { recursive: true, force: true });
      process.exit(130);
    });
  });
}

try {
  await main();
  // Leftover handles (child pipes) would otherwise keep the loop alive for a while.
  process.exit(0);
} catch (e) {
  if (e instanceof BenchFailure) {
    console.error(`bench-https FAILED: ${e.message}`);
    process.exit(1);
  }
  throw e;
}
