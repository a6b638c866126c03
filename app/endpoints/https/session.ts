// One intercepted HTTPS connection from an agent, after TLS termination:
// the shell around InterceptConnection (connection.ts, sans-IO), which
// decides everything about the connection's HTTP/1.1 exchanges. This owns
// what it cannot: the agent's socket and the upstream's (pooled, certificate
// verified), reads pulled one chunk at a time once the writes they feed
// drained (backpressure), the one timer, the approval gate, the policy
// snapshot each request is judged by, and the events published.
// The same shell serves plain HTTP (`plain`): the agent's socket is the
// flow itself, each request names its host, and the upstream is a TCP
// socket to the address the destination policy allowed.
import type { Duplex } from "node:stream";
import type { Policy } from "../../policy/types.ts";
import type { Flow } from "../../dispatch/flow.ts";
import type { GatewayEvent } from "../../events/types.ts";
import type { RequestHead } from "../http1/parser.ts";
import { StreamPuller } from "./puller.ts";
import type { ApprovalGate } from "./approval.ts";
import { UpstreamPool, isTransientDialError, writeWithBackpressure, type DialTarget, type UpstreamConn } from "./upstream.ts";
import { ExchangeDecider, type EventFields, type SecretLookup } from "./decider.ts";
import { InterceptConnection, type ConnectionCommand, type ConnectionEvent, type Side } from "./connection.ts";
import { log } from "../../log.ts";
import { chargeUsage } from "../../spend/charge.ts";
import type { Price } from "../../spend/prices.ts";
import { HeldBytes, type ByteBudget } from "../../dispatch/held-bytes.ts";

export { denyResponse, type SecretLookup } from "./decider.ts";

export interface InterceptDeps {
  policy(): Policy;
  secretFor: SecretLookup;
  publish(event: GatewayEvent): void;
  pool: UpstreamPool;
  /** Holds requests a rule sends for approval; without it such requests are denied (fail closed). */
  approvals?: ApprovalGate;
  /** Masks configured secrets in text shown outside the gateway (approvers). */
  redact?: (text: string) => string;
  /** Aborted when the gateway stops: the exchange under way finishes, its event is published, then the connection closes. */
  shutdown?: AbortSignal;
  /** The device's buffered-bytes budget (quota_buffered_bytes) what a session holds counts against (absent: unbounded). */
  buffers?: (device: Flow["device"]) => ByteBudget;
}

/** How a plain-HTTP session reaches the hosts its requests name. */
export interface PlainTransport {
  /** The port the connection was dialed on (the tunnel); absent for the explicit proxy, whose requests name theirs. */
  port?: number;
  /** Where requests to a host no endpoint claims go (the tunnel: the address the agent dialed); absent: the host they name. */
  unclaimedTo?: string;
  /** The address to dial for `host`; `claimed` hosts are dialed by name as intercepted ones are, the rest judged by the destination policy. */
  addressFor(host: string, port: number, claimed: boolean): Promise<{ ok: true; address: string } | { ok: false; reason: string }>;
}

export class InterceptSession {
  private readonly conn: InterceptConnection;
  private readonly puller: StreamPuller;
  private upstream: UpstreamConn | undefined;
  /** Settles when the last write toward each side drained (a failed write: rejected). */
  private drained: Record<Side, Promise<void>> = { client: Promise.resolve(), upstream: Promise.resolve() };
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** When the timer is due. */
  private timerDue = 0;
  private closed = false;
  private ended: () => void = () => undefined;
  /** Events waiting while commands are carried out (handle() is never re-entered). */
  private readonly queue: ConnectionEvent[] = [];
  private running = false;
  /** Aborts a synchronous approval hold when the agent goes away. */
  private readonly agentGone = new AbortController();
  /** What this session holds, counted against the device's buffered-bytes quota. */
  private readonly held: HeldBytes | undefined;

