// The warden: the inner stage of `clawpatrol run --gate` serving the shims.
// It is pid 1 of the run's pid namespace and root of the run's user
// namespace, which the agent (a nested user namespace) cannot ptrace, and
// whose files (/proc/1/root) it cannot reach. Per shim connection:
//   1. who: SO_PEERCRED gives the caller's pid; its cwd comes from
//      /proc/PID/cwd, not from the message; the real binary is the one the
//      warden found for that name (setup.ts), never a path the caller names;
//   2. ask the gateway (POST https://clawpatrol.internal/gate/commands,
//      inside the tunnel): deny -> one line on the caller's stderr, exit 126;
//      held -> a line saying for whom it waits, then long polls;
//   3. run: the real binary, in this network namespace and a mount
//      namespace where every other gated name is still its shim, as the
//      agent's uid/gid (a user namespace of its own), in the caller's cwd,
//      with the caller's own stdin/stdout/stderr (passed over the socket) and
//      the environment minus env_scrub; with a terminal on stdin, under
//      `script` (a pty of its own: raw mode, window size, Ctrl-C as a byte);
//      in a PID namespace of its own whose init is `clawpatrol __reap`
//      (reaper.ts), so killing it at the timeout or by the kill switch kills
//      every process of the command, double-forked and setsid ones included;
//   4. report: the exit status to the shim (128+N for a signal) and to the
//      gateway (exit, signal, duration, timed out, killed).
// Every request to the gateway carries the warden's proof (the device's API
// token, handed to the inner stage by the outer one; the agent cannot read
// this process's memory or environment). When the kill switch is on
// (killAll), running commands are killed and new ones refused here.
import { readFileSync, readlinkSync, readSync, realpathSync, existsSync, writeSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathArguments } from "../../app/families/exec.ts";
import { GATE_REFUSED } from "./shim.ts";
import { agentArgv, gateTools, ghostMounts, mountPoints, shQuote, TRUSTED_PATH, type GatePlan, type GateTools } from "./setup.ts";
import { acceptOne, closeFd, isTty, listenSeqpacket, peerCred, receiveMessage, sendMessage } from "./sock.ts";
import type { ReapStatus } from "./reaper.ts";
import { descendants } from "./tree.ts";

export const GATE_API = "https://clawpatrol.internal/gate/commands";
const GATE_TOKEN_HEADER = "Clawpatrol-Gate-Token";
const POLL_MS = 20;

export interface WardenOptions {
  plan: GatePlan;
  /** The agent's uid/gid (the invoking user's); root runs: no user namespace. */
  uid: number;
  gid: number;
  root: boolean;
  /** PEM of the gateway CA (the verdict API is served with a leaf it signs). */
  caCert: string;
  /** Base URL of the verdict API (tests point it elsewhere). */
  api?: string;
  /** Proves to the gateway that a request is the warden's (the device's API token). */
  proof: string;
  /** The argv that re-runs this program (the per-command reaper). */
  self: string[];
}

/** A command being served: how to kill it, and when its serving is over. */
interface Serving {
  kill(): void;
  done: Promise<void>;
}

type Answer =
  | { status: "allow"; id: string; token: string; rule?: string; reason: string; timeout_ms: number; env_scrub: string[]; sandbox?: "ghost"; workspace?: string }
  | { status: "deny"; id: string; rule?: string; reason: string }
  | { status: "held"; id: string; token: string; rule?: string; reason: string; approvers: string[] };

interface Request {
  command: string;
  args: string[];
  env: Record<string, string>;
}

export class Warden {
  private listener: number | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly byName: Map<string, string>;
  private readonly api: string;
  private readonly tools: GateTools;
  private readonly serving = new Set<Serving>();
  /** Set by the kill switch: every command is refused from then on. */
  private killedBy: string | undefined;

  constructor(private readonly o: WardenOptions) {
    this.byName = new Map(o.plan.binaries.map((b) => [b.name, b.run]));
    this.api = o.api ?? GATE_API;
    this.tools = gateTools();
  }

