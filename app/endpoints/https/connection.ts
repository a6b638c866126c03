// One intercepted HTTPS connection's HTTP/1.1 exchanges, after TLS
// termination, as a sans-IO state machine: events in (the agent's bytes, the
// upstream's bytes, an upstream connected or not, a timer fired, an
// approval's outcome), commands out (bytes to write, reads wanted, an
// upstream to connect, release or close, a timer to set, an event to
// publish). The clock is passed in. The shell (session.ts) owns the
// sockets, the pool, the timer and the approval gate; tests drive this as
// playbooks.
//
// Reading is pulled: the machine asks for one chunk of a side at a time
// (`read`), and the shell reads it only once the writes that chunk would
// feed have drained. That is what carries backpressure end to end: a slow
// upstream means the agent is not read, a slow agent means the upstream is
// not read. Between requests an agent that does not read its answers is not
// read either; while a request body streams, it is (full duplex).
//
// For each request:
// 1. the head is parsed; the exchange decider (decider.ts) judges it and
//    asks for what it needs (the body read or drained, an approval held),
//    then answers or forwards
// 2. forward: an upstream is connected (a pooled one when the shell has
//    one); the outbound head and the body read so far go out, the rest of
//    the body streams as it comes (chunked when asked); the response relay
//    (response.ts) shapes what the agent is sent. A pooled connection the
//    server closed meanwhile is retried once on another when the request is
//    held whole (outcome.ts decides).
// 3. after the response: the upstream goes back to the pool or is closed;
//    the agent's connection carries the next request or closes. A 101
//    switches to splicing: bytes both ways, frames toward the agent masked
//    when a credential was injected.
// 4. one event per exchange is published.
// Throughout, the client's pace is watched (ClientTimeouts: idle, header,
// minimum body rate); a client out of time is answered 408 or closed.
import type { Endpoint } from "../../policy/types.ts";
import type { HoldOutcome } from "../../approvers/hub.ts";
import { Http1Parser, type ParseEvent, type RequestHead } from "../http1/parser.ts";
import { encodeChunk, LAST_CHUNK, serializeRequestHead } from "../http1/serialize.ts";
import { ClientTimeouts, type TimeoutReason, type TimeoutSettings } from "../http1/timeouts.ts";
import { ServerFrameScrubber } from "./wsframes.ts";
import { isSpdy, SpdyFrameScrubber } from "../kubernetes/spdyframes.ts";
import type { ClientCertificate } from "../kubernetes/client-cert.ts";
import { maskText, ResponseRelay, type RelayCommand } from "./response.ts";
import { UsageMeter } from "../../spend/usage.ts";
import { afterResponse, attemptFailed, dialFailed, errorResponse } from "./outcome.ts";
import type { DeciderCommand, DeciderEvent, EventFields, PlainUpstream } from "./decider.ts";

export type Side = "client" | "upstream";

export type ConnectionEvent =
  /** One chunk the shell read from the agent, as asked by `read client`. */
  | { type: "client-data"; data: Uint8Array }
  /** A `read client` found nothing buffered: the shell now waits on the agent (its time counts against it). */
  | { type: "client-waiting" }
  /** The agent's end of stream (as the answer to `read client`). */
  | { type: "client-closed" }
  /** A write to the agent failed: it is gone. */
  | { type: "client-gone" }
  /** The upstream asked for is ready; `pooled`: an idle pooled connection was taken. */
  | { type: "upstream-connected"; pooled: boolean }
  /** `transient`: a failure that may pass (refused, reset, timed out), dialed once more. */
  | { type: "upstream-failed"; message: string; transient?: boolean }
  | { type: "upstream-data"; data: Uint8Array }
  | { type: "upstream-closed" }
  /** The timer set by `timer` fired. */
  | { type: "timer" }
  /** The gateway is stopping: finish the exchange under way, take no other; an idle or held one closes now. */
  | { type: "shutdown" }
  /** The approval asked for by `hold` was decided. */
  | { type: "approval"; outcome: HoldOutcome };

type HoldCommand = Extract<DeciderCommand, { type: "hold" }>;

