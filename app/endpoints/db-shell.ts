// What the database endpoints' shells (postgres, clickhouse_native) share:
// with the upstream dialers, the only code of theirs that touches sockets.
//   1. the agent: read as it came, or through TLS with a gateway leaf,
//   2. the upstream: attached once dialed, backpressure both ways,
//   3. the session's commands carried out in turn, verdicts decided without
//      an approval fed back in the same turn,
//   4. judging: one action under the policy in force, an approval holding this flow only,
//   5. teardown: end both sides, then destroy what lingers,
//   6. events: one sql event per statement or query.
// Each endpoint keeps its session (sans-IO), its dialer and the commands only it has.
import tls from "node:tls";
import type { Duplex } from "node:stream";
import type { ServeRequest } from "./spec.ts";
import type { FlowDeps } from "../dispatch/handle.ts";
import type { Decision, Endpoint, Policy } from "../policy/types.ts";
import type { GatewayEvent } from "../events/types.ts";
import { judge } from "../policy/engine.ts";
import { settleDecision, type SettledOutcome } from "../approvers/settle.ts";
import { sqlFamily, cut, type SqlFacts } from "../families/sql/family.ts";
import { sqlApprovalRequest } from "../families/sql/approval.ts";
import { log } from "../log.ts";

/** What the shell needs of an upstream stream: node's Duplex and Postgres's NativeUpstream both fit. */
export interface UpstreamStream {
  write(data: Uint8Array): boolean;
  pause(): unknown;
  resume(): unknown;
  end(): unknown;
  end(last: Uint8Array): unknown;
  destroy(): unknown;
  on(event: "data", fn: (data: Uint8Array) => void): unknown;
  on(event: "close", fn: () => void): unknown;
  on(event: "error", fn: (e: Error) => void): unknown;
  once(event: "drain" | "close", fn: () => void): unknown;
  once(event: "error", fn: (e: Error) => void): unknown;
}

/** The events every database session takes from the shell (`V`: its verdict). */
export type ShellEvent<V> =
  | { type: "agent-data"; data: Uint8Array }
  | { type: "agent-closed" }
  | { type: "upstream-data"; data: Uint8Array }
  | { type: "upstream-closed" }
  | { type: "upstream-failed"; reason: string }
  | { type: "verdict"; id: number; verdict: V };

/** The commands every database session gives that the shell carries out alone. */
export type ShellCommand =
  | { type: "send-agent"; data: Uint8Array }
  | { type: "send-upstream"; data: Uint8Array }
  | { type: "close" }
  | { type: "log"; level: "debug" | "info" | "warn"; message: string; fields?: Record<string, unknown> };

/** What a statement's or a query's record holds for its event. */
export interface SqlRecord {
  startedAt: number;
  facts: SqlFacts;
  verdict: string;
  reason: string;
  rule?: string;
  detail?: string;
}

/** One action judged under the policy in force (a reload may have changed the endpoint's rules). */
export interface Judged {
  policy: Policy;
  endpoint: Endpoint;
  facts: SqlFacts;
  decision: Decision;
}

export interface DbShellOptions<V, C> {
  /** The protocol's name in log messages ("postgres", "clickhouse"). */
  name: string;
  req: ServeRequest;
  deps: FlowDeps;
  session: { handle(e: ShellEvent<V>): C[] };
  /** Carries out one of the session's commands; called only while the flow is open. */
  execute: (c: C) => void;
  /** The credential's reference for events, when the gateway holds it. */
  credentialRef: string | undefined;
  /** Runs once, as the flow closes. */
  onClose?: () => void;
}

export class DbShell<V, C> {
  agent: Duplex;
  upstream: UpstreamStream | undefined;
  closed = false;
  /** Aborted as the flow closes: a held approval then ends as a deny. */
  readonly agentGone = new AbortController();
  /** Settles once the flow is closed. */
  readonly done: Promise<void>;
  private resolveDone: () => void = () => {};
  /** Verdicts decided without an approval, fed back after the batch that asked. */
  private readonly decided: { id: number; verdict: V }[] = [];
  private draining = false;

  constructor(private readonly o: DbShellOptions<V, C>) {
    this.agent = o.req.flow.conn;
    this.done = new Promise<void>((resolve) => {
      this.resolveDone = resolve;
    });
  }

  private get flowId(): string {
    return this.o.req.flow.id;
  }

