// A real PostgreSQL 15 cluster for integration tests: initdb in a temp dir,
// the postmaster on a free loopback port, an auth method chosen per test in
// pg_hba.conf (scram-sha-256, md5, password, trust), optionally TLS with a
// CA of its own (openssl, see pki.ts), a role with a password and a
// database. Runs as the `postgres` user when we are root (PostgreSQL
// refuses root). Clusters started in parallel get their own dirs and ports.
//
//   const pg = await startPostgres({ auth: "scram-sha-256", tls: true });
//   ... connect to pg.host:pg.port as pg.user / pg.password, db pg.database
//   await pg.stop();
import { chownSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Subprocess } from "bun";
import { makeTestPki } from "./pki.ts";

const BIN = "/usr/lib/postgresql/15/bin";
const isRoot = process.getuid?.() === 0;

export type PgAuthMethod = "scram-sha-256" | "md5" | "password" | "trust";

export interface PostgresOptions {
  /** pg_hba.conf method for TCP connections from 127.0.0.1. */
  auth: PgAuthMethod;
  /** Serve TLS with a CA of its own (server certificate for 127.0.0.1 and localhost). */
  tls?: boolean;
  /** With tls: only `hostssl` lines, plain TCP is rejected. Default false (`host`: both). */
  tlsOnly?: boolean;
  /** How the role's password is stored. Default: md5 for auth "md5", else scram-sha-256. */
  passwordEncryption?: "md5" | "scram-sha-256";
  user?: string;
  password?: string;
  database?: string;
  /** The IPv4 address to listen on (and accept TCP from its /32 and 127.0.0.1); default 127.0.0.1. */
  listen?: string;
  /** A fixed port instead of a free one picked at random. */
  port?: number;
}

export interface TestPostgres {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** The CA that signed the server certificate (tls only). */
  caCertPem?: string;
  caCertPath?: string;
  /** The cluster's directory (data, socket, log). */
  dir: string;
  /** Runs SQL as the superuser over the Unix socket; returns psql's unaligned output. */
  superuserSql(sql: string, database?: string): string;
  /** Fast shutdown, then the directory is removed. Safe to call twice. */
  stop(): Promise<void>;
}

/** Runs a command as the `postgres` user when we are root, as ourselves otherwise. */
function asPostgres(cmd: string[]): string[] {
  return isRoot ? ["runuser", "-u", "postgres", "--", ...cmd] : cmd;
}