export type ConnectionCommand =
  | { type: "write"; to: Side; data: Uint8Array }
  /**
   * Read one chunk of `from` (answer with client-data/client-closed or
   * upstream-data/upstream-closed) once the writes it feeds drained:
   * the upstream's for the agent, and with `afterDrain` the agent's too
   * (the agent's for the upstream).
   */
  | { type: "read"; from: Side; afterDrain: Side[] }
  /**
   * Connect an upstream for the endpoint (a pooled idle one if any); answer
   * upstream-connected or upstream-failed. `upstream`: plain HTTP, the host
   * the request named (no endpoint: one no endpoint claims).
   */
  | { type: "connect"; endpoint?: Endpoint; upstream?: PlainUpstream; clientCert?: ClientCertificate }
  /** The upstream finished its exchange cleanly: back to the pool. */
  | { type: "release-upstream" }
  | { type: "close-upstream" }
  /** Half-close toward `to` (WebSocket splice: one side ended). */
  | { type: "end"; to: Side }
  /** The one timer: fire at `at` (ms, the clock passed in), or never. */
  | { type: "timer"; at: number | undefined }
  | HoldCommand
  /** One exchange's event: the head, when it began, and what came of it. */
  | { type: "publish"; head: RequestHead; started: number; durationMs: number; fields: EventFields }
  | { type: "log"; level: "debug" | "info" | "warn" | "error"; message: string; fields: Record<string, unknown> }
  /** The connection is over: end the agent's side, destroy it after `graceMs`; `abort`: destroy now. */
  | { type: "close"; graceMs: number; abort: boolean };

/** Runs one request's decision (a fresh ExchangeDecider in the shell; a handler in tests). */
export interface Decider {
  handle(ev: DeciderEvent): DeciderCommand[];
}

export interface ConnectionOptions {
  timeouts: TimeoutSettings;
  /** The TLS server name the connection was claimed by (for messages). */
  sni: string;
  now(): number;
  /** A decider for one request whose head was read at `now`. */
  decider(head: RequestHead, now: number): Decider;
}

type Forward = Extract<DeciderCommand, { type: "forward" }>;

/** One request's forwarding: the decider's forward command and how the attempts went. */
interface Forwarding {
  x: Forward;
  headBytes: Uint8Array;
  attempt: number;
  pooled: boolean;
  /** A failed dial was already tried again (once per exchange). */
  dialRetried: boolean;
  /** The upstream is connected (else being connected). */
  connected: boolean;
  relay: ResponseRelay | undefined;
  /** Reads an LLM API's reported usage from the response (Forward.meter). */
  meter: UsageMeter | undefined;
  parser: Http1Parser<"response">;
  /** Response parse events not yet relayed; undefined: the upstream closed with nothing left to parse. */
  events: (ParseEvent | undefined)[];
  upstreamEnded: boolean;
  bytesUp: number;
  /** The request body has been read whole (and sent, once connected). */
  requestComplete: boolean;
  /** The whole request went out to the upstream. */
  sent: boolean;
  responseStarted: boolean;
  /** The response ended; waiting for the request side to finish. */
  outcome: Outcome | undefined;
}

interface Outcome {
  status: number;
  bytesDown: number;
  upgraded: boolean;
  reusable: boolean;
  agentClose: boolean;
  rest?: Uint8Array;
}

/** What an exchange is waiting for from the client while deciding. */
type BodyWait =
  | { kind: "read"; atMost: number; chunks: Uint8Array[]; bytes: number }
  | { kind: "drain"; atMost: number; bytes: number };

type State = "idle" | "deciding" | "holding" | "forwarding" | "spliced" | "closed";

const CONTINUE = new TextEncoder().encode("HTTP/1.1 100 Continue\r\n\r\n");
const EMPTY = new Uint8Array(0);

export class InterceptConnection {
  private _state: State = "idle";
  /** Counts changes of state: advance() goes on while they happen. */
  private seq = 0;
  private readonly parser = new Http1Parser("request");
  /** Parse events of the agent's bytes not yet taken. */
  private readonly events: ParseEvent[] = [];
  /** Body bytes handed to the exchange's decider (kept for the forward and its retry until the exchange ends). */
  private inspected = 0;
  private clientEnded = false;
  /** Shutting down: no request after the one under way. */
  private draining = false;
  private readonly timeouts: ClientTimeouts;
  private timerAt: number | undefined;
  private reading = { client: false, upstream: false };
  private out: ConnectionCommand[] = [];
  /** Agent bytes queued in this turn: one write for everything one read produced. */
  private clientOut: Uint8Array[] = [];

