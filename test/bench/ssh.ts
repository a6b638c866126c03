// `make bench-ssh`: OpenSSH through the gateway's ssh endpoint against the
// same OpenSSH sshd 9.2 directly, one run of each:
//   1. scp of BENCH_SSH_MB (default 200) MB to the server,
//   2. BENCH_SSH_EXECS (default 200) sequential `ssh host true`.
// Both paths go through one socat hop as the ssh ProxyCommand: straight to
// sshd, or through the gateway's explicit proxy (HTTP CONNECT as a device),
// so the ratio is the gateway's own cost. The gateway runs as a process of
// its own (its CPU time read from /proc), terminates SSH with ssh2 (pure
// JavaScript under Bun), judges every request against a rule on
// ssh.command and replays the real key upstream. It prints throughput, the
// ratios, the ciphers each side negotiated and the gateway's CPU time; it
// asserts nothing about timing and fails only when a path does not do what
// it claims.
//
// Needs root (sshd, its test accounts). Knobs: BENCH_SSH_MB, BENCH_SSH_EXECS,
// BENCH_SSH_CIPHER (the client's -c, e.g. aes128-gcm@openssh.com), BENCH_KEEP=1.
// `--smoke` (or BENCH_SMOKE=1): 2 MB and 3 execs, only proves the bench
// still runs (ssh-smoke.test.ts).
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startSshd, type TestSshd } from "../integration/ssh/sshd.ts";
import { cpuSeconds, firstLine, tail } from "./proc-stats.ts";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BUN = process.execPath;

export interface SshBenchSettings {
  smoke: boolean;
  megabytes: number;
  execs: number;
  cipher?: string;
  keep: boolean;
}

export interface SshPathResult {
  path: "direct" | "clawpatrol";
  scpSeconds: number;
  scpMBps: number;
  execSeconds: number;
  execsPerSecond: number;
  /** What the client negotiated (from ssh -v): "cipher / mac, kex ALGORITHM". */
  cipher: string;
  /** The gateway's CPU seconds during the scp and the execs (clawpatrol only). */
  gatewayCpu?: { scp: number; execs: number };
}

export interface SshBenchResult {
  settings: SshBenchSettings;
  rows: SshPathResult[];
  /** ssh events the gateway wrote (one per judged request, one per channel close). */
  gatewayEvents: number;
  sshVersion: string;
}

export function settingsFromEnv(smoke = process.argv.includes("--smoke") || process.env.BENCH_SMOKE === "1"): SshBenchSettings {
  const num = (v: string | undefined, d: number) => (v && Number(v) > 0 ? Number(v) : d);
  return {
    smoke,
    megabytes: smoke ? 2 : num(process.env.BENCH_SSH_MB, 200),
    execs: smoke ? 3 : num(process.env.BENCH_SSH_EXECS, 200),
    ...(process.env.BENCH_SSH_CIPHER ? { cipher: process.env.BENCH_SSH_CIPHER } : {}),
    keep: process.env.BENCH_KEEP === "1",
  };
}

function fail(msg: string): never {
  throw new Error(`bench-ssh: ${msg}`);
}

async function run(cmd: string[], timeoutMs: number, env?: Record<string, string | undefined>): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", stdin: "ignore", ...(env ? { env } : {}) });
  const timer = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { code, out, err };
}

