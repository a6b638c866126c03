// Putting the shims in place for `clawpatrol run --gate NAMES` (run by the
// inner stage, root of the run's user namespace, before the agent starts):
//   1. each gated name is looked up on PATH and the usual bin directories:
//      the first hit is the binary the warden runs, and every hit (symlinks
//      resolved) is a file the agent must not reach;
//   2. a shim script per name in <state dir>/gate/bin (`#!/bin/sh`, then
//      `exec clawpatrol __shim SOCKET NAME "$@"`: the name is in the file,
//      so argv[0], copies and symlinks do not matter); the warden's socket
//      beside it; the whole directory then bound read-only onto itself;
//   3. the agent starts in a mount namespace of its own where each real
//      file has its shim bound over it, read-only (agentArgv). Those mounts
//      belong to the run's user namespace, which the agent is not root of:
//      it cannot unmount them, and in a namespace of its own they are locked.
//      The warden stays in the inner stage's mount namespace, where the real
//      files are still there.
import { accessSync, chmodSync, constants, mkdirSync, realpathSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { gateNameProblem } from "../../app/families/exec.ts";

export const STANDARD_BIN_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

export interface GatedBinary {
  name: string;
  /** What the warden runs (the first hit on PATH). */
  run: string;
  /** Real files (symlinks resolved) to cover with the shim. */
  cover: string[];
}

export interface GatePlan {
  dir: string;
  binDir: string;
  socket: string;
  binaries: GatedBinary[];
  /** Names that are not installed here (the shim in binDir answers for them). */
  missing: string[];
}

export class GateSetupError extends Error {}

/** Where the gate's own tools are looked up: never the agent's PATH (the setup runs them privileged). */
export const TRUSTED_PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

export interface GateTools {
  unshare: string;
  mount: string;
  setsid: string;
  script: string;
  env: string;
}

/** The tools the gate runs, by absolute path from TRUSTED_PATH. */
export function gateTools(): GateTools {
  const find = (name: string): string => {
    const p = Bun.which(name, { PATH: TRUSTED_PATH });
    if (!p) throw new GateSetupError(`--gate needs \`${name}\` (util-linux, coreutils) in ${TRUSTED_PATH}`);
    return p;
  };
  return { unshare: find("unshare"), mount: find("mount"), setsid: find("setsid"), script: find("script"), env: find("env") };
}

function executable(p: string): boolean {
  try {
    if (!statSync(p).isFile()) return false;
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Where each name is installed, in PATH order then the usual directories. */
export function locate(names: readonly string[], pathVar: string | undefined): { binaries: GatedBinary[]; missing: string[] } {
  const dirs = [...new Set([...(pathVar ?? "").split(":").filter((d) => d.startsWith("/")), ...STANDARD_BIN_DIRS])];
  const binaries: GatedBinary[] = [];
  const missing: string[] = [];
  for (const name of names) {
    const problem = gateNameProblem(name);
    if (problem) throw new GateSetupError(`--gate: ${problem}`);
    const hits = dirs.map((d) => path.join(d, name)).filter(executable);
    if (hits.length === 0) {
      missing.push(name);
      continue;
    }
    binaries.push({ name, run: hits[0]!, cover: [...new Set(hits.map((h) => realpathSync(h)))] });
  }
  return { binaries, missing };
}

/** Mount points from /proc/self/mountinfo (field 5, octal escapes undone). */
export function mountPoints(mountinfo: string): string[] {
  return mountinfo
    .split("\n")
    .map((l) => l.split(" ")[4])
    .filter((m): m is string => m !== undefined && m.startsWith("/"))
    .map((m) => m.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

/** Directories where the ghost sandbox may stage the workspace on a private tmpfs (the first that fits). */
export const GHOST_STAGE_CANDIDATES = ["/mnt", "/media", "/srv", "/opt", "/var/tmp", "/run", "/tmp"];

const within = (p: string, dir: string) => p === dir || p.startsWith(dir.endsWith("/") ? dir : `${dir}/`);

/**
 * The ghost sandbox, as mount commands for the command's own mount
 * namespace (run as root of the run's user namespace, before the user
 * switch; no other process sees that namespace), with `mount` alone (it
 * cannot be a gated name; mkdir could be): the workspace bound for a moment
 * over a directory out of the way (such as /mnt), an empty tmpfs over $HOME, the workspace moved back (its path
 * recreated inside the new $HOME when it lives there), every other mount
 * point made read-only, and the cwd entered again by its path (so it is the
 * workspace's new mount, not the old directory). Mounts under $HOME or the
 * workspace are hidden by then and left alone. Undefined when no stage
 * directory fits.
 */
export function ghostMounts(tools: GateTools, o: { workspace: string; home: string | undefined; mounts: string[]; cwd: string; exists: (p: string) => boolean }): string[] | undefined {
  const q = shQuote;
  const m = q(tools.mount);
  const home = o.home !== undefined && o.home.startsWith("/") && o.home !== "/" ? o.home : undefined;
  const avoid = [o.workspace, ...(home ? [home] : [])];
  // A directory with nothing mounted on or below it, away from both.
  const root = GHOST_STAGE_CANDIDATES.find((r) => o.exists(r) && avoid.every((a) => !within(a, r) && !within(r, a)) && !o.mounts.some((p) => within(p, r)));
  if (!root) return undefined;
  const special = (p: string) => /^\/(proc|sys|dev)(\/|$)/.test(p);
  const readOnly = [...new Set(o.mounts)].filter((p) => !special(p) && avoid.every((a) => !within(p, a)));
  return [
    `${m} --bind ${q(o.workspace)} ${q(root)}`,
    ...(home ? [`${m} -t tmpfs -o mode=0755,size=64m clawpatrol-ghost-home ${q(home)}`] : []),
    // X-mount.mkdir only where the path must be made again (libmount then fails the move in a user namespace otherwise).
    // Bound back (a move is refused in a user namespace); the stage keeps a read-only view.
    home && within(o.workspace, home) ? `${m} --bind -o X-mount.mkdir ${q(root)} ${q(o.workspace)}` : `${m} --bind ${q(root)} ${q(o.workspace)}`,
    `${m} -o remount,bind,ro ${q(root)}`,
    ...readOnly.map((p) => `${m} -o remount,bind,ro ${q(p)}`),
    `cd ${q(o.cwd)}`,
  ];
}

/** POSIX shell single quoting. */
export function shQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** The shim scripts and the socket's directory (the socket itself is the warden's to bind). */
export function writeShims(stateDir: string, names: readonly string[], self: readonly string[], pathVar: string | undefined): GatePlan {
  const { binaries, missing } = locate(names, pathVar);
  const dir = path.join(stateDir, "gate");
  const binDir = path.join(dir, "bin");
  const socket = path.join(dir, "warden.sock");
  mkdirSync(binDir, { recursive: true, mode: 0o755 });
  chmodSync(dir, 0o755);
  for (const name of names) {
    const script = `#!/bin/sh\n# clawpatrol run --gate: ${name} goes through the command gate\nexec ${[...self, "__shim", socket, name].map(shQuote).join(" ")} "$@"\n`;
    writeFileSync(path.join(binDir, name), script, { mode: 0o555 });
  }
  return { dir, binDir, socket, binaries, missing };
}

/**
 * The argv that starts the agent (`command`, already wrapped in its user
 * namespace) in a mount namespace where each gated file is its shim.
 */
export function agentArgv(plan: GatePlan, tools: GateTools, command: readonly string[], extra: readonly string[] = []): string[] {
  const binds = plan.binaries.flatMap((b) => b.cover.map((target) => `${shQuote(tools.mount)} --bind -o ro ${shQuote(path.join(plan.binDir, b.name))} ${shQuote(target)}`));
  const script = ["set -e", ...binds, ...extra, 'exec "$@"'].join("\n");
  return [tools.unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "clawpatrol-gate", ...command];
}
