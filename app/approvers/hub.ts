// The approval hub: holds requests while approver chains decide.
//   1. remember: an allow for the same (device, fingerprint, rule) within the
//      rule's `remember` window answers at once, marked remembered.
//   2. hold: the request gets a pending entry (id = the request's id, which
//      is also its operation id) and the chain runs in the background.
//   3. steps, in chain order: each approver is asked until `require_approvers`
//      distinct operators allowed; a deny, an error, a malformed verdict or
//      the step's deadline (on_timeout, "deny" unless set to "allow") ends it.
//   4. waiting: the HTTP request waits for the decision; during an `async`
//      step it is released with "pending" once the step's `timeout` passes
//      (the pipeline answers 202) while the step goes on until `async_timeout`.
//      A retry carrying the operation id waits again (long poll) or gets the
//      decision; each decision is delivered once.
//   5. decided: the result is published, kept for lookup (bounded, for a
//      while), and remembered when the rule says so.
// Time is passed in: every deadline is computed from `now()`. The hub arms
// one real timer for the earliest deadline (off in tests, which call tick()).
import { log } from "../log.ts";
import { DEFAULT_COMMON, renderMessage, stepSettings, type CommonApproverConfig } from "./config.ts";
import type { ApprovalRequest, ApproverPlugin, ApproverVerdict } from "./types.ts";
import { checkVerdict, who } from "./verdict.ts";

/** What one chain step runs with: an approver's common settings. */
export type StepSettings = CommonApproverConfig;

export interface ChainOptions {
  /** The rule that asked (part of the `remember` key). */
  rule: string;
  /** The rule's `remember` window; absent or 0 = do not remember. */
  rememberMs?: number;
  /** Defaults for approvers without settings of their own (the dashboard). */
  timeoutMs?: number;
  requireApprovers?: number;
  /** An approver's own settings (from its block), by ref. */
  settings?: (ref: string) => Partial<StepSettings> | undefined;
  /**
   * The agent's connection: when it aborts during a hold with no async step
   * the hold is denied ("agent went away"); async holds go on.
   */
  signal?: AbortSignal;
}

export interface ChainResult {
  /** The hold (operation) id. */
  id: string;
  decision: "allow" | "deny";
  reason: string;
  /** Every verdict gathered, in order (a timeout appears as the approver's verdict). */
  approvals: ApproverVerdict[];
  latencyMs: number;
  /** True when a remembered approval answered. */
  remembered: boolean;
}

export interface PendingApproval {
  id: string;
  request: ApprovalRequest;
  chain: string[];
  /** Index in `chain` of the approver being asked. */
  position: number;
  /** The approver being asked (chain[position]). */
  awaiting: string;
  /** The awaited approver's rendered message. */
  message: string;
  /** ms (hub clock) the hold started, and the current step started / ends. */
  started: number;
  stepStarted: number;
  deadline: number;
  /** Distinct operators who allowed the current step, and how many are needed. */
  approvedBy: string[];
  required: number;
  /** True when the current step is async (the agent is told to retry). */
  async: boolean;
  /** True when hub.decide can answer it (the dashboard is being asked). */
  decidable: boolean;
}

export type HubChange =
  | { type: "added"; pending: PendingApproval }
  | { type: "updated"; pending: PendingApproval }
  | { type: "decided"; id: string; result: ChainResult };

/** One per decision: for the event log (approver, operator, reason, latency). */
export interface ApprovalDecisionEvent {
  time: string;
  id: string;
  device: string;
  profile: string;
  endpoint: string;
  rule: string;
  method: string;
  host: string;
  path: string;
  decision: "allow" | "deny";
  reason: string;
  approvals: ApproverVerdict[];
  latencyMs: number;
  remembered: boolean;
}

export type HoldOutcome =
  | { status: "decided"; result: ChainResult }
  | { status: "pending"; operation: string; retryAfterS: number }
  | { status: "refused"; httpStatus: 404 | 409; code: "unknown_operation" | "operation_mismatch" | "operation_used"; reason: string };

export type LookupResult =
  | { state: "pending"; pending: PendingApproval }
  | { state: "decided"; result: ChainResult; request: ApprovalRequest; delivered: boolean };

export interface DashboardDecision {
  decision: "allow" | "deny";
  reason: string;
  /** The operator's identity (account name). */
  operator: string;
  approver?: "dashboard";
}

