// `clawpatrol run [--] CMD ARGS...` (Linux): the outer stage.
//
// Shape (and why):
//
//   clawpatrol run            host namespaces; registers a peer of its own
//   │                         (run-peer.ts: a key made in memory, its own
//   │                         tunnel address) and holds that key; runs our
//   │                         userspace WireGuard to the gateway on a UDP
//   │                         socket of the host network; relays packets
//   │                         between the TUN fd and the tunnel; listens on
//   │                         --publish ports (publish.ts)
//   └─ unshare [-U -r] -n -m -p --fork --kill-child --mount-proc
//      └─ clawpatrol __inner  pid 1 of new user+net+mount+pid namespaces
//         │                   (root inside the user namespace): lo up, TUN
//         │                   cp0 with the device's address, default routes,
//         │                   resolv.conf -> the gateway, a tmpfs over the
//         │                   state dir holding only ca.crt; passes the TUN fd
//         │                   out over the socketpair on fd 3 (SCM_RIGHTS)
//         └─ [unshare -U --map-user=UID --map-group=GID] CMD ARGS...
//                             the agent: the invoking uid again, with no
//                             capability over the namespaces around it (it
//                             cannot unmount the tmpfs, change routes, or
//                             see host processes: the pid namespace hides
//                             /proc/PID/root of host processes, which would
//                             otherwise reach the real state dir)
//
// The key never enters the namespaces: the process that holds it runs in
// the host's user namespace, out of the agent's reach. The TUN device must
// be created inside the new network namespace, so the inner stage makes it
// and hands the fd out; the outer stage reads it with tun-fd.ts.
//
// Signals: SIGTERM, SIGHUP, SIGQUIT, SIGUSR1/2 sent to `clawpatrol run` are
// forwarded to the inner stage, which forwards them to the command. SIGINT
// from a terminal already reaches the command (same foreground process
// group), so it is forwarded only when stdin is not a terminal. The exit
// status is the command's (128+N when a signal N ended it).
import { spawnSync } from "node:child_process";
import dns from "node:dns/promises";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { isatty } from "node:tty";
import { startUserspaceWireGuard, type UserspaceWireGuard } from "../app/net/wireguard/shell.ts";
import { listenOnHost, parsePublish, PublishError, type HostListeners, type PublishedSocket, type PublishSpec } from "./publish.ts";
import { registerRun, type RunIdentity } from "./run-peer.ts";
import { API_TOKEN_FILE, loadState, type LoadedState } from "./state.ts";
import { pollReadable, recvFd } from "./sys.ts";
import { tunFromFd, type FdTun } from "./tun-fd.ts";

export const TUN_NAME = "cp0";
export const TUN_MTU = 1420;
/** The env var carrying the inner stage's settings (removed before the command runs). */
export const INNER_ENV = "CLAWPATROL_INNER";
const HANDSHAKE_TIMEOUT_MS = Number(process.env.CLAWPATROL_HANDSHAKE_TIMEOUT_MS ?? 10_000);
const SETUP_TIMEOUT_MS = 20_000;

export class RunError extends Error {}

export interface InnerConfig {
  /** real root: no user namespace, the command runs as root */
  root: boolean;
  uid: number;
  gid: number;
  stateDir: string;
  address: string;
  address6?: string;
  dns: string;
  caCert: string;
  tun: string;
  mtu: number;
  /** --publish: Unix sockets to serve, each to 127.0.0.1:port inside (see publish.ts) */
  publish?: PublishedSocket[];
  /** the directory holding them, hidden from the command */
  publishDir?: string;
  /** --gate: commands that go through the command gate (the profile's list is added inside) */
  gate?: string[];
  /** the argv that re-runs this program (the shims call it) */
  self?: string[];
  /** the device's API token: the warden's proof to the gate and the kill switch (never given to the command) */
  proof?: string;
}

/** The argv that re-runs this program (the compiled binary, or bun + the entry script). */
export function selfArgv(): string[] {
  if (Bun.main.startsWith("/$bunfs/")) return [process.execPath];
  return [process.execPath, Bun.main];
}

