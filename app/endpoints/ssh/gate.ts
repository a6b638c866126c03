// The decisions of an SSH connection, without I/O: what each request the
// agent makes looks like to the rules (SshFacts), what a verdict means for
// it, and what each channel did by the time it closed. The shell (serve.ts)
// feeds it what ssh2 reports and carries its answers out.
//
//   1. request -> facts: a channel open (session, direct-tcpip), a session
//      request (pty-req, env, exec, shell, subsystem, auth-agent-req, x11-req)
//      or a global request (tcpip-forward); exec, shell and subsystem see the
//      environment the channel was given so far.
//   2. verdict -> outcome: the rules' decision, except that agent forwarding
//      and X11 go through only when a rule allows them by name.
//   3. outcome -> what the agent sees, always one line on the channel's
//      stderr naming the rule. A denied exec, shell or subsystem is then
//      answered and ended with exit status 1: OpenSSH stops printing a
//      channel's stderr once its command request failed, so a failure reply
//      would hide the reason. A denied pty, env, agent or x11 request is
//      answered failure and the session goes on (as sshd refuses env it
//      does not accept).
//   4. channel bookkeeping: bytes each way and the exit status, one record
//      when the channel closes.
import { SSH_EXPLICIT_VERBS, sshSummary, type SshFacts, type SshVerb } from "../../families/ssh.ts";

export type SshRequest =
  | { verb: "session" }
  | { verb: "pty"; term: string; cols: number; rows: number }
  | { verb: "env"; name: string; value: string }
  | { verb: "exec"; command: string; stdin?: string; stdinUnknown?: string }
  | { verb: "shell" }
  | { verb: "subsystem"; name: string }
  | { verb: "agent" }
  | { verb: "x11" }
  | { verb: "forward"; host: string; port: number }
  | { verb: "remote_forward"; host: string; port: number };

/** What the rules (and an approval, when one was asked) decided. */
export interface Verdict {
  allow: boolean;
  reason: string;
  rule?: string;
  /** Approval bookkeeping for the event (approvers, operator, approvalMs, remembered). */
  approval?: Record<string, unknown>;
}

export interface Denial {
  /** One line for the channel's stderr (no secret: the summary and the rule's agent-safe reason). */
  stderr: string;
  /** exit: answer the request, then end the channel with DENIED_EXIT_STATUS; failure: answer failure, the session goes on. */
  mode: "exit" | "failure";
}

/** The exit status a denied command reports. */
export const DENIED_EXIT_STATUS = 1;

/** How a session's command ended. */
export type ExitStatus = { code: number } | { signal: string };

/** One closed channel: what it ran, for how long, bytes each way, how it ended. */
export interface ChannelRecord {
  facts: SshFacts;
  startedAt: number;
  durationMs: number;
  bytesUp: number;
  bytesDown: number;
  exit?: ExitStatus;
}

interface ChannelState {
  env: Record<string, string>;
  pty: boolean;
  /** The request that gave the channel its purpose (exec, shell, subsystem, forward); session until then. */
  main: SshFacts;
  startedAt: number;
  bytesUp: number;
  bytesDown: number;
  exit?: ExitStatus;
}

/** Bound on one channel's environment (what OpenSSH sends is a handful). */
const MAX_ENV = 64;

export class SshGate {
  readonly #channels = new Map<number, ChannelState>();

  constructor(
    /** The endpoint host the agent reached, and the user it logged in as. */
    private readonly who: { host: string; user: string },
  ) {}