export interface HubOptions {
  now: () => number;
  plugins: (ref: string) => ApproverPlugin | undefined;
  publish?: (event: ApprovalDecisionEvent) => void;
  /** Arm a real setTimeout for the earliest deadline (default true; tests pass false and call tick()). */
  realTimers?: boolean;
  /** retry_after suggested to agents of async holds (default 2 s). */
  retryAfterS?: number;
  /** Longest a retry waits for the decision before another 202 (default 30 s). */
  resumeWaitMs?: number;
  /** Decided results kept for lookup this long (default 10 min) and at most this many (default 1000). */
  resultTtlMs?: number;
  maxResults?: number;
  /** Remembered approvals kept at most (default 10000). */
  maxRemembered?: number;
  /** Holds at once; beyond it a request is denied at once (default 1000). */
  maxPending?: number;
  /** Holds at once of one device, so one device cannot take every hold (default MAX_PENDING_PER_DEVICE). */
  maxPendingPerDevice?: number;
}

/** One device's share of the holds: an agent rarely waits on more than a few approvals at once. */
export const MAX_PENDING_PER_DEVICE = 64;

/** Same operator answering again this many times in one step ends the step with deny. */
const MAX_REPEATED_OPERATOR = 5;

interface Timer {
  at: number;
  fire: () => void;
  cancelled: boolean;
}

interface Waiter {
  release: () => void;
  timer?: Timer;
}

interface Hold {
  id: string;
  req: ApprovalRequest;
  chain: string[];
  steps: StepSettings[];
  opts: ChainOptions;
  started: number;
  position: number;
  stepStarted: number;
  stepDeadline: number;
  approvedBy: string[];
  /** Resolves the dashboard's ask for the current step, when the dashboard is asked. */
  dashboard?: (v: ApproverVerdict) => void;
  cancel: (reason: string) => void;
  waiters: Set<Waiter>;
  done: Promise<ChainResult>;
}

interface Decided {
  result: ChainResult;
  req: ApprovalRequest;
  at: number;
  delivered: boolean;
}

type StepEnd = { kind: "verdict"; v: unknown } | { kind: "error"; err: unknown } | { kind: "timeout" } | { kind: "cancel"; reason: string };

export class ApprovalHub {
  private readonly holds = new Map<string, Hold>();
  /** Holds per device (maxPendingPerDevice). */
  private readonly pendingOf = new Map<string, number>();
  private readonly decided = new Map<string, Decided>();
  private readonly remembered = new Map<string, { until: number; result: ChainResult }>();
  private readonly subscribers = new Set<(c: HubChange) => void>();
  private timers: Timer[] = [];
  private armed: ReturnType<typeof setTimeout> | undefined;
  private closed = false;

  constructor(private readonly o: HubOptions) {}

  now(): number {
    return this.o.now();
  }

  // ---------------------------------------------------------------- requests

  /** Holds the request until the chain decides (async steps hold up to async_timeout). */
  async request(req: ApprovalRequest, chain: string[], opts: ChainOptions): Promise<ChainResult> {
    const hit = this.rememberedResult(req, opts);
    if (hit) return hit;
    const hold = this.start(req, chain, opts);
    if (opts.signal) this.watchAgent(hold, opts.signal);
    const result = await hold.done;
    this.markDelivered(hold.id);
    return result;
  }

  /**
   * The HTTP pipeline's entry. Without an operation id: remember, else hold
   * and wait — for the decision, or "pending" once an async step's sync
   * window passes. With one: the retry of an async hold, which must come from
   * the same device with the same fingerprint; it waits again (long poll) or
   * gets the decision, which is delivered once.
   */
  async resumeOrStart(req: ApprovalRequest, chain: string[], opts: ChainOptions, operationId?: string): Promise<HoldOutcome> {
    let hold: Hold;
    if (operationId !== undefined) {
      this.prune();
      const live = this.holds.get(operationId);
      const done = this.decided.get(operationId);
      const original = live?.req ?? done?.req;
      if (!original) {
        return { status: "refused", httpStatus: 404, code: "unknown_operation", reason: "unknown or expired approval operation" };
      }
      if (original.device !== req.device || original.fingerprint !== req.fingerprint) {
        return { status: "refused", httpStatus: 409, code: "operation_mismatch", reason: "the request differs from the one the approval operation holds" };
      }
      if (done) {
        if (done.delivered) {
          return { status: "refused", httpStatus: 409, code: "operation_used", reason: "the approval operation's decision was already delivered" };
        }
        done.delivered = true;
        return { status: "decided", result: done.result };
      }
      hold = live!;
    } else {
      const hit = this.rememberedResult(req, opts);
      if (hit) return { status: "decided", result: hit };
      hold = this.start(req, chain, opts);
      if (opts.signal) this.watchAgent(hold, opts.signal);
    }

    const released = await this.wait(hold);
    if (!released) {
      const result = await hold.done;
      this.markDelivered(hold.id);
      return { status: "decided", result };
    }
    return { status: "pending", operation: hold.id, retryAfterS: this.o.retryAfterS ?? 2 };
  }