  /** Carries out the session's commands; then feeds back the verdicts they decided, in a loop, not recursion, so a long pipeline cannot overflow the stack. */
  readonly run = (commands: C[]): void => {
    for (const c of commands) {
      if (this.closed) return;
      this.o.execute(c);
    }
    if (this.draining) return;
    this.draining = true;
    try {
      for (let d = this.decided.shift(); d !== undefined && !this.closed; d = this.decided.shift()) this.feed({ type: "verdict", id: d.id, verdict: d.verdict });
    } finally {
      this.decided.length = 0;
      this.draining = false;
    }
  };

  readonly feed = (e: ShellEvent<V>): void => this.run(this.o.session.handle(e));

  /** The commands every session gives. */
  carryOut(c: ShellCommand): void {
    switch (c.type) {
      case "send-agent":
        if (!this.agent.write(c.data) && this.upstream) {
          // The agent reads slowly: stop reading the server until it drains.
          this.upstream.pause();
          this.agent.once("drain", () => this.upstream?.resume());
        }
        break;
      case "send-upstream":
        if (this.upstream && !this.upstream.write(c.data)) {
          this.agent.pause();
          this.upstream.once("drain", () => this.agent.resume());
        }
        break;
      case "log":
        log[c.level](c.message, { flow: this.flowId, endpoint: this.o.req.endpoint.ref, ...c.fields });
        break;
      case "close":
        this.finish();
        break;
    }
  }

  readonly finish = (): void => {
    if (this.closed) return;
    this.closed = true;
    this.agentGone.abort();
    this.o.onClose?.();
    this.agent.end();
    this.upstream?.end();
    // Let queued bytes flush, then make sure nothing lingers.
    setTimeout(() => {
      this.agent.destroy();
      this.upstream?.destroy();
    }, 2_000).unref?.();
    this.resolveDone();
  };

  readonly onAgentData = (d: Uint8Array): void => this.feed({ type: "agent-data", data: d });
  readonly onAgentClosed = (): void => this.feed({ type: "agent-closed" });

  /** Feeds the agent's bytes and its going (close or end) to the session. */
  listenAgent(s: Duplex): void {
    s.on("data", this.onAgentData);
    s.on("close", this.onAgentClosed);
    s.on("end", this.onAgentClosed);
  }

  /** Reads the agent's connection as it came. */
  acceptAgent(): void {
    const conn = this.o.req.flow.conn;
    this.listenAgent(conn);
    conn.resume();
    // The agent may have gone before we listened (its 'end' already emitted).
    if (conn.readableEnded || conn.destroyed) this.onAgentClosed();
  }

  /** Terminates the agent's TLS with a leaf for the name it dialed; `ready` listens to the TLS socket. */
  terminateAgentTls(ready: (t: tls.TLSSocket) => void): void {
    const { flow, upstream } = this.o.req;
    // Paused until TLS takes the stream over: the ClientHello may arrive
    // while the leaf is minted, and a flowing stream with no reader drops it.
    flow.conn.pause();
    flow.conn.off("data", this.onAgentData);
    void this.o.deps.leaves.secureContextFor(upstream.host).then(
      (secureContext) => {
        if (this.closed) return;
        const t = new tls.TLSSocket(flow.conn as never, { isServer: true, secureContext });
        this.agent = t;
        t.on("error", (e: Error) => {
          log.debug(`${this.o.name} agent TLS error`, { flow: flow.id, error: e.message });
          this.finish();
        });
        ready(t);
      },
      (e: Error) => {
        log.error("could not mint a certificate", { host: upstream.host, error: e.message });
        this.finish();
      },
    );
  }

  /** Attaches the upstream once dialed (`ready` then tells the session); a failure is the session's upstream-failed. */
  openUpstream<U extends { socket: UpstreamStream }>(opening: Promise<U>, ready: (u: U) => void): void {
    const { upstream } = this.o.req;
    void opening.then(
      (u) => {
        if (this.closed) {
          u.socket.destroy();
          return;
        }
        this.upstream = u.socket;
        u.socket.on("data", (d: Uint8Array) => this.feed({ type: "upstream-data", data: d }));
        u.socket.on("close", () => this.feed({ type: "upstream-closed" }));
        u.socket.on("error", (e: Error) => log.debug(`${this.o.name} upstream error`, { flow: this.flowId, error: e.message }));
        ready(u);
      },
      (e: Error) => {
        log.warn(`${this.o.name} upstream unreachable`, { flow: this.flowId, upstream: `${upstream.host}:${upstream.port}`, error: e.message });
        this.feed({ type: "upstream-failed", reason: e.message });
      },
    );
  }