  // The current exchange.
  private head: RequestHead | undefined;
  private started = 0;
  private fields: EventFields = {};
  private decider: Decider | undefined;
  private bodyWait: BodyWait | undefined;
  private fwd: Forwarding | undefined;
  // The splice after a 101.
  private frames: ServerFrameScrubber | SpdyFrameScrubber | undefined;
  private spliceOpen = { client: false, upstream: false };

  private get state(): State {
    return this._state;
  }

  private set state(s: State) {
    this._state = s;
    this.seq++;
  }

  constructor(private readonly o: ConnectionOptions) {
    this.timeouts = new ClientTimeouts(o.timeouts, o.now());
  }

  /** The first commands: wait for a request. */
  start(): ConnectionCommand[] {
    this.timeouts.awaitRequest(this.o.now());
    this.advance();
    return this.flush();
  }

  handle(ev: ConnectionEvent): ConnectionCommand[] {
    if (this.state === "closed") return [];
    const now = this.o.now();
    switch (ev.type) {
      case "client-data":
        this.reading.client = false;
        this.timeouts.received(now, ev.data.length);
        if (this.state === "spliced") this.spliceFromClient(ev.data);
        else this.events.push(...this.parser.push(ev.data));
        break;
      case "client-waiting":
        this.timeouts.waiting(now);
        break;
      case "client-closed":
        this.reading.client = false;
        this.clientEnded = true;
        if (this.state === "spliced") this.spliceEnded("client");
        else this.events.push(...this.parser.end());
        break;
      case "client-gone":
        this.clientGone();
        break;
      case "upstream-connected":
        this.upstreamConnected(ev.pooled);
        break;
      case "upstream-failed":
        this.upstreamFailed(ev.message, ev.transient === true);
        break;
      case "upstream-data":
        this.reading.upstream = false;
        if (this.state === "spliced") this.spliceFromUpstream(ev.data);
        else if (this.fwd) this.fwd.events.push(...this.fwd.parser.push(ev.data));
        break;
      case "upstream-closed":
        this.reading.upstream = false;
        if (this.state === "spliced") this.spliceEnded("upstream");
        else if (this.fwd) {
          this.fwd.upstreamEnded = true;
          const tail = this.fwd.parser.end();
          if (tail.length > 0) this.fwd.events.push(...tail);
          else this.fwd.events.push(undefined);
        }
        break;
      case "timer": {
        this.timerAt = undefined;
        const reason = this.timeouts.expired(now);
        if (reason) this.timedOut(reason);
        break;
      }
      case "shutdown":
        this.draining = true;
        // An approval can take minutes: the held request is dropped, as when its agent leaves.
        if (this.state === "holding") this.close();
        break;
      case "approval":
        if (this.state !== "holding") throw new Error("intercept connection: approval while not holding");
        this.state = "deciding";
        this.runDecider({ type: "approval", outcome: ev.outcome });
        break;
    }
    this.advance();
    return this.flush();
  }

  // ---- progress --------------------------------------------------------

  /** Makes what progress the input so far allows, then asks for more. */
  private advance(): void {
    for (let guard = 0; guard < 1_000_000; guard++) {
      const before = this.seq;
      switch (this.state) {
        case "idle":
          this.awaitRequest();
          break;
        case "deciding":
          this.continueBodyWait();
          break;
        case "forwarding":
          this.continueForwarding();
          break;
        default:
          break;
      }
      // A change of state may let the next one progress on what is buffered.
      if (this.seq === before) return;
    }
    throw new Error("intercept connection: no progress");
  }

  private flush(): ConnectionCommand[] {
    this.flushClient();
    if (this.state !== "closed") {
      const at = this.timeouts.deadline();
      if (at !== this.timerAt) {
        this.timerAt = at;
        this.out.push({ type: "timer", at });
      }
    }
    const out = this.out;
    this.out = [];
    return out;
  }

  private emit(c: ConnectionCommand): void {
    this.flushClient();
    this.out.push(c);
  }

  private writeClient(data: Uint8Array): void {
    if (data.length > 0) this.clientOut.push(data);
  }