  /** The facts the rules see for `req` on `channel` (undefined for a global request). */
  facts(channel: number | undefined, req: SshRequest): SshFacts {
    const env = channel === undefined ? {} : { ...(this.#channels.get(channel)?.env ?? {}) };
    const base = { host: this.who.host, user: this.who.user };
    switch (req.verb) {
      case "env":
        return { ...base, verb: "env", env: { [req.name]: req.value } };
      case "exec":
        return {
          ...base,
          verb: "exec",
          command: req.command,
          env,
          ...(req.stdin !== undefined ? { stdin: req.stdin } : {}),
          ...(req.stdinUnknown !== undefined ? { stdinUnknown: req.stdinUnknown } : {}),
        };
      case "subsystem":
        return { ...base, verb: "subsystem", subsystem: req.name, env };
      case "forward":
      case "remote_forward":
        return { ...base, verb: req.verb, forwardHost: req.host, forwardPort: req.port, env: {} };
      case "shell":
      case "pty":
      case "agent":
      case "x11":
      case "session":
        return { ...base, verb: req.verb, env };
    }
  }

  /** The verdict as the gateway applies it: agent forwarding and X11 need a rule that allows them. */
  outcome(facts: SshFacts, verdict: Verdict): Verdict {
    if (verdict.allow && verdict.rule === undefined && SSH_EXPLICIT_VERBS.has(facts.verb)) {
      return { allow: false, reason: `${facts.verb === "agent" ? "agent forwarding" : "X11 forwarding"} needs a rule that allows it` };
    }
    return verdict;
  }

  /** What the agent is told about a denied request. */
  denial(facts: SshFacts, verdict: Verdict): Denial {
    const by = verdict.rule !== undefined ? `rule "${verdict.rule}"` : "the gateway's default";
    const reason = verdict.reason.replace(/[\r\n]+/g, " ");
    return {
      stderr: `clawpatrol: ${sshSummary(facts)} denied by ${by}: ${reason}\r\n`,
      mode: STARTS_UPSTREAM.has(facts.verb) ? "exit" : "failure",
    };
  }

  /** A channel the agent opened was allowed: session, or a direct-tcpip forward. */
  opened(channel: number, facts: SshFacts, now: number): void {
    this.#channels.set(channel, { env: {}, pty: false, main: facts, startedAt: now, bytesUp: 0, bytesDown: 0 });
  }

  /** An allowed request took effect on its channel. */
  applied(channel: number, req: SshRequest, facts: SshFacts): void {
    const c = this.#channels.get(channel);
    if (!c) return;
    if (req.verb === "env" && Object.keys(c.env).length < MAX_ENV) c.env[req.name] = req.value;
    else if (req.verb === "pty") c.pty = true;
    else if (req.verb === "exec" || req.verb === "shell" || req.verb === "subsystem") c.main = facts;
  }

  hasPty(channel: number): boolean {
    return this.#channels.get(channel)?.pty ?? false;
  }

  /** The environment the channel was given (for the upstream request). */
  envOf(channel: number): Record<string, string> {
    return { ...(this.#channels.get(channel)?.env ?? {}) };
  }

  /** Bytes the agent sent (up) and received (down) on the channel. */
  transferred(channel: number, up: number, down: number): void {
    const c = this.#channels.get(channel);
    if (!c) return;
    c.bytesUp += up;
    c.bytesDown += down;
  }

  exited(channel: number, exit: ExitStatus): void {
    const c = this.#channels.get(channel);
    if (c) c.exit = exit;
  }

  /** The channel's record, once: undefined for a channel never opened or already closed. */
  closed(channel: number, now: number): ChannelRecord | undefined {
    const c = this.#channels.get(channel);
    if (!c) return undefined;
    this.#channels.delete(channel);
    return {
      facts: c.main,
      startedAt: c.startedAt,
      durationMs: Math.max(0, now - c.startedAt),
      bytesUp: c.bytesUp,
      bytesDown: c.bytesDown,
      ...(c.exit ? { exit: c.exit } : {}),
    };
  }

  get openChannels(): number {
    return this.#channels.size;
  }
}

/** The verbs whose request starts the channel's real work upstream. */
export const STARTS_UPSTREAM: ReadonlySet<SshVerb> = new Set(["exec", "shell", "subsystem"]);
