// The exec family: what CEL conditions see as `exec.*` for one command an
// agent ran through the command gate (`clawpatrol run --gate ...`, endpoint
// type exec). The device's warden describes the command; the gateway judges
// it with the same rules, approvals and events as a network request.
//
//   exec.command   basename of the command ("git")
//   exec.path      the real binary the warden runs ("/usr/bin/git")
//   exec.argv      [command, args...] (argv[0] is the basename, whatever the agent typed)
//   exec.args      the arguments joined with single spaces ("push --force origin")
//   exec.cwd       the agent's working directory
//   exec.env       the environment the agent passed (values never reach an event)
//   exec.paths     every argument that names a path: absolute, normalised,
//                  symlinks resolved on the device
//   exec.tty       whether stdin is a terminal
//   exec.uid       the agent's uid
//   exec.prefix([...])  true when argv starts with these words:
//                  exec.prefix(["git", "push"]) matches `git push` and `git push --force`
//
// Rule settings of this family: `timeout` (the process tree is killed after
// it), `env_scrub` (variables removed before the command runs, on top of
// BUILTIN_ENV_SCRUB and the defaults' list) and `allowed_paths` (exec.paths
// outside them deny the command).
import { createHash } from "node:crypto";
import { posix } from "node:path";
import { baseEnvironment } from "./cel-base.ts";
import type { FamilyDefinition } from "./types.ts";

export interface ExecFacts {
  command: string;
  path: string;
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  paths: string[];
  tty: boolean;
  uid: number;
}

/** Variables never passed to a gated command (a trailing `*` is a prefix). */
export const BUILTIN_ENV_SCRUB: readonly string[] = [
  "LD_PRELOAD",
  "LD_LIBRARY_PATH",
  "LD_AUDIT",
  "LD_DEBUG_OUTPUT",
  "DOCKER_HOST",
  "DOCKER_CONFIG",
  "KUBECONFIG",
  "AWS_*",
  "GOOGLE_APPLICATION_CREDENTIALS",
  "CLOUDSDK_*",
  "AZURE_*",
  "ARM_CLIENT_SECRET",
  "DIGITALOCEAN_ACCESS_TOKEN",
];

/** The timeout of a gated command when neither its rule nor `defaults { exec_timeout }` sets one. */
export const DEFAULT_EXEC_TIMEOUT_MS = 30 * 60_000;

/** A rule's exec settings (absent fields: the defaults'). */
export interface ExecRuleSettings {
  timeoutMs?: number;
  envScrub?: string[];
  allowedPaths?: string[];
  /** `sandbox = "ghost"` (rules only): a throwaway mount namespace where only the workspace is writable. */
  sandbox?: "none" | "ghost";
  /** The ghost's writable directory (default: the command's cwd). */
  workspace?: string;
}

export class ExecValue {
  readonly uid: bigint;
  constructor(
    readonly command: string,
    readonly path: string,
    readonly argv: string[],
    readonly cwd: string,
    readonly env: Record<string, string>,
    readonly paths: string[],
    readonly tty: boolean,
    uid: number,
  ) {
    this.uid = BigInt(uid);
  }
  get args(): string {
    return this.argv.slice(1).join(" ");
  }
}

/** Whether argv begins with the words of `prefix` (an empty prefix matches everything). */
export function argvHasPrefix(argv: readonly string[], prefix: readonly unknown[]): boolean {
  if (prefix.length > argv.length) return false;
  return prefix.every((w, i) => w === argv[i]);
}

const environment = baseEnvironment()
  .registerType("ExecCommand", {
    ctor: ExecValue,
    fields: {
      command: "string",
      path: "string",
      argv: "list<string>",
      args: "string",
      cwd: "string",
      env: "map<string, string>",
      paths: "list<string>",
      tty: "bool",
      uid: "int",
    },
  })
  .registerVariable("exec", "ExecCommand")
  .registerFunction("ExecCommand.prefix(list<string>): bool", (e: ExecValue, words: unknown[]) => argvHasPrefix(e.argv, words))
  .registerFunction("prefix(list<string>, list<string>): bool", (argv: string[], words: unknown[]) => argvHasPrefix(argv, words));

/** Arguments shown in summaries are cut to this many characters. */
const SUMMARY_CHARS = 200;

