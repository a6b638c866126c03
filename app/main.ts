#!/usr/bin/env bun
// `clawpatrol-gateway <command>`: the gateway's roles and its operator commands.
import { existsSync, readFileSync } from "node:fs";
import tls from "node:tls";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadPolicy, formatConfigError } from "./policy/load.ts";
import { runFixtures } from "./policy/fixtures.ts";
import { Database } from "bun:sqlite";
import { openStateDb, STATE_DB_FILE } from "./store/db.ts";
import { MAX_QUERY_LIMIT, queryActions, type StoredAction } from "./store/actions.ts";
import { formatReplay, replayActions } from "./policy/replay.ts";
import { parseDuration } from "./approvers/config.ts";
import { SecretStore } from "./store/secrets.ts";
import { DeviceError } from "./store/devices.ts";
import { loadOrCreateCA, CA_CERT_FILE } from "./tls/ca.ts";
import { caFingerprint } from "./tls/fingerprint.ts";
import { upstreamTrust } from "./tls/trust.ts";
import { joinInfo } from "./control/downloads.ts";
import { gatewayCommand } from "./control/operator-command.ts";
import { ensureFirstOperator } from "./control/auth/first-operator.ts";
import { startGateway, ConfigRejected } from "./gateway.ts";
import { parseDemoListen, startDemoEcho, type DemoEcho } from "./demo/echo.ts";
import type { Policy } from "./policy/types.ts";
import { log } from "./log.ts";
import { controlFetch, readSse, ControlUnavailable } from "./control/client.ts";
import { cliOperator, printTable, terminalSafe, UsageError } from "./control/cli.ts";
import { devicesCommand } from "./control/onboard/devices-command.ts";
import { formatEventLine } from "./events/sinks/stderr.ts";
import { versionLine } from "./version.ts";
import type { GatewayEvent } from "./events/types.ts";

const USAGE = `usage: clawpatrol-gateway <command> [--config PATH]

roles:
  all                       run every role in one process (development, make run);
                            --demo-upstream HOST:PORT also serves the offline demo's HTTPS echo
                            server there, its certificate from the gateway's CA (make run)
  gateway                   run the gateway role (capture, rules, credentials, events)
  dnsvip                    run the DNS-VIP responder (gateway { dns { listen } }, UDP and TCP)
  dashboard                 run the dashboard and public API (dashboard_listen); talks to
                            the gateway over its control socket

operator commands:
  validate [PATH]           check a config (file or directory); exit 0 valid, 2 invalid
  import clawrden POLICY.yaml [--endpoint NAME]
                            a clawrden policy as command-gate rules (HCL on stdout; what it
                            could not map on stderr)
  test CONFIG FIXTURES      replay fixture requests and SQL statements; exit 0 all match, 1 drift, 2 error
  replay --config NEW [--current PATH] [--since 24h]
                            judge the recorded actions again under NEW and under the running
                            config; print per rule what would change; exit 0 nothing, 1 changes
  ca show                   print the interception CA certificate (PEM); its SHA-256
                            fingerprint (what devices pin) on stderr
  ca bundle                 print the system's trusted roots plus the interception CA (PEM),
                            for SSL_CERT_FILE, REQUESTS_CA_BUNDLE or a --cacert of a proxy client
  secret set NAME           store a secret read from standard input (encrypted at rest)
  secret list               list stored secret names (never values)
  secret delete NAME
  devices add NAME --profile P      register a proxy device; prints its token once
  devices list                      every device (proxy and WireGuard), revoked ones too
  devices pending                   devices waiting for approval (from \`clawpatrol join\`)
  devices approve CODE --profile P  enroll a waiting device (the gateway adds its peer)
  devices deny CODE
  devices revoke NAME               cut a device off (its WireGuard peer is removed)
  devices set-profile NAME P
  devices kill NAME [--reason R]    the kill switch: end the device's runs now (gated commands killed,
                                    the agent with them), deny its commands until released
  devices kill-all [--reason R]     the same for every device
  devices release NAME | release-all   turn the kill switch off again
  devices killed                    where the kill switch is on
  approvals list            requests held for approval (from the running gateway)
  approvals approve ID [--reason R]
  approvals deny ID [--reason R]
  events history [--device D] [--verdict V] [--since TIME] [--limit N]
  events tail               follow events live (from the running gateway)
  operator add NAME --role admin|approver|viewer   a dashboard/API account; prints a one-time password once
  operator list | remove NAME | passwd NAME | role NAME R | disable NAME | enable NAME
  operator token add NAME [TOKEN-NAME] --role R    an API token (printed once)
  operator token remove NAME TOKEN-NAME
  version                   print the running version
  backup FILE [--include-key] [--passphrase-file F]
                            one archive of the state directory (database, CA, keys); secrets
                            and private keys stay encrypted under the master key, which goes in
                            only with --include-key, and then the archive is encrypted with a
                            passphrase (--passphrase-file, else CLAWPATROL_BACKUP_PASSPHRASE)
  update BUNDLE|URL [--root DIR] [--keys DIR] [--wait SECONDS]
                            verify a bundle (checksum, signature by a key in DIR, default
                            /etc/clawpatrol/update-keys), install it beside the running version
                            under ROOT (default /opt/clawpatrol), switch, restart the roles, and
                            switch back by itself when they do not come up healthy (within
                            --wait, default 90 s)
  update keygen DIR         a signing key pair for make bundle (update.key, update.pub)
  restore FILE [--key MASTER_KEY_FILE] [--passphrase-file F]
                            put a backup into the state directory (the gateway stopped); files
                            it replaces are moved to STATE_DIR/pre-restore-TIME/

--config PATH defaults to /etc/clawpatrol/gateway.hcl (or gateway.d/), else
config/default.hcl in a checkout.`;


