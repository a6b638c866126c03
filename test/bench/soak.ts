// `make soak`: the gateway under sustained load and bursts, through its
// explicit proxy and through the tunnel (a device's WireGuard into the
// gateway's userspace stack), with TLS interception (a minted leaf), one CEL
// rule, a bearer_token credential injected, events to SQLite + JSON lines,
// against a local nginx that answers 200 only to the real secret.
//
//   1. checks: 200 with injection and DELETE denied by the rule, each way
//   2. for each way (SOAK_VIA, default "proxy,tunnel"):
//      a. a cold burst: B new connections at once (TLS + one request each)
//      b. N keep-alive connections for SOAK_SECONDS, with a second burst of
//         B new connections halfway through; RSS (from /proc) and the JS heap
//         (from /metrics on the control socket) sampled every
//         SOAK_SAMPLE_SECONDS and printed as they come
//   3. the gateway stopped with SIGTERM; its events counted against what
//      nginx served (its access log): one event per request, none lost
//
// It prints requests, errors by kind, p50/p99 per phase, the samples and the
// RSS/heap slope after the warm-up of each way. It fails (exit 1) on any
// error or a lost event; it asserts nothing about speed or the slope.
//
// Needs root: it re-runs itself in a network namespace of its own, so nginx
// can listen on localhost:443 (hey puts a non-443 port into the SNI) and
// nothing collides with other users' loopback ports. The tunnel's device is
// a second namespace (hey and wireguard-go in it; a veth to ours as the
// underlay); its name carries our pid, and it is removed on the way out.
//
// Knobs (environment): SOAK_CONNECTIONS (N, default 200), SOAK_BURST
// (B, default N), SOAK_SECONDS (default 120), SOAK_TUNNEL_SECONDS (the
// tunnel's keep-alive phase; default SOAK_SECONDS), SOAK_VIA ("proxy",
// "tunnel" or both, comma-separated), SOAK_SAMPLE_SECONDS (default 10),
// SOAK_WARMUP_SECONDS (samples before this are not in the slope; default
// 30), SOAK_GC=1 (a full collection in the gateway before each sample),
// SOAK_TRACE=1 (the gateway writes JSC's heap statistics every 10 s to
// heap-trace.jsonl in the work directory), SOAK_BUN_FLAGS (bun's flags for
// the gateway, e.g. --smol), SOAK_GC_SECONDS (the gateway asks for a
// collection, Bun.gc(false), this often), SOAK_KEEP=1 (keep the work
// directory), SOAK_LOG_LEVEL (the gateway's, e.g. debug; its log is in the
// work directory).
import { BenchFailure, bin, fail, startGatewayProc, startNginx, stopAll, waitForPort, type Proc } from "./servers.ts";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Database } from "bun:sqlite";
import { makeTestPki, type TestPki } from "../integration/support/pki.ts";
import { Topology } from "../integration/support/netns.ts";
import { CA_CERT_FILE } from "../../app/tls/ca.ts";
import { controlFetch } from "../../app/control/client.ts";
import { generateKeyPair } from "../../app/net/wireguard/keys.ts";

const BUN = process.execPath;

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
const TUNNEL_SECONDS = Number(process.env.SOAK_TUNNEL_SECONDS ?? SECONDS);
const SAMPLE_SECONDS = Number(process.env.SOAK_SAMPLE_SECONDS ?? 10);
const WARMUP_SECONDS = Number(process.env.SOAK_WARMUP_SECONDS ?? 30);
/** A full collection in the gateway before each sample: the heap then shows what is held, not garbage. */
const FORCE_GC = process.env.SOAK_GC === "1";
const TRACE = process.env.SOAK_TRACE === "1";
type Via = "proxy" | "tunnel";
const VIA = (process.env.SOAK_VIA ?? "proxy,tunnel").split(",").map((v) => v.trim()) as Via[];
for (const v of VIA) if (v !== "proxy" && v !== "tunnel") throw new Error(`SOAK_VIA: "${v}" is neither proxy nor tunnel`);
/** The proxy's agents CONNECT to this name (nginx on our loopback). */
const HOST = "localhost";
/** The device's agents reach this name through the tunnel (nginx on UPSTREAM_IP, the device's hosts file). */
const TUNNEL_HOST = "api.soak.test";
const URL_PATH = "/v1/soak";
const PROXY = "127.0.0.1:3128";
/** The onboarding API, for the tunnel's device. */
const PUBLIC_API = "127.0.0.1:8380";
// Our own namespace: these addresses collide with nothing outside it.
const WG_HOST = "10.77.0.1";
const WG_DEVICE_UNDERLAY = "10.77.0.2";
const WG_PORT = 51820;
const UPSTREAM_IP = "10.78.0.1";