/** The device's API token (the warden's proof to the gate), or undefined when this device has none. */
function apiToken(dir: string): string | undefined {
  try {
    return readFileSync(path.join(dir, API_TOKEN_FILE), "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

/** "host:port", "[v6]:port" -> parts. */
export function parseEndpoint(s: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  if (!m) throw new RunError(`the gateway endpoint "${s}" is not host:port; run clawpatrol join again`);
  const port = Number(m[2]);
  if (!(port > 0 && port < 65536)) throw new RunError(`bad port in the gateway endpoint "${s}"`);
  return { host: m[1]!, port };
}

export function runtimeDir(): string {
  const x = process.env.XDG_RUNTIME_DIR;
  if (x && existsSync(x)) return path.join(x, "clawpatrol");
  return path.join(os.tmpdir(), `clawpatrol-${process.getuid?.() ?? 0}`);
}

export function preflight(isRoot: boolean): void {
  if (process.platform !== "linux") throw new RunError("clawpatrol run works on Linux only (for now)");
  if (!existsSync("/dev/net/tun")) {
    throw new RunError("/dev/net/tun is missing: load the tun module (sudo modprobe tun), or in a container pass the device (docker run --device /dev/net/tun ...)");
  }
  for (const tool of ["unshare", "ip", "mount"]) {
    if (!Bun.which(tool)) {
      throw new RunError(`\`${tool}\` is not installed; clawpatrol run needs util-linux (unshare, mount) and iproute2 (ip)`);
    }
  }
  if (!isRoot) {
    const max = readNumber("/proc/sys/user/max_user_namespaces");
    const clone = readNumber("/proc/sys/kernel/unprivileged_userns_clone");
    if (max === 0 || clone === 0) throw new RunError(noUserNamespaces());
  }
}

function readNumber(f: string): number | undefined {
  try {
    return Number(readFileSync(f, "utf8").trim());
  } catch {
    return undefined;
  }
}

function noUserNamespaces(detail?: string): string {
  return [
    `this kernel does not let unprivileged users create user namespaces${detail ? ` (${detail})` : ""}, which clawpatrol run needs to run without root.`,
    "Either run it as root (sudo clawpatrol run -- ...), or allow them:",
    "  sudo sysctl -w kernel.unprivileged_userns_clone=1            (Debian, older kernels)",
    "  sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu 24.04+)",
    "  sudo sysctl -w user.max_user_namespaces=15000",
  ].join("\n");
}

/** After a failed setup: can this user make a user + network namespace at all? */
function diagnoseSetup(isRoot: boolean): string {
  if (!isRoot) {
    const r = spawnSync("unshare", ["--user", "--map-root-user", "--net", "--mount", "true"], { encoding: "utf8" });
    if (r.status !== 0) return noUserNamespaces((r.stderr || "").trim().split("\n").pop());
    const p = spawnSync("unshare", ["--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--mount-proc", "true"], { encoding: "utf8" });
    if (p.status !== 0) return `cannot mount a private /proc in a new PID namespace here (${(p.stderr || "").trim()}); containers that mask /proc paths prevent it`;
  }
  return "could not set up the command's namespaces (see the message above)";
}

/** Waits for the peer's first handshake; false on timeout. */
async function handshake(wg: UserspaceWireGuard, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (wg.peers()[0]?.lastHandshake !== undefined) return true;
    await Bun.sleep(20);
  }
  return wg.peers()[0]?.lastHandshake !== undefined;
}

/** Children of `pid` (the inner stage is the only child of unshare). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    const out: number[] = [];
    for (const d of readdirSync("/proc")) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const stat = readFileSync(`/proc/${d}/stat`, "utf8");
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        if (ppid === pid) out.push(Number(d));
      } catch {
        /* gone */
      }
    }
    return out;
  }
}

export interface RunOptions {
  stateDir: string;
  argv: string[];
  /** --publish [HOSTADDR:]HOSTPORT[:PORT], repeatable */
  publish?: string[];
  /** --gate NAME,...: commands that go through the command gate */
  gate?: string[];
  err?: (line: string) => void;
}