  /** A live hold, or a decided one still kept. */
  lookup(operationId: string): LookupResult | undefined {
    this.prune();
    const hold = this.holds.get(operationId);
    if (hold) return { state: "pending", pending: this.view(hold) };
    const d = this.decided.get(operationId);
    return d ? { state: "decided", result: d.result, request: d.req, delivered: d.delivered } : undefined;
  }

  pending(): PendingApproval[] {
    return [...this.holds.values()].map((h) => this.view(h));
  }

  /** The dashboard's (and CLI's) answer for a hold that is asking the dashboard. */
  decide(id: string, d: DashboardDecision): { ok: true } | { ok: false; reason: string } {
    const hold = this.holds.get(id);
    if (!hold) return { ok: false, reason: `no pending approval ${id}` };
    if (d.decision !== "allow" && d.decision !== "deny") return { ok: false, reason: 'decision must be "allow" or "deny"' };
    if (typeof d.operator !== "string" || d.operator === "") return { ok: false, reason: "operator is required" };
    if (!hold.dashboard) return { ok: false, reason: `approval ${id} is waiting for ${hold.chain[hold.position]}, not the dashboard` };
    if (d.decision === "allow" && hold.approvedBy.includes(d.operator)) {
      return { ok: false, reason: `${d.operator} already approved this request; another operator must` };
    }
    const answer = hold.dashboard;
    hold.dashboard = undefined;
    answer({ decision: d.decision, reason: typeof d.reason === "string" ? d.reason : "", approver: "dashboard", operator: d.operator });
    return { ok: true };
  }