export async function runSshBench(s: SshBenchSettings, say: (line: string) => void = () => {}): Promise<SshBenchResult> {
  if (process.getuid?.() !== 0) fail("needs root (sshd and its test accounts)");
  const dir = mkdtempSync(path.join(os.tmpdir(), "clawpatrol-bench-ssh-"));
  let sshd: TestSshd | undefined;
  let gateway: ReturnType<typeof Bun.spawn> | undefined;
  try {
    sshd = await startSshd({ tag: `b${process.pid % 10000}` });
    const config = path.join(dir, "gateway.hcl");
    writeFileSync(
      config,
      `schema_version = 1
gateway {
  state_dir = "state"
  dashboard_listen = "127.0.0.1:0"
  proxy { listen = "127.0.0.1:0" }
  events { jsonl = "events.jsonl" }
}
defaults {
  verdict = "allow"
}
endpoint "ssh" "bench" {
  hosts      = ["${sshd.host}:${sshd.port}"]
  credential = ssh_key.bench
}
credential "ssh_key" "bench" {
  user        = "${sshd.keyUser}"
  secret_file = "${sshd.privateKeyPath}"
}
profile "bench" {
  credentials = [ssh_key.bench]
}
rule "no-rm" {
  endpoint  = ssh.bench
  condition = "ssh.verb == 'exec' && ssh.command.contains('rm -rf')"
  verdict   = "deny"
  reason    = "the bench's rule"
}
`,
    );
    const env: Record<string, string | undefined> = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("CLAWPATROL_")) env[k] = v;
    const log = path.join(dir, "gateway.log");
    gateway = Bun.spawn([BUN, path.join(HERE, "postgres-gateway-proc.ts"), config, "bench"], { env, stdout: "pipe", stderr: Bun.file(log) });
    const ready = await firstLine(gateway.stdout as ReadableStream<Uint8Array>, 30_000);
    if ("error" in ready) fail(`the gateway did not start (${ready.error}):\n${tail(log)}`);
    const info = JSON.parse(ready.line) as { proxy: string; device: string; token: string };
    const proxyPort = info.proxy.slice(info.proxy.lastIndexOf(":") + 1);
    const gwPid = gateway.pid;

    const payload = path.join(dir, "payload.bin");
    writeFileSync(payload, Buffer.alloc(s.megabytes * 1024 * 1024, 0x5a));
    // Both paths reach the same host:port: a known_hosts file each. The same
    // key exchange both ways: OpenSSH would pick sntrup761x25519 directly
    // (which ssh2 lacks), several times the CPU of curve25519 per connection.
    const common = (key: string) => [
      "-F", "/dev/null",
      "-o", "KexAlgorithms=curve25519-sha256",
      "-o", "BatchMode=yes",
      "-o", "StrictHostKeyChecking=no",
      "-o", `UserKnownHostsFile=${path.join(dir, `known_hosts.${key}`)}`,
      "-o", "ConnectTimeout=30",
      ...(s.cipher ? ["-c", s.cipher] : []),
    ];
    const paths = {
      direct: {
        options: [...common("direct"), "-o", `IdentityFile=${sshd.privateKeyPath}`, "-o", "IdentitiesOnly=yes", "-o", `ProxyCommand=socat - TCP:${sshd.host}:${sshd.port},nodelay`],
        login: `${sshd.keyUser}@${sshd.host}`,
      },
      clawpatrol: {
        options: [
          ...common("clawpatrol"),
          "-o", "PubkeyAuthentication=no",
          "-o", `ProxyCommand=socat - PROXY:127.0.0.1:${sshd.host}:${sshd.port},proxyport=${proxyPort},proxyauth=${info.device}:${info.token}`,
        ],
        login: `agent@${sshd.host}`,
      },
    } as const;

    const rows: SshPathResult[] = [];
    for (const key of ["direct", "clawpatrol"] as const) {
      const p = paths[key];
      // What it negotiated, and that it is what it claims (the gateway logs in as the key's user; a denied exec is denied).
      const probe = await run(["ssh", "-v", ...p.options, "-p", String(sshd.port), p.login, "id -un"], 60_000);
      if (probe.code !== 0 || probe.out.trim() !== sshd.keyUser) fail(`${key}: ssh failed (${probe.code}):\n${probe.err.split("\n").slice(-6).join("\n")}`);
      const kex = /kex: server->client cipher: (\S+) MAC: (\S+)/.exec(probe.err);
      const kexAlg = /kex: algorithm: (\S+)/.exec(probe.err)?.[1] ?? "?";
      const cipher = kex ? `${kex[1]} / ${kex[2]}, kex ${kexAlg}` : "?";
      if (key === "clawpatrol") {
        const denied = await run(["ssh", ...p.options, "-p", String(sshd.port), p.login, "rm -rf /nonexistent"], 60_000);
        if (denied.code === 0 || !denied.err.includes('rule "no-rm"')) fail(`clawpatrol: the rule on ssh.command did not deny: ${denied.err.trim()}`);
      }

      const remote = `bench-${key}.bin`;
      const cpu0 = key === "clawpatrol" ? cpuSeconds(gwPid) : undefined;
      const t0 = performance.now();
      const scp = await run(["scp", "-q", ...p.options, "-P", String(sshd.port), payload, `${p.login}:${remote}`], 600_000);
      const scpSeconds = (performance.now() - t0) / 1000;
      if (scp.code !== 0) fail(`${key}: scp failed (${scp.code}): ${scp.err.trim()}`);
      const size = statSync(`/home/${sshd.keyUser}/${remote}`).size;
      rmSync(`/home/${sshd.keyUser}/${remote}`, { force: true });
      if (size !== s.megabytes * 1024 * 1024) fail(`${key}: the server got ${size} bytes`);
      const cpu1 = key === "clawpatrol" ? cpuSeconds(gwPid) : undefined;

      const t1 = performance.now();
      for (let i = 0; i < s.execs; i++) {
        const r = await run(["ssh", ...p.options, "-p", String(sshd.port), p.login, "true"], 60_000);
        if (r.code !== 0) fail(`${key}: ssh true #${i + 1} failed (${r.code}): ${r.err.trim()}`);
      }
      const execSeconds = (performance.now() - t1) / 1000;
      const cpu2 = key === "clawpatrol" ? cpuSeconds(gwPid) : undefined;
      const total = (c: { user: number; system: number }) => c.user + c.system;
      rows.push({
        path: key,
        scpSeconds,
        scpMBps: s.megabytes / scpSeconds,
        execSeconds,
        execsPerSecond: s.execs / execSeconds,
        cipher,
        ...(cpu0 && cpu1 && cpu2 ? { gatewayCpu: { scp: total(cpu1) - total(cpu0), execs: total(cpu2) - total(cpu1) } } : {}),
      });
      say(`${key}: scp ${scpSeconds.toFixed(2)} s, ${s.execs} execs ${execSeconds.toFixed(2)} s`);
    }
    const eventsFile = path.join(dir, "state", "events.jsonl");
    const gatewayEvents = (await Bun.file(eventsFile).text().catch(() => "")).split("\n").filter((l) => l.includes('"kind":"ssh"')).length;
    const sshVersion = (await run(["ssh", "-V"], 10_000)).err.trim();
    return { settings: s, rows, gatewayEvents, sshVersion };
  } finally {
    if (gateway) {
      gateway.kill("SIGTERM");
      await gateway.exited;
    }
    await sshd?.stop();
    if (!s.keep) rmSync(dir, { recursive: true, force: true });
  }
}