/** `--since 24h` (a duration back from now) or an ISO-8601 time: ms since the epoch. */
function replaySince(v: string): number {
  const back = parseDuration(v);
  if (back !== undefined) return Date.now() - back;
  const at = Date.parse(v);
  if (!Number.isFinite(at)) throw new UsageError(`--since must be a duration like "24h" or an ISO-8601 time, not ${JSON.stringify(v)}`);
  return at;
}

/** Every action recorded since `since`, newest first, read a page at a time (a day of them need not fit in memory). */
function* recordedActions(db: Database, since: number): Generator<StoredAction> {
  let beforeId: number | undefined;
  for (;;) {
    const page = queryActions(db, { since, limit: MAX_QUERY_LIMIT, ...(beforeId !== undefined ? { beforeId } : {}) });
    if (page.length === 0) return;
    yield* page;
    beforeId = page[page.length - 1]!.id;
  }
}

interface HeldApproval {
  id: string;
  device: string;
  rule: string;
  request: string;
  awaiting: string;
  decidable: boolean;
  deadline: string;
}

interface Args {
  positional: string[];
  flags: Map<string, string>;
}

/** Flags that take no value. */
const BOOLEAN_FLAGS = new Set(["help", "include-key"]);

function parseArgs(argv: string[]): Args {
  const positional: string[] = [];
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      if (eq > 0) flags.set(a.slice(2, eq), a.slice(eq + 1));
      else if (BOOLEAN_FLAGS.has(a.slice(2))) flags.set(a.slice(2), "1");
      else {
        const v = argv[i + 1];
        if (v === undefined) throw new UsageError(`${a} needs a value`);
        flags.set(a.slice(2), v);
        i += 1;
      }
    } else if (a === "-h") flags.set("help", "1");
    else positional.push(a);
  }
  return { positional, flags };
}

export function defaultConfigPath(): string {
  for (const p of ["/etc/clawpatrol/gateway.hcl", "/etc/clawpatrol/gateway.d"]) if (existsSync(p)) return p;
  return path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "config", "default.hcl");
}

async function loadOrExit(configPath: string): Promise<Policy> {
  const r = await loadPolicy(configPath);
  if (!r.ok) {
    for (const e of r.errors) console.error(formatConfigError(e));
    process.exit(2);
  }
  return r.policy;
}