export async function run(o: RunOptions): Promise<number> {
  const err = o.err ?? ((l: string) => process.stderr.write(`clawpatrol: ${l}\n`));
  if (o.argv.length === 0) throw new RunError("usage: clawpatrol run [--] COMMAND [ARGS...]");
  const isRoot = process.getuid?.() === 0;
  const state: LoadedState = loadState(o.stateDir);
  preflight(isRoot);
  let specs: PublishSpec[];
  try {
    specs = (o.publish ?? []).map(parsePublish);
  } catch (e) {
    throw new RunError((e as Error).message);
  }

  // 1. The tunnel, from the host's network namespace, as a peer of its own
  //    (run-peer.ts) when the gateway offers one.
  const ep = parseEndpoint(state.gateway.endpoint);
  let address = ep.host;
  if (net.isIP(address) === 0) {
    try {
      address = (await dns.lookup(ep.host)).address;
    } catch (e) {
      throw new RunError(`cannot resolve the gateway endpoint ${ep.host}: ${(e as Error).message}`);
    }
  }
  const identity: RunIdentity = await registerRun(state);
  if (identity.kind === "device") err(`note: ${identity.note}`);
  const lease = identity.kind === "run" ? identity.lease : undefined;
  let wg: UserspaceWireGuard;
  try {
    wg = await startWireGuard(state, lease?.privateKey ?? state.privateKey, address, ep.port);
  } catch (e) {
    await lease?.end();
    throw e;
  }
  const cleanups: (() => void)[] = [() => wg.close()];
  const cleanup = () => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        c();
      } catch {
        /* best effort */
      }
    }
  };
  try {
    if (!(await handshake(wg, HANDSHAKE_TIMEOUT_MS))) {
      throw new RunError(
        `the gateway does not answer at ${state.gateway.endpoint} (no WireGuard handshake in ${Math.round(HANDSHAKE_TIMEOUT_MS / 1000)} s).\n` +
          `  Check that UDP to ${state.gateway.endpoint} is allowed from this machine, that the gateway runs, and that this device (${state.device.name}) has not been revoked (then: clawpatrol join again).`,
      );
    }

    // 2. Published ports: bound on the host before the command starts.
    let published: HostListeners | undefined;
    if (specs.length > 0) {
      try {
        published = await listenOnHost(specs, runtimeDir());
      } catch (e) {
        throw new RunError(e instanceof PublishError ? e.message : `--publish: ${(e as Error).message}`);
      }
      cleanups.push(published.close);
    }

    // 3. The namespaces and the command.
    const cfg: InnerConfig = {
      root: isRoot,
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
      stateDir: state.dir,
      address: lease?.address ?? state.device.address,
      dns: state.gateway.dns,
      caCert: state.caCert,
      tun: TUN_NAME,
      mtu: TUN_MTU,
      gate: o.gate ?? [],
      self: selfArgv(),
      proof: apiToken(state.dir),
    };
    const address6 = lease ? lease.address6 : state.device.address6;
    if (address6) cfg.address6 = address6;
    if (published) {
      cfg.publish = published.sockets;
      cfg.publishDir = published.dir;
    }
    return await runInNamespaces(o, cfg, isRoot, wg, state, cleanups, err);
  } finally {
    await lease?.end();
    cleanup();
  }
}

async function startWireGuard(state: LoadedState, privateKey: string, address: string, port: number): Promise<UserspaceWireGuard> {
  return await startUserspaceWireGuard({
    listen: { host: net.isIPv6(address) ? "::" : "0.0.0.0", port: 0 },
    privateKey,
    name: "clawpatrol",
    mtu: TUN_MTU,
    peers: [
      {
        publicKey: state.gateway.public_key,
        allowedIPs: state.gateway.allowed_ips?.length ? state.gateway.allowed_ips : ["0.0.0.0/0", "::/0"],
        endpoint: { address, port },
        persistentKeepalive: state.gateway.persistent_keepalive || 25,
      },
    ],
  });
}

