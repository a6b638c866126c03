// A real ClickHouse server (Debian's 18.16) for integration tests: a config
// and users.xml in a temp dir, the native (TCP) and HTTP interfaces on free
// ports, optionally HTTPS and native TLS with a CA of its own (see pki.ts),
// one password user for the tests and a passwordless `default` user reachable
// from 127.0.0.1 only (the tests' own admin path). Starts in ~0.7 s here.
// Servers started in parallel get their own dirs and ports.
//
//   const ch = await startClickHouse({ user: "analyst", password: "real" });
//   ... native: ch.host:ch.tcpPort, HTTP: ch.host:ch.httpPort as ch.user / ch.password
//   ch.sql("SELECT count() FROM db.t")      // as `default`, via clickhouse-client
//   await ch.pause(); await ch.resume();     // an outage: same ports, same data
//   await ch.stop();
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Subprocess } from "bun";
import { makeTestPki } from "./pki.ts";

const SERVER = "/usr/sbin/clickhouse-server";
const CLIENT = "/usr/bin/clickhouse-client";

export interface ClickHouseOptions {
  user?: string;
  password?: string;
  /** An IPv4 address to listen on besides 127.0.0.1 (the test user may connect from anywhere). */
  listen?: string;
  /** Also serve HTTPS (httpsPort) and native TLS (tcpSecurePort) with a CA of its own. */
  tls?: boolean;
}

export interface TestClickHouse {
  /** Where the test user connects: `listen`, else 127.0.0.1. */
  host: string;
  tcpPort: number;
  httpPort: number;
  /** tls only. */
  httpsPort?: number;
  tcpSecurePort?: number;
  /** The CA that signed the server certificate (tls only). */
  caCertPem?: string;
  caCertPath?: string;
  user: string;
  password: string;
  /** The server's directory (config, data, logs). */
  dir: string;
  /** Runs SQL as `default` over 127.0.0.1 with clickhouse-client; returns its TSV output. Throws on failure. */
  sql(sql: string): string;
  /** Kills the server (an outage); the ports and data stay for resume(). */
  pause(): Promise<void>;
  /** Starts it again on the same ports with the same data. */
  resume(): Promise<void>;
  /** Stops the server and removes the directory. Safe to call twice. */
  stop(): Promise<void>;
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

function xmlText(s: string): string {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

interface Ports {
  tcp: number;
  http: number;
  https?: number;
  tcpSecure?: number;
}

function configXml(dir: string, hosts: string[], ports: Ports, tls: boolean): string {
  const tlsPart = tls
    ? `
  <https_port>${ports.https}</https_port>
  <tcp_port_secure>${ports.tcpSecure}</tcp_port_secure>
  <openSSL>
    <server>
      <certificateFile>${dir}/pki/leaf.crt</certificateFile>
      <privateKeyFile>${dir}/pki/leaf.key</privateKeyFile>
      <verificationMode>none</verificationMode>
      <loadDefaultCAFile>false</loadDefaultCAFile>
      <cacheSessions>true</cacheSessions>
      <disableProtocols>sslv2,sslv3</disableProtocols>
      <preferServerCiphers>true</preferServerCiphers>
    </server>
  </openSSL>`
    : "";
  return `<?xml version="1.0"?>
<yandex>
  <logger>
    <level>information</level>
    <log>${dir}/server.log</log>
    <errorlog>${dir}/server.err.log</errorlog>
    <console>0</console>
  </logger>
${hosts.map((h) => `  <listen_host>${h}</listen_host>`).join("\n")}
  <tcp_port>${ports.tcp}</tcp_port>
  <http_port>${ports.http}</http_port>${tlsPart}
  <path>${dir}/data/</path>
  <tmp_path>${dir}/tmp/</tmp_path>
  <user_files_path>${dir}/user_files/</user_files_path>
  <format_schema_path>${dir}/format_schemas/</format_schema_path>
  <users_config>${dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <max_concurrent_queries>20</max_concurrent_queries>
  <mlock_executable>false</mlock_executable>
</yandex>
`;
}

function usersXml(user: string, password: string): string {
  return `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>1000000000</max_memory_usage></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile><quota>default</quota>
    </default>
    <${user}>
      <password>${xmlText(password)}</password>
      <networks><ip>::/0</ip></networks>
      <profile>default</profile><quota>default</quota>
    </${user}>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`;
}

/** Waits until /ping answers on the HTTP port, or the server exits. */
async function waitReady(p: Subprocess, httpPort: number): Promise<boolean> {
  let exited = false;
  void p.exited.then(() => {
    exited = true;
  });
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && !exited) {
    const ok = await fetch(`http://127.0.0.1:${httpPort}/ping`)
      .then((r) => r.ok)
      .catch(() => false);
    if (ok && !exited) return true;
    await Bun.sleep(50);
  }
  return false;
}

export async function startClickHouse(options: ClickHouseOptions = {}): Promise<TestClickHouse> {
  const user = options.user ?? "analyst";
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(user)) throw new Error(`unusable ClickHouse user name: ${user}`);
  const password = options.password ?? "upstream-secret-" + Math.random().toString(36).slice(2);
  const tls = options.tls === true;
  const dir = mkdtempSync(path.join(tmpdir(), "chw-server-"));
  for (const d of ["data", "tmp", "user_files", "format_schemas"]) mkdirSync(path.join(dir, d));
  const hosts = [...new Set(["127.0.0.1", options.listen ?? "127.0.0.1"])];
  let caCertPem: string | undefined;
  let caCertPath: string | undefined;
  if (tls) {
    const pki = makeTestPki(path.join(dir, "pki"), [...new Set([...hosts, "localhost"])]);
    caCertPem = pki.caCertPem;
    caCertPath = pki.caCertPath;
    writeFileSync(path.join(dir, "pki/leaf.key"), pki.keyPem, { mode: 0o600 });
  }
  writeFileSync(path.join(dir, "users.xml"), usersXml(user, password));