export function report(r: SshBenchResult): string[] {
  const d = r.rows.find((x) => x.path === "direct");
  const g = r.rows.find((x) => x.path === "clawpatrol");
  const lines = [
    `bench-ssh: ${r.sshVersion}; one run each; ${os.cpus().length} CPUs shared by everything (the gateway, sshd, ssh, socat)`,
    `path         scp ${r.settings.megabytes} MB        ${r.settings.execs} x ssh true      cipher (server->client), kex`,
  ];
  for (const x of r.rows) {
    lines.push(
      `${x.path.padEnd(12)} ${x.scpMBps.toFixed(1).padStart(7)} MB/s (${x.scpSeconds.toFixed(2)} s)  ${x.execsPerSecond.toFixed(1).padStart(6)}/s (${x.execSeconds.toFixed(2)} s)  ${x.cipher}`,
    );
  }
  if (d && g) {
    lines.push(`ratio clawpatrol/direct: scp throughput ${(g.scpMBps / d.scpMBps).toFixed(2)}x, ssh true rate ${(g.execsPerSecond / d.execsPerSecond).toFixed(2)}x`);
    if (g.gatewayCpu) {
      lines.push(
        `gateway CPU: scp ${g.gatewayCpu.scp.toFixed(2)} s (${((g.gatewayCpu.scp / g.scpSeconds) * 100).toFixed(0)}% of a core), ` +
          `${((g.gatewayCpu.execs / r.settings.execs) * 1000).toFixed(1)} ms per ssh true`,
      );
    }
  }
  lines.push(`gateway ssh events: ${r.gatewayEvents}`);
  return lines;
}

if (import.meta.main) {
  const s = settingsFromEnv();
  const r = await runSshBench(s, (l) => console.error(l));
  for (const l of report(r)) console.log(l);
}