const rand = (n: number) => Buffer.from(crypto.getRandomValues(new Uint8Array(n))).toString("hex");
const SECRET = `sk-soak-${rand(16)}`;
const PLACEHOLDER = `sk-place-${"0".repeat(32)}`;
const BODY = '{"ok":true,"answer":"soak"}';

function gatewayConfig(pki: TestPki, tunnel: boolean): string {
  const wireguard = `
  wireguard {
    mode = "userspace"
    listen = "${WG_HOST}:${WG_PORT}"
    subnet_cidr = "10.87.0.0/24"
    endpoint = "${WG_HOST}:${WG_PORT}"
  }`;
  return `schema_version = 1
gateway {
  state_dir = "state"
  dashboard_listen = "${PUBLIC_API}"
  proxy { listen = "${PROXY}" }
  events { jsonl = "events.jsonl" }${tunnel ? wireguard : ""}
}
defaults {
  verdict = "allow"
  unknown_host = "deny"
  profile = profile.soak
  # Every proxy connection of the soak is one device's (anonymous), every
  # tunnel connection another's: a burst of new connections is over the
  # default quotas (200 new flows/s with a burst of 400, 1024 open), which
  # refuse the rest by design.
  quota_new_flows_per_second = 5000
  quota_tcp_flows = 8192
  # The tunnel's upstream is an address of the gateway host here.
  allow_destinations = ["${UPSTREAM_IP}"]
}
endpoint "https" "upstream" {
  hosts = ["${HOST}", "${TUNNEL_HOST}"]
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
  const env: Record<string, string> = { CLAWPATROL_SECRET_SOAK: SECRET };
  if (process.env.SOAK_LOG_LEVEL) env.CLAWPATROL_LOG_LEVEL = process.env.SOAK_LOG_LEVEL;
  if (process.env.SOAK_GC_SECONDS) env.CLAWPATROL_BENCH_GC_SECONDS = process.env.SOAK_GC_SECONDS;
  if (TRACE) env.CLAWPATROL_BENCH_HEAP_TRACE = path.join(gdir, "heap-trace.jsonl");
  const bunFlags = (process.env.SOAK_BUN_FLAGS ?? "").split(" ").filter(Boolean);
  const { p, ready } = await startGatewayProc(path.join(gdir, "gateway.hcl"), { env, bunFlags });
  if (ready.proxy !== PROXY) fail(`clawpatrol listens on ${ready.proxy}, expected ${PROXY}`);
  return p;
}

// ---------------------------------------------------------------------------
// The tunnel: a device namespace with wireguard-go, enrolled through the
// onboarding API like a real device (approved on the control socket).

interface Device {
  topo: Topology;
  ns: string;
  /** Holds the device's hosts file (TUNNEL_HOST -> UPSTREAM_IP), which `ip netns exec` mounts over /etc/hosts. */
  etcDir: string;
}

/** The device's namespace, its underlay veth to ours (WG_HOST on our side) and its hosts file: before the gateway, which binds WireGuard to WG_HOST. */
function makeDevice(): Device {
  const topo = new Topology("cpsoak");
  const device: Device = { topo, ns: "", etcDir: "" };
  try {
    device.ns = topo.namespace("dev");
    device.etcDir = `/etc/netns/${device.ns}`;
    mkdirSync(device.etcDir, { recursive: true });
    writeFileSync(path.join(device.etcDir, "hosts"), `127.0.0.1 localhost\n${UPSTREAM_IP} ${TUNNEL_HOST}\n`);
    topo.veth(device.ns, "h", `${WG_HOST}/30`, `${WG_DEVICE_UNDERLAY}/30`);
    return device;
  } catch (e) {
    stopDevice(device);
    throw e;
  }
}

/** Enrolls the device (onboarding start, approve on the control socket, poll) and brings its wireguard-go up with the gateway as its peer. */
async function enrollDevice(d: Device, work: string, controlSocket: string): Promise<void> {
  const keys = generateKeyPair();
  const post = async (p: string, body: unknown) => {
    const r = await fetch(`http://${PUBLIC_API}${p}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
    if (!r.ok) fail(`onboarding ${p}: HTTP ${r.status} ${await r.text()}`);
    return r.json();
  };
  const started = (await post("/api/onboard/start", { name: "soak-device", public_key: keys.publicKey })) as { code: string; device_code: string };
  const approve = await controlFetch(controlSocket, `/api/onboard/${started.code}/approve`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ profile: "soak", operator: "cli:soak" }),
  });
  if (approve.status !== 200) fail(`onboarding approve: HTTP ${approve.status} ${await approve.text()}`);
  const polled = (await post("/api/onboard/poll", { device_code: started.device_code })) as { status: string; device: { address: string }; gateway: { public_key: string } };
  if (polled.status !== "approved") fail(`onboarding poll: ${polled.status}`);
  writeFileSync(path.join(work, "device.key"), `${keys.privateKey}\n`, { mode: 0o600 });
  const wg = await d.topo.wireguardGo(d.ns);
  wg.wg(`set wg0 private-key ${work}/device.key peer ${polled.gateway.public_key} allowed-ips 0.0.0.0/0 endpoint ${WG_HOST}:${WG_PORT} persistent-keepalive 25`);
  const ip = (args: string) => {
    const r = Bun.spawnSync([bin("ip"), "-n", d.ns, ...args.split(" ")], { stderr: "pipe" });
    if (r.exitCode !== 0) fail(`ip -n ${d.ns} ${args}: ${r.stderr.toString().trim()}`);
  };
  ip(`addr add ${polled.device.address}/32 dev wg0`);
  ip("link set wg0 mtu 1420 up");
  ip(`route add ${UPSTREAM_IP}/32 dev wg0`);
}