export const execFamily: FamilyDefinition<ExecFacts> = {
  name: "exec",
  variable: "exec",
  environment,
  celValue: (f) => new ExecValue(f.command, f.path, f.argv, f.cwd, f.env, f.paths, f.tty, f.uid),
  // Everything is known before the command runs: nothing to gather on demand.
  readsDeferred: () => false,
  summary: (f) => cut([f.command, ...f.argv.slice(1)].join(" ")),
  action: (f) => ({
    command: f.command,
    path: f.path,
    argv: f.argv.slice(0, 256).map((a) => cut(a, 1024)),
    cwd: f.cwd,
    paths: f.paths.slice(0, 64),
    tty: f.tty,
    uid: f.uid,
    // Names only: values may be secrets.
    env: Object.keys(f.env).sort().slice(0, 256),
  }),
  fingerprint: (f) => createHash("sha256").update(`exec\0${f.path}\0${f.cwd}\0${f.argv.join("\0")}`).digest("hex"),
};

function cut(text: string, max = SUMMARY_CHARS): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** Whether a variable name is on a scrub list (`AWS_*` is a prefix). */
export function scrubbed(name: string, lists: readonly (readonly string[])[]): boolean {
  for (const list of lists) {
    for (const pattern of list) {
      if (pattern.endsWith("*") ? name.startsWith(pattern.slice(0, -1)) : name === pattern) return true;
    }
  }
  return false;
}

/** The names of `env` to remove before the command runs (built-in list, the defaults', the rule's). */
export function envToScrub(env: Record<string, string>, defaults: readonly string[] = [], rule: readonly string[] = []): string[] {
  return Object.keys(env).filter((n) => scrubbed(n, [BUILTIN_ENV_SCRUB, defaults, rule])).sort();
}

/** A scrub pattern: a variable name, optionally ending in `*`. */
export function isScrubPattern(p: string): boolean {
  return /^[A-Za-z_][A-Za-z0-9_]*\*?$/.test(p) || p === "*";
}

/** The first of `paths` outside every allowed directory, or undefined (an empty allow list allows nothing). */
export function pathOutside(paths: readonly string[], allowed: readonly string[]): string | undefined {
  return paths.find((p) => !allowed.some((a) => a === "/" || p === a || p.startsWith(a.endsWith("/") ? a : `${a}/`)));
}

/**
 * The arguments of argv (without argv[0]) that name paths, before symlinks
 * are resolved: anything with a slash, `.`/`..`/`~`-forms, the value of
 * `--opt=/x`, and names `exists` says are there relative to the cwd.
 */
export function pathArguments(args: readonly string[], cwd: string, home: string | undefined, exists: (abs: string) => boolean): string[] {
  const out: string[] = [];
  for (const a of args) {
    let candidate = a;
    if (a.startsWith("-")) {
      const eq = a.indexOf("=");
      if (eq < 0) continue;
      candidate = a.slice(eq + 1);
    }
    if (candidate === "") continue;
    let abs: string | undefined;
    if (candidate === "~" || candidate.startsWith("~/")) abs = home ? posix.join(home, candidate.slice(1)) : undefined;
    else if (candidate.startsWith("/")) abs = posix.normalize(candidate);
    else if (candidate.includes("/") || candidate === "." || candidate === "..") abs = posix.resolve(cwd, candidate);
    else if (!candidate.includes("\0") && exists(posix.resolve(cwd, candidate))) abs = posix.resolve(cwd, candidate);
    if (abs !== undefined && !out.includes(abs)) out.push(stripSlash(abs));
  }
  return out;
}

function stripSlash(p: string): string {
  return p.length > 1 && p.endsWith("/") ? p.slice(0, -1) : p;
}

/** exec.paths as the gateway keeps them: absolute and normalised (the device resolved symlinks). */
export function normalisePaths(paths: readonly string[], cwd: string): string[] {
  return [...new Set(paths.map((p) => stripSlash(posix.resolve(cwd, p))))];
}

/** What the gate itself runs in the agent's namespace before the agent starts: never gated. */
const GATE_TOOLS = new Set(["sh", "mount", "unshare"]);

/** Names a gate may list: a plain file name, and not a tool the gate itself uses to set the shims up. */
export function gateNameProblem(name: string): string | undefined {
  if (!/^[A-Za-z0-9._+-]+$/.test(name) || name === "." || name === "..") return `"${name}" is not a command name (a file name, no slashes)`;
  if (GATE_TOOLS.has(name)) return `"${name}" cannot be gated (the gate runs sh, mount and unshare to put the shims in place)`;
  return undefined;
}
