// The processes the HTTPS benches start, in one place (bench-https and the
// soak): a registry that logs and stops them, nginx as the TLS upstream that
// answers 200 only to the real secret, and the gateway as a process of its
// own (gateway-proc.ts), ready once it prints its listening line.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { firstLine, tail } from "./proc-stats.ts";
import type { TestPki } from "../integration/support/pki.ts";

const HERE = import.meta.dir;

/** A command from PATH, or from an sbin directory a non-login root shell may lack. */
export const bin = (name: string) => Bun.which(name) ?? (["/usr/sbin", "/sbin"].map((d) => `${d}/${name}`).find((f) => existsSync(f)) ?? name);

/** What a bench fails with: a path that does not do what it claims, a server that does not start. */
export class BenchFailure extends Error {}
export const fail = (msg: string): never => {
  throw new BenchFailure(msg);
};

export interface Proc {
  name: string;
  proc: Bun.Subprocess;
  log: string;
}

const procs: Proc[] = [];

/** Starts `cmd` with stderr (and stdout, unless piped) into `logPath`; stopAll() ends it. */
export function spawnLogged(name: string, cmd: string[], logPath: string, env?: Record<string, string | undefined>, stdout: "pipe" | "log" = "log"): Proc {
  const file = Bun.file(logPath);
  const proc = Bun.spawn(cmd, { env: env ?? process.env, stdin: "ignore", stdout: stdout === "pipe" ? "pipe" : file, stderr: file });
  const p = { name, proc, log: logPath };
  procs.push(p);
  return p;
}

/** SIGTERM to every process started, the last first; SIGKILL to what is left after `graceMs`. */
export async function stopAll(graceMs = 10_000): Promise<void> {
  for (const p of [...procs].reverse()) if (p.proc.exitCode === null) p.proc.kill("SIGTERM");
  await Promise.race([Promise.all(procs.map((p) => p.proc.exited)), Bun.sleep(graceMs)]);
  for (const p of procs) if (p.proc.exitCode === null) p.proc.kill("SIGKILL");
}

export async function waitForPort(host: string, port: number, p: Proc, timeoutMs = 30_000): Promise<void> {
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

export interface NginxSpec {
  /** `listen` arguments, each served with TLS, e.g. "127.0.0.1:443". */
  listen: string[];
  /** server_name: the names in the PKI's leaf. */
  serverNames: string[];
  urlPath: string;
  /** 200 with `body` only when `Authorization: Bearer SECRET` arrived: through the gateway that proves injection on every request. */
  secret: string;
  body: string;
  /** One line per request served (its status), to count events against; off when unset. */
  accessLog?: string;
}

/** nginx-light as a single process (master_process off: its /proc stat is the whole server's CPU). */
export function startNginx(dir: string, pki: TestPki, spec: NginxSpec): Proc {
  const ndir = path.join(dir, "nginx");
  const tmp = path.join(ndir, "tmp");
  mkdirSync(tmp, { recursive: true });
  writeFileSync(path.join(ndir, "leaf.crt"), pki.certPem);
  writeFileSync(path.join(ndir, "leaf.key"), pki.keyPem, { mode: 0o600 });
  const log = spec.accessLog ? `log_format served '$status';\n  access_log ${spec.accessLog} served;` : "access_log off;";
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
  ${log}
  server_tokens off;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  client_body_temp_path ${tmp}/body;
  proxy_temp_path ${tmp}/proxy;
  fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi;
  scgi_temp_path ${tmp}/scgi;
  server {
${spec.listen.map((l) => `    listen ${l} ssl backlog=4096;`).join("\n")}
    server_name ${spec.serverNames.join(" ")};
    ssl_certificate ${ndir}/leaf.crt;
    ssl_certificate_key ${ndir}/leaf.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location = ${spec.urlPath} {
      default_type application/json;
      if ($http_authorization != "Bearer ${spec.secret}") {
        return 401 '{"error":"missing or wrong credential"}';
      }
      return 200 '${spec.body}';
    }
  }
}
`,
  );
  return spawnLogged("nginx", [bin("nginx"), "-e", `${ndir}/error.log`, "-p", ndir, "-c", `${ndir}/nginx.conf`], path.join(ndir, "stdout.log"));
}

export interface GatewayProcSpec {
  /** The environment added to ours (CLAWPATROL_* of ours is dropped): the secrets, a log level. */
  env: Record<string, string>;
  /** `bun` flags before the script, e.g. --cpu-prof. */
  bunFlags?: string[];
  /** How long it may take to start on a loaded machine. */
  timeoutMs?: number;
}

/** The gateway (gateway-proc.ts) on `configPath`, its log in stderr.log beside it; resolves with its ready line. */
export async function startGatewayProc(configPath: string, spec: GatewayProcSpec): Promise<{ p: Proc; ready: { proxy: string } }> {
  const env: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("CLAWPATROL_")) env[k] = v;
  Object.assign(env, spec.env);
  const timeoutMs = spec.timeoutMs ?? 60_000;
  const p = spawnLogged("clawpatrol", [process.execPath, ...(spec.bunFlags ?? []), path.join(HERE, "gateway-proc.ts"), configPath], path.join(path.dirname(configPath), "stderr.log"), env, "pipe");
  const ready = await firstLine(p.proc.stdout as ReadableStream<Uint8Array>, timeoutMs);
  if ("error" in ready) {
    if (ready.error === "timeout") return fail(`clawpatrol did not start within ${timeoutMs / 1000} s:\n${tail(p.log)}`);
    return fail(`clawpatrol exited (${await p.proc.exited}) before listening:\n${tail(p.log)}`);
  }
  return { p, ready: JSON.parse(ready.line) as { proxy: string } };
}