function stopDevice(d: Device): void {
  d.topo.destroy();
  if (d.etcDir) rmSync(d.etcDir, { recursive: true, force: true });
}
// ---------------------------------------------------------------------------
// Load (hey) and what it reports.

interface HeyResult {
  statuses: Map<number, number>;
  /** hey's error distribution: kind → count. */
  errors: Map<string, number>;
  /** One of hey's error lines per kind, as it printed it. */
  examples: Map<string, string>;
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
  const examples = new Map<string, string>();
  for (const line of (out.split("Error distribution:")[1] ?? "").split("\n")) {
    const m = /^\s*\[(\d+)\]\s+(.*)$/.exec(line);
    if (!m) continue;
    const kind = errorKind(m[2]!);
    errors.set(kind, (errors.get(kind) ?? 0) + Number(m[1]));
    if (!examples.has(kind)) examples.set(kind, m[2]!.slice(0, 200));
  }
  let total = 0;
  for (const n of statuses.values()) total += n;
  return { statuses, errors, examples, total, p50ms: num(/50% in ([\d.]+) secs/) * 1000, p99ms: num(/99% in ([\d.]+) secs/) * 1000, rps: num(/Requests\/sec:\s+([\d.]+)/) };
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

/** How an agent reaches the upstream: through the proxy from our namespace, or from the device's namespace through its tunnel. */
interface Way {
  via: Via;
  /** Prepended to commands: `ip netns exec DEV` for the tunnel. */
  prefix: string[];
  url: string;
  /** curl's and hey's proxy arguments. */
  proxyArgs: string[];
}

function heyCommand(way: Way, args: string[]): string[] {
  return [...way.prefix, "hey", ...args, "-H", `Authorization: Bearer ${PLACEHOLDER}`, ...way.proxyArgs, way.url];
}

async function hey(way: Way, args: string[]): Promise<HeyResult> {
  const proc = Bun.spawn(heyCommand(way, args), { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) fail(`hey ${args.join(" ")} (${way.via}) exited ${code}: ${err.trim()}`);
  return parseHey(out);
}

/** B new connections at once, one request each (CONNECT or the device's SYN, the agent's TLS, the upstream dial). */
const burst = (way: Way) => hey(way, ["-n", String(BURST), "-c", String(BURST), "-disable-keepalive", "-t", "60"]);
/** N keep-alive connections, as fast as they go, for `seconds`. */
const keepAlive = (way: Way, seconds: number) => hey(way, ["-z", `${seconds}s`, "-c", String(N), "-t", "60"]);

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

function curl(way: Way, args: string[]): { code: number; status: number; body: string; err: string } {
  const r = Bun.spawnSync([...way.prefix, "curl", "-sS", "--max-time", "15", "-w", "\n%{http_code}", ...way.proxyArgs, ...args, way.url], { stdout: "pipe", stderr: "pipe" });
  const out = r.stdout.toString();
  const nl = out.lastIndexOf("\n");
  return { code: r.exitCode ?? -1, status: Number(out.slice(nl + 1)), body: out.slice(0, nl), err: r.stderr.toString() };
}

const SAMPLE_HEADER = `${"t s".padStart(6)}${"RSS MB".padStart(9)}${"heap MB".padStart(9)}${"flows".padStart(7)}${"pooled".padStart(8)}${"TLS".padStart(6)}${"queued".padStart(8)}${"ext MB".padStart(8)}${"events".padStart(8)}`;
const sampleRow = (s: Sample) =>
  `${fmt(s.t).padStart(6)}${fmt(s.rssMb, 1).padStart(9)}${fmt(s.heapMb, 1).padStart(9)}${fmt(s.flowsOpen).padStart(7)}${fmt(s.pooled).padStart(8)}${fmt(s.handshakes).padStart(6)}${fmt(s.queued).padStart(8)}${fmt(s.externalMb, 1).padStart(8)}${fmt(s.sinkPending).padStart(8)}`;

const PHASE_HEADER = `${"phase".padEnd(32)}${"requests".padStart(10)}${"req/s".padStart(9)}${"p50 ms".padStart(9)}${"p99 ms".padStart(9)}  errors`;
const phaseRow = (name: string, r: HeyResult) =>
  `${name.padEnd(32)}${String(r.total).padStart(10)}${fmt(r.rps).padStart(9)}${fmt(r.p50ms, 1).padStart(9)}${fmt(r.p99ms, 1).padStart(9)}  ${kinds(errorsOf(r))}`;

interface WayResult {
  phases: { name: string; r: HeyResult }[];
}

/** One way's phases: a cold burst, then keep-alive load for `seconds` with a burst halfway; samples printed as they come. */
async function soakWay(way: Way, seconds: number, gatewayPid: number, socket: string): Promise<WayResult> {
  console.log(`\n== through the ${way.via}: ${N} keep-alive connections for ${seconds} s, bursts of ${BURST}; load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  console.log(SAMPLE_HEADER);
  const t0 = performance.now();
  const samples: Sample[] = [];
  const take = async () => {
    const s = await sample(gatewayPid, socket, t0);
    samples.push(s);
    console.log(sampleRow(s));
  };
  await take();
  const phases: { name: string; r: HeyResult }[] = [];
  phases.push({ name: `${way.via} cold burst c${BURST}`, r: await burst(way) });

  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      await Bun.sleep(SAMPLE_SECONDS * 1000);
      if (sampling) await take();
    }
  })();
  const loadStarted = (performance.now() - t0) / 1000;
  const steady = keepAlive(way, seconds);
  await Bun.sleep((seconds * 1000) / 2);
  const hot = await burst(way);
  const steadyResult = await steady;
  sampling = false;
  await sampler;
  await take();
  phases.push({ name: `${way.via} keep-alive c${N}`, r: steadyResult }, { name: `${way.via} burst c${BURST} under load`, r: hot });
  // Indented: the summary after every way repeats them unindented.
  for (const { name, r } of phases) console.log(`  ${phaseRow(name, r)}`);

  const after = samples.filter((s) => s.t >= loadStarted + WARMUP_SECONDS);
  const rssSlope = slopePerMinute(after.map((s) => ({ t: s.t, y: s.rssMb })));
  const heapSlope = slopePerMinute(after.map((s) => ({ t: s.t, y: s.heapMb })));
  const range = (xs: number[]) => `${fmt(Math.min(...xs), 1)}-${fmt(Math.max(...xs), 1)}`;
  console.log(
    `${way.via}: slope after warm-up (${after.length} samples): RSS ${fmt(rssSlope, 2)} MB/min, heap ${fmt(heapSlope, 2)} MB/min; RSS after warm-up ${range(after.map((s) => s.rssMb))} MB; peak RSS ${fmt(Math.max(...samples.map((s) => s.rssMb)), 1)} MB`,
  );
  return { phases };
}

async function main(): Promise<void> {
  if (Bun.spawnSync([bin("ip"), "link", "set", "lo", "up"]).exitCode !== 0) fail("cannot bring lo up in the soak namespace");
  const dir = mkdtempSync(path.join(os.tmpdir(), "clawpatrol-soak-"));
  let device: Device | undefined;
  let ok = false;
  try {
    const pki = makeTestPki(path.join(dir, "pki"), [HOST, TUNNEL_HOST]);
    const gdir = path.join(dir, "gateway");
    mkdirSync(gdir, { recursive: true });
    const tunnel = VIA.includes("tunnel");
    writeFileSync(path.join(gdir, "gateway.hcl"), gatewayConfig(pki, tunnel));
    const listen = ["127.0.0.1:443"];
    if (tunnel) {
      const added = Bun.spawnSync([bin("ip"), "addr", "add", `${UPSTREAM_IP}/32`, "dev", "lo"], { stderr: "pipe" });
      if (added.exitCode !== 0) fail(`upstream address: ${added.stderr.toString().trim()}`);
      listen.push(`${UPSTREAM_IP}:443`);
    }
    const nginx = startNginx(dir, pki, { listen, serverNames: [HOST, TUNNEL_HOST], urlPath: URL_PATH, secret: SECRET, body: BODY, accessLog: path.join(dir, "nginx", "access.log") });
    await waitForPort("127.0.0.1", 443, nginx);
    const socket = path.join(gdir, "state", "control.sock");
    const caPath = path.join(gdir, "state", CA_CERT_FILE);
    const ways: Way[] = [];
    if (tunnel) device = makeDevice();
    const gateway = await startGateway(gdir);
    if (device) await enrollDevice(device, dir, socket);
    for (const via of VIA) {
      if (via === "proxy") ways.push({ via, prefix: [], url: `https://${HOST}${URL_PATH}`, proxyArgs: ["-x", `http://${PROXY}`] });
      else ways.push({ via, prefix: [bin("ip"), "netns", "exec", device!.ns], url: `https://${TUNNEL_HOST}${URL_PATH}`, proxyArgs: [] });
    }

    // 1. Each way is what it claims: the gateway's CA, the secret injected, the rule live.
    let served = 0;
    let denied = 0;
    const auth = ["-H", `Authorization: Bearer ${PLACEHOLDER}`];
    for (const way of ways) {
      const good = curl(way, ["--cacert", caPath, ...auth]);
      if (good.code !== 0 || good.status !== 200 || good.body !== BODY) fail(`check (${way.via}): expected 200 with injection, got curl ${good.code} HTTP ${good.status} ${good.err}${good.body.slice(0, 200)}`);
      const del = curl(way, ["--cacert", caPath, "-X", "DELETE", ...auth]);
      if (del.status !== 403) fail(`check (${way.via}): DELETE should be denied by the rule, got HTTP ${del.status} ${del.err}`);
      served++;
      denied++;
    }
    console.log(`soak: ${N} keep-alive connections, bursts of ${BURST} new connections, through ${VIA.join(" and ")}; samples every ${SAMPLE_SECONDS} s (slope after ${WARMUP_SECONDS} s); ${os.cpus().length} CPUs, shared`);
    console.log(`checked: 200 with the secret injected and DELETE denied by rule no-deletes, through ${VIA.join(" and ")}`);

    // 2. The load, one way after the other.
    const phases: { name: string; r: HeyResult }[] = [];
    for (const way of ways) phases.push(...(await soakWay(way, way.via === "tunnel" ? TUNNEL_SECONDS : SECONDS, gateway.proc.pid, socket)).phases);

    console.log(`\n${PHASE_HEADER}`);
    const allErrors = new Map<string, number>();
    for (const { name, r } of phases) {
      const e = errorsOf(r);
      for (const [k, n] of e) allErrors.set(k, (allErrors.get(k) ?? 0) + n);
      served += r.statuses.get(200) ?? 0;
      console.log(phaseRow(name, r));
    }

    // 3. Stop the gateway (SIGTERM flushes its sinks) and count its events against what nginx served.
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
    for (const { name, r } of phases) for (const [kind, line] of r.examples) console.log(`  ${name}: ${kind}: ${line}`);
    // What the kernel saw in our namespace (the proxy's listener, nginx's): overflowed accept queues show here.
    const nstat = Bun.spawnSync([bin("nstat"), "-az", "TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtTCPReqQFullDrop", "TcpExtSyncookiesSent", "TcpExtTCPAbortOnData", "TcpEstabResets", "TcpOutRsts"], { stdout: "pipe" });
    const counters = nstat.stdout.toString().split("\n").filter((l) => /^\w+\s+\d+/.test(l)).map((l) => l.split(/\s+/).slice(0, 2).join(" "));
    console.log(`kernel (our namespace): ${counters.join(", ")}`);

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
    if (device) stopDevice(device);
    if (process.env.SOAK_KEEP === "1" || !ok) console.error(`work directory kept: ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

let stopping = false;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    // The device's namespace and hosts file live outside ours: main's finally removes them once stopAll lets it go on.
    void stopAll();
  });
}

try {
  await main();
  process.exit(0);
} catch (e) {
  if (e instanceof BenchFailure) {
    console.error(`soak FAILED: ${e.message}`);
    process.exit(1);
  }
  throw e;
}
