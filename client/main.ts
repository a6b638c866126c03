#!/usr/bin/env bun
// `clawpatrol`: the device binary.
//
//   clawpatrol join URL [--name N] [--profile P] [--ca-sha256 FP]   enroll this device
//   clawpatrol run [--] CMD ARGS...                run CMD with every flow through the gateway
//   clawpatrol up | down                           route the whole host through the gateway (root)
//   clawpatrol status                              the gateway, this device, active runs
//   clawpatrol kill                                end this user's runs now (the local kill switch)
//   clawpatrol kubeconfig NAME                     a kubeconfig for the gateway's kubernetes endpoint NAME
//   clawpatrol uninstall --yes                     forget the gateway (removes the state dir)
import { setLogLevel, setLogWriter } from "../app/log.ts";
import { HostChangeError } from "./host-changes.ts";
import { inner } from "./inner.ts";
import { shim } from "./gate/shim.ts";
import { reap } from "./gate/reaper.ts";
import { killLocalRuns } from "./gate/local-kill.ts";
import { join, JoinError } from "./join.ts";
import { kubeconfig, KubeconfigError } from "./kubeconfig.ts";
import { activeRuns, run, RunError } from "./run.ts";
import { loadState, NotJoined, removeState, stateDir } from "./state.ts";
import { down, session, statusLines, up, wholeMachineDaemon, WholeMachineError, DAEMON_COMMAND } from "./whole-machine.ts";

export const USAGE = `usage:
  clawpatrol join URL [--name NAME] [--profile PROFILE] [--ca-sha256 FP] [--whole-machine]
      enroll this device with the gateway at URL (an operator approves it);
      --ca-sha256: the gateway CA's SHA-256 fingerprint (from the operator):
        its CA is fetched, checked against FP, and then trusted alone;
      --whole-machine: then bring the whole-machine tunnel up (root)
  clawpatrol run [--publish [HOSTADDR:]HOSTPORT[:PORT]]... [--gate NAME,...] [--] COMMAND [ARGS...]
      run COMMAND with all its network traffic going through the gateway;
      --publish: COMMAND's 127.0.0.1:PORT reachable from this host at HOSTADDR:HOSTPORT;
      --gate: these commands (and the profile's gate list) go through the
        gateway's rules and approvals before they run (the command gate)
  clawpatrol up
      route this whole machine (all traffic, DNS) through the gateway (root)
  clawpatrol down
      stop that, restoring the routes and /etc/resolv.conf exactly as they were
  clawpatrol status
      show the gateway, this device, and active runs
  clawpatrol kill
      end this user's runs now: every process of each run is killed
  clawpatrol kubeconfig NAME
      print a kubeconfig for the gateway's kubernetes endpoint NAME (its
      address, the gateway's CA, a placeholder token) for kubectl in a run
  clawpatrol uninstall --yes
      remove this device's state (keys, token, CA) from this machine
options:
  --verbose   log the tunnel's events to stderr
`;

export class UsageError extends Error {}

export type Command =
  | { cmd: "join"; url: string; name?: string; profile?: string; caSha256?: string; wholeMachine?: boolean }
  | { cmd: "up" }
  | { cmd: "down" }
  | { cmd: "whole-machine-daemon" }
  | { cmd: "run"; argv: string[]; publish?: string[]; gate?: string[] }
  | { cmd: "inner"; argv: string[] }
  | { cmd: "status" }
  | { cmd: "kill" }
  | { cmd: "kubeconfig"; name: string }
  | { cmd: "uninstall"; yes: boolean }
  | { cmd: "help" };

export interface Parsed {
  command: Command;
  verbose: boolean;
}

