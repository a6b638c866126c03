// The ssh family: what CEL conditions see as `ssh.*` for one judged SSH
// request (endpoint type ssh): a channel open (session, direct-tcpip), a
// channel request (exec, shell, subsystem, pty-req, env, auth-agent-req,
// x11-req) or a global request (tcpip-forward).
//
// `ssh.stdin` is deferred: the handler buffers an exec's stdin (bounded)
// only when a rule that applies reads it; a condition that reads it when it
// is unknown or was cut at the bound fails closed.
import { createHash } from "node:crypto";
import { astReadsFields, baseEnvironment } from "./cel-base.ts";
import type { FamilyDefinition } from "./types.ts";

/**
 *  session         a session channel is opened (every shell, exec, sftp starts with one)
 *  shell, exec, subsystem, pty, env, x11
 *                  the session's channel requests (pty-req, x11-req)
 *  agent           auth-agent-req@openssh.com: agent forwarding
 *  forward         a direct-tcpip channel (`ssh -L`, `ssh -W`)
 *  remote_forward  a tcpip-forward global request (`ssh -R`)
 */
export const SSH_VERBS = ["session", "shell", "exec", "subsystem", "pty", "env", "forward", "remote_forward", "agent", "x11"] as const;
export type SshVerb = (typeof SSH_VERBS)[number];

/** Verbs that go through only when a rule allows them by name: the default verdict never does. */
export const SSH_EXPLICIT_VERBS: ReadonlySet<SshVerb> = new Set(["agent", "x11"]);

export interface SshFacts {
  verb: SshVerb;
  /** The endpoint host the agent reached (the name the flow was claimed under). */
  host: string;
  /** The user the agent logged in as (never the credential's real user). */
  user: string;
  /** exec: the command line as sent. */
  command?: string;
  /** subsystem: its name (sftp). */
  subsystem?: string;
  /** forward: the destination; remote_forward: the address and port the server should listen on. */
  forwardHost?: string;
  forwardPort?: number;
  /** The channel's environment so far; for verb env, the one variable being set. */
  env: Record<string, string>;
  /** exec: what the agent sent on stdin before EOF, when the handler buffered it. */
  stdin?: string;
  /** Why stdin is unknown (not buffered, or past the bound), for the error a rule gets. */
  stdinUnknown?: string;
}

/** Thrown when a condition reads stdin the handler did not (or could not wholly) buffer. */
export class SshStdinUnknownError extends Error {
  constructor(reason: string | undefined) {
    super(`ssh.stdin is unknown${reason ? ` (${reason})` : ""}`);
  }
}

export class SshValue {
  readonly #stdin: string | undefined;
  readonly #why: string | undefined;
  constructor(
    readonly verb: string,
    readonly user: string,
    readonly command: string,
    readonly subsystem: string,
    readonly forward_host: string,
    readonly forward_port: bigint,
    readonly env: Record<string, string>,
    stdin: string | undefined,
    why: string | undefined,
  ) {
    this.#stdin = stdin;
    this.#why = why;
  }
  get stdin(): string {
    if (this.#stdin === undefined) throw new SshStdinUnknownError(this.#why);
    return this.#stdin;
  }
}

const DEFERRED_FIELDS = new Set(["stdin"]);

const environment = baseEnvironment()
  .registerType("SshRequest", {
    ctor: SshValue,
    fields: {
      verb: "string",
      user: "string",
      command: "string",
      subsystem: "string",
      forward_host: "string",
      forward_port: "int",
      env: "map<string, string>",
      stdin: "string",
    },
  })
  .registerVariable("ssh", "SshRequest");

/** Commands and stdin in events and prompts are cut to this many characters. */
const ACTION_CHARS = 4096;

function target(f: SshFacts): string {
  const host = f.forwardHost ?? "";
  return `${host.includes(":") ? `[${host}]` : host}:${f.forwardPort ?? 0}`;
}

export function sshSummary(f: SshFacts): string {
  const where = `${f.user}@${f.host}`;
  switch (f.verb) {
    case "exec":
      return `exec ${cut(f.command ?? "", 200)} (${where})`;
    case "subsystem":
      return `subsystem ${f.subsystem ?? ""} (${where})`;
    case "env":
      return `env ${Object.keys(f.env).join(", ")} (${where})`;
    case "forward":
    case "remote_forward":
      return `${f.verb} ${target(f)} (${where})`;
    default:
      return `${f.verb} (${where})`;
  }
}

export const sshFamily: FamilyDefinition<SshFacts> = {
  name: "ssh",
  variable: "ssh",
  environment,
  celValue: (f) =>
    new SshValue(f.verb, f.user, f.command ?? "", f.subsystem ?? "", f.forwardHost ?? "", BigInt(f.forwardPort ?? 0), f.env, f.stdin, f.stdinUnknown),
  readsDeferred: (ast) => astReadsFields(ast, "ssh", DEFERRED_FIELDS),
  summary: sshSummary,
  action: (f) => ({
    verb: f.verb,
    user: f.user,
    host: f.host,
    ...(f.command !== undefined ? { command: cut(f.command, ACTION_CHARS) } : {}),
    ...(f.subsystem !== undefined ? { subsystem: f.subsystem } : {}),
    ...(f.forwardHost !== undefined ? { forward_host: f.forwardHost, forward_port: f.forwardPort ?? 0 } : {}),
    // Names only: values may carry tokens (the redactor would catch known secrets, not unknown ones).
    ...(Object.keys(f.env).length > 0 ? { env: Object.keys(f.env) } : {}),
    ...(f.stdin !== undefined ? { stdin_bytes: Buffer.byteLength(f.stdin) } : {}),
  }),
  fingerprint: (f) =>
    createHash("sha256")
      .update(
        [
          "ssh",
          f.verb,
          f.host,
          f.user,
          f.command ?? "",
          f.subsystem ?? "",
          f.forwardHost ?? "",
          String(f.forwardPort ?? ""),
          JSON.stringify(Object.entries(f.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
          f.stdin ?? "",
        ].join("\0"),
      )
      .digest("hex"),
};

function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