  /** A verdict reached without an approval: fed back once the current batch is carried out. */
  decide(id: number, verdict: V): void {
    this.decided.push({ id, verdict });
  }

  /** A verdict that waits on an approval: fed back when it settles. */
  decideLater(id: number, verdict: Promise<V>): void {
    void verdict.then((v) => this.feed({ type: "verdict", id, verdict: v }));
  }

  /** Judges one action by the rules of the policy in force now; `taken`, a decision already taken, is not taken again (a rate-limited rule would count twice). */
  judge(facts: SqlFacts, taken?: Decision): Judged {
    const { deps, req } = this.o;
    const policy = deps.policy();
    const endpoint = policy.endpoints.get(req.endpoint.ref) ?? req.endpoint;
    const device = req.flow.device;
    return { policy, endpoint, facts, decision: taken ?? judge(policy, { device: device.name, profile: device.profile, endpoint }, facts) };
  }

  warnIfFailedClosed(d: Decision): void {
    if (d.detail) log.warn("rule evaluation failed closed", { flow: this.flowId, rule: d.rule, detail: d.detail });
  }

  /** The decision settled: an approval, when it asks for one, holds this flow only. */
  settle(j: Judged): Promise<SettledOutcome> {
    const { deps, req } = this.o;
    const request = () =>
      sqlApprovalRequest({ facts: j.facts, decision: j.decision, device: req.flow.device, endpoint: j.endpoint.ref, host: req.upstream.host, redact: deps.redact ?? ((t) => t) });
    return settleDecision({ policy: j.policy, decision: j.decision, gate: deps.approvals, request, signal: this.agentGone.signal });
  }

  /** Publishes the sql event of one statement or query; `action` adds what only the protocol knows. */
  publish(r: SqlRecord, durationMs: number, action: Record<string, unknown>, approval?: Record<string, unknown>): void {
    const { flow, endpoint, upstream } = this.o.req;
    const event: GatewayEvent = {
      time: new Date(r.startedAt).toISOString(),
      kind: "sql",
      family: "sql",
      flowId: flow.id,
      device: flow.device.name,
      profile: flow.device.profile,
      endpoint: endpoint.ref,
      host: upstream.host,
      port: upstream.port,
      method: (r.facts.facets?.verb ?? "sql").toUpperCase(),
      path: cut(r.facts.facets?.statement ?? r.facts.text, 300),
      bytesUp: 0,
      bytesDown: 0,
      durationMs,
      verdict: r.verdict,
      reason: r.reason,
      summary: sqlFamily.summary(r.facts),
      action: { ...sqlFamily.action(r.facts), ...action },
    };
    if (r.rule !== undefined) event.rule = r.rule;
    if (this.o.credentialRef !== undefined) event.credential = this.o.credentialRef;
    if (r.detail) event.detail = r.detail;
    else if (r.facts.unknownReason) event.detail = `facets unknown: ${r.facts.unknownReason}`;
    if (approval) Object.assign(event, approval);
    this.o.deps.publish(event);
  }
}

export type PasswordCredential = { ok: true; ref: string; value: { user: string; password: string } } | { ok: false; reason: string };

/** The endpoint's user and password, when the device's profile is granted its credential and the gateway holds the secret. */
export function passwordCredential(policy: Policy, endpoint: Endpoint, profile: string, deps: FlowDeps): PasswordCredential {
  if (!endpoint.credential) return { ok: false, reason: "the endpoint names no credential" };
  const cred = policy.credentials.get(endpoint.credential);
  if (!cred) return { ok: false, reason: `credential ${endpoint.credential} is not configured` };
  if (!policy.profiles.get(profile)?.credentials.includes(cred.ref)) return { ok: false, reason: `profile "${profile}" is not granted ${cred.ref}` };
  const secret = deps.secretFor(cred);
  if (!secret.ok) return { ok: false, reason: secret.reason };
  const user = cred.settings.user;
  if (!user) return { ok: false, reason: `credential ${cred.ref} names no user` };
  return { ok: true, ref: cred.ref, value: { user, password: secret.value } };
}