  let proc: Subprocess | undefined;
  let ports: Ports | undefined;
  const launch = async (attempt: number): Promise<boolean> => {
    writeFileSync(path.join(dir, "config.xml"), configXml(dir, hosts, ports!, tls));
    const p = Bun.spawn([SERVER, `--config-file=${dir}/config.xml`], {
      cwd: dir,
      stdout: Bun.file(path.join(dir, `stdout-${attempt}.log`)),
      stderr: Bun.file(path.join(dir, `stderr-${attempt}.log`)),
    });
    if (await waitReady(p, ports!.http)) {
      proc = p;
      return true;
    }
    p.kill("SIGKILL");
    await p.exited;
    return false;
  };

  // A port picked free can be taken by a parallel test before the server binds it: retry with new ones.
  for (let attempt = 0; attempt < 5 && proc === undefined; attempt++) {
    ports = { tcp: await freePort(), http: await freePort() };
    if (tls) {
      ports.https = await freePort();
      ports.tcpSecure = await freePort();
    }
    await launch(attempt);
  }
  if (proc === undefined) {
    const err = await Bun.file(path.join(dir, "server.err.log")).text().catch(() => "");
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`clickhouse-server did not start: ${err.slice(-2000)}`);
  }
  const fixed = ports!;

  let restarts = 10;
  const halt = async (): Promise<void> => {
    const p = proc;
    proc = undefined;
    if (p === undefined) return;
    // SIGKILL: a graceful stop waits ~10 s for idle connections; inserted parts are already on disk.
    p.kill("SIGKILL");
    await p.exited;
  };
  let removed = false;
  return {
    host: options.listen ?? "127.0.0.1",
    tcpPort: fixed.tcp,
    httpPort: fixed.http,
    httpsPort: fixed.https,
    tcpSecurePort: fixed.tcpSecure,
    caCertPem,
    caCertPath,
    user,
    password,
    dir,
    sql(sql: string): string {
      const r = Bun.spawnSync([CLIENT, "--host", "127.0.0.1", "--port", String(fixed.tcp), "--user", "default", "--multiquery", "-q", sql], {
        stdout: "pipe",
        stderr: "pipe",
      });
      if (r.exitCode !== 0) throw new Error(`clickhouse-client failed (${r.exitCode}): ${r.stderr.toString()}`);
      return r.stdout.toString();
    },
    pause: halt,
    async resume() {
      if (proc !== undefined) return;
      // The same ports: another process may have taken one meanwhile; then this throws.
      if (!(await launch(restarts++))) throw new Error("clickhouse-server did not restart on its ports");
    },
    async stop() {
      await halt();
      if (removed) return;
      removed = true;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