/** The namespaces, the command, and the TUN <-> WireGuard relay; resolves with the command's status. */
async function runInNamespaces(
  o: RunOptions,
  cfg: InnerConfig,
  isRoot: boolean,
  wg: UserspaceWireGuard,
  state: LoadedState,
  cleanups: (() => void)[],
  err: (line: string) => void,
): Promise<number> {
  const ns = ["--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private"];
  const argv = ["unshare", ...(isRoot ? [] : ["--user", "--map-root-user"]), ...ns, "--", ...selfArgv(), "__inner", "--", ...o.argv];
  const proc = Bun.spawn(argv, {
    stdio: ["inherit", "inherit", "inherit", "pipe"],
    env: { ...process.env, [INNER_ENV]: JSON.stringify(cfg) },
  });
  const ctl = proc.stdio[3] as unknown as number;

  // Signals: forward, do not die of them ourselves.
  let innerPid: number | undefined;
  const forward = (sig: NodeJS.Signals) => () => {
    // unshare blocks SIGINT/SIGTERM and forwards nothing: signal the inner stage.
    innerPid ??= childrenOf(proc.pid)[0];
    const target = innerPid ?? proc.pid;
    try {
      process.kill(target, sig);
    } catch {
      /* gone */
    }
  };
  const forwarded: NodeJS.Signals[] = ["SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"];
  const handlers = new Map<NodeJS.Signals, () => void>();
  for (const s of forwarded) handlers.set(s, forward(s));
  handlers.set("SIGINT", isatty(0) ? () => {} : forward("SIGINT"));
  for (const [s, h] of handlers) process.on(s, h);
  cleanups.push(() => {
    for (const [s, h] of handlers) process.off(s, h);
  });

  // 4. Wait for the TUN fd (or for the setup to fail).
  const end = Date.now() + SETUP_TIMEOUT_MS;
  let tunFd: number | undefined;
  while (tunFd === undefined) {
    if (pollReadable(ctl, 0)) {
      const r = recvFd(ctl);
      if (r.kind === "message" && r.fd !== undefined) tunFd = r.fd;
      else if (r.kind === "eof") break;
    } else if (proc.exitCode !== null || proc.signalCode !== null || Date.now() > end) {
      break;
    } else {
      await Bun.sleep(5);
    }
  }
  if (tunFd === undefined) {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    const code = await proc.exited;
    throw new RunError(diagnoseSetup(isRoot) + ` (setup exited with status ${code})`);
  }
  innerPid = childrenOf(proc.pid)[0];

  // 5. The data path: TUN <-> WireGuard. Both writes are synchronous
  //    (TUN: one write(); WireGuard: copies before encrypting), so the
  //    borrowed views are done with when write returns.
  const link = tunFromFd(tunFd, TUN_NAME, TUN_MTU, (e) => err(e.message));
  cleanups.push(() => link.close());
  link.onPackets((ps) => {
    for (const p of ps) wg.link.write(p);
  });
  wg.link.onPackets((ps) => {
    for (const p of ps) link.write(p);
  });

  // 6. Tell `clawpatrol status` about this run.
  const statusFile = writeRunFile(state, o.argv, wg, cfg.address, innerPid);
  if (statusFile) cleanups.push(statusFile.stop);

  const code = await proc.exited;
  return proc.signalCode ? 128 + (os.constants.signals[proc.signalCode as NodeJS.Signals] ?? 0) : code;
}

export interface RunRecord {
  pid: number;
  started_at: string;
  command: string[];
  device: string;
  gateway: string;
  /** this run's tunnel address (its own peer's, or the device's) */
  address?: string;
  /** the inner stage (pid 1 of the run's namespaces): `clawpatrol kill` ends the run through it */
  inner_pid?: number;
  last_handshake: string | null;
  rx_bytes: number;
  tx_bytes: number;
  updated_at: string;
}

/** A small file per active run, refreshed every few seconds (no secrets in it). */
function writeRunFile(state: LoadedState, argv: string[], wg: UserspaceWireGuard, address: string, innerPid: number | undefined): { stop: () => void } | undefined {
  const dir = runtimeDir();
  const file = path.join(dir, `run-${process.pid}.json`);
  const started = new Date().toISOString();
  const write = () => {
    const p = wg.peers()[0];
    const rec: RunRecord = {
      pid: process.pid,
      started_at: started,
      command: argv,
      device: state.device.name,
      gateway: state.gateway.endpoint,
      address,
      ...(innerPid !== undefined ? { inner_pid: innerPid } : {}),
      last_handshake: p?.lastHandshake ? new Date(p.lastHandshake).toISOString() : null,
      rx_bytes: p?.rxBytes ?? 0,
      tx_bytes: p?.txBytes ?? 0,
      updated_at: new Date().toISOString(),
    };
    writeFileSync(file, JSON.stringify(rec) + "\n", { mode: 0o600 });
  };
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    write();
  } catch {
    return undefined;
  }
  const t = setInterval(() => {
    try {
      write();
    } catch {
      /* best effort */
    }
  }, 5000);
  t.unref();
  return {
    stop: () => {
      clearInterval(t);
      rmSync(file, { force: true });
    },
  };
}

/** Active runs of this user (stale files of dead processes are removed). */
export function activeRuns(): RunRecord[] {
  const dir = runtimeDir();
  const out: RunRecord[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const n of names) {
    const m = /^run-(\d+)\.json$/.exec(n);
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch (e) {
      alive = (e as NodeJS.ErrnoException).code === "EPERM";
    }
    if (!alive) {
      rmSync(path.join(dir, n), { force: true });
      continue;
    }
    try {
      out.push(JSON.parse(readFileSync(path.join(dir, n), "utf8")) as RunRecord);
    } catch {
      /* being written */
    }
  }
  return out;
}