function run(cmd: string[], input?: string): string {
  const r = Bun.spawnSync(asPostgres(cmd), { stdout: "pipe", stderr: "pipe", stdin: input === undefined ? "ignore" : Buffer.from(input) });
  if (r.exitCode !== 0) throw new Error(`${cmd[0]} failed (${r.exitCode}): ${r.stderr.toString()}${r.stdout.toString()}`);
  return r.stdout.toString();
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

function sqlLiteral(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

function sqlIdent(s: string): string {
  return `"${s.replaceAll('"', '""')}"`;
}

/** Makes `p` (and what is in it) the postgres user's, when we are root. */
function own(p: string): void {
  if (!isRoot) return;
  const ids = Bun.spawnSync(["id", "-u", "postgres"]).stdout.toString().trim();
  const gid = Bun.spawnSync(["id", "-g", "postgres"]).stdout.toString().trim();
  chownSync(p, Number(ids), Number(gid));
}

export async function startPostgres(options: PostgresOptions): Promise<TestPostgres> {
  const user = options.user ?? "app_rw";
  const password = options.password ?? "upstream-secret-" + Math.random().toString(36).slice(2);
  const database = options.database ?? "appdb";
  const dir = mkdtempSync(path.join(tmpdir(), "pgw-cluster-"));
  own(dir);
  const data = path.join(dir, "data");
  run([`${BIN}/initdb`, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]);

  let caCertPem: string | undefined;
  let caCertPath: string | undefined;
  const settings: string[] = [
    `listen_addresses = '${options.listen ?? "127.0.0.1"}'`,
    `unix_socket_directories = '${dir}'`,
    "fsync = off",
    "synchronous_commit = off",
    "full_page_writes = off",
    "shared_buffers = 16MB",
    "max_connections = 40",
    "log_connections = on",
  ];
  if (options.tls) {
    const pki = makeTestPki(path.join(dir, "pki"), [...new Set([options.listen ?? "127.0.0.1", "127.0.0.1", "localhost"])]);
    caCertPem = pki.caCertPem;
    caCertPath = pki.caCertPath;
    const cert = path.join(data, "server.crt");
    const key = path.join(data, "server.key");
    writeFileSync(cert, pki.certPem);
    writeFileSync(key, pki.keyPem, { mode: 0o600 });
    own(cert);
    own(key);
    settings.push("ssl = on", `ssl_cert_file = '${cert}'`, `ssl_key_file = '${key}'`);
  }
  const hostKind = options.tls && options.tlsOnly ? "hostssl" : "host";
  // Clients reach it from loopback, or (listening elsewhere) from anywhere: the test's namespaces decide who can route to it.
  const from = options.listen && options.listen !== "127.0.0.1" ? "0.0.0.0/0" : "127.0.0.1/32";
  const hba = [
    "local all all trust",
    `${hostKind} all all ${from} ${options.auth}`,
    ...(options.tls && options.tlsOnly ? [`hostnossl all all ${from} reject`] : []),
  ];
  writeFileSync(path.join(data, "pg_hba.conf"), hba.join("\n") + "\n");
  writeFileSync(path.join(data, "postgresql.auto.conf"), settings.join("\n") + "\n");
  for (const f of ["pg_hba.conf", "postgresql.auto.conf"]) own(path.join(data, f));

  // A port picked free can be taken by a parallel test before the postmaster binds it: retry.
  let proc: Subprocess | undefined;
  let port = 0;
  let lastLog = "";
  for (let attempt = 0; attempt < 5 && proc === undefined; attempt++) {
    port = options.port ?? (await freePort());
    const logPath = path.join(dir, `postgres-${attempt}.log`);
    const p = Bun.spawn(asPostgres([`${BIN}/postgres`, "-D", data, "-p", String(port)]), {
      stdout: "ignore",
      stderr: Bun.file(logPath),
    });
    if (await waitReady(p, port, dir)) proc = p;
    else {
      p.kill("SIGKILL");
      await p.exited;
      lastLog = await Bun.file(logPath).text().catch(() => "");
    }
  }
  if (proc === undefined) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`postgres did not start: ${lastLog}`);
  }

  const superuserSql = (sql: string, db = "postgres"): string =>
    run([`${BIN}/psql`, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", dir, "-p", String(port), "-U", "postgres", "-d", db], sql);

  const encryption = options.passwordEncryption ?? (options.auth === "md5" ? "md5" : "scram-sha-256");
  superuserSql(
    `SET password_encryption = ${sqlLiteral(encryption)};\n` +
      `CREATE ROLE ${sqlIdent(user)} LOGIN PASSWORD ${sqlLiteral(password)};\n` +
      `CREATE DATABASE ${sqlIdent(database)} OWNER ${sqlIdent(user)};\n`,
  );

  const running = proc;
  let stopped = false;
  return {
    host: options.listen ?? "127.0.0.1",
    port,
    user,
    password,
    database,
    caCertPem,
    caCertPath,
    dir,
    superuserSql,
    async stop() {
      if (stopped) return;
      stopped = true;
      // The postmaster's pid (runuser is its parent when we are root): SIGINT is a fast shutdown.
      const pid = Number((await Bun.file(path.join(data, "postmaster.pid")).text().catch(() => "")).split("\n")[0]);
      if (pid > 0) {
        try {
          process.kill(pid, "SIGINT");
        } catch {
          // already gone
        }
      } else running.kill("SIGINT");
      const timer = setTimeout(() => running.kill("SIGKILL"), 20_000);
      await running.exited;
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Waits until pg_isready answers on the port, or the postmaster exits. */
async function waitReady(p: Subprocess, port: number, socketDir: string): Promise<boolean> {
  let exited = false;
  void p.exited.then(() => {
    exited = true;
  });
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && !exited) {
    const r = Bun.spawnSync([`${BIN}/pg_isready`, "-q", "-h", socketDir, "-p", String(port), "-t", "2"]);
    if (r.exitCode === 0 && !exited) {
      // The TCP listener answers; make sure it is ours (our socket dir has the lock file).
      return Bun.file(path.join(socketDir, `.s.PGSQL.${port}.lock`)).exists();
    }
    await Bun.sleep(50);
  }
  return false;
}
