// `clawpatrol up` / `clawpatrol down` (and `join --whole-machine`): the
// whole host's traffic through the gateway. Root only.
//
//   up, kernel WireGuard (the module exists and wg-quick is installed):
//     1. wg-quick up a config in the state dir (0600, Table = off): the
//        interface clawpatrol0 with the key, address and peer;
//     2. wait for the first handshake;
//     3. the host changes (host-changes.ts), each recorded before it is made
//        in whole-machine.json: a host route to the gateway's UDP endpoint
//        by the way it is reached now (so the tunnel does not loop into
//        itself), 0.0.0.0/1 + 128.0.0.0/1 and ::/1 + 8000::/1 into the
//        tunnel, /etc/resolv.conf -> the gateway's tunnel address.
//   up, userspace (this kernel has no WireGuard module): a detached
//     background process (`clawpatrol __whole-machine`, pid file and log in
//     the state dir) holds the key, makes the TUN clawpatrol0, runs our
//     userspace WireGuard (the same module as `run`), relays TUN <-> tunnel,
//     then makes the same host changes; `up` returns once it says ready.
//   down: stop the background process (it undoes its changes on SIGTERM),
//     then undo whatever the record still lists (all of it after a kill -9:
//     the TUN and its routes died with the process; the endpoint route and
//     resolv.conf are put back from the record).
import { spawn } from "node:child_process";
import dns from "node:dns/promises";
import { closeSync, existsSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { cString, IFF_NO_PI, IFF_TUN, IFREQ_SIZE, IFREQ_UNION_OFFSET, libc, O_CLOEXEC, O_NONBLOCK, O_RDWR, sysError, TUNSETIFF } from "../app/net/tun/libc.ts";
import { startUserspaceWireGuard, type UserspaceWireGuard } from "../app/net/wireguard/shell.ts";
import {
  applyChange, captureResolv, endpointRoute, HostChangeError, ip, linkExists, splitDefaultRoutes, undoAll, type HostChange,
} from "./host-changes.ts";
import { parseEndpoint, selfArgv } from "./run.ts";
import { loadState, type LoadedState } from "./state.ts";
import { tunFromFd, type FdTun } from "./tun-fd.ts";
import { kernelLastHandshake, kernelWireGuardAvailable, wgQuickConfig, writeWgQuickConfig } from "./wg-quick.ts";

export const WM_TUN = "clawpatrol0";
export const WM_MTU = 1420;
export const DAEMON_COMMAND = "__whole-machine";
export const RECORD_FILE = "whole-machine.json";
export const PID_FILE = "whole-machine.pid";
export const LOG_FILE = "whole-machine.log";
export const STATUS_FILE = "whole-machine.status.json";
const RESOLV_CONF = "/etc/resolv.conf";
const HANDSHAKE_TIMEOUT_MS = Number(process.env.CLAWPATROL_HANDSHAKE_TIMEOUT_MS ?? 10_000);
const STOP_TIMEOUT_MS = 10_000;

export class WholeMachineError extends Error {}

/** What up changed (and how to reach what holds the tunnel), in the state dir, 0600. */
export interface WholeMachineRecord {
  version: 1;
  mode: "userspace" | "kernel";
  tun: string;
  started_at: string;
  /** the background process (userspace) */
  pid?: number;
  /** the gateway's UDP endpoint as resolved, ip:port */
  endpoint: string;
  ready: boolean;
  changes: HostChange[];
}

export interface TunnelStatus {
  last_handshake: string | null;
  rx_bytes: number;
  tx_bytes: number;
  updated_at: string;
}

export type Session =
  | { kind: "down" }
  | { kind: "up"; record: WholeMachineRecord | undefined; pid: number | undefined }
  | { kind: "stale"; record: WholeMachineRecord };

const file = (dir: string, f: string) => path.join(dir, f);

export function readRecord(dir: string): WholeMachineRecord | undefined {
  let text: string;
  try {
    text = readFileSync(file(dir, RECORD_FILE), "utf8");
  } catch {
    return undefined;
  }
  try {
    return JSON.parse(text) as WholeMachineRecord;
  } catch (e) {
    throw new WholeMachineError(`${file(dir, RECORD_FILE)} is damaged (${(e as Error).message}); the host's routes and /etc/resolv.conf may need fixing by hand`);
  }
}

/** Written whole (temp + rename): a crash never leaves half a record. */
function writeJson(dir: string, name: string, value: unknown): void {
  const tmp = file(dir, `.${name}.${process.pid}`);
  writeFileSync(tmp, JSON.stringify(value, null, 2) + "\n", { mode: 0o600 });
  renameSync(tmp, file(dir, name));
}

function readPid(dir: string): number | undefined {
  try {
    const n = Number(readFileSync(file(dir, PID_FILE), "utf8").trim());
    return n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Alive and not a zombie (an orphan's parent may never reap it). */
function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Our background process, not another that reused the pid. */
function daemonAlive(pid: number): boolean {
  if (!processAlive(pid)) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes(DAEMON_COMMAND);
  } catch {
    return false;
  }
}

export function session(dir: string): Session {
  const record = readRecord(dir);
  const pid = readPid(dir) ?? record?.pid;
  if (pid !== undefined && daemonAlive(pid)) return { kind: "up", record, pid };
  if (!record) return { kind: "down" };
  if (record.mode === "kernel" && linkExists(record.tun)) return { kind: "up", record, pid: undefined };
  return { kind: "stale", record };
}

function requireRoot(what: string): void {
  if (process.platform !== "linux") throw new WholeMachineError(`${what} works on Linux only (for now)`);
  if (process.getuid?.() !== 0) {
    throw new WholeMachineError(`${what} changes this machine's routes and DNS and needs root: sudo clawpatrol ${what.replace(/^clawpatrol /, "")}\n  (to send one command through the gateway without root: clawpatrol run -- COMMAND)`);
  }
  if (!Bun.which("ip")) throw new WholeMachineError("`ip` is not installed; whole-machine mode needs iproute2");
}

async function resolveEndpoint(state: LoadedState): Promise<{ address: string; port: number; text: string }> {
  const ep = parseEndpoint(state.gateway.endpoint);
  let address = ep.host;
  if (net.isIP(address) === 0) {
    try {
      address = (await dns.lookup(ep.host)).address;
    } catch (e) {
      throw new WholeMachineError(`cannot resolve the gateway endpoint ${ep.host}: ${(e as Error).message}`);
    }
  }
  return { address, port: ep.port, text: net.isIPv6(address) ? `[${address}]:${ep.port}` : `${address}:${ep.port}` };
}

function resolvText(state: LoadedState): string {
  return `# written by clawpatrol up (whole-machine mode); clawpatrol down restores the original\nnameserver ${state.gateway.dns}\n`;
}

/** Records `c`, then makes it; on failure the record forgets it again. false: optional and failed. */
function applyRecorded(dir: string, rec: WholeMachineRecord, c: HostChange, o: { resolv?: string; optional?: boolean } = {}): boolean {
  rec.changes.push(c);
  writeJson(dir, RECORD_FILE, rec);
  try {
    applyChange(c, o.resolv, file(dir, LOG_FILE));
    return true;
  } catch (e) {
    rec.changes.pop();
    writeJson(dir, RECORD_FILE, rec);
    if (o.optional) return false;
    throw e;
  }
}

/** The changes after the tunnel is there: endpoint route first, then the split routes, then DNS. */
function routeHost(dir: string, rec: WholeMachineRecord, state: LoadedState, epRoute: HostChange): void {
  applyRecorded(dir, rec, epRoute);
  for (const r of splitDefaultRoutes(rec.tun)) {
    // IPv6 may be disabled on this host: then there is nothing to route.
    applyRecorded(dir, rec, r, { optional: r.family === 6 });
  }
  applyRecorded(dir, rec, { kind: "resolv", path: RESOLV_CONF, before: captureResolv(RESOLV_CONF) }, { resolv: resolvText(state) });
  rec.ready = true;
  writeJson(dir, RECORD_FILE, rec);
}

function removeSessionFiles(dir: string, ownPid?: number): void {
  for (const f of [RECORD_FILE, STATUS_FILE]) rmSync(file(dir, f), { force: true });
  if (ownPid === undefined || readPid(dir) === ownPid) rmSync(file(dir, PID_FILE), { force: true });
  rmSync(file(dir, "wg"), { recursive: true, force: true });
}

function describeSession(s: Session & { kind: "up" }): string {
  const r = s.record;
  const mode = r?.mode ?? "userspace";
  return `${mode}${s.pid ? `, pid ${s.pid}` : ""}${r ? `, since ${r.started_at}` : ", starting"}`;
}

export interface WholeMachineOptions {
  dir: string;
  out?: (line: string) => void;
}

const stdout = (l: string) => process.stdout.write(l + "\n");

export async function up(o: WholeMachineOptions): Promise<number> {
  const out = o.out ?? stdout;
  requireRoot("clawpatrol up");
  const state = loadState(o.dir);
  const s = session(o.dir);
  if (s.kind === "up") throw new WholeMachineError(`the whole-machine tunnel is already up (${describeSession(s)}); to restart it: clawpatrol down, then clawpatrol up`);
  if (s.kind === "stale") {
    out("a previous whole-machine session did not end cleanly: undoing what it changed first");
    const warnings = undoAll(s.record.changes, file(o.dir, LOG_FILE));
    if (warnings.length) throw new WholeMachineError(`could not undo the previous session's changes:\n  ${warnings.join("\n  ")}`);
    removeSessionFiles(o.dir);
  }
  const ep = await resolveEndpoint(state);
  // CLAWPATROL_WHOLE_MACHINE_WG=kernel|userspace overrides the probe; wg-quick
  // itself falls back to wireguard-go where the module is missing.
  const want = process.env.CLAWPATROL_WHOLE_MACHINE_WG ?? "auto";
  if (want === "kernel" && !Bun.which("wg-quick")) throw new WholeMachineError("CLAWPATROL_WHOLE_MACHINE_WG=kernel needs wg-quick (wireguard-tools)");
  if (want === "kernel" || (want === "auto" && kernelWireGuardAvailable())) return upKernel(o.dir, state, ep, out);
  if (!existsSync("/dev/net/tun")) throw new WholeMachineError("/dev/net/tun is missing and this kernel has no WireGuard module: load the tun module (sudo modprobe tun)");
  return upUserspace(o.dir, state, out);
}

async function upKernel(dir: string, state: LoadedState, ep: { address: string; text: string }, out: (l: string) => void): Promise<number> {
  const epRoute = endpointRoute(ep.address, WM_TUN);
  const config = writeWgQuickConfig(dir, WM_TUN, wgQuickConfig(state, ep.text, WM_MTU));
  const rec: WholeMachineRecord = { version: 1, mode: "kernel", tun: WM_TUN, started_at: new Date().toISOString(), endpoint: ep.text, ready: false, changes: [] };
  try {
    applyRecorded(dir, rec, { kind: "wg-quick", config });
    const end = Date.now() + HANDSHAKE_TIMEOUT_MS;
    while (kernelLastHandshake(WM_TUN) === undefined && Date.now() < end) await Bun.sleep(100);
    if (kernelLastHandshake(WM_TUN) === undefined) throw new WholeMachineError(noHandshake(state));
    routeHost(dir, rec, state, epRoute);
  } catch (e) {
    undoAll(rec.changes, file(dir, LOG_FILE));
    removeSessionFiles(dir);
    throw e;
  }
  out(`whole-machine tunnel up (kernel WireGuard, ${WM_TUN}): all traffic goes through ${state.gateway_url}; DNS -> ${state.gateway.dns}`);
  out("undo with: clawpatrol down");
  return 0;
}

function noHandshake(state: LoadedState): string {
  return (
    `the gateway does not answer at ${state.gateway.endpoint} (no WireGuard handshake in ${Math.round(HANDSHAKE_TIMEOUT_MS / 1000)} s).\n` +
    `  Check that UDP to ${state.gateway.endpoint} is allowed from this machine, that the gateway runs, and that this device (${state.device.name}) has not been revoked (then: clawpatrol join again).`
  );
}

async function upUserspace(dir: string, state: LoadedState, out: (l: string) => void): Promise<number> {
  const logPath = file(dir, LOG_FILE);
  const logStart = existsSync(logPath) ? statSync(logPath).size : 0;
  const logFd = openSync(logPath, "a", 0o600);
  const [exe, ...pre] = selfArgv();
  // A session of its own: the shell that ran `up` may close; the tunnel stays.
  const child = spawn(exe!, [...pre, DAEMON_COMMAND], { detached: true, stdio: ["ignore", logFd, logFd], env: process.env });
  closeSync(logFd);
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new WholeMachineError(`cannot start the background process (${exe})`);
  writeFileSync(file(dir, PID_FILE), `${pid}\n`, { mode: 0o600 });

  const end = Date.now() + HANDSHAKE_TIMEOUT_MS + 20_000;
  for (;;) {
    const rec = readRecord(dir);
    if (rec?.ready && rec.pid === pid) break;
    if (!processAlive(pid) || Date.now() > end) {
      if (processAlive(pid)) {
        process.kill(pid, "SIGTERM");
        const stop = Date.now() + STOP_TIMEOUT_MS;
        while (processAlive(pid) && Date.now() < stop) await Bun.sleep(50);
      }
      const logTail = readFileSync(logPath).subarray(logStart).toString("utf8").trim();
      const still = readRecord(dir);
      if (still) undoAll(still.changes);
      removeSessionFiles(dir, pid);
      throw new WholeMachineError(`the whole-machine tunnel did not come up${logTail ? `:\n${logTail.split("\n").map((l) => `  ${l}`).join("\n")}` : ""}\n  (log: ${logPath})`);
    }
    await Bun.sleep(50);
  }
  out(`whole-machine tunnel up (userspace WireGuard on ${WM_TUN}, background pid ${pid}): all traffic goes through ${state.gateway_url}; DNS -> ${state.gateway.dns}`);
  out(`log: ${logPath}; undo with: clawpatrol down`);
  return 0;
}

export async function down(o: WholeMachineOptions): Promise<number> {
  const out = o.out ?? stdout;
  const s = session(o.dir);
  if (s.kind === "down") {
    rmSync(file(o.dir, PID_FILE), { force: true });
    out("the whole-machine tunnel is not up; nothing to do");
    return 0;
  }
  requireRoot("clawpatrol down");
  if (s.kind === "up" && s.pid !== undefined) {
    // It undoes its own changes on SIGTERM; what it leaves, we undo below.
    process.kill(s.pid, "SIGTERM");
    let end = Date.now() + STOP_TIMEOUT_MS;
    while (processAlive(s.pid) && Date.now() < end) await Bun.sleep(50);
    if (processAlive(s.pid)) {
      out(`the background process (pid ${s.pid}) did not stop; killing it`);
      process.kill(s.pid, "SIGKILL");
      end = Date.now() + STOP_TIMEOUT_MS;
      while (processAlive(s.pid) && Date.now() < end) await Bun.sleep(50);
    }
  }
  const rec = readRecord(o.dir);
  const warnings = rec ? undoAll(rec.changes, file(o.dir, LOG_FILE)) : [];
  if (warnings.length) {
    throw new WholeMachineError(`some changes could not be undone (the record stays in ${file(o.dir, RECORD_FILE)}; run clawpatrol down again):\n  ${warnings.join("\n  ")}`);
  }
  removeSessionFiles(o.dir);
  out("whole-machine tunnel down; routes and DNS restored");
  return 0;
}

/** Lines for `clawpatrol status`. */
export function statusLines(dir: string): string[] {
  let s: Session;
  try {
    s = session(dir);
  } catch (e) {
    return [`whole machine: unknown (${(e as Error).message})`];
  }
  if (s.kind === "down") return ["whole machine: down"];
  if (s.kind === "stale") return ["whole machine: not running, but its routes/DNS changes may still be in place: run clawpatrol down"];
  const lines = [`whole machine: up (${describeSession(s)}), tunnel ${s.record?.tun ?? WM_TUN}${s.record && !s.record.ready ? ", starting" : ""}`];
  if (s.record?.mode === "kernel") {
    const hs = kernelLastHandshake(s.record.tun);
    lines.push(`  last handshake ${hs ? new Date(hs).toISOString() : "never"}`);
  } else {
    try {
      const st = JSON.parse(readFileSync(file(dir, STATUS_FILE), "utf8")) as TunnelStatus;
      lines.push(`  last handshake ${st.last_handshake ?? "never"}, rx ${st.rx_bytes} B, tx ${st.tx_bytes} B`);
    } catch {
      /* not written yet */
    }
  }
  return lines;
}

// ---------------------------------------------------------------- the background process

/** TUNSETIFF on a fresh /dev/net/tun fd (as inner.ts does inside `run`'s namespace). */
function openTunDevice(name: string): number {
  const L = libc();
  const fd = L.open(cString("/dev/net/tun"), O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
  if (fd < 0) throw new WholeMachineError(`${sysError("open(/dev/net/tun)").message}: TUN is not available`);
  const ifr = new Uint8Array(IFREQ_SIZE);
  ifr.set(new TextEncoder().encode(name), 0);
  new DataView(ifr.buffer).setUint16(IFREQ_UNION_OFFSET, IFF_TUN | IFF_NO_PI, true);
  if (L.ioctl(fd, TUNSETIFF, ifr) < 0) {
    const e = sysError(`ioctl(TUNSETIFF ${name})`);
    L.close(fd);
    throw new WholeMachineError(`${e.message}: cannot create the TUN device ${name}`);
  }
  return fd;
}

function must(args: string[], what: string): void {
  const r = ip(args);
  if (!r.ok) throw new HostChangeError(`${what}: ip ${args.join(" ")}: ${r.err}`);
}

async function waitHandshake(wg: UserspaceWireGuard, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (wg.peers()[0]?.lastHandshake !== undefined) return true;
    await Bun.sleep(20);
  }
  return wg.peers()[0]?.lastHandshake !== undefined;
}

/** `clawpatrol __whole-machine`: started detached by `up`; stdout/stderr go to the log. */
export async function wholeMachineDaemon(dir: string): Promise<number> {
  const log = (l: string) => process.stderr.write(`${new Date().toISOString()} ${l}\n`);
  const state = loadState(dir);
  const rec: WholeMachineRecord = { version: 1, mode: "userspace", tun: WM_TUN, started_at: new Date().toISOString(), pid: process.pid, endpoint: "", ready: false, changes: [] };
  let tun: FdTun | undefined;
  let wg: UserspaceWireGuard | undefined;
  let statusTimer: ReturnType<typeof setInterval> | undefined;
  let stopping = false;
  const stop = (code: number, why: string): never => {
    if (!stopping) {
      stopping = true;
      log(why);
      clearInterval(statusTimer);
      for (const w of undoAll(rec.changes)) log(`warning: ${w}`);
      try {
        tun?.close();
        wg?.close();
      } catch {
        /* exiting */
      }
      const left = readRecord(dir);
      // Only our own record: another session may have started after a failed one.
      if (left?.pid === process.pid) removeSessionFiles(dir, process.pid);
    }
    process.exit(code);
  };
  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as NodeJS.Signals[]) process.on(sig, () => stop(0, `${sig}: restoring the host and stopping`));

  try {
    const ep = await resolveEndpoint(state);
    rec.endpoint = ep.text;
    const epRoute = endpointRoute(ep.address, WM_TUN);
    writeJson(dir, RECORD_FILE, rec);

    // 1. The TUN (gone with this process) and its address.
    const fd = openTunDevice(WM_TUN);
    rec.changes.push({ kind: "link", name: WM_TUN });
    writeJson(dir, RECORD_FILE, rec);
    // no IPv6 link-local: it would only send router solicitations into the tunnel
    ip(["link", "set", "dev", WM_TUN, "addrgenmode", "none"]);
    must(["addr", "add", `${state.device.address}/32`, "dev", WM_TUN], "adding the device address");
    if (state.device.address6) ip(["-6", "addr", "add", `${state.device.address6}/128`, "dev", WM_TUN, "nodad"]);
    must(["link", "set", "dev", WM_TUN, "mtu", String(WM_MTU), "up"], "bringing up the TUN");

    // 2. The tunnel, over the host's current routes.
    wg = await startUserspaceWireGuard({
      listen: { host: net.isIPv6(ep.address) ? "::" : "0.0.0.0", port: 0 },
      privateKey: state.privateKey,
      name: "clawpatrol",
      mtu: WM_MTU,
      peers: [
        {
          publicKey: state.gateway.public_key,
          allowedIPs: state.gateway.allowed_ips?.length ? state.gateway.allowed_ips : ["0.0.0.0/0", "::/0"],
          endpoint: { address: ep.address, port: ep.port },
          persistentKeepalive: state.gateway.persistent_keepalive || 25,
        },
      ],
    });
    const link = tunFromFd(fd, WM_TUN, WM_MTU, (e) => stop(1, `the TUN stopped: ${e.message}`));
    tun = link;
    const w = wg;
    // Both writes are synchronous, so the borrowed views are done with on return.
    link.onPackets((ps) => {
      for (const p of ps) w.link.write(p);
    });
    w.link.onPackets((ps) => {
      for (const p of ps) link.write(p);
    });
    if (!(await waitHandshake(w, HANDSHAKE_TIMEOUT_MS))) throw new WholeMachineError(noHandshake(state));

    // 3. Now route the host into it.
    routeHost(dir, rec, state, epRoute);
    const writeStatus = () => {
      const p = w.peers()[0];
      const st: TunnelStatus = {
        last_handshake: p?.lastHandshake ? new Date(p.lastHandshake).toISOString() : null,
        rx_bytes: p?.rxBytes ?? 0,
        tx_bytes: p?.txBytes ?? 0,
        updated_at: new Date().toISOString(),
      };
      try {
        writeJson(dir, STATUS_FILE, st);
      } catch {
        /* best effort */
      }
    };
    writeStatus();
    statusTimer = setInterval(writeStatus, 5000);
    log(`up: ${WM_TUN} ${state.device.address} -> ${ep.text}; routes and DNS set`);
    await new Promise<never>(() => {});
    return 0;
  } catch (e) {
    return stop(1, `error: ${(e as Error).message}`);
  }
}