  private flushClient(): void {
    const q = this.clientOut;
    if (q.length === 0) return;
    this.clientOut = [];
    this.out.push({ type: "write", to: "client", data: q.length === 1 ? q[0]! : Buffer.concat(q) });
  }

  private want(from: Side, afterDrain: Side[]): void {
    if (this.reading[from]) return;
    this.reading[from] = true;
    this.emit({ type: "read", from, afterDrain });
  }

  /** The next parse event of the agent's bytes (undefined: none buffered), with the timeouts told. */
  private takeClient(): ParseEvent | undefined {
    const ev = this.events.shift();
    if (ev?.type === "head" && "method" in ev.head) this.timeouts.headParsed(this.o.now(), ev.head.bodyKind.kind !== "none");
    else if (ev?.type === "end") this.timeouts.bodyEnded(this.o.now());
    return ev;
  }

  // ---- between requests ------------------------------------------------

  private awaitRequest(): void {
    for (;;) {
      const ev = this.takeClient();
      if (!ev) {
        if (this.clientEnded || this.draining) this.close();
        else this.want("client", ["upstream", "client"]);
        return;
      }
      if (ev.type === "error") {
        this.writeClient(errorResponse(ev.code, ev.message));
        this.close();
        return;
      }
      // The end of a message without a body arrives after its exchange.
      if (ev.type === "end") {
        this.timeouts.awaitRequest(this.o.now());
        continue;
      }
      if (ev.type !== "head" || !("method" in ev.head)) {
        this.close();
        return;
      }
      this.beginExchange(ev.head);
      return;
    }
  }

  private beginExchange(head: RequestHead): void {
    this.seq++;
    this.head = head;
    this.started = this.o.now();
    this.fields = {};
    this.state = "deciding";
    this.decider = this.o.decider(head, this.started);
    this.runDecider({ type: "head", head });
  }

  /** Carries out what the decider asks for, feeding back what is at hand at once. */
  /**
   * Bytes this connection holds now: parsed bytes not yet handed on, a
   * body read for the decider (held through an approval, kept for a retry),
   * response bytes not yet relayed. The shell counts them against the
   * device's buffered-bytes quota.
   */
  get heldBytes(): number {
    let n = this.inspected;
    if (this.bodyWait?.kind === "read") n += this.bodyWait.bytes;
    for (const e of this.events) if (e.type === "body" || e.type === "raw") n += e.data.length;
    const f = this.fwd;
    if (f) for (const e of f.events) if (e && (e.type === "body" || e.type === "raw")) n += e.data.length;
    for (const c of this.clientOut) n += c.length;
    return n;
  }

  private runDecider(ev: DeciderEvent): void {
    if (ev.type === "body") for (const c of ev.chunks) this.inspected += c.length;
    let commands = this.decider!.handle(ev);
    for (;;) {
      let reply: DeciderEvent | undefined;
      for (const c of commands) {
        switch (c.type) {
          case "log":
            this.emit({ type: "log", level: c.level, message: c.message, fields: c.fields });
            break;
          case "read-body":
            if (c.sendContinue) this.writeClient(CONTINUE);
            if (c.wait) {
              this.bodyWait = { kind: "read", atMost: c.atMost, chunks: [], bytes: 0 };
              return;
            }
            reply = { type: "body", ...this.takeArrivedBody(c.atMost) };
            break;
          case "drain":
            this.bodyWait = { kind: "drain", atMost: c.atMost, bytes: 0 };
            return;
          case "hold":
            this.state = "holding";
            this.emit(c);
            return;
          case "reply":
            this.publish(c.event);
            this.writeClient(c.data);
            this.endExchange(c.close);
            return;
          case "forward":
            Object.assign(this.fields, c.event);
            this.startForwarding(c);
            return;
        }
      }
      if (!reply) throw new Error("exchange decider asked for nothing");
      commands = this.decider!.handle(reply);
    }
  }

  /** Body events already received, without waiting for more. */
  private takeArrivedBody(atMost: number): { chunks: Uint8Array[]; done: boolean } {
    const chunks: Uint8Array[] = [];
    let bytes = 0;
    while (bytes <= atMost) {
      const ev = this.events[0];
      if (ev?.type === "body") {
        this.events.shift();
        chunks.push(ev.data);
        bytes += ev.data.length;
      } else if (ev?.type === "end") {
        this.takeClient();
        return { chunks, done: true };
      } else {
        // Nothing more here yet (or an error, the streaming path's to handle).
        break;
      }
    }
    return { chunks, done: false };
  }

