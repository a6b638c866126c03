// One intercepted HTTPS connection from an agent, after TLS termination.
// For each request on it:
//
// 1. parse the head
// 2. let the exchange decider (decider.ts, sans-IO) judge it, carrying out
//    what it asks for: read the body, drain a refused one, hold for
//    approval, answer
// 3. on forward: send its outbound head (credential injected) to the
//    upstream (pooled, certificate verified), stream the body both ways with
//    backpressure; the response relay (response.ts, sans-IO) shapes and
//    scrubs what the agent is sent
// 4. publish one event
// Throughout, the client's pace is watched (ClientTimeouts: idle, header,
// minimum body rate); a client out of time is answered 408 or closed.
import type { Duplex } from "node:stream";
import type { Policy } from "../../policy/types.ts";
import type { Flow } from "../../dispatch/flow.ts";
import type { GatewayEvent } from "../../events/types.ts";
import type { HoldOutcome } from "../../approvers/hub.ts";
import { Http1Parser, type ParseEvent, type RequestHead } from "../http1/parser.ts";
import { encodeChunk, LAST_CHUNK, serializeRequestHead } from "../http1/serialize.ts";
import { EventPuller, StreamPuller } from "./puller.ts";
import type { ApprovalGate } from "./approval.ts";
import { UpstreamPool, writeWithBackpressure, type UpstreamConn } from "./upstream.ts";
import { ClientTimeouts, type TimeoutReason } from "../http1/timeouts.ts";
import { ServerFrameScrubber } from "./wsframes.ts";
import { ResponseRelay } from "./response.ts";
import { afterResponse, attemptFailed, dialFailed, errorResponse } from "./outcome.ts";
import { ExchangeDecider, type DeciderCommand, type DeciderEvent, type EventFields, type SecretLookup } from "./decider.ts";
import { log } from "../../log.ts";

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
}

/** Outcome of one exchange: whether the agent connection can carry another request. */
type Next = "continue" | "close";

export class InterceptSession {
  private readonly parser = new Http1Parser("request");
  private readonly puller: StreamPuller;
  private readonly requests: EventPuller<ParseEvent>;

  constructor(
    private readonly flow: Flow,
    private readonly agent: Duplex,
    private readonly sni: string,
    private readonly deps: InterceptDeps,
  ) {
    const d = deps.policy().defaults;
    this.timeouts = new ClientTimeouts(
      { headerMs: d.headerTimeoutMs, idleMs: d.idleTimeoutMs, minRateBytesPerSec: d.minRateBytesPerSec },
      Date.now(),
    );
    this.puller = new StreamPuller(agent, {
      onData: (n) => {
        this.timeouts.received(Date.now(), n);
        this.armTimer();
      },
      onWait: () => {
        this.timeouts.waiting(Date.now());
        this.armTimer();
      },
    });
    this.requests = new EventPuller(this.puller, this.parser);
  }

  private readonly timeouts: ClientTimeouts;
  private timer: ReturnType<typeof setTimeout> | undefined;