  /**
   * For the dashboard plugin: resolves with the next hub.decide for this hold.
   * Denies at once when the hold is unknown.
   */
  waitForDashboard(id: string, signal: AbortSignal): Promise<ApproverVerdict> {
    const hold = this.holds.get(id);
    if (!hold) return Promise.resolve({ decision: "deny", reason: `no pending approval ${id}`, approver: "dashboard" });
    return new Promise((resolve) => {
      const onAbort = () => {
        if (hold.dashboard === answer) hold.dashboard = undefined;
        resolve({ decision: "deny", reason: "no longer needed", approver: "dashboard" });
      };
      const answer = (v: ApproverVerdict) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      };
      if (signal.aborted) return onAbort();
      hold.dashboard = answer;
      signal.addEventListener("abort", onAbort, { once: true });
      this.emit({ type: "updated", pending: this.view(hold) });
    });
  }

  /** Ends a hold with deny (the agent went away, an operator withdrew it). */
  cancel(id: string, reason: string): boolean {
    const hold = this.holds.get(id);
    if (!hold) return false;
    hold.cancel(reason);
    return true;
  }

  subscribe(fn: (c: HubChange) => void): () => void {
    this.subscribers.add(fn);
    return () => {
      this.subscribers.delete(fn);
    };
  }

  /** Fires every deadline that is due by now(); tests call it after moving the fake clock. */
  tick(): void {
    const now = this.o.now();
    for (;;) {
      const due = this.timers.filter((t) => !t.cancelled && t.at <= now).sort((a, b) => a.at - b.at);
      if (due.length === 0) break;
      for (const t of due) {
        t.cancelled = true;
        t.fire();
      }
      this.timers = this.timers.filter((t) => !t.cancelled);
    }
    this.arm();
  }

  /** The earliest pending deadline (hub clock), for shells that drive time themselves. */
  pollAt(): number | undefined {
    let at: number | undefined;
    for (const t of this.timers) if (!t.cancelled && (at === undefined || t.at < at)) at = t.at;
    return at;
  }

  close(): void {
    for (const hold of [...this.holds.values()]) hold.cancel("the gateway is shutting down");
    this.closed = true;
    if (this.armed) clearTimeout(this.armed);
    this.armed = undefined;
    this.timers = [];
  }

  // ---------------------------------------------------------------- the chain

  private start(req: ApprovalRequest, chain: string[], opts: ChainOptions): Hold {
    if (this.holds.has(req.id) || this.decided.has(req.id)) {
      // An id collision would let one request read another's decision: the caller's bug.
      throw new Error(`approval hold ${req.id} already exists`);
    }
    const now = this.o.now();
    const steps = chain.map((ref) => stepSettings(ref, opts));
    let cancel: (reason: string) => void = () => {};
    const cancelled = new Promise<string>((resolve) => (cancel = resolve));
    const hold: Hold = {
      id: req.id,
      req,
      chain,
      steps,
      opts,
      started: now,
      position: 0,
      stepStarted: now,
      stepDeadline: now,
      approvedBy: [],
      cancel: (reason) => cancel(reason),
      waiters: new Set(),
      done: Promise.resolve(undefined as unknown as ChainResult),
    };
    const deviceFull = (this.pendingOf.get(req.device) ?? 0) >= (this.o.maxPendingPerDevice ?? MAX_PENDING_PER_DEVICE);
    if (this.closed || this.holds.size >= (this.o.maxPending ?? 1000) || deviceFull || chain.length === 0) {
      const why =
        this.closed ? "the gateway is shutting down"
        : chain.length === 0 ? "no approvers in the chain"
        : deviceFull ? `too many requests of device ${req.device} are waiting for approval`
        : "too many requests are waiting for approval";
      hold.done = Promise.resolve(this.finish(hold, "deny", why, []));
      return hold;
    }
    this.holds.set(hold.id, hold);
    this.pendingOf.set(req.device, (this.pendingOf.get(req.device) ?? 0) + 1);
    hold.done = this.run(hold, cancelled);
    this.emit({ type: "added", pending: this.view(hold) });
    return hold;
  }

  private async run(hold: Hold, cancelled: Promise<string>): Promise<ChainResult> {
    const approvals: ApproverVerdict[] = [];
    const cancelEnd = cancelled.then((reason): StepEnd => ({ kind: "cancel", reason }));
    for (let i = 0; i < hold.chain.length; i++) {
      const denial = await this.step(hold, i, approvals, cancelEnd);
      if (denial !== undefined) return this.finish(hold, "deny", denial, approvals);
    }
    const who = approvals.filter((v) => v.decision === "allow").map((v) => (v.operator ? `${v.operator} (${v.approver})` : v.approver));
    return this.finish(hold, "allow", `approved by ${[...new Set(who)].join(", ")}`, approvals);
  }

  /** Runs chain[i]; returns a deny reason, or undefined when the step allowed. */
  private async step(hold: Hold, i: number, approvals: ApproverVerdict[], cancelEnd: Promise<StepEnd>): Promise<string | undefined> {
    const ref = hold.chain[i]!;
    const s = hold.steps[i]!;
    const now = this.o.now();
    hold.position = i;
    hold.stepStarted = now;
    hold.stepDeadline = now + (s.async ? s.asyncTimeoutMs : s.timeoutMs);
    hold.approvedBy = [];
    hold.dashboard = undefined;
    if (i > 0) this.emit({ type: "updated", pending: this.view(hold) });
    if (s.async) {
      for (const w of hold.waiters) this.armWaiter(hold, w);
    }

    const plugin = this.o.plugins(ref);
    if (!plugin) {
      approvals.push({ decision: "deny", reason: `no approver ${ref} is available`, approver: ref });
      return `no approver ${ref} is available`;
    }

    let timedOut!: () => void;
    const timeoutEnd = new Promise<StepEnd>((resolve) => (timedOut = () => resolve({ kind: "timeout" })));
    const timer = this.schedule(hold.stepDeadline, timedOut);
    const message = renderMessage(s.message, hold.req);
    let repeats = 0;
    try {
      while (hold.approvedBy.length < s.requireApprovers) {
        const controller = new AbortController();
        const asked = Promise.resolve()
          .then(() =>
            plugin.ask(hold.req, {
              signal: controller.signal,
              now: this.o.now,
              message,
              approvedBy: [...hold.approvedBy],
              requireApprovers: s.requireApprovers,
            }),
          )
          .then(
            (v): StepEnd => ({ kind: "verdict", v }),
            (err): StepEnd => ({ kind: "error", err }),
          );
        const end = await Promise.race([asked, timeoutEnd, cancelEnd]);
        controller.abort();
        switch (end.kind) {
          case "cancel":
            approvals.push({ decision: "deny", reason: end.reason, approver: ref });
            return end.reason;
          case "timeout": {
            const waited = formatMs(hold.stepDeadline - hold.stepStarted);
            if (s.onTimeout === "allow") {
              approvals.push({ decision: "allow", reason: `no answer within ${waited}; on_timeout = "allow"`, approver: ref });
              return undefined;
            }
            const reason = `no answer from ${ref} within ${waited}`;
            approvals.push({ decision: "deny", reason, approver: ref });
            return reason;
          }
          case "error": {
            log.warn("approver failed", { approver: ref, hold: hold.id, error: end.err });
            const reason = `approver ${ref} failed`;
            approvals.push({ decision: "deny", reason, approver: ref });
            return reason;
          }
          case "verdict": {
            const v = checkVerdict(end.v, ref);
            if (!v) {
              const reason = `approver ${ref} gave a malformed verdict`;
              approvals.push({ decision: "deny", reason, approver: ref });
              return reason;
            }
            approvals.push(v);
            if (v.decision === "deny") return v.reason ? `denied by ${who(v)}: ${v.reason}` : `denied by ${who(v)}`;
            const identity = v.operator ?? ref;
            if (hold.approvedBy.includes(identity)) {
              // Same operator again: does not count twice; ask again, within reason.
              if (++repeats >= MAX_REPEATED_OPERATOR) {
                const reason = `approver ${ref} kept answering as ${identity}; ${s.requireApprovers} distinct operators are required`;
                approvals.push({ decision: "deny", reason, approver: ref });
                return reason;
              }
              continue;
            }
            hold.approvedBy.push(identity);
            if (hold.approvedBy.length < s.requireApprovers) this.emit({ type: "updated", pending: this.view(hold) });
            break;
          }
        }
      }
      return undefined;
    } finally {
      timer.cancelled = true;
      hold.dashboard = undefined;
    }
  }

  private finish(hold: Hold, decision: "allow" | "deny", reason: string, approvals: ApproverVerdict[]): ChainResult {
    const now = this.o.now();
    const result: ChainResult = { id: hold.id, decision, reason, approvals, latencyMs: now - hold.started, remembered: false };
    if (this.holds.delete(hold.id)) {
      const n = (this.pendingOf.get(hold.req.device) ?? 1) - 1;
      if (n > 0) this.pendingOf.set(hold.req.device, n);
      else this.pendingOf.delete(hold.req.device);
    }
    for (const w of hold.waiters) if (w.timer) w.timer.cancelled = true;
    hold.waiters.clear();
    this.keepDecided(hold.req, result, now);
    const rememberMs = hold.opts.rememberMs ?? 0;
    if (decision === "allow" && rememberMs > 0) this.remember(rememberKey(hold.req, hold.opts.rule), now + rememberMs, result);
    this.emit({ type: "decided", id: hold.id, result });
    this.publish(hold.req, result);
    return result;
  }

  // ---------------------------------------------------------------- waiting

  /** Resolves true when released with "pending", false when the hold decided. */
  private wait(hold: Hold): Promise<boolean> {
    return new Promise((resolve) => {
      let settled = false;
      const w: Waiter = {
        release: () => {
          if (settled) return;
          settled = true;
          hold.waiters.delete(w);
          resolve(true);
        },
      };
      hold.waiters.add(w);
      this.armWaiter(hold, w);
      void hold.done.then(() => {
        if (settled) return;
        settled = true;
        resolve(false);
      });
    });
  }

  /** In an async step, a waiter is released at the end of the sync window (or after resumeWaitMs for a retry). */
  private armWaiter(hold: Hold, w: Waiter): void {
    const s = hold.steps[hold.position];
    if (!s?.async) return;
    const now = this.o.now();
    const syncEnd = hold.stepStarted + s.timeoutMs;
    const at = now < syncEnd ? syncEnd : now + Math.min(s.timeoutMs, this.o.resumeWaitMs ?? 30_000);
    if (w.timer && !w.timer.cancelled && w.timer.at <= at) return;
    if (w.timer) w.timer.cancelled = true;
    w.timer = this.schedule(at, w.release);
  }

  private watchAgent(hold: Hold, signal: AbortSignal): void {
    const onAbort = () => {
      if (this.holds.get(hold.id) === hold && !hold.steps.some((s) => s.async)) hold.cancel("the agent went away");
    };
    if (signal.aborted) onAbort();
    else {
      signal.addEventListener("abort", onAbort, { once: true });
      void hold.done.then(() => signal.removeEventListener("abort", onAbort));
    }
  }

  private markDelivered(id: string): void {
    const d = this.decided.get(id);
    if (d) d.delivered = true;
  }

  // ---------------------------------------------------------------- memory

  private rememberedResult(req: ApprovalRequest, opts: ChainOptions): ChainResult | undefined {
    if (!opts.rememberMs) return undefined;
    const key = rememberKey(req, opts.rule);
    const hit = this.remembered.get(key);
    if (!hit) return undefined;
    const now = this.o.now();
    if (hit.until <= now) {
      this.remembered.delete(key);
      return undefined;
    }
    const result: ChainResult = {
      id: req.id,
      decision: "allow",
      reason: `remembered approval (${hit.result.reason}, operation ${hit.result.id})`,
      approvals: hit.result.approvals,
      latencyMs: 0,
      remembered: true,
    };
    this.publish(req, result);
    return result;
  }

  private remember(key: string, until: number, result: ChainResult): void {
    const max = this.o.maxRemembered ?? 10_000;
    this.remembered.delete(key);
    if (this.remembered.size >= max) {
      const now = this.o.now();
      for (const [k, v] of this.remembered) if (v.until <= now) this.remembered.delete(k);
      while (this.remembered.size >= max) this.remembered.delete(this.remembered.keys().next().value!);
    }
    this.remembered.set(key, { until, result });
  }

  private keepDecided(req: ApprovalRequest, result: ChainResult, now: number): void {
    this.prune();
    const max = this.o.maxResults ?? 1000;
    while (this.decided.size >= max) this.decided.delete(this.decided.keys().next().value!);
    this.decided.set(result.id, { result, req, at: now, delivered: false });
  }

  private prune(): void {
    const ttl = this.o.resultTtlMs ?? 10 * 60_000;
    const now = this.o.now();
    for (const [id, d] of this.decided) {
      if (d.at + ttl > now) break; // insertion order is decision order
      this.decided.delete(id);
    }
  }

  // ---------------------------------------------------------------- plumbing

  private view(h: Hold): PendingApproval {
    const s = h.steps[h.position] ?? DEFAULT_COMMON;
    const awaiting = h.chain[h.position] ?? "";
    return {
      id: h.id,
      request: h.req,
      chain: h.chain,
      position: h.position,
      awaiting,
      message: renderMessage(s.message, h.req),
      started: h.started,
      stepStarted: h.stepStarted,
      deadline: h.stepDeadline,
      approvedBy: [...h.approvedBy],
      required: s.requireApprovers,
      async: s.async,
      decidable: h.dashboard !== undefined,
    };
  }

  private schedule(at: number, fire: () => void): Timer {
    const t: Timer = { at, fire, cancelled: false };
    this.timers.push(t);
    this.arm();
    return t;
  }

  private arm(): void {
    this.timers = this.timers.filter((t) => !t.cancelled);
    if (this.o.realTimers === false || this.closed) return;
    if (this.armed) clearTimeout(this.armed);
    this.armed = undefined;
    const at = this.pollAt();
    if (at === undefined) return;
    // Timers past 2^31-1 ms overflow; re-arm on the way instead.
    const delay = Math.min(Math.max(0, at - this.o.now()), 2 ** 31 - 1);
    this.armed = setTimeout(() => this.tick(), delay);
    (this.armed as { unref?: () => void }).unref?.();
  }

  private emit(change: HubChange): void {
    for (const fn of this.subscribers) {
      try {
        fn(change);
      } catch (err) {
        log.warn("approval subscriber failed", { error: err });
      }
    }
  }

  private publish(req: ApprovalRequest, result: ChainResult): void {
    if (!this.o.publish) return;
    try {
      this.o.publish({
        time: new Date(this.o.now()).toISOString(),
        id: result.id,
        device: req.device,
        profile: req.profile,
        endpoint: req.endpoint,
        rule: req.rule,
        method: req.method,
        host: req.host,
        path: req.path,
        decision: result.decision,
        reason: result.reason,
        approvals: result.approvals,
        latencyMs: result.latencyMs,
        remembered: result.remembered,
      });
    } catch (err) {
      log.warn("approval event publish failed", { error: err });
    }
  }
}

/** An approver's settings for one chain: its own block's, else the chain's defaults. */
function rememberKey(req: ApprovalRequest, rule: string): string {
  return JSON.stringify([req.device, req.fingerprint, rule]);
}

function formatMs(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