  start(): void {
    this.listener = listenSeqpacket(this.o.plan.socket);
    this.timer = setInterval(() => {
      for (;;) {
        const conn = acceptOne(this.listener!);
        if (conn === undefined) return;
        void this.serve(conn).catch(() => closeFd(conn));
      }
    }, POLL_MS);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.listener !== undefined) closeFd(this.listener);
  }

  /** The kill switch: running commands killed (each reports it), new ones refused; resolves when they are reported or after `ms`. */
  async killAll(line: string, ms = 1_500): Promise<void> {
    this.killedBy = line;
    const all = [...this.serving];
    for (const s of all) s.kill();
    await Promise.race([Promise.all(all.map((s) => s.done)), Bun.sleep(ms)]);
  }

  private async serve(conn: number): Promise<void> {
    let finish!: () => void;
    const serving: Serving = { kill: () => undefined, done: new Promise((r) => (finish = r)) };
    this.serving.add(serving);
    try {
      await this.serveOne(conn, serving);
    } finally {
      this.serving.delete(serving);
      finish();
    }
  }

  private async serveOne(conn: number, serving: Serving): Promise<void> {
    const cred = peerCred(conn);
    const first = await nextMessage(conn, 5_000);
    if (!first || first.kind !== "message") return closeFd(conn);
    const [stdin, stdout, stderr] = first.fds;
    const extra = first.fds.slice(3);
    for (const f of extra) closeFd(f);
    const req = parseRequest(first.value);
    if (!req || stdin === undefined || stdout === undefined || stderr === undefined) {
      for (const f of first.fds.slice(0, 3)) closeFd(f);
      sendMessage(conn, { type: "exit", code: GATE_REFUSED });
      return closeFd(conn);
    }
    const say = (line: string) => {
      try {
        writeSync(stderr, `clawpatrol: ${line}\n`);
      } catch {
        /* the caller's stderr is gone */
      }
    };
    let code = GATE_REFUSED;
    try {
      code = await this.decideAndRun(conn, cred.pid, req, { stdin, stdout, stderr }, say, serving);
    } catch (e) {
      say(`${req.command}: the command gate failed: ${(e as Error).message}`);
    } finally {
      closeFd(stdin);
      closeFd(stdout);
      closeFd(stderr);
      sendMessage(conn, { type: "exit", code });
      closeFd(conn);
    }
  }

  private async decideAndRun(conn: number, pid: number, req: Request, stdio: { stdin: number; stdout: number; stderr: number }, say: (l: string) => void, serving: Serving): Promise<number> {
    const real = this.byName.get(req.command);
    const line = [req.command, ...req.args].join(" ");
    if (this.killedBy) {
      say(`${line}: refused: ${this.killedBy}`);
      return GATE_REFUSED;
    }
    if (!real) {
      say(`${req.command}: not installed here (gated, but no real binary was found when the run started)`);
      return 127;
    }
    let cwd: string;
    try {
      cwd = readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      say(`${req.command}: cannot read the caller's working directory`);
      return GATE_REFUSED;
    }
    const tty = isTty(stdio.stdin);
    const description = {
      command: req.command,
      path: real,
      argv: [req.command, ...req.args],
      cwd,
      env: req.env,
      paths: resolvedPaths(req.args, cwd, req.env.HOME),
      tty,
      uid: this.o.uid,
    };
    let answer = await this.call<Answer>("POST", this.api, undefined, description);
    if (answer.status === "held") {
      const held = answer;
      say(`${line}: held by rule "${held.rule ?? "?"}" (${held.reason}); waiting for approval by ${held.approvers.join(", ") || "an approver"}`);
      for (;;) {
        const gone = await watchFor(conn, 0);
        if (gone === "gone" || gone === "SIGINT" || gone === "SIGTERM" || gone === "SIGHUP") {
          await this.call("POST", `${this.api}/${held.id}/cancel`, held.token, {}).catch(() => undefined);
          say(`${line}: no longer waiting`);
          return GATE_REFUSED;
        }
        answer = await this.call<Answer>("GET", `${this.api}/${held.id}?wait=2`, held.token);
        if (answer.status !== "held") break;
      }
    }
    if (answer.status === "deny") {
      say(`${line}: denied${answer.rule ? ` by rule "${answer.rule}"` : ""}: ${answer.reason}`);
      return GATE_REFUSED;
    }
    if (answer.status !== "allow") throw new Error("the gateway answered something else");
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.env)) if (!answer.env_scrub.includes(k)) env[k] = v;
    const started = performance.now();
    const ghost = answer.sandbox === "ghost" ? (answer.workspace ?? cwd) : undefined;
    const outcome = await this.run(conn, req.command, real, req.args, cwd, env, stdio, tty, answer.timeout_ms, serving, ghost);
    if (outcome.killed) say(`${line}: killed: ${this.killedBy ?? "the kill switch"}`);
    else if (outcome.timedOut) say(`${line}: killed after its timeout (${Math.round(answer.timeout_ms / 1000)} s)`);
    if (outcome.error) say(`${line}: could not run: ${outcome.error}`);
    const report = {
      exit: outcome.code,
      ...(outcome.signal ? { signal: outcome.signal } : {}),
      duration_ms: Math.round(performance.now() - started),
      timed_out: outcome.timedOut,
      ...(outcome.error ? { error: outcome.error } : {}),
      ...(outcome.killed ? { killed: true } : {}),
    };
    await this.call("POST", `${this.api}/${answer.id}/done`, answer.token, report).catch(() => undefined);
    return outcome.code;
  }

  private async run(
    conn: number,
    name: string,
    real: string,
    args: string[],
    cwd: string,
    env: Record<string, string>,
    stdio: { stdin: number; stdout: number; stderr: number },
    tty: boolean,
    timeoutMs: number,
    serving: Serving,
    ghost: string | undefined,
  ): Promise<{ code: number; signal?: string; timedOut: boolean; killed: boolean; error?: string }> {
    const t = this.tools;
    // Until the user namespace switch everything runs privileged, so it runs
    // with a clean environment and absolute paths; the agent's environment
    // (scrubbed) is handed over by env -i at the last step.
    const asAgent = this.o.root ? [] : [t.unshare, "--user", `--map-user=${this.o.uid}`, `--map-group=${this.o.gid}`, "--"];
    const withEnv = (e: Record<string, string>) => [t.env, "-i", ...Object.entries(e).filter(([k]) => k !== "" && !k.includes("=")).map(([k, v]) => `${k}=${v}`)];
    let argv: string[];
    if (tty) {
      // A pty of its own (script), so the command has a controlling terminal
      // and the caller's terminal is never shared between two sessions.
      const restoreShell = env.SHELL !== undefined ? `SHELL=${shQuote(env.SHELL)}; export SHELL; ` : "unset SHELL; ";
      argv = [t.setsid, ...asAgent, ...withEnv({ ...env, SHELL: "/bin/sh" }), t.script, "-q", "-e", "-c", `${restoreShell}exec ${[real, ...args].map(shQuote).join(" ")}`, "/dev/null"];
    } else {
      argv = [t.setsid, ...asAgent, ...withEnv(env), real, ...args];
    }
    // Every other gated name is still its shim for the command and what it
    // starts (`bash -c 'rm ...'` asks again for rm); only its own binary is real.
    const others = { ...this.o.plan, binaries: this.o.plan.binaries.filter((b) => b.name !== name) };
    // The ghost sandbox: only the workspace writable, an empty $HOME (setup.ts).
    let extra: string[] = [];
    if (ghost !== undefined) {
      if (!existsSync(ghost)) return { code: 126, timedOut: false, killed: false, error: `the ghost workspace ${ghost} does not exist` };
      const lines = ghostMounts(t, { workspace: ghost, home: env.HOME, mounts: mountPoints(readFileSync("/proc/self/mountinfo", "utf8")), cwd, exists: existsSync });
      if (!lines) return { code: 126, timedOut: false, killed: false, error: "no directory to stage the ghost workspace in" };
      extra = lines;
    }
    argv = agentArgv(others, t, argv, extra);
    // A PID namespace of its own, its init our reaper: killing that kills
    // every process of the command (reaper.ts). The reaper reports on fd 3.
    argv = [t.unshare, "--pid", "--fork", "--kill-child", "--mount", "--mount-proc", "--propagation", "private", "--", ...this.o.self, "__reap", ...(tty ? ["--tty"] : []), "--", ...argv];
    let proc: ReturnType<typeof Bun.spawn>;
    try {
      proc = Bun.spawn(argv, { stdio: [stdio.stdin, stdio.stdout, stdio.stderr, "pipe"], cwd, env: { PATH: TRUSTED_PATH } });
    } catch (e) {
      return { code: 126, timedOut: false, killed: false, error: (e as Error).message };
    }
    // SIGKILL to unshare: --kill-child takes the reaper with it, and the
    // kernel every process in the reaper's namespace.
    const killAll = () => signal(proc.pid, "SIGKILL");
    let timedOut = false;
    let killed = false;
    serving.kill = () => {
      killed = true;
      killAll();
    };
    const deadline = setTimeout(() => {
      timedOut = true;
      killAll();
    }, timeoutMs);
    // Signals the shim forwards go to the reaper (pid 1 of the command's
    // namespace: it gets only what it handles, and passes them on); the
    // shim going away kills the command.
    let exited = false;
    const relay = (async () => {
      while (!exited) {
        const s = await watchFor(conn, 50);
        if (exited) return;
        if (s === "gone") {
          killAll();
          return;
        }
        if (s === undefined) continue;
        const reaper = descendants(proc.pid)[0];
        if (reaper !== undefined) signal(reaper, s);
      }
    })();
    await proc.exited;
    exited = true;
    clearTimeout(deadline);
    await relay;
    const status = readStatus(proc.stdio[3] as unknown as number);
    if (!status || killed || timedOut) return { code: 137, signal: "SIGKILL", timedOut, killed };
    if ("signal" in status) {
      const n = os.constants.signals[status.signal as NodeJS.Signals] ?? 0;
      return { code: 128 + n, signal: status.signal, timedOut, killed };
    }
    return { code: status.exit & 255, timedOut, killed };
  }

  private async call<T>(method: string, url: string, token: string | undefined, body?: unknown): Promise<T> {
    const res = await fetch(url, {
      method,
      headers: { "content-type": "application/json", authorization: `Bearer ${this.o.proof}`, ...(token ? { [GATE_TOKEN_HEADER]: token } : {}) },
      ...(body !== undefined && method !== "GET" ? { body: JSON.stringify(body) } : {}),
      tls: { ca: this.o.caCert },
    } as RequestInit);
    const text = await res.text();
    if (res.status !== 200) throw new Error(`the gateway answered ${res.status}: ${text.trim().slice(0, 200)}`);
    return JSON.parse(text) as T;
  }
}