/** Parses argv (without the program name). Options of run stop at the first non-option or `--`. */
export function parseArgs(args: string[]): Parsed {
  let verbose = false;
  const rest: string[] = [];
  let i = 0;
  // global options before the subcommand
  for (; i < args.length && args[i]!.startsWith("-"); i++) {
    const a = args[i]!;
    if (a === "--verbose" || a === "-v") verbose = true;
    else if (a === "--help" || a === "-h") return { command: { cmd: "help" }, verbose };
    else throw new UsageError(`unknown option ${a}`);
  }
  const sub = args[i++];
  if (sub === undefined || sub === "help") return { command: { cmd: "help" }, verbose };
  if (sub === "run" || sub === "__inner") {
    const publish: string[] = [];
    const gate: string[] = [];
    for (; i < args.length; i++) {
      const a = args[i]!;
      if (a === "--") {
        i++;
        break;
      }
      if (a === "--verbose" || a === "-v") verbose = true;
      else if (sub === "run" && (a === "--publish" || a === "-p" || a.startsWith("--publish="))) {
        const v = a.startsWith("--publish=") ? a.slice("--publish=".length) : args[++i];
        if (!v) throw new UsageError("--publish needs [HOSTADDR:]HOSTPORT[:PORT], e.g. --publish 18080:8080");
        publish.push(v);
      } else if (sub === "run" && (a === "--gate" || a.startsWith("--gate="))) {
        const v = a.startsWith("--gate=") ? a.slice("--gate=".length) : args[++i];
        if (!v) throw new UsageError("--gate needs command names, e.g. --gate npm,rm");
        gate.push(...v.split(",").map((n) => n.trim()).filter(Boolean));
      } else if (a.startsWith("-")) throw new UsageError(`unknown option for ${sub}: ${a} (put the command after --)`);
      else break;
    }
    const argv = args.slice(i);
    if (argv.length === 0) throw new UsageError(`usage: clawpatrol run [--] COMMAND [ARGS...]`);
    if (sub === "run") return { command: { cmd: "run", argv, ...(publish.length ? { publish } : {}), ...(gate.length ? { gate } : {}) }, verbose };
    return { command: { cmd: "inner", argv }, verbose };
  }
  const opts = new Map<string, string | true>();
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const key = eq > 0 ? a.slice(2, eq) : a.slice(2);
      if (key === "verbose") {
        verbose = true;
        continue;
      }
      const takesValue = key === "name" || key === "profile" || key === "ca-sha256";
      if (takesValue) {
        const v = eq > 0 ? a.slice(eq + 1) : args[++i];
        if (v === undefined || v === "") throw new UsageError(`--${key} needs a value`);
        opts.set(key, v);
      } else if (key === "yes" || key === "whole-machine") {
        opts.set(key, true);
      } else {
        throw new UsageError(`unknown option ${a}`);
      }
    } else if (a === "-y") {
      opts.set("yes", true);
    } else {
      rest.push(a);
    }
  }
  const allow = (names: string[]) => {
    for (const k of opts.keys()) if (!names.includes(k)) throw new UsageError(`${sub} does not take --${k}`);
  };
  switch (sub) {
    case "join": {
      allow(["name", "profile", "ca-sha256", "whole-machine"]);
      if (rest.length !== 1) throw new UsageError("usage: clawpatrol join URL [--name NAME] [--profile PROFILE] [--ca-sha256 FP] [--whole-machine]");
      const c: Command = { cmd: "join", url: rest[0]! };
      if (opts.has("name")) c.name = opts.get("name") as string;
      if (opts.has("profile")) c.profile = opts.get("profile") as string;
      if (opts.has("ca-sha256")) c.caSha256 = opts.get("ca-sha256") as string;
      if (opts.has("whole-machine")) c.wholeMachine = true;
      return { command: c, verbose };
    }
    case "up":
    case "down":
    case DAEMON_COMMAND:
      allow([]);
      if (rest.length) throw new UsageError(`usage: clawpatrol ${sub}`);
      return { command: { cmd: sub === DAEMON_COMMAND ? "whole-machine-daemon" : sub }, verbose };
    case "status":
      allow([]);
      if (rest.length) throw new UsageError("usage: clawpatrol status");
      return { command: { cmd: "status" }, verbose };
    case "kill":
      allow([]);
      if (rest.length) throw new UsageError("usage: clawpatrol kill");
      return { command: { cmd: "kill" }, verbose };
    case "kubeconfig":
      allow([]);
      if (rest.length !== 1) throw new UsageError("usage: clawpatrol kubeconfig NAME");
      return { command: { cmd: "kubeconfig", name: rest[0]! }, verbose };
    case "uninstall":
      allow(["yes"]);
      if (rest.length) throw new UsageError("usage: clawpatrol uninstall --yes");
      return { command: { cmd: "uninstall", yes: opts.get("yes") === true }, verbose };
    default:
      throw new UsageError(`unknown command "${sub}"`);
  }
}

