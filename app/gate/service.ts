// The command gate on the gateway: a device's warden describes a command,
// the exec family's rules judge it, and the command's one event is
// published when the warden reports how it ended.
//   1. ask: the description is checked, judged (the profile's first exec
//      endpoint; none: deny), and `allowed_paths` applied to exec.paths.
//      allow -> an id and a token (the completion must carry it), the timeout
//      and the variables to scrub; deny -> the event now; approve -> the hold
//      starts in the background and the answer is "held" (with the approvers).
//   2. poll: a held command's warden waits for the decision (long poll).
//   3. done: exit status, signal, duration, timed out -> the event.
//   4. sweep: a held command nobody polls is withdrawn; an allowed command
//      whose warden never reports is recorded as such once its timeout
//      (plus grace) has passed.
//   5. kill switch (kill.ts): an operator stops a device (or all): its
//      wardens hear it at once and end their runs, its held commands are
//      withdrawn, and what it asks is denied until the switch is released.
// Every lookup is scoped to the device: one device cannot read or complete
// another's command. Every request must also carry the warden's proof (the
// device's API token, which the run's warden holds and its agent cannot
// read): an agent asking on its own is refused, and recorded.
import { randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import type { ApprovalRequest } from "../approvers/types.ts";
import type { ApprovalGate } from "../endpoints/https/approval.ts";
import type { GatewayEvent } from "../events/types.ts";
import { DEFAULT_EXEC_TIMEOUT_MS, envToScrub, execFamily, normalisePaths, pathOutside, type ExecFacts } from "../families/exec.ts";
import { judge } from "../policy/engine.ts";
import { ALL_DEVICES, engagementLine, KillSwitch, type Engagement } from "./kill.ts";
import type { KillStore } from "../store/gate-kills.ts";
import { log } from "../log.ts";
import type { Decision, Endpoint, Policy } from "../policy/types.ts";

export interface GateDevice {
  name: string;
  profile: string;
}

export interface GateDeps {
  policy(): Policy;
  approvals?: ApprovalGate;
  publish(event: GatewayEvent): void;
  redact?: (text: string) => string;
  now?: () => number;
  /** The device whose warden holds this proof (its API token); none: every request is refused. */
  wardenOf?: (proof: string) => string | undefined;
  /** Where engaged kill switches are kept across restarts (none: memory only). */
  kills?: KillStore;
}

export type GateAnswer =
  | { status: "allow"; id: string; token: string; rule?: string; reason: string; timeout_ms: number; env_scrub: string[]; sandbox?: "ghost"; workspace?: string }
  | { status: "deny"; id: string; rule?: string; reason: string }
  | { status: "held"; id: string; token: string; rule?: string; reason: string; approvers: string[] };

export interface Completion {
  exit: number;
  signal?: string;
  duration_ms: number;
  timed_out: boolean;
  /** The warden could not start the command (spawn failed). */
  error?: string;
  /** The kill switch ended it. */
  killed?: boolean;
}

/** A held command whose warden has not polled for this long is withdrawn. */
export const HOLD_IDLE_MS = 120_000;
/** An allowed command is recorded without a completion this long after its timeout. */
export const COMPLETION_GRACE_MS = 60_000;
const MAX_LIVE = 2000;
export const UNPROVEN_REASON = "a verdict request without the warden's proof (the agent asking itself?); refused";

interface Live {
  id: string;
  token: string;
  device: GateDevice;
  endpoint: string;
  facts: ExecFacts;
  started: number;
  state: "held" | "allowed";
  decision: Decision;
  timeoutMs: number;
  envScrub: string[];
  /** The ghost sandbox's writable directory, when the rule asks for one. */
  ghost?: string;
  /** Resolves when a hold is decided (undefined for allowed commands). */
  decided?: Promise<GateAnswer>;
  answer?: GateAnswer;
  abort?: AbortController;
  lastPoll: number;
  approval?: Pick<GatewayEvent, "approvers" | "operator" | "approvalMs" | "remembered">;
  /** Set when the kill switch withdrew the hold. */
  killedBy?: string;
}

export class BadCommand extends Error {}

export class GateService {
  private readonly live = new Map<string, Live>();
  private readonly now: () => number;
  readonly kill = new KillSwitch();
  private readonly killHooks: ((e: Engagement) => void)[] = [];

  constructor(private readonly deps: GateDeps) {
    this.now = deps.now ?? Date.now;
    for (const e of deps.kills?.load() ?? []) this.kill.restore(e);
  }

  /** The device's command, judged. */
  ask(device: GateDevice, body: unknown): GateAnswer {
    const facts = parseCommand(body);
    const policy = this.deps.policy();
    const id = randomUUID();
    const endpoint = execEndpointFor(policy, device.profile);
    const started = this.now();
    const stopped = this.kill.stops(device.name);
    if (stopped) {
      const answer: GateAnswer = { status: "deny", id, reason: engagementLine(stopped) };
      this.record({ id, device, endpoint: endpoint?.ref ?? "", facts, started, decision: { verdict: "deny", reason: answer.reason } });
      return answer;
    }
    if (!endpoint) {
      const answer: GateAnswer = { status: "deny", id, reason: `no exec endpoint is visible to profile "${device.profile}"` };
      this.record({ id, device, endpoint: "", facts, started, decision: { verdict: "deny", reason: answer.reason } });
      return answer;
    }
    let d = judge(policy, { device: device.name, profile: device.profile, endpoint }, facts);
    const rule = d.rule !== undefined ? policy.rules.find((r) => r.name === d.rule) : undefined;
    const settings = { ...policy.defaults.exec, ...rule?.exec };
    if (d.verdict !== "deny" && settings.allowedPaths !== undefined) {
      const outside = pathOutside(facts.paths, settings.allowedPaths);
      if (outside !== undefined) d = { verdict: "deny", ...(d.rule ? { rule: d.rule } : {}), reason: `${outside} is outside allowed_paths` };
    }
    if (d.verdict === "deny") {
      this.record({ id, device, endpoint: endpoint.ref, facts, started, decision: d });
      return { status: "deny", id, ...(d.rule ? { rule: d.rule } : {}), reason: d.reason };
    }
    if (this.live.size >= MAX_LIVE) {
      const reason = "too many commands are in progress for the gate";
      this.record({ id, device, endpoint: endpoint.ref, facts, started, decision: { verdict: "deny", reason } });
      return { status: "deny", id, reason };
    }
    const live: Live = {
      id,
      token: randomBytes(16).toString("hex"),
      device,
      endpoint: endpoint.ref,
      facts,
      started,
      state: "allowed",
      decision: d,
      timeoutMs: settings.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS,
      envScrub: envToScrub(facts.env, policy.defaults.exec?.envScrub, rule?.exec?.envScrub),
      lastPoll: started,
      ...(rule?.exec?.sandbox === "ghost" ? { ghost: rule.exec.workspace ?? facts.cwd } : {}),
    };
    this.live.set(id, live);
    if (d.verdict === "allow") return this.allowAnswer(live);
    return this.hold(live, endpoint, rule && d.approvers ? rule : undefined);
  }

  /** A held command's state: waits up to `waitMs` for the decision. */
  async poll(device: GateDevice, id: string, token: string, waitMs: number): Promise<GateAnswer | undefined> {
    const live = this.find(device, id, token);
    if (!live) return undefined;
    live.lastPoll = this.now();
    if (live.state === "allowed" || !live.decided) return live.answer ?? this.allowAnswer(live);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), waitMs)));
    const answer = await Promise.race([live.decided, timeout]);
    clearTimeout(timer);
    live.lastPoll = this.now();
    return answer ?? this.heldAnswer(live);
  }

  /** The warden's report of how the command ended: publishes the command's event. */
  complete(device: GateDevice, id: string, token: string, body: unknown): boolean {
    const live = this.find(device, id, token);
    if (!live || live.state !== "allowed") return false;
    const c = parseCompletion(body);
    this.live.delete(id);
    const reason = c.error ? `could not run: ${c.error}` : c.killed ? `killed by the kill switch` : c.timed_out ? `killed after the timeout (${live.timeoutMs} ms)` : live.decision.reason;
    this.record({ ...live, completion: c, reasonOverride: reason });
    return true;
  }

  /** The warden gave up on a held command (the agent went away). */
  cancel(device: GateDevice, id: string, token: string): boolean {
    const live = this.find(device, id, token);
    if (!live) return false;
    live.abort?.abort();
    return true;
  }

  /** Withdraws abandoned holds and records allowed commands never reported. */
  sweep(): void {
    const now = this.now();
    for (const live of [...this.live.values()]) {
      if (live.state === "held" && now - live.lastPoll > HOLD_IDLE_MS) live.abort?.abort();
      if (live.state === "allowed" && now - live.started > live.timeoutMs + COMPLETION_GRACE_MS) {
        this.live.delete(live.id);
        this.record({ ...live, reasonOverride: `${live.decision.reason} (no completion report from the device)` });
      }
    }
  }

  /** Does `proof` show that the request comes from this device's warden? */
  provenWarden(device: GateDevice, proof: string): boolean {
    return proof !== "" && this.deps.wardenOf !== undefined && this.deps.wardenOf(proof) === device.name;
  }

  /** A verdict request without the warden's proof (the agent asking itself): recorded, never judged. */
  refuseUnproven(device: GateDevice, body: unknown): void {
    let facts: ExecFacts;
    try {
      facts = parseCommand(body);
    } catch {
      facts = { command: "?", path: "/", argv: ["?"], cwd: "/", env: {}, paths: [], tty: false, uid: 0 };
    }
    this.record({ id: randomUUID(), device, endpoint: "", facts, started: this.now(), decision: { verdict: "deny", reason: UNPROVEN_REASON } });
  }

  /** Turns the kill switch on for a device or ALL_DEVICES: holds withdrawn, wardens told, one event. */
  engageKill(scope: string, operator: string, reason: string): Engagement {
    const e = this.kill.engage(scope, operator, reason, this.now());
    this.persistKill(() => this.deps.kills?.save(e));
    const line = engagementLine(e);
    for (const live of this.live.values()) {
      if (live.state !== "held" || (scope !== ALL_DEVICES && live.device.name !== scope)) continue;
      live.killedBy = line;
      live.abort?.abort();
    }
    this.killEvent(e, "on");
    for (const h of this.killHooks) h(e);
    return e;
  }

  /** Turns it off; false when it was not on for that scope. */
  releaseKill(scope: string, operator: string): boolean {
    const was = this.kill.list().find((e) => e.scope === scope);
    if (!was || !this.kill.release(scope)) return false;
    this.persistKill(() => this.deps.kills?.remove(scope));
    this.killEvent({ ...was, operator, since: this.now() }, "off");
    return true;
  }

  /** The switch in memory is what holds now; a failed write only costs keeping it across a restart. */
  private persistKill(write: () => void): void {
    try {
      write();
    } catch (e) {
      log.error("kill switch not saved in the state database", { error: (e as Error).message });
    }
  }

  /** Called after the switch is turned on (the gateway ends the device's run peers). */
  onKill(hook: (e: Engagement) => void): void {
    this.killHooks.push(hook);
  }

  /** Commands in progress (allowed and held), for tests and status. */
  size(): number {
    return this.live.size;
  }

  private find(device: GateDevice, id: string, token: string): Live | undefined {
    const live = this.live.get(id);
    if (!live || live.device.name !== device.name) return undefined;
    const a = Buffer.from(live.token);
    const b = Buffer.from(token);
    return a.length === b.length && timingSafeEqual(a, b) ? live : undefined;
  }

  private allowAnswer(live: Live): GateAnswer {
    const d = live.decision;
    return {
      status: "allow",
      id: live.id,
      token: live.token,
      ...(d.rule ? { rule: d.rule } : {}),
      reason: d.reason,
      timeout_ms: live.timeoutMs,
      env_scrub: live.envScrub,
      ...(live.ghost !== undefined ? { sandbox: "ghost" as const, workspace: live.ghost } : {}),
    };
  }

  private heldAnswer(live: Live): GateAnswer {
    const d = live.decision;
    return { status: "held", id: live.id, token: live.token, ...(d.rule ? { rule: d.rule } : {}), reason: d.reason, approvers: d.approvers ?? [] };
  }

  private hold(live: Live, endpoint: Endpoint, rule: Policy["rules"][number] | undefined): GateAnswer {
    const d = live.decision;
    if (!this.deps.approvals || !rule || !d.approvers) {
      this.live.delete(live.id);
      const reason = `${d.reason} (approval required; no approver is available)`;
      this.record({ ...live, decision: { ...d, verdict: "deny" }, reasonOverride: reason });
      return { status: "deny", id: live.id, ...(d.rule ? { rule: d.rule } : {}), reason };
    }
    live.state = "held";
    live.abort = new AbortController();
    const request = this.approvalRequest(live, endpoint);
    live.decided = this.deps.approvals
      .hold({ request, rule, chain: d.approvers, operationId: undefined, signal: live.abort.signal })
      .then((outcome): GateAnswer => {
        if (live.killedBy) return this.denyHeld(live, live.killedBy);
        if (outcome.status !== "decided") return this.denyHeld(live, "the approval could not be held");
        const result = outcome.result;
        const operators = result.approvals.map((a) => a.operator).filter((o): o is string => Boolean(o));
        live.approval = {
          approvers: result.approvals.map((a) => a.approver).join(",") || undefined,
          ...(operators.length > 0 ? { operator: operators.join(",") } : {}),
          approvalMs: result.latencyMs,
          ...(result.remembered ? { remembered: true } : {}),
        };
        if (result.decision !== "allow") return this.denyHeld(live, result.reason);
        live.state = "allowed";
        live.decision = { ...d, verdict: "allow", reason: result.reason };
        live.answer = this.allowAnswer(live);
        return live.answer;
      })
      .catch((e: unknown) => this.denyHeld(live, live.killedBy ?? `the approval failed: ${e instanceof Error ? e.message : String(e)}`));
    return this.heldAnswer(live);
  }

  private denyHeld(live: Live, reason: string): GateAnswer {
    this.live.delete(live.id);
    live.decision = { ...live.decision, verdict: "deny", reason };
    this.record(live);
    live.answer = { status: "deny", id: live.id, ...(live.decision.rule ? { rule: live.decision.rule } : {}), reason };
    return live.answer;
  }

  private approvalRequest(live: Live, endpoint: Endpoint): ApprovalRequest {
    const redact = this.deps.redact ?? ((t: string) => t);
    const line = execFamily.summary(live.facts);
    const whole = live.facts.argv.join(" ");
    return {
      id: live.id,
      time: new Date(live.started).toISOString(),
      device: live.device.name,
      profile: live.device.profile,
      endpoint: endpoint.ref,
      rule: live.decision.rule ?? "",
      reason: live.decision.reason,
      method: "EXEC",
      host: live.facts.command,
      path: redact(line),
      headers: { cwd: live.facts.cwd, path: live.facts.path, uid: String(live.facts.uid), tty: String(live.facts.tty) },
      bodyPreview: redact(whole.slice(0, 4096)),
      bodyTruncated: whole.length > 4096,
      fingerprint: execFamily.fingerprint(live.facts),
      family: "exec",
      summary: redact(line),
    };
  }

  private killEvent(e: Engagement, state: "on" | "off"): void {
    const who = e.scope === ALL_DEVICES ? "every device" : e.scope;
    const summary = `kill switch ${state} for ${who}`;
    this.deps.publish({
      time: new Date(e.since).toISOString(),
      kind: "exec",
      family: "exec",
      flowId: randomUUID(),
      device: e.scope,
      profile: "",
      host: "kill-switch",
      port: 0,
      method: "KILL",
      path: summary,
      bytesUp: 0,
      bytesDown: 0,
      durationMs: 0,
      verdict: state === "on" ? "deny" : "allow",
      reason: e.reason || summary,
      operator: e.operator,
      summary,
      action: { kill_switch: state, scope: e.scope },
    });
  }

  private record(x: {
    id: string;
    device: GateDevice;
    endpoint: string;
    facts: ExecFacts;
    started: number;
    decision: Decision;
    approval?: Live["approval"];
    completion?: Completion;
    reasonOverride?: string;
  }): void {
    const d = x.decision;
    const c = x.completion;
    const event: GatewayEvent = {
      time: new Date(x.started).toISOString(),
      kind: "exec",
      family: "exec",
      flowId: x.id,
      device: x.device.name,
      profile: x.device.profile,
      host: x.facts.command,
      port: 0,
      method: "EXEC",
      path: execFamily.summary(x.facts),
      bytesUp: 0,
      bytesDown: 0,
      durationMs: c ? c.duration_ms : Math.max(0, this.now() - x.started),
      verdict: d.verdict === "allow" ? "allow" : "deny",
      reason: x.reasonOverride ?? d.reason,
      summary: execFamily.summary(x.facts),
      action: {
        ...execFamily.action(x.facts),
        ...(c ? { exit: c.exit, timed_out: c.timed_out, ...(c.signal ? { signal: c.signal } : {}), ...(c.killed ? { killed: true } : {}) } : {}),
      },
    };
    if (x.endpoint) event.endpoint = x.endpoint;
    if (d.rule !== undefined) event.rule = d.rule;
    if (d.detail) event.detail = d.detail;
    if (x.approval) Object.assign(event, x.approval);
    this.deps.publish(event);
  }
}