function parseRequest(v: unknown): Request | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const r = v as Record<string, unknown>;
  if (r.type !== "run" || typeof r.command !== "string" || !Array.isArray(r.args) || !r.args.every((a) => typeof a === "string")) return undefined;
  if (typeof r.env !== "object" || r.env === null) return undefined;
  const env: Record<string, string> = {};
  for (const [k, val] of Object.entries(r.env)) if (typeof val === "string") env[k] = val;
  return { command: r.command, args: r.args as string[], env };
}

/** The next message on `conn` within `ms` (undefined: none yet). */
async function nextMessage(conn: number, ms: number): Promise<ReturnType<typeof receiveMessage> | undefined> {
  const end = Date.now() + ms;
  for (;;) {
    const r = receiveMessage(conn);
    if (r.kind !== "again") return r;
    if (Date.now() > end) return undefined;
    await Bun.sleep(POLL_MS);
  }
}

/** A signal name the shim forwarded, "gone" when it closed, undefined when nothing came within `ms`. */
async function watchFor(conn: number, ms: number): Promise<NodeJS.Signals | "gone" | undefined> {
  const r = await nextMessage(conn, ms);
  if (!r) return undefined;
  if (r.kind === "eof") return "gone";
  if (r.kind !== "message") return undefined;
  for (const f of r.fds) closeFd(f);
  const v = r.value as { type?: string; signal?: unknown } | undefined;
  if (v?.type === "signal" && typeof v.signal === "string" && /^SIG[A-Z0-9]+$/.test(v.signal) && v.signal in os.constants.signals) return v.signal as NodeJS.Signals;
  return undefined;
}

/** What the reaper wrote on fd 3 before it exited (undefined: it was killed first). */
function readStatus(fd: number): ReapStatus | undefined {
  try {
    const buf = Buffer.alloc(256);
    const n = readSync(fd, buf);
    const v = JSON.parse(buf.subarray(0, n).toString()) as Record<string, unknown>;
    if (typeof v.exit === "number") return { exit: v.exit };
    if (typeof v.signal === "string" && v.signal in os.constants.signals) return { signal: v.signal };
  } catch {
    /* nothing written */
  }
  return undefined;
}

function signal(pid: number, s: NodeJS.Signals): void {
  try {
    process.kill(pid, s);
  } catch {
    /* gone */
  }
}

/** exec.paths as the device sees them: absolute, normalised, symlinks resolved as far as they exist. */
export function resolvedPaths(args: string[], cwd: string, home: string | undefined): string[] {
  return pathArguments(args, cwd, home, existsSync).map(resolveExisting);
}

function resolveExisting(p: string): string {
  let head = p;
  const tail: string[] = [];
  for (;;) {
    try {
      return path.join(realpathSync(head), ...tail.reverse());
    } catch {
      if (head === "/") return p;
      tail.push(path.basename(head));
      head = path.dirname(head);
    }
  }
}