  constructor(
    private readonly flow: Flow,
    private readonly agent: Duplex,
    private readonly sni: string,
    private readonly deps: InterceptDeps,
    private readonly plain?: PlainTransport,
  ) {
    const d = deps.policy().defaults;
    this.held = deps.buffers ? new HeldBytes(deps.buffers(flow.device)) : undefined;
    this.puller = new StreamPuller(agent, {
      onData: () => undefined,
      onWait: () => this.feed({ type: "client-waiting" }),
    });
    this.conn = new InterceptConnection({
      timeouts: { headerMs: d.headerTimeoutMs, idleMs: d.idleTimeoutMs, minRateBytesPerSec: d.minRateBytesPerSec },
      sni,
      now: Date.now,
      decider: (_head, now) =>
        new ExchangeDecider({
          policy: deps.policy(),
          device: { name: flow.device.name, profile: flow.device.profile },
          sni,
          port: flow.dst.port,
          now,
          secretFor: deps.secretFor,
          redact: deps.redact ?? ((t) => t),
          approvals: deps.approvals !== undefined,
          ...(plain ? { plain: plain.port !== undefined ? { port: plain.port } : {} } : {}),
        }),
    });
    agent.once("close", () => this.agentGone.abort());
    const shutdown = deps.shutdown;
    if (shutdown) {
      const onShutdown = () => this.feed({ type: "shutdown" });
      if (shutdown.aborted) queueMicrotask(onShutdown);
      else {
        shutdown.addEventListener("abort", onShutdown, { once: true });
        this.agentGone.signal.addEventListener("abort", () => shutdown.removeEventListener("abort", onShutdown), { once: true });
      }
    }
  }

  /** Serves the connection; resolves when it is over. */
  run(): Promise<void> {
    return new Promise((resolve) => {
      this.ended = resolve;
      this.drive(undefined);
    });
  }

  private feed(ev: ConnectionEvent): void {
    if (this.closed) return;
    this.queue.push(ev);
    if (!this.running) this.drive(this.queue.shift());
  }

  /** Hands events to the connection one at a time (undefined: its start), carrying out its commands. */
  private drive(first: ConnectionEvent | undefined): void {
    this.running = true;
    try {
      this.perform(first ? this.conn.handle(first) : this.conn.start());
      for (let e = this.queue.shift(); e && !this.closed; e = this.queue.shift()) this.perform(this.conn.handle(e));
    } catch (e) {
      log.debug("intercept session ended", { flow: this.flow.id, error: (e as Error).message });
      this.finish(0, true);
    } finally {
      this.running = false;
      this.queue.length = 0;
      this.countHeld();
    }
  }

  /**
   * What the session holds now against the device's budget: the
   * connection's buffers (a body read for a rule or an approval, events not
   * yet handed on), chunks read and not yet taken, writes not yet drained.
   */
  private countHeld(): void {
    const h = this.held;
    if (!h) return;
    if (this.closed) return h.close();
    const u = this.upstream;
    h.set(this.conn.heldBytes + this.puller.buffered + this.agent.writableLength + (u ? u.puller.buffered + u.sock.writableLength : 0));
  }

  private perform(commands: ConnectionCommand[]): void {
    for (const c of commands) {
      if (this.closed) return;
      switch (c.type) {
        case "write":
          if (c.to === "client") this.writeClient(c.data);
          else this.writeUpstream(c.data);
          break;
        case "read":
          void this.read(c.from, c.afterDrain);
          break;
        case "connect":
          void this.connect(c);
          break;
        case "release-upstream": {
          const u = this.upstream;
          this.upstream = undefined;
          // Bytes that arrived unasked belong to no request: never hand them to the next one.
          if (u && u.atCleanBoundary) this.deps.pool.release(u);
          else u?.destroy();
          break;
        }
        case "close-upstream":
          this.upstream?.destroy();
          this.upstream = undefined;
          break;
        case "end":
          if (c.to === "client") this.agent.end();
          else this.upstream?.sock.end();
          break;
        case "timer":
          this.setTimer(c.at);
          break;
        case "hold":
          this.hold(c);
          break;
        case "publish":
          this.publish(c.head, c.started, c.durationMs, c.fields);
          break;
        case "log":
          log[c.level](c.message, { flow: this.flow.id, ...c.fields });
          break;
        case "close":
          this.finish(c.graceMs, c.abort);
          break;
      }
    }
  }