/** The first exec endpoint (in declaration order) the profile sees. */
export function execEndpointFor(policy: Policy, profile: string): Endpoint | undefined {
  const p = policy.profiles.get(profile);
  if (!p) return undefined;
  const visible = p.endpoints === undefined ? undefined : new Set(p.endpoints);
  return [...policy.endpoints.values()].find((e) => e.type === "exec" && (visible === undefined || visible.has(e.ref)));
}

const MAX_ARGS = 4096;
const MAX_ARG_CHARS = 128 * 1024;

/** A command description from the device, checked field by field (BadCommand when it does not fit). */
export function parseCommand(body: unknown): ExecFacts {
  if (typeof body !== "object" || body === null) throw new BadCommand("the body must be a JSON object");
  const b = body as Record<string, unknown>;
  const str = (k: string): string => {
    const v = b[k];
    if (typeof v !== "string" || v.length > MAX_ARG_CHARS || v.includes("\0")) throw new BadCommand(`${k} must be a string`);
    return v;
  };
  const list = (k: string): string[] => {
    const v = b[k];
    if (!Array.isArray(v) || v.length > MAX_ARGS || !v.every((x) => typeof x === "string" && x.length <= MAX_ARG_CHARS)) throw new BadCommand(`${k} must be a list of strings`);
    return v as string[];
  };
  const command = str("command");
  if (!/^[A-Za-z0-9._+-]+$/.test(command)) throw new BadCommand("command must be a file name");
  const path = str("path");
  const cwd = str("cwd");
  if (!path.startsWith("/") || !cwd.startsWith("/")) throw new BadCommand("path and cwd must be absolute");
  const argv = list("argv");
  if (argv.length === 0 || argv[0] !== command) throw new BadCommand("argv must start with the command");
  const envRaw = b.env;
  if (typeof envRaw !== "object" || envRaw === null || Array.isArray(envRaw)) throw new BadCommand("env must be an object");
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(envRaw)) {
    if (typeof v !== "string") throw new BadCommand("env values must be strings");
    env[k] = v;
  }
  if (Object.keys(env).length > MAX_ARGS) throw new BadCommand("env has too many variables");
  const tty = b.tty;
  const uid = b.uid;
  if (typeof tty !== "boolean") throw new BadCommand("tty must be a boolean");
  if (typeof uid !== "number" || !Number.isInteger(uid) || uid < 0) throw new BadCommand("uid must be a non-negative integer");
  return { command, path, argv, cwd, env, paths: normalisePaths(list("paths"), cwd), tty, uid };
}

function parseCompletion(body: unknown): Completion {
  const b = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  const exit = typeof b.exit === "number" && Number.isInteger(b.exit) ? b.exit & 255 : 255;
  const c: Completion = {
    exit,
    duration_ms: typeof b.duration_ms === "number" && b.duration_ms >= 0 ? Math.round(b.duration_ms) : 0,
    timed_out: b.timed_out === true,
  };
  if (typeof b.signal === "string" && /^SIG[A-Z0-9]+$/.test(b.signal)) c.signal = b.signal;
  if (typeof b.error === "string") c.error = b.error.slice(0, 300);
  if (b.killed === true) c.killed = true;
  return c;
}