  /** Reading or draining the body for the decider, as far as the buffered events go. */
  private continueBodyWait(): void {
    const w = this.bodyWait;
    if (!w) return;
    for (;;) {
      if (w.kind === "read" ? w.bytes > w.atMost : w.bytes >= w.atMost) break;
      const ev = this.takeClient();
      if (!ev) {
        if (!this.clientEnded) {
          this.want("client", ["upstream", "client"]);
          return;
        }
        // The agent went away: a read ends the exchange; a drain reports what it got.
        if (w.kind === "read") return this.close();
        break;
      }
      if (ev.type === "error") {
        if (w.kind === "read") return this.close();
        break;
      }
      if (ev.type === "body") {
        if (w.kind === "read") w.chunks.push(ev.data);
        w.bytes += ev.data.length;
      } else if (ev.type === "end") {
        this.bodyWait = undefined;
        return this.runDecider(w.kind === "read" ? { type: "body", chunks: w.chunks, done: true } : { type: "drained", bytes: w.bytes, done: true });
      }
    }
    this.bodyWait = undefined;
    this.runDecider(w.kind === "read" ? { type: "body", chunks: w.chunks, done: false } : { type: "drained", bytes: w.bytes, done: false });
  }

  /** `responseEnded`: the response reached its end (an LLM usage read from it is final). */
  private publish(fields: EventFields, responseEnded = false): void {
    Object.assign(this.fields, fields);
    const f = this.fwd;
    if (f?.meter) {
      const usage = f.meter.finish(responseEnded);
      f.meter = undefined;
      if (usage) this.fields.usage = { ...usage, model: maskText(usage.model, f.x.needles) };
    }
    this.emit({ type: "publish", head: this.head!, started: this.started, durationMs: this.o.now() - this.started, fields: this.fields });
  }

  /** The exchange is over: the next request, or the connection's end. */
  private endExchange(close: boolean): void {
    this.seq++;
    this.inspected = 0;
    this.decider = undefined;
    this.bodyWait = undefined;
    this.fwd = undefined;
    if (close) return this.close();
    this.state = "idle";
    this.timeouts.awaitRequest(this.o.now());
    // An upgrade the upstream (or the policy) declined: carry on with HTTP.
    if (this.parser.awaitingUpgrade) this.events.push(...this.parser.declineUpgrade());
  }

  // ---- forwarding --------------------------------------------------------

  private startForwarding(x: Forward): void {
    this.state = "forwarding";
    this.fwd = {
      x,
      headBytes: serializeRequestHead(x.head),
      attempt: 0,
      pooled: false,
      dialRetried: false,
      connected: false,
      relay: undefined,
      meter: undefined,
      parser: new Http1Parser("response"),
      events: [],
      upstreamEnded: false,
      bytesUp: x.bodyBytes,
      requestComplete: x.complete,
      sent: false,
      responseStarted: false,
      outcome: undefined,
    };
    this.connect();
  }

  private connect(): void {
    const f = this.fwd!;
    f.attempt += 1;
    f.connected = false;
    this.emit({
      type: "connect",
      ...(f.x.endpoint ? { endpoint: f.x.endpoint } : {}),
      ...(f.x.upstream ? { upstream: f.x.upstream } : {}),
      ...(f.x.clientCert ? { clientCert: f.x.clientCert } : {}),
    });
  }

  private upstreamConnected(pooled: boolean): void {
    const f = this.fwd;
    if (!f || f.connected) throw new Error("intercept connection: an upstream nobody asked for");
    const head = this.head!;
    f.connected = true;
    f.pooled = pooled;
    // A retry starts over with a fresh parser (the first attempt's was made with the forwarding).
    if (f.attempt > 1) f.parser = new Http1Parser("response");
    f.parser.expectResponseTo(head.method);
    f.events = [];
    f.upstreamEnded = false;
    f.meter = f.x.meter ? new UsageMeter(f.x.meter, f.x.head.target) : undefined;
    f.relay = new ResponseRelay(head, f.x.needles, f.meter);
    f.responseStarted = false;
    f.outcome = undefined;
    const parts: Uint8Array[] = [f.headBytes];
    for (const b of f.x.body) parts.push(...this.frame(b));
    if (f.requestComplete && f.x.chunked) parts.push(LAST_CHUNK);
    this.emit({ type: "write", to: "upstream", data: Buffer.concat(parts) });
    f.sent = f.requestComplete;
  }