async function readStdin(): Promise<string> {
  const text = await new Response(Bun.stdin.stream()).text();
  return text.replace(/\r?\n$/, "");
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  const [command, ...rest] = args.positional;
  if (!command || args.flags.has("help")) {
    console.log(USAGE);
    return command || args.flags.has("help") ? 0 : 2;
  }
  const configPath = args.flags.get("config") ?? defaultConfigPath();

  switch (command) {
    case "all":
    case "gateway": {
      const demo = args.flags.get("demo-upstream");
      if (demo !== undefined && command !== "all") throw new UsageError("--demo-upstream is for the all role (make run)");
      const demoListen = demo === undefined ? undefined : parseDemoListen(demo);
      if (demo !== undefined && !demoListen) throw new UsageError(`--demo-upstream: "${demo}" is not HOST:PORT`);
      return runGateway(configPath, command, demoListen);
    }

    case "dnsvip":
      return runDnsVip(configPath);

    case "dashboard":
      return runDashboard(configPath);

    case "version":
      console.log(versionLine());
      return 0;

    case "update": {
      const { updateCommand } = await import("./update/cli.ts");
      const { BundleError } = await import("./update/bundle.ts");
      try {
        const socket = rest[0] === "keygen" ? "" : (await loadOrExit(configPath)).gateway.controlSocket;
        return await updateCommand(rest, args.flags, socket, (line) => console.error(line));
      } catch (e) {
        if (e instanceof BundleError) {
          console.error(`clawpatrol-gateway: ${e.message}`);
          return 1;
        }
        throw e;
      }
    }

    case "backup":
    case "restore":
      return backupCommand(command, rest, args.flags, configPath);

    case "validate": {
      const target = rest[0] ?? configPath;
      const r = await loadPolicy(target);
      if (!r.ok) {
        for (const e of r.errors) console.error(formatConfigError(e));
        console.error(`${r.errors.length} error${r.errors.length === 1 ? "" : "s"}`);
        return 2;
      }
      for (const w of r.warnings) console.error(`warning: ${formatConfigError(w)}`);
      const p = r.policy;
      console.log(
        `${target}: ok (${p.endpoints.size} endpoints, ${p.credentials.size} credentials, ${p.profiles.size} profiles, ${p.rules.length} rules)`,
      );
      return 0;
    }

    case "import": {
      // A clawrden policy as command-gate rules (app/gate/import-clawrden.ts): HCL on stdout, what was not mapped on stderr.
      const [kind, file] = rest;
      if (kind !== "clawrden" || !file) throw new UsageError("import clawrden POLICY.yaml [--endpoint NAME]");
      const { importClawrden, ImportError } = await import("./gate/import-clawrden.ts");
      try {
        const r = importClawrden(readFileSync(file, "utf8"), args.flags.get("endpoint") ?? "clawrden", path.basename(file));
        process.stdout.write(r.hcl);
        for (const n of r.notes) console.error(`not mapped: ${n}`);
        return 0;
      } catch (e) {
        if (e instanceof ImportError || (e as NodeJS.ErrnoException).code === "ENOENT") {
          console.error((e as Error).message);
          return 2;
        }
        throw e;
      }
    }

    case "test": {
      const [config, fixtures] = rest;
      if (!config || !fixtures) throw new UsageError("test needs CONFIG and FIXTURES");
      const r = await loadPolicy(config);
      if (!r.ok) {
        for (const e of r.errors) console.error(formatConfigError(e));
        return 2;
      }
      const result = await runFixtures(r.policy, fixtures);
      (result.exitCode === 0 ? console.log : console.error)(result.report);
      return result.exitCode;
    }

    case "replay": {
      const candidatePath = args.flags.get("config");
      if (!candidatePath) throw new UsageError("replay needs --config NEW (the candidate config)");
      const current = await loadOrExit(args.flags.get("current") ?? defaultConfigPath());
      const candidate = await loadOrExit(candidatePath);
      const since = replaySince(args.flags.get("since") ?? "24h");
      const dbFile = path.join(current.gateway.stateDir, STATE_DB_FILE);
      if (!existsSync(dbFile)) throw new UsageError(`no state database at ${dbFile} (is --current the running gateway's config?)`);
      const db = new Database(dbFile, { readonly: true });
      try {
        const report = replayActions(current, candidate, recordedActions(db, since));
        process.stdout.write(formatReplay(report));
        return report.changes.length === 0 ? 0 : 1;
      } finally {
        db.close();
      }
    }

    case "ca": {
      if (rest[0] !== "show" && rest[0] !== "bundle") throw new UsageError("ca show | ca bundle");
      const policy = await loadOrExit(configPath);
      const ca = await loadOrCreateCA(policy.gateway.stateDir);
      if (rest[0] === "bundle") {
        // The system's roots (else Bun's, on a system without a store), so passed-through hosts still verify.
        const system = upstreamTrust.systemRoots();
        const roots = system.length > 0 ? system : [...tls.rootCertificates];
        const pems = [...roots, ca.certPem].map((p) => (p.endsWith("\n") ? p : `${p}\n`));
        // ~200 KiB: wait until the pipe took it all, since main's caller exits the process at once.
        await new Promise<void>((resolve, reject) => process.stdout.write(pems.join(""), (e) => (e ? reject(e) : resolve())));
        console.error(`${roots.length} system roots and the gateway CA (SHA-256 ${caFingerprint(ca.certPem)})`);
        return 0;
      }
      process.stdout.write(ca.certPem.endsWith("\n") ? ca.certPem : `${ca.certPem}\n`);
      // On stderr, so `ca show > ca.crt` still writes just the certificate.
      console.error(`SHA-256 fingerprint: ${caFingerprint(ca.certPem)}   (clawpatrol join URL --ca-sha256 FINGERPRINT)`);
      return 0;
    }

    case "secret": {
      const [sub, name] = rest;
      const policy = await loadOrExit(configPath);
      const db = openStateDb(policy.gateway.stateDir);
      const store = new SecretStore(db, policy.gateway.stateDir);
      try {
        if (sub === "set" && name) {
          const value = await readStdin();
          if (!value) throw new UsageError("secret set reads the value from standard input; it was empty");
          store.set(name, value);
          const known = [...policy.credentials.values()].some((c) => c.name === name);
          console.error(`secret "${name}" stored${known ? "" : " (no credential of that name is configured yet)"}`);
          return 0;
        }
        if (sub === "list") {
          for (const n of store.names()) console.log(n);
          return 0;
        }
        if (sub === "delete" && name) {
          if (!store.delete(name)) {
            console.error(`no secret named "${name}"`);
            return 1;
          }
          return 0;
        }
        throw new UsageError("secret set NAME | secret list | secret delete NAME");
      } finally {
        db.close();
      }
    }

    case "devices":
      return devicesCommand(rest, args.flags, await loadOrExit(configPath));

    case "approvals": {
      const policy = await loadOrExit(configPath);
      const socket = policy.gateway.controlSocket;
      const [sub, id] = rest;
      if (sub === "list") {
        const res = await controlFetch(socket, "/api/approvals");
        const body = (await res.json()) as { approvals?: HeldApproval[]; error?: { message: string } };
        if (!res.ok) throw new UsageError(body.error?.message ?? `HTTP ${res.status}`);
        const rows = (body.approvals ?? []).map((a) => [
          a.id,
          terminalSafe(a.device),
          terminalSafe(a.rule),
          // `sql DB@host: statement` for a held statement (app/approvers/describe.ts).
          terminalSafe(a.request),
          a.decidable ? "you" : a.awaiting,
          a.deadline.slice(11, 19),
        ]);
        if (rows.length === 0) console.error("no requests are held");
        else printTable(["ID", "DEVICE", "RULE", "REQUEST", "WAITING FOR", "UNTIL"], rows);
        return 0;
      }
      if ((sub === "approve" || sub === "deny") && id) {
        const payload: Record<string, string> = { operator: cliOperator() };
        const reason = args.flags.get("reason");
        if (reason !== undefined) payload.reason = reason;
        const res = await controlFetch(socket, `/api/approvals/${encodeURIComponent(id)}/${sub}`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(payload),
        });
        const body = (await res.json()) as { error?: { message: string } };
        if (!res.ok) {
          console.error(`clawpatrol-gateway: ${body.error?.message ?? `HTTP ${res.status}`}`);
          return 1;
        }
        console.error(`${sub === "approve" ? "approved" : "denied"} ${id}`);
        return 0;
      }
      throw new UsageError("approvals list | approvals approve ID [--reason R] | approvals deny ID [--reason R]");
    }

    case "events": {
      const policy = await loadOrExit(configPath);
      const socket = policy.gateway.controlSocket;
      const sub = rest[0];
      if (sub === "history") {
        const q = new URLSearchParams();
        for (const k of ["device", "verdict", "since", "limit"]) {
          const v = args.flags.get(k);
          if (v !== undefined) q.set(k, v);
        }
        const res = await controlFetch(socket, `/api/events?${q}`);
        const body = (await res.json()) as { events?: GatewayEvent[]; error?: { message: string } };
        if (!res.ok) throw new UsageError(body.error?.message ?? `HTTP ${res.status}`);
        for (const e of [...(body.events ?? [])].reverse()) console.log(formatEventLine(e));
        return 0;
      }
      if (sub === "tail") {
        const res = await controlFetch(socket, "/api/events/stream");
        await readSse(res, (name, data) => {
          if (name === "event") console.log(formatEventLine(data as GatewayEvent));
        });
        return 0;
      }
      throw new UsageError("events history | events tail");
    }

    case "operator": {
      const policy = await loadOrExit(configPath);
      const { operatorCommand, OperatorUsage } = await import("./control/auth/cli.ts");
      const db = openStateDb(policy.gateway.stateDir);
      try {
        return await operatorCommand(rest, args.flags, {
          db,
          actor: cliOperator(),
          out: (line) => console.log(line),
          err: (line) => console.error(line),
        });
      } catch (e) {
        if (e instanceof OperatorUsage) throw new UsageError(e.message);
        throw e;
      } finally {
        db.close();
      }
    }

    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

/** The backup passphrase: --passphrase-file, else CLAWPATROL_BACKUP_PASSPHRASE; undefined when neither is given. */
function backupPassphrase(flags: Map<string, string>): string | undefined {
  const file = flags.get("passphrase-file");
  const p = file !== undefined ? readFileSync(file, "utf8").replace(/\r?\n$/, "") : process.env.CLAWPATROL_BACKUP_PASSPHRASE;
  if (p !== undefined && p.length < 12) throw new UsageError("the backup passphrase needs at least 12 characters");
  return p;
}

async function backupCommand(command: "backup" | "restore", rest: string[], flags: Map<string, string>, configPath: string): Promise<number> {
  const { makeBackup, restoreBackup, BackupError } = await import("./store/backup.ts");
  const file = rest[0];
  if (!file) throw new UsageError(`${command} needs FILE`);
  const policy = await loadOrExit(configPath);
  const stateDir = policy.gateway.stateDir;
  try {
    if (command === "backup") {
      const includeKey = flags.has("include-key");
      const passphrase = backupPassphrase(flags);
      if (includeKey && !passphrase) throw new UsageError("--include-key encrypts the archive: give --passphrase-file F or CLAWPATROL_BACKUP_PASSPHRASE");
      const { archive, manifest } = makeBackup(stateDir, { includeKey, ...(passphrase ? { passphrase } : {}) });
      const { writeFileSync, renameSync } = await import("node:fs");
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, archive, { mode: 0o600 });
      renameSync(tmp, file);
      console.error(
        `backup of ${stateDir} written to ${file} (${archive.length} bytes; CA ${manifest.caSha256}; ` +
          (includeKey ? "with the master key, encrypted with the passphrase)" : "without the master key: keep master.key apart, restore needs it)"),
      );
      return 0;
    }
    // A running gateway would keep writing its own database over the restored one.
    try {
      await controlFetch(policy.gateway.controlSocket, "/api/approvals");
      console.error(`clawpatrol-gateway: the gateway is running (${policy.gateway.controlSocket}); stop it and the dashboard first (systemctl stop clawpatrol-gateway clawpatrol-dashboard clawpatrol-dnsvip)`);
      return 1;
    } catch (e) {
      if (!(e instanceof ControlUnavailable)) throw e;
    }
    const keyFile = flags.get("key");
    const passphrase = backupPassphrase(flags);
    const r = restoreBackup(readFileSync(file), stateDir, {
      ...(passphrase ? { passphrase } : {}),
      ...(keyFile ? { masterKey: readFileSync(keyFile) } : {}),
    });
    console.error(`restored ${r.restored.join(", ")} into ${stateDir} (backup of ${r.manifest.created}, CA ${r.manifest.caSha256})`);
    if (r.movedAside) console.error(`the files it replaced are in ${r.movedAside}`);
    return 0;
  } catch (e) {
    if (e instanceof BackupError) {
      console.error(`clawpatrol-gateway: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

/** Runs until SIGINT/SIGTERM, then closes and exits 0. */
function untilSignalled(close: () => Promise<void>): Promise<number> {
  const stop = async () => {
    log.info("shutting down");
    await close();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop());
  process.on("SIGTERM", () => void stop());
  return new Promise<number>(() => {
    /* runs until signalled */
  });
}

async function runDnsVip(configPath: string): Promise<number> {
  const { startDnsVip, DnsNotConfigured } = await import("./dns/role.ts");
  const { watchPolicy } = await import("./policy/reload.ts");
  let policy = await loadOrExit(configPath);
  let dns;
  try {
    dns = await startDnsVip(() => policy);
  } catch (e) {
    if (e instanceof DnsNotConfigured) {
      console.error(`clawpatrol-gateway dnsvip: ${e.message}`);
      return 2;
    }
    throw e;
  }
  // Reloads change the fixed names (clawpatrol.internal); the VIPs come from the database.
  const watcher = watchPolicy(configPath, {
    onPolicy: (next) => {
      if (JSON.stringify(next.gateway.dns) !== JSON.stringify(policy.gateway.dns)) log.warn("gateway.dns changes take effect when dnsvip restarts");
      policy = next;
    },
    onErrors: (errors) => log.error(`config rejected, keeping the last good policy:\n  ${errors.map(formatConfigError).join("\n  ")}`),
  });
  const a = dns.responder.address;
  console.error(`clawpatrol dnsvip answering on ${a.host}:${a.port} (UDP and TCP; config ${configPath})`);
  return untilSignalled(async () => {
    watcher.close();
    await dns.close();
  });
}

async function runDashboard(configPath: string): Promise<number> {
  const { startDashboard } = await import("./control/dashboard-role.ts");
  let d;
  try {
    d = await startDashboard({ configPath });
  } catch (e) {
    if (e instanceof ConfigRejected) {
      for (const line of e.errors) console.error(line);
      return 2;
    }
    throw e;
  }
  const a = d.server.address;
  console.error(`clawpatrol dashboard on ${d.server.scheme}://${a.host}:${a.port} (gateway control socket ${d.policy().gateway.controlSocket})`);
  return untilSignalled(() => d.close());
}

async function runGateway(configPath: string, role: "all" | "gateway", demoListen?: { host: string; port: number }): Promise<number> {
  let gw;
  try {
    gw = await startGateway({ configPath, role });
  } catch (e) {
    if (e instanceof ConfigRejected) {
      for (const line of e.errors) console.error(line);
      return 2;
    }
    throw e;
  }
  let demo: DemoEcho | undefined;
  if (demoListen) {
    try {
      demo = await startDemoEcho(gw.ca, demoListen);
    } catch (e) {
      await gw.close();
      console.error(
        `clawpatrol-gateway: the demo echo server cannot listen on ${demoListen.host}:${demoListen.port}: ${(e as Error).message}` +
          " (`make run DEMO_UPSTREAM=` starts the gateway without it)",
      );
      return 1;
    }
  }
  const running = gw;
  // `systemctl reload`: re-read the config now; a bad one is logged and the last good policy kept.
  process.on("SIGHUP", () => void gw.reload());
  const policy = gw.policy();
  const caPath = path.join(policy.gateway.stateDir, CA_CERT_FILE);
  const lines = [`clawpatrol gateway running (config ${configPath})`, `  CA certificate: ${caPath}`];
  for (const p of gw.proxies) lines.push(`  proxy (HTTP CONNECT and SOCKS5): ${p.address.host}:${p.address.port}`);
  const first = gw.proxies[0];
  if (first) {
    const relative = path.relative(process.cwd(), caPath);
    const shownCa = relative && !relative.startsWith("..") ? relative : caPath;
    const curl = `curl --cacert ${shownCa} -x http://${first.address.host}:${first.address.port}`;
    const demoEndpoint = demo && [...policy.endpoints.values()].find((e) => e.settings?.["trustGatewayCa"] === true && e.hosts.includes("localhost"));
    if (demo && !demoEndpoint) {
      lines.push(`  demo echo server: https://localhost:${demo.port} (no endpoint with trust_gateway_ca = true claims localhost in this config)`);
    } else if (demo) {
      const at = `https://localhost:${demo.port}`;
      lines.push(
        `  try it offline (${at} is an echo server beside the gateway, its certificate from the gateway's CA):`,
        "    # the agent holds a placeholder; the echo shows the header that arrived: the real secret, masked on the way back",
        `    ${curl} -H 'Authorization: Bearer clawpatrol-placeholder-demo' ${at}/headers`,
        "    # a rule denies it: 403 with the rule and the reason",
        `    ${curl} -X DELETE ${at}/delete`,
      );
    }
    if (policy.endpoints.has("https.httpbin")) {
      // The embedded default: show the two things the product does.
      lines.push(
        demo ? "  and with internet:" : "  try it:",
        "    # the agent holds a placeholder; httpbin echoes the real secret the gateway injected (masked on the way back)",
        `    ${curl} -H 'Authorization: Bearer clawpatrol-placeholder-demo' https://httpbin.org/headers`,
        "    # a rule denies it: 403 with the rule and the reason",
        `    ${curl} -X DELETE https://httpbin.org/delete`,
      );
    } else {
      const host = [...policy.endpoints.values()].flatMap((e) => e.hosts).find((h) => !h.startsWith("*"));
      lines.push("  try it:", `    ${curl} https://${host ?? "example.com"}/`);
    }
  }
  if (role === "gateway") lines.push(`  the dashboard and public API (${policy.gateway.dashboardListen}) are the dashboard role's`);
  else {
    lines.push(`  dashboard and public API: ${gw.publicServer.scheme}://${gw.publicServer.address.host}:${gw.publicServer.address.port}`);
    // `all` (make run) on a fresh state: someone must be able to sign in, as the appliance's firstboot allows.
    const db = openStateDb(policy.gateway.stateDir);
    try {
      const made = await ensureFirstOperator(db);
      lines.push(
        made
          ? `    sign in as ${made.name}, one-time password ${made.password}   (shown once; the dashboard asks for a new one)`
          : `    sign in with your operator (a new password: ${gatewayCommand()} operator passwd NAME)`,
      );
    } finally {
      db.close();
    }
  }
  if (gw.dnsVip) lines.push(`  DNS-VIP responder: ${gw.dnsVip.responder.address.host}:${gw.dnsVip.responder.address.port}`);
  if (gw.tunnel) {
    const l = gw.tunnel.plane.listen;
    lines.push(`  WireGuard (${policy.gateway.wireguard?.mode ?? "userspace"}): ${l.host}:${l.port}, gateway key ${gw.tunnel.plane.publicKey}`);
    if (role !== "gateway") {
      const api = policy.gateway.publicUrl ?? `${gw.publicServer.scheme}://${gw.publicServer.address.host}:${gw.publicServer.address.port}`;
      // The Devices page's lines: with a certificate from our CA, they pin its fingerprint.
      const j = joinInfo(api, policy.gateway.dashboardTls?.kind ?? "none", readFileSync(caPath, "utf8"));
      lines.push(
        "  a device:",
        `    ${j.install}`,
        `    ${j.join}`,
        `    then approve it in the dashboard (the link join prints), or here:`,
        `    ${gatewayCommand()} devices pending`,
        `    ${gatewayCommand()} devices approve CODE --profile P`,
      );
    }
  }
  console.error(lines.join("\n"));
  return untilSignalled(async () => {
    demo?.stop();
    await running.close();
  });
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: Error) => {
      if (e instanceof ControlUnavailable) {
        console.error(`clawpatrol-gateway: ${e.message}`);
        process.exit(1);
      }
      if (e instanceof UsageError || e instanceof DeviceError) {
        console.error(`clawpatrol-gateway: ${e.message}`);
        if (e instanceof UsageError) console.error(`run 'clawpatrol-gateway --help' for usage`);
        process.exit(2);
      }
      console.error(`clawpatrol-gateway: ${e.message}`);
      process.exit(1);
    },
  );
}

export { main };