  private writeClient(data: Uint8Array): void {
    const p = writeWithBackpressure(this.agent, data);
    this.drained.client = p;
    p.then(() => this.countHeld(), () => this.feed({ type: "client-gone" }));
  }

  private writeUpstream(data: Uint8Array): void {
    const u = this.upstream;
    if (!u) return;
    const p = u.write(data);
    this.drained.upstream = p;
    // The upstream gone: its reader sees the end, and the exchange fails there.
    p.then(() => this.countHeld(), () => u.destroy());
  }

  private async read(from: Side, afterDrain: Side[]): Promise<void> {
    // The connection asked of, and the writes issued before the ask.
    const u = this.upstream;
    const drains = afterDrain.map((side) => this.drained[side]);
    for (const d of drains) await d.catch(() => undefined);
    // At the device's buffered-bytes quota nothing more is read from either side until bytes are given back.
    if (this.held) {
      // An agent gone meanwhile is seen (its read ends the session). One not
      // read is not seen going, so a session that waits for room longer
      // than the idle timeout ends: a device's sessions all waiting on each
      // other (bodies held for approvals, each short of its whole) would
      // otherwise hold the budget, and their sockets, for ever.
      const waited = new AbortController();
      const onGone = () => waited.abort();
      this.agentGone.signal.addEventListener("abort", onGone, { once: true });
      const timer = setTimeout(onGone, this.deps.policy().defaults.idleTimeoutMs);
      timer.unref?.();
      await this.held.room(waited.signal);
      clearTimeout(timer);
      this.agentGone.signal.removeEventListener("abort", onGone);
      if (this.closed) return;
      if (waited.signal.aborted && !this.agentGone.signal.aborted && this.held.full) {
        log.info("intercept session ended: waited too long at the device's buffered-bytes quota", { flow: this.flow.id, device: this.flow.device.name });
        return this.finish(0, true);
      }
    }
    if (from === "client") {
      const chunk = await this.puller.next();
      this.feed(chunk ? { type: "client-data", data: chunk } : { type: "client-closed" });
      return;
    }
    if (!u || u !== this.upstream) return;
    const chunk = await u.puller.next();
    // A read of a connection since closed (a retry, a timeout) is no one's.
    if (u !== this.upstream) return;
    this.feed(chunk ? { type: "upstream-data", data: chunk } : { type: "upstream-closed" });
  }

  /** The pool's target for a connect: the flow's destination, or for plain HTTP the address the request's host is dialed at. */
  private async targetOf(c: Extract<ConnectionCommand, { type: "connect" }>): Promise<DialTarget | string> {
    const endpoint = c.endpoint ? { endpoint: c.endpoint } : {};
    if (!this.plain || !c.upstream) {
      return { host: this.flow.dst.host, port: this.flow.dst.port, sni: this.sni, ...endpoint, ...(c.clientCert ? { clientCert: c.clientCert } : {}) };
    }
    const u = c.upstream;
    const host = !u.claimed && this.plain.unclaimedTo !== undefined ? this.plain.unclaimedTo : u.host;
    const found = await this.plain.addressFor(host, u.port, u.claimed);
    if (!found.ok) return found.reason;
    return { host: u.host, port: u.port, sni: u.host, ...endpoint, plain: { address: found.address } };
  }

  private async connect(c: Extract<ConnectionCommand, { type: "connect" }>): Promise<void> {
    let target: DialTarget | string;
    try {
      target = await this.targetOf(c);
    } catch (e) {
      target = (e as Error).message;
    }
    if (this.closed) return;
    if (typeof target === "string") return this.feed({ type: "upstream-failed", message: target });
    const pooled = this.deps.pool.takeIdle(target);
    if (pooled) {
      this.upstream = pooled;
      this.drained.upstream = Promise.resolve();
      this.feed({ type: "upstream-connected", pooled: true });
      return;
    }
    try {
      const u = await this.deps.pool.dial(target);
      if (this.closed) return u.destroy();
      this.upstream = u;
      this.drained.upstream = Promise.resolve();
      this.feed({ type: "upstream-connected", pooled: false });
    } catch (e) {
      this.feed({ type: "upstream-failed", message: (e as Error).message, transient: isTransientDialError(e) });
    }
  }