  /** One timer at the timeouts' next deadline. */
  private armTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const at = this.timeouts.deadline();
    if (at === undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const reason = this.timeouts.expired(Date.now());
      if (reason) this.timedOut(reason);
      else this.armTimer();
    }, Math.max(0, at - Date.now()));
    this.timer.unref?.();
  }

  private timedOut(reason: TimeoutReason): void {
    log.debug("intercepted client out of time", { flow: this.flow.id, reason });
    this.timeouts.stop(Date.now());
    // A request half sent gets HTTP's own answer; an idle connection just closes.
    if (reason !== "idle" && !this.responseStarted) {
      this.agent.write(errorResponse(408, reason === "header" ? "request head took too long" : "request body too slow"));
    }
    this.agent.end();
    setTimeout(() => this.agent.destroy(), 1_000).unref?.();
  }

  async run(): Promise<void> {
    try {
      for (;;) {
        // Between requests (a pipelined head may already be half here: it
        // then has the idle time, and the header time once more bytes come).
        this.timeouts.awaitRequest(Date.now());
        this.armTimer();
        const ev = await this.nextEvent();
        if (!ev) break;
        if (ev.type === "error") {
          await this.write(errorResponse(ev.code, ev.message));
          break;
        }
        // The end of a message without a body arrives after its exchange.
        if (ev.type === "end") continue;
        if (ev.type !== "head" || !("method" in ev.head)) break;
        const next = await this.exchange(ev.head);
        if (next === "close") break;
        // An upgrade the upstream (or the policy) declined: carry on with HTTP.
        if (this.parser.awaitingUpgrade) this.events.push(...this.parser.declineUpgrade());
      }
    } catch (e) {
      log.debug("intercept session ended", { flow: this.flow.id, error: (e as Error).message });
    } finally {
      if (this.timer) clearTimeout(this.timer);
      this.timeouts.stop(Date.now());
      this.agent.end();
      setTimeout(() => this.agent.destroy(), 5_000).unref?.();
    }
  }

  private async nextEvent(): Promise<ParseEvent | undefined> {
    const ev = await this.requests.next();
    if (ev?.type === "head" && "method" in ev.head) this.timeouts.headParsed(Date.now(), ev.head.bodyKind.kind !== "none");
    else if (ev?.type === "end") this.timeouts.bodyEnded(Date.now());
    else return ev;
    this.armTimer();
    return ev;
  }

  /** Parse events not yet taken. */
  private get events(): ParseEvent[] {
    return this.requests.events;
  }

  private write(data: Uint8Array | string): Promise<void> {
    return writeWithBackpressure(this.agent, data);
  }

  private async exchange(head: RequestHead): Promise<Next> {
    const started = Date.now();
    const policy = this.deps.policy();
    const { device } = this.flow;
    const event: GatewayEvent = {
      time: new Date(started).toISOString(),
      kind: "http",
      family: "http",
      flowId: this.flow.id,
      device: device.name,
      profile: device.profile,
      host: this.sni,
      port: this.flow.dst.port,
      method: head.method,
      path: head.target,
      bytesUp: 0,
      bytesDown: 0,
      durationMs: 0,
      verdict: "deny",
      reason: "",
    };
    const finish = (fields: EventFields) => {
      Object.assign(event, fields);
      event.durationMs = Date.now() - started;
      // Every family's events carry the same three fields (the path as forwarded).
      event.family = "http";
      event.summary = `${event.method ?? ""} ${event.host}${event.path ?? ""}`;
      // A family that judges more than the request (clickhouse_https: its SQL) adds its own fields.
      event.action = { ...(fields.action ?? {}), method: event.method, host: event.host, path: event.path, ...(event.status !== undefined ? { status: event.status } : {}) };
      this.deps.publish(event);
    };

    // The decider decides; this carries out what it asks for and feeds back what came of it.
    const decider = new ExchangeDecider({
      policy,
      device: { name: device.name, profile: device.profile },
      sni: this.sni,
      now: started,
      secretFor: this.deps.secretFor,
      redact: this.deps.redact ?? ((t) => t),
      approvals: this.deps.approvals !== undefined,
    });
    let commands = decider.handle({ type: "head", head });
    for (;;) {
      let reply: DeciderEvent | undefined;
      for (const c of commands) {
        switch (c.type) {
          case "log":
            log[c.level](c.message, { flow: this.flow.id, ...c.fields });
            break;
          case "read-body": {
            if (c.sendContinue) await this.write("HTTP/1.1 100 Continue\r\n\r\n");
            const read = c.wait ? await this.readBody(c.atMost) : this.takeArrivedBody(c.atMost);
            if (!read) return "close";
            reply = { type: "body", ...read };
            break;
          }
          case "drain":
            reply = { type: "drained", ...(await this.drain(c.atMost)) };
            break;
          case "hold":
            reply = { type: "approval", outcome: await this.hold(c) };
            break;
          case "reply":
            finish(c.event);
            await this.write(c.data);
            return c.close ? "close" : "continue";
          case "forward":
            Object.assign(event, c.event);
            return this.forward(head, c, finish);
        }
      }
      if (!reply) throw new Error("exchange decider asked for nothing");
      commands = decider.handle(reply);
    }
  }

  /**
   * Reads request body events until the message ends or more than `atMost`
   * bytes were read. Undefined when the agent went away.
   */
  private async readBody(atMost: number): Promise<{ chunks: Uint8Array[]; done: boolean } | undefined> {
    const chunks: Uint8Array[] = [];
    let bytes = 0;
    while (bytes <= atMost) {
      const ev = await this.nextEvent();
      if (!ev || ev.type === "error") return undefined;
      if (ev.type === "body") {
        chunks.push(ev.data);
        bytes += ev.data.length;
      } else if (ev.type === "end") {
        return { chunks, done: true };
      }
    }
    return { chunks, done: false };
  }

  /** Body events already received, without waiting for more. */
  private takeArrivedBody(atMost: number): { chunks: Uint8Array[]; done: boolean } {
    const chunks: Uint8Array[] = [];
    let bytes = 0;
    while (bytes <= atMost) {
      const ev = this.requests.tryNext();
      if (!ev) break;
      if (ev.type === "body") {
        chunks.push(ev.data);
        bytes += ev.data.length;
      } else if (ev.type === "end") {
        this.timeouts.bodyEnded(Date.now());
        return { chunks, done: true };
      } else {
        // An error (or anything else) is the streaming path's to handle.
        this.events.unshift(ev);
        break;
      }
    }
    return { chunks, done: false };
  }

  /** Reads and discards body events until the message ends or `atMost` bytes. */
  private async drain(atMost: number): Promise<{ bytes: number; done: boolean }> {
    let bytes = 0;
    while (bytes < atMost) {
      const ev = await this.nextEvent();
      if (!ev || ev.type === "error") break;
      if (ev.type === "body") bytes += ev.data.length;
      if (ev.type === "end") return { bytes, done: true };
    }
    return { bytes, done: false };
  }

  /** Holds the request with the approval gate; the agent going away ends a synchronous hold. */
  private async hold(c: Extract<DeciderCommand, { type: "hold" }>): Promise<HoldOutcome> {
    const gate = this.deps.approvals;
    if (!gate) throw new Error("hold without an approval gate");
    const agentGone = new AbortController();
    const onClose = () => agentGone.abort();
    this.agent.once("close", onClose);
    return gate
      .hold({ request: c.request, rule: c.rule, chain: c.chain, operationId: c.operationId, signal: agentGone.signal })
      .finally(() => this.agent.off("close", onClose));
  }

  private async forward(head: RequestHead, x: Extract<DeciderCommand, { type: "forward" }>, finish: (f: EventFields) => void): Promise<Next> {
    const { needles, chunked } = x;
    const reason = x.event.reason ?? "";
    const headBytes = serializeRequestHead(x.head);

    const target = { host: this.flow.dst.host, port: this.flow.dst.port, sni: this.sni, endpoint: x.endpoint };
    // A pooled connection the server closed meanwhile fails before any
    // response byte; a request we still hold whole is then sent again once.
    const replayable = x.complete;
    let upstream: UpstreamConn | undefined;
    let attempt = 0;
    let response: { status: number; bytesDown: number; upgraded: boolean; reusable: boolean; agentClose: boolean } | undefined;
    let bytesUp = x.bodyBytes;
    let requestComplete = x.complete;
    for (;;) {
      attempt += 1;
      const pooled = this.deps.pool.takeIdle(target);
      try {
        upstream = pooled ?? (await this.deps.pool.dial(target));
      } catch (e) {
        const message = (e as Error).message;
        log.warn("upstream connect failed", { flow: this.flow.id, host: this.sni, error: message });
        const failed = dialFailed({ sni: this.sni, message, complete: x.complete, keepAlive: head.keepAlive });
        finish({ status: failed.status, verdict: "allow", reason, detail: failed.detail, bytesUp });
        await this.write(failed.data);
        return failed.close ? "close" : "continue";
      }
      upstream.parser.expectResponseTo(head.method);
      let sent = false;
      const sending = this.sendRequest(upstream, headBytes, x.body, chunked, requestComplete).then(
        (r) => {
          bytesUp += r.bytes;
          requestComplete = r.complete;
          sent = true;
        },
        (e: Error) => {
          upstream?.destroy();
          throw e;
        },
      );
      sending.catch(() => undefined);
      let failure: Error | undefined;
      response = await this.relayResponse(upstream, head, needles, sending, () => sent).catch((e: Error) => {
        log.debug("upstream exchange failed", { flow: this.flow.id, error: e.message });
        failure = e;
        return undefined;
      });
      if (response) break;
      upstream.destroy();
      const failed = attemptFailed({
        refused: failure instanceof RefusedResponse,
        message: failure?.message ?? "",
        pooled: pooled !== undefined,
        replayable,
        attempt,
        responseStarted: this.responseStarted,
        sni: this.sni,
      });
      if (!failed.retry) {
        finish({ status: failed.status, verdict: "allow", reason, detail: failed.detail, bytesUp });
        if (failed.data) await this.write(failed.data).catch(() => undefined);
        return "close";
      }
    }

    finish({
      status: response.status,
      verdict: "allow",
      reason,
      bytesUp,
      bytesDown: response.bytesDown,
    });
    if (response.upgraded) {
      await this.spliceUpgraded(upstream!, needles);
      return "close";
    }
    const after = afterResponse({
      reusable: response.reusable,
      requestComplete,
      method: head.method,
      atCleanBoundary: upstream!.atCleanBoundary,
      agentClose: response.agentClose,
      keepAlive: head.keepAlive,
    });
    if (after.release) this.deps.pool.release(upstream!);
    else upstream!.destroy();
    return after.close ? "close" : "continue";
  }

  /** Set once any byte of the current response was written to the agent. */
  private responseStarted = false;

  private async sendRequest(
    upstream: UpstreamConn,
    headBytes: Uint8Array,
    buffered: Uint8Array[],
    chunked: boolean,
    alreadyComplete: boolean,
  ): Promise<{ bytes: number; complete: boolean }> {
    const frame = (data: Uint8Array): Uint8Array[] => (chunked ? encodeChunk(data) : [data]);
    const parts: Uint8Array[] = [headBytes];
    for (const b of buffered) parts.push(...frame(b));
    if (alreadyComplete) {
      if (chunked) parts.push(LAST_CHUNK);
      await upstream.write(Buffer.concat(parts));
      return { bytes: 0, complete: true };
    }
    await upstream.write(Buffer.concat(parts));
    let bytes = 0;
    for (;;) {
      const ev = await this.nextEvent();
      if (!ev) return { bytes, complete: false };
      if (ev.type === "body") {
        bytes += ev.data.length;
        for (const p of frame(ev.data)) await upstream.write(p);
      } else if (ev.type === "end") {
        if (chunked) await upstream.write(LAST_CHUNK);
        return { bytes, complete: true };
      } else if (ev.type === "error") {
        throw new Error(ev.message);
      } else {
        return { bytes, complete: true };
      }
    }
  }

  private async relayResponse(
    upstream: UpstreamConn,
    req: RequestHead,
    needles: string[],
    sending: Promise<void>,
    requestSent: () => boolean,
  ): Promise<{ status: number; bytesDown: number; upgraded: boolean; reusable: boolean; agentClose: boolean }> {
    this.responseStarted = false;
    const relay = new ResponseRelay(req, needles);
    for (;;) {
      const ev = await upstream.nextEvent();
      const commands = relay.handle(ev ? { type: "upstream", ev, requestSent: requestSent() } : { type: "upstream-closed" });
      for (const c of commands) {
        switch (c.type) {
          case "send-agent":
            this.responseStarted = true;
            this.queueOut(c.data);
            break;
          case "fail":
            throw c.refused ? new RefusedResponse(c.message) : new Error(c.message);
          case "upgraded":
            // Frames that came with the 101 go through the splice's scrubber.
            this.upgradeRest = c.rest;
            await this.flushOut();
            return { status: c.status, bytesDown: c.bytesDown, upgraded: true, reusable: false, agentClose: true };
          case "done": {
            await this.flushOut();
            const outcome = { status: c.status, bytesDown: c.bytesDown, upgraded: false, reusable: c.reusable, agentClose: c.agentClose };
            // An until-close body ended with the connection: nothing to reuse or wait for.
            if (!ev) return outcome;
            if (c.early) {
              upstream.destroy();
              return outcome;
            }
            // The request side must have finished for the connection to be reused.
            await sending.catch(() => undefined);
            return outcome;
          }
        }
      }
      // Everything one upstream read produced goes out as one write (one TLS
      // record, one syscall) rather than a write per head, chunk and trailer.
      if (!upstream.hasBufferedEvents) await this.flushOut();
    }
  }

  private outQueue: Uint8Array[] = [];
  /** Upstream bytes that arrived with a 101, before the splice starts. */
  private upgradeRest: Uint8Array = new Uint8Array(0);

  private queueOut(data: Uint8Array): void {
    if (data.length > 0) this.outQueue.push(data);
  }

  private flushOut(): Promise<void> {
    const q = this.outQueue;
    if (q.length === 0) return Promise.resolve();
    this.outQueue = [];
    return this.write(q.length === 1 ? q[0]! : Buffer.concat(q));
  }

  /**
   * After a 101: bytes both ways (WebSocket frames). Toward the agent they
   * are masked frame by frame when a credential was injected (the frame
   * lengths stay true; no compression extension was offered); a frame the
   * gateway cannot mask ends the connection.
   */
  private async spliceUpgraded(upstream: UpstreamConn, needles: string[]): Promise<void> {
    const frames = needles.length > 0 ? new ServerFrameScrubber(needles) : undefined;
    // Past the upgrade the client owes no HTTP timing.
    this.timeouts.stop(Date.now());
    if (this.timer) clearTimeout(this.timer);
    const early = this.parser.awaitingUpgrade ? this.parser.acceptUpgrade() : [];
    const toUpstream = (async () => {
      for (const ev of [...this.events.splice(0), ...early]) {
        if (ev.type === "raw") await upstream.write(ev.data);
        else if (ev.type === "upgrade" && ev.rest.length > 0) await upstream.write(ev.rest);
      }
      for (;;) {
        const chunk = await this.puller.next();
        if (!chunk) break;
        await upstream.write(chunk);
      }
      upstream.sock.end();
    })();
    const toAgent = (async () => {
      let chunk: Uint8Array | undefined = this.upgradeRest;
      while (chunk) {
        if (!frames) {
          if (chunk.length > 0) await this.write(chunk);
        } else {
          const r = frames.push(chunk);
          if (!r.ok) {
            log.warn("WebSocket frame not forwarded", { flow: this.flow.id, reason: r.reason });
            upstream.destroy();
            this.agent.destroy();
            return;
          }
          if (r.out.length > 0) await this.write(Buffer.concat(r.out));
        }
        chunk = await upstream.nextRaw();
      }
      this.agent.end();
    })();
    await Promise.allSettled([toUpstream, toAgent]);
    upstream.destroy();
  }
}

/** An upstream response the gateway will not relay (it could carry the secret past the scrubber). */
class RefusedResponse extends Error {}