  private upstreamFailed(message: string, transient: boolean): void {
    const f = this.fwd;
    if (!f || f.connected) throw new Error("intercept connection: a connect nobody asked for failed");
    const name = f.x.upstream?.host ?? this.o.sni;
    const failed = dialFailed({ sni: name, message, complete: f.x.complete, keepAlive: this.head!.keepAlive, transient, retried: f.dialRetried });
    if (failed.retry) {
      // Nothing was sent on it: dial again, as the agent itself would.
      this.emit({ type: "log", level: "info", message: "upstream connect failed, dialing again", fields: { host: name, error: message } });
      f.dialRetried = true;
      return this.connect();
    }
    this.emit({ type: "log", level: "warn", message: "upstream connect failed", fields: { host: name, error: message } });
    this.publish({ status: failed.status, verdict: f.x.event.verdict ?? "allow", reason: f.x.event.reason ?? "", detail: failed.detail, bytesUp: f.bytesUp });
    this.writeClient(failed.data);
    this.endExchange(failed.close);
  }

  private frame(data: Uint8Array): Uint8Array[] {
    return this.fwd!.x.chunked ? encodeChunk(data) : [data];
  }

  private continueForwarding(): void {
    const f = this.fwd!;
    if (!f.connected) return;
    if (!f.requestComplete) this.sendBody(f);
    if (this.fwd !== f || this.state !== "forwarding") return;
    if (!f.outcome) this.relayResponse(f);
    if (this.fwd !== f || this.state !== "forwarding") return;
    // The request side must have finished for the connection to be reused.
    if (f.outcome && f.requestComplete) this.finishForwarding(f, f.outcome);
  }

  /** The request body, as it comes, to the upstream. */
  private sendBody(f: Forwarding): void {
    const parts: Uint8Array[] = [];
    const send = () => {
      if (parts.length > 0) this.emit({ type: "write", to: "upstream", data: parts.length === 1 ? parts[0]! : Buffer.concat(parts) });
      parts.length = 0;
    };
    for (;;) {
      const ev = this.takeClient();
      if (!ev) {
        // The next chunk is read once these bytes drained. (An agent gone
        // mid-body leaves the request incomplete: its parser reported an error first.)
        send();
        if (!this.clientEnded) this.want("client", ["upstream"]);
        return;
      }
      if (ev.type === "body") {
        f.bytesUp += ev.data.length;
        parts.push(...this.frame(ev.data));
      } else if (ev.type === "error") {
        // The request cannot be finished: the upstream goes, its response with it.
        this.emit({ type: "log", level: "debug", message: "upstream exchange failed", fields: { error: ev.message } });
        return this.attemptFailed(f, false, ev.message);
      } else {
        if (ev.type === "end" && f.x.chunked) parts.push(LAST_CHUNK);
        send();
        f.requestComplete = true;
        f.sent = true;
        return;
      }
    }
  }

  /** The upstream's response, through the relay, to the agent. */
  private relayResponse(f: Forwarding): void {
    const relay = f.relay!;
    for (;;) {
      if (f.events.length === 0) {
        if (!f.upstreamEnded) this.want("upstream", ["client"]);
        return;
      }
      const ev = f.events.shift();
      const commands: RelayCommand[] = ev ? relay.handle({ type: "upstream", ev, requestSent: f.sent }) : relay.handle({ type: "upstream-closed" });
      for (const c of commands) {
        switch (c.type) {
          case "send-agent":
            f.responseStarted = true;
            this.writeClient(c.data);
            break;
          case "fail":
            this.emit({ type: "log", level: "debug", message: "upstream exchange failed", fields: { error: c.message } });
            return this.attemptFailed(f, c.refused, c.message);
          case "upgraded":
            f.outcome = { status: c.status, bytesDown: c.bytesDown, upgraded: true, reusable: false, agentClose: true, rest: c.rest };
            return;
          case "done":
            f.outcome = { status: c.status, bytesDown: c.bytesDown, upgraded: false, reusable: c.reusable, agentClose: c.agentClose };
            // An until-close body ended with the connection, and an answer
            // before the request was whole ends it: the request side waits no more.
            if (!ev || c.early) this.finishForwarding(f, f.outcome, true);
            return;
        }
      }
    }
  }