function status(out: (l: string) => void): number {
  const dir = stateDir();
  let s;
  try {
    s = loadState(dir);
  } catch (e) {
    if (e instanceof NotJoined) {
      out(`not joined (no state in ${dir}); run: clawpatrol join https://GATEWAY`);
      return 1;
    }
    throw e;
  }
  out(`gateway:   ${s.gateway_url}${s.ca_sha256 ? ` (CA pinned, SHA-256 ${s.ca_sha256})` : ""}`);
  out(`  endpoint ${s.gateway.endpoint}, public key ${s.gateway.public_key}, DNS ${s.gateway.dns}`);
  out(`device:    ${s.device.name}`);
  out(`  profile  ${s.device.profile}`);
  out(`  address  ${s.device.addresses?.join(", ") || s.device.address}`);
  out(`  joined   ${s.joined_at}`);
  out(`state:     ${dir}`);
  for (const l of statusLines(dir)) out(l);
  const runs = activeRuns();
  if (runs.length === 0) {
    out("tunnel:    no active run");
  } else {
    out(`tunnel:    ${runs.length} active run${runs.length > 1 ? "s" : ""}`);
    for (const r of runs) {
      out(`  pid ${r.pid}: ${r.command.join(" ")}`);
      out(`    since ${r.started_at}, last handshake ${r.last_handshake ?? "never"}, rx ${r.rx_bytes} B, tx ${r.tx_bytes} B`);
    }
  }
  return 0;
}

async function uninstall(yes: boolean, out: (l: string) => void): Promise<number> {
  const dir = stateDir();
  if (!yes) {
    out(`this removes ${dir} (this device's keys, token and the gateway CA).`);
    out(`The device stays enrolled at the gateway until the operator revokes it.`);
    out(`Run again with --yes to do it.`);
    return 1;
  }
  // The record of what `up` changed lives in the state dir: restore the host first.
  if (session(dir).kind !== "down") await down({ dir, out });
  if (activeRuns().length > 0) out("note: runs are still active; they keep their tunnel until they end");
  out(removeState(dir) ? `removed ${dir}` : `nothing to remove (${dir} does not exist)`);
  return 0;
}

export async function main(args: string[]): Promise<number> {
  // A gated command's shim: everything after the name is the command's own.
  if (args[0] === "__shim") return await shim(args.slice(1));
  // A gated command's init, in its own PID namespace (reaper.ts).
  if (args[0] === "__reap") return await reap(args.slice(1));
  const out = (l: string) => process.stdout.write(l + "\n");
  const err = (l: string) => process.stderr.write(`clawpatrol: ${l}\n`);
  let parsed: Parsed;
  try {
    parsed = parseArgs(args);
  } catch (e) {
    if (e instanceof UsageError) {
      err(e.message);
      process.stderr.write(USAGE);
      return 2;
    }
    throw e;
  }
  if (!parsed.verbose && !process.env.CLAWPATROL_LOG_LEVEL) setLogLevel("warn");
  setLogWriter((line) => process.stderr.write(`clawpatrol: ${line}\n`));
  const c = parsed.command;
  try {
    switch (c.cmd) {
      case "help":
        out(USAGE);
        return 0;
      case "join": {
        const dir = stateDir();
        // A re-join swaps the state dir, which holds the record `down` needs.
        if (session(dir).kind !== "down") throw new WholeMachineError("the whole-machine tunnel is up: run clawpatrol down before joining again");
        if (c.wholeMachine && process.getuid?.() !== 0) throw new WholeMachineError("join --whole-machine changes this machine's routes and DNS and needs root: sudo clawpatrol join ... --whole-machine");
        await join({ url: c.url, name: c.name, profile: c.profile, dir, ...(c.caSha256 ? { caSha256: c.caSha256 } : {}) });
        return c.wholeMachine ? await up({ dir, out }) : 0;
      }
      case "up":
        return await up({ dir: stateDir(), out });
      case "down":
        return await down({ dir: stateDir(), out });
      case "whole-machine-daemon":
        return await wholeMachineDaemon(stateDir());
      case "run":
        return await run({ stateDir: stateDir(), argv: c.argv, ...(c.publish ? { publish: c.publish } : {}), ...(c.gate ? { gate: c.gate } : {}) });
      case "inner":
        return await inner(c.argv);
      case "status":
        return status(out);
      case "kill": {
        const ended = killLocalRuns(activeRuns());
        if (ended.length === 0) {
          out("no active run to end");
          return 1;
        }
        for (const pid of ended) out(`ended the run of pid ${pid}`);
        return 0;
      }
      case "kubeconfig":
        return await kubeconfig({ stateDir: stateDir(), name: c.name, out: (text) => process.stdout.write(text) });
      case "uninstall":
        return await uninstall(c.yes, out);
    }
  } catch (e) {
    if (e instanceof JoinError || e instanceof RunError || e instanceof NotJoined || e instanceof WholeMachineError || e instanceof HostChangeError || e instanceof KubeconfigError) {
      err(e.message);
      return 1;
    }
    err(`error: ${(e as Error).message}`);
    return 1;
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  process.exit(code);
}