  /**
   * One timer, due no later than the connection's next deadline. A timer due
   * earlier is kept (the connection re-checks and asks again when it fires):
   * deadlines mostly move later, and replacing the timer on every read cost
   * a setTimeout and a clearTimeout each.
   */
  private setTimer(at: number | undefined): void {
    if (at !== undefined && this.timer && this.timerDue <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (at === undefined) return;
    this.timerDue = at;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.feed({ type: "timer" });
      },
      Math.max(0, at - Date.now()),
    );
    this.timer.unref?.();
  }

  /** Holds the request with the approval gate; the agent going away ends a synchronous hold. */
  private hold(c: Extract<ConnectionCommand, { type: "hold" }>): void {
    const gate = this.deps.approvals;
    if (!gate) throw new Error("hold without an approval gate");
    gate.hold({ request: c.request, rule: c.rule, chain: c.chain, operationId: c.operationId, signal: this.agentGone.signal }).then(
      (outcome) => this.feed({ type: "approval", outcome }),
      (e: Error) => {
        log.debug("intercept session ended", { flow: this.flow.id, error: e.message });
        this.finish(0, true);
      },
    );
  }

  private publish(head: RequestHead, started: number, durationMs: number, fields: EventFields): void {
    this.deps.publish(exchangeEvent(this.flow, this.sni, head, started, durationMs, fields, { plain: this.plain !== undefined, prices: this.deps.policy().prices }));
  }

  /** The connection is over: the agent's side ends (destroyed after `graceMs`), the upstream goes. */
  private finish(graceMs: number, abort: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.held?.close();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.upstream?.destroy();
    this.upstream = undefined;
    if (abort) this.agent.destroy();
    else {
      this.agent.end();
      setTimeout(() => this.agent.destroy(), graceMs).unref?.();
    }
    this.ended();
  }
}

/** One exchange's event (an HTTP/1.1 request or an HTTP/2 stream): the request, when it began, and what came of it. */
export function exchangeEvent(
  flow: Flow,
  sni: string,
  head: Pick<RequestHead, "method" | "target">,
  started: number,
  durationMs: number,
  fields: EventFields,
  /** `plain`: a plain-HTTP exchange; `prices`: what an LLM API's reported usage costs (charged to the day's spend). */
  opts: { plain?: boolean; prices?: readonly Price[] } = {},
): GatewayEvent {
  const { device } = flow;
  const event: GatewayEvent = {
    time: new Date(started).toISOString(),
    kind: "http",
    family: "http",
    flowId: flow.id,
    device: device.name,
    profile: device.profile,
    host: sni,
    port: flow.dst.port,
    method: head.method,
    path: head.target,
    bytesUp: 0,
    bytesDown: 0,
    durationMs: 0,
    verdict: "deny",
    reason: "",
  };
  Object.assign(event, fields);
  event.durationMs = durationMs;
  if (event.usage && opts.prices) event.usage = chargeUsage(opts.prices, { device: device.name, profile: device.profile, credential: event.credential ?? "" }, event.usage);
  // Every family's events carry the same three fields (the path as forwarded); a family over HTTP (k8s) gave its own.
  const status = event.status !== undefined ? { status: event.status } : {};
  if (event.family === undefined || event.family === "http") {
    event.family = "http";
    event.summary = `${event.method ?? ""} ${opts.plain ? "http://" : ""}${event.host}${event.path ?? ""}`;
    // A family that judges more than the request (clickhouse_https: its SQL) adds its own fields.
    const scheme = opts.plain ? { scheme: "http" } : {};
    event.action = { ...(event.action ?? {}), method: event.method, host: event.host, path: event.path, ...scheme, ...status };
  } else {
    event.action = { ...event.action, ...status };
  }
  return event;
}