  private attemptFailed(f: Forwarding, refused: boolean, message: string): void {
    this.closeUpstream();
    const failed = attemptFailed({
      refused,
      message,
      pooled: f.pooled,
      replayable: f.x.complete,
      attempt: f.attempt,
      responseStarted: f.responseStarted,
      sni: f.x.upstream?.host ?? this.o.sni,
    });
    if (failed.retry) return this.connect();
    // A response already under way: the agent got its status and some of its body, and that is what happened.
    const sent = f.responseStarted ? f.relay?.sentStatus : undefined;
    if (sent !== undefined) {
      this.publish({
        status: sent,
        verdict: f.x.event.verdict ?? "allow",
        reason: f.x.event.reason ?? "",
        detail: refused ? failed.detail : `upstream ended the response early: ${message}`,
        bytesUp: f.bytesUp,
        bytesDown: f.relay?.bytesDown ?? 0,
        ...this.closedBy(refused ? "gateway" : "upstream"),
      });
    } else {
      this.publish({ status: failed.status, verdict: f.x.event.verdict ?? "allow", reason: f.x.event.reason ?? "", detail: failed.detail, bytesUp: f.bytesUp, ...this.closedBy(refused ? "gateway" : "upstream") });
    }
    if (failed.data) this.writeClient(failed.data);
    this.endExchange(true);
  }

  /** Who ended an exchange before its end, as the event's action says it. */
  private closedBy(side: "client" | "upstream" | "gateway"): EventFields {
    return { action: { ...(this.fields.action ?? {}), closedBy: side } };
  }

  private finishForwarding(f: Forwarding, r: Outcome, upstreamGone = false): void {
    this.publish({ status: r.status, verdict: f.x.event.verdict ?? "allow", reason: f.x.event.reason ?? "", bytesUp: f.bytesUp, bytesDown: r.bytesDown }, !r.upgraded);
    if (r.upgraded) return this.startSplice(f, r.rest ?? EMPTY);
    const after = afterResponse({
      reusable: r.reusable,
      requestComplete: f.requestComplete,
      method: this.head!.method,
      atCleanBoundary: !upstreamGone && f.parser.idle && f.events.length === 0 && !f.upstreamEnded,
      agentClose: r.agentClose,
      keepAlive: this.head!.keepAlive,
    });
    if (after.release) {
      this.reading.upstream = false;
      this.emit({ type: "release-upstream" });
    } else this.closeUpstream();
    this.endExchange(after.close);
  }

  // ---- after a 101 -----------------------------------------------------

  /**
   * Bytes both ways (WebSocket frames). Toward the agent they are masked
   * frame by frame when a credential was injected (the frame lengths stay
   * true; no compression extension was offered); a frame the gateway
   * cannot mask ends the connection.
   */
  private startSplice(f: Forwarding, rest: Uint8Array): void {
    this.state = "spliced";
    // kubectl's exec falls back to SPDY/3.1 (allowed on kubernetes endpoints only): its data frames are masked instead.
    this.frames = f.x.needles.length === 0 ? undefined : isSpdy(this.head?.upgrade) ? new SpdyFrameScrubber(f.x.needles) : new ServerFrameScrubber(f.x.needles);
    // Past the upgrade the client owes no HTTP timing.
    this.timeouts.stop(this.o.now());
    this.spliceOpen = { client: !this.clientEnded, upstream: !f.upstreamEnded };
    const early = this.parser.awaitingUpgrade ? this.parser.acceptUpgrade() : [];
    for (const ev of [...this.events.splice(0), ...early]) {
      if (ev.type === "raw") this.emit({ type: "write", to: "upstream", data: ev.data });
      else if (ev.type === "upgrade" && ev.rest.length > 0) this.emit({ type: "write", to: "upstream", data: ev.rest });
    }
    // Whatever the upstream sent past the 101 (the parser passes it raw after the upgrade event).
    const pending = [rest, ...f.events.flatMap((e) => (e?.type === "raw" ? [e.data] : []))];
    f.events = [];
    this.fwd = undefined;
    for (const chunk of pending) if (this.state === "spliced") this.spliceFromUpstream(chunk);
    if (this.state !== "spliced") return;
    if (!this.spliceOpen.client) this.spliceEnded("client");
    else this.want("client", ["upstream"]);
    if (this.state === "spliced" && !this.spliceOpen.upstream) this.spliceEnded("upstream");
  }

  private spliceFromClient(data: Uint8Array): void {
    for (const ev of this.parser.push(data)) if (ev.type === "raw") this.emit({ type: "write", to: "upstream", data: ev.data });
    this.want("client", ["upstream"]);
  }

  private spliceFromUpstream(data: Uint8Array): void {
    if (!this.frames) this.writeClient(data);
    else {
      const r = this.frames.push(data);
      if (!r.ok) {
        this.emit({ type: "log", level: "warn", message: "WebSocket frame not forwarded", fields: { reason: r.reason } });
        this.closeUpstream();
        this.clientOut = [];
        this.state = "closed";
        this.emit({ type: "close", graceMs: 0, abort: true });
        return;
      }
      if (r.out.length > 0) this.writeClient(r.out.length === 1 ? r.out[0]! : Buffer.concat(r.out));
    }
    if (this.spliceOpen.upstream) this.want("upstream", ["client"]);
  }

  /** One side of the splice ended: the other is told; when both have, the connection is over. */
  private spliceEnded(side: Side): void {
    if (!this.spliceOpen[side]) return;
    this.spliceOpen[side] = false;
    this.emit({ type: "end", to: side === "client" ? "upstream" : "client" });
    if (!this.spliceOpen.client && !this.spliceOpen.upstream) {
      this.closeUpstream();
      this.close();
    }
  }

  // ---- the end ---------------------------------------------------------

  private timedOut(reason: TimeoutReason): void {
    this.emit({ type: "log", level: "debug", message: "intercepted client out of time", fields: { reason } });
    this.timeouts.stop(this.o.now());
    // A request half sent gets HTTP's own answer; an idle connection just closes.
    const f = this.state === "forwarding" ? this.fwd : undefined;
    const answered = reason !== "idle" && !(f?.responseStarted ?? false);
    // A request already forwarded is recorded as cut short by its client.
    if (f) {
      const status = answered ? 408 : f.outcome?.status;
      this.publish({ ...(status ? { status } : {}), verdict: f.x.event.verdict ?? "allow", reason: f.x.event.reason ?? "", detail: `client out of time (${reason})`, bytesUp: f.bytesUp });
    }
    if (answered) this.writeClient(errorResponse(408, reason === "header" ? "request head took too long" : "request body too slow"));
    if (this.fwd) this.closeUpstream();
    this.close(1_000);
  }

  /** The agent cannot be written to any more. */
  private clientGone(): void {
    this.clientOut = [];
    this.clientEnded = true;
    const f = this.fwd;
    if (f && this.state === "forwarding") {
      // The agent went first: recorded as what it was sent (the status, the
      // body bytes so far), never as an upstream failure.
      const sent = f.responseStarted ? f.relay?.sentStatus : undefined;
      this.publish({
        ...(sent !== undefined ? { status: sent } : {}),
        verdict: f.x.event.verdict ?? "allow",
        reason: f.x.event.reason ?? "",
        detail: f.responseStarted ? "the agent closed the connection mid-response" : "the agent closed the connection before the response",
        bytesUp: f.bytesUp,
        bytesDown: f.relay?.bytesDown ?? 0,
        ...this.closedBy("client"),
      });
      this.closeUpstream();
      this.fwd = undefined;
      return this.close(0);
    }
    if (f) this.closeUpstream();
    if (this.state === "spliced") this.closeUpstream();
    this.close();
  }

  private closeUpstream(): void {
    this.reading.upstream = false;
    this.emit({ type: "close-upstream" });
  }

  private close(graceMs = 5_000): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.timeouts.stop(this.o.now());
    if (this.timerAt !== undefined) {
      this.timerAt = undefined;
      this.emit({ type: "timer", at: undefined });
    }
    this.emit({ type: "close", graceMs, abort: false });
  }
}
