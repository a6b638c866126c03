// One intercepted HTTPS connection from an agent, after TLS termination.
// For each request on it:
//
// 1. parse the head (and, when a rule reads it, the body up to the inspection limit)
// 2. decide against the current policy (first matching rule, else the default)
// 3. on deny: answer 403 with a small JSON body; the connection lives on when it can
// 4. on allow: inject the credential into its slot, forward to the upstream
//    (pooled, certificate verified), stream the body both ways with
//    backpressure, scrub the secret from anything echoed back
// 5. publish one event
// Throughout, the client's pace is watched (ClientTimeouts: idle, header,
// minimum body rate); a client out of time is answered 408 or closed.
import type { Duplex } from "node:stream";
import type { Credential, Decision, Endpoint, Policy } from "../../policy/types.ts";
import type { Flow } from "../../dispatch/flow.ts";
import type { GatewayEvent } from "../../events/types.ts";
import { decide, httpFactsFromRequest, matchEndpoint, needsBody } from "../../policy/engine.ts";
import { Http1Parser, type ParseEvent, type RequestHead, type ResponseHead } from "../http1/parser.ts";
import {
  getHeader,
  hasToken,
  headerTokens,
  removeHeader,
  setHeader,
  stripHopByHop,
  type HeaderList,
} from "../http1/headers.ts";
import { encodeChunk, LAST_CHUNK, serializeRequestHead, serializeResponseHead, simpleResponse } from "../http1/serialize.ts";
import { pluginFor } from "../../credentials/plugin.ts";
import { StreamScrubber, scrubHeaders, scrubText, sameLengthMask } from "../../credentials/scrub.ts";
import { EventPuller, StreamPuller } from "./puller.ts";
import {
  buildApprovalRequest,
  OPERATION_HEADER,
  pendingResponse,
  refusedOperationResponse,
  type ApprovalGate,
} from "./approval.ts";
import { UpstreamPool, writeWithBackpressure, type UpstreamConn } from "./upstream.ts";
import { checkRequestShape, credentialSlots, type RequestShape } from "./shape.ts";
import { ClientTimeouts, type TimeoutReason } from "../http1/timeouts.ts";
import { CodedBody, recodable } from "./coded.ts";
import { ServerFrameScrubber } from "./wsframes.ts";
import { log } from "../../log.ts";

/** A credential's value and the strings that would reveal it if echoed back. */
export type SecretLookup = (
  cred: Credential,
) => { ok: true; value: string; needles: string[] } | { ok: false; reason: string };

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
    const path = head.target;
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
      path,
      bytesUp: 0,
      bytesDown: 0,
      durationMs: 0,
      verdict: "deny",
      reason: "",
    };
    const finish = (fields: Partial<GatewayEvent>) => {
      Object.assign(event, fields);
      event.durationMs = Date.now() - started;
      // Every family's events carry the same three fields (the path as forwarded).
      event.family = "http";
      event.summary = `${event.method ?? ""} ${event.host}${event.path ?? ""}`;
      event.action = { method: event.method, host: event.host, path: event.path, ...(event.status !== undefined ? { status: event.status } : {}) };
      this.deps.publish(event);
    };
    let requestDone = head.bodyKind.kind === "none";

    // The endpoint was claimed by SNI: a request the rules could misread (a
    // Host or target naming another server, a method or path the upstream
    // may take otherwise) is refused before any rule sees it, and the
    // connection closed, since its framing is no longer trusted.
    const shape = checkRequestShape(head, this.sni);
    if (!shape.ok) {
      finish({ status: shape.status, verdict: "deny", reason: shape.reason });
      await this.write(denyResponse(shape.status, undefined, shape.reason, true));
      return "close";
    }
    event.path = shape.target;
    // GET and HEAD carry no content (RFC 9110 §9.3.1-2); servers that ignore
    // a body there read it as the next request, which no rule judged.
    if ((head.method === "GET" || head.method === "HEAD") && hasContent(head)) {
      const reason = `a ${head.method} request with a body is not forwarded`;
      finish({ status: 400, verdict: "deny", reason });
      await this.write(denyResponse(400, undefined, reason, true));
      return "close";
    }
    const endpoint = matchEndpoint(policy, this.sni, device.profile);
    if (!endpoint) {
      finish({ status: 403, verdict: "deny", reason: `no endpoint claims ${this.sni} any more` });
      await this.write(denyResponse(403, undefined, `no endpoint claims ${this.sni}`, !requestDone));
      return requestDone && head.keepAlive ? "continue" : "close";
    }
    event.endpoint = endpoint.ref;

    // Collect the body when a rule may read it. A client waiting on
    // `Expect: 100-continue` gets our 100 first, since we read before deciding.
    const b: BodyRead = { buffered: [], bytes: 0, done: requestDone, truncated: false, sentContinue: false };
    if (!requestDone && needsBody(policy, endpoint, device.profile)) {
      if (!(await this.readBody(head, b, policy.defaults.inspectLimitBytes))) return "close";
    } else if (!requestDone && head.bodyKind.kind === "chunked") {
      // What of a chunked body already arrived is taken now (never waited
      // for: a streaming upload must not stall): when it is whole, it goes
      // out with a Content-Length, which an upstream that does not speak
      // chunked cannot misread as requests.
      this.takeArrivedBody(b, policy.defaults.inspectLimitBytes);
    }
    const buffered = b.buffered;
    requestDone = b.done;
    const truncated = b.truncated;

    let bufferedBytes = b.bytes;
    const body = buffered.length > 0 ? concat(buffered, Math.min(bufferedBytes, policy.defaults.inspectLimitBytes)) : undefined;
    const facts = httpFactsFromRequest(head.method, this.sni, head.target, head.headers, body, truncated);
    const decision = decide(policy, { device: device.name, profile: device.profile, endpoint }, facts);
    event.rule = decision.rule;
    if (decision.detail) {
      log.warn("rule evaluation failed closed", { flow: this.flow.id, rule: decision.rule, detail: decision.detail });
    }

    const denied = (status: number, reason: string, detail?: string): Promise<Next> =>
      this.refuse(head, event, finish, { status, rule: decision.rule, reason, detail, requestDone, bufferedBytes });

    if (decision.verdict === "deny") return denied(403, decision.reason, decision.detail);
    if (decision.verdict === "approve") {
      const rule = policy.rules.find((r) => r.name === decision.rule);
      if (!this.deps.approvals || !rule || !decision.approvers) {
        return denied(403, `${decision.reason} (approval required; no approver is available)`);
      }
      // Approvers see the body (bounded), and identical retries are known by it.
      if (!b.done && !(await this.readBody(head, b, policy.defaults.inspectLimitBytes))) return "close";
      requestDone = b.done;
      bufferedBytes = b.bytes;
      const shown = b.buffered.length > 0 ? concat(b.buffered, Math.min(b.bytes, policy.defaults.inspectLimitBytes)) : undefined;
      const request = buildApprovalRequest({
        time: started,
        device: device.name,
        profile: device.profile,
        endpoint: endpoint.ref,
        rule: rule.name,
        reason: decision.reason,
        method: head.method,
        host: this.sni,
        path: head.target,
        headers: head.headers,
        body: shown,
        bodyTruncated: b.truncated,
        redact: this.deps.redact ?? ((t) => t),
      });
      const agentGone = new AbortController();
      const onClose = () => agentGone.abort();
      this.agent.once("close", onClose);
      const outcome = await this.deps.approvals
        .hold({ request, rule, chain: decision.approvers, operationId: getHeader(head.headers, OPERATION_HEADER), signal: agentGone.signal })
        .finally(() => this.agent.off("close", onClose));
      if (outcome.status === "pending") {
        const close = !requestDone || !head.keepAlive;
        finish({ status: 202, verdict: "pending", reason: `held for approval (operation ${outcome.operation})`, bytesUp: bufferedBytes });
        await this.write(pendingResponse(outcome.operation, outcome.retryAfterS, close));
        return close ? "close" : "continue";
      }
      if (outcome.status === "refused") {
        const close = !requestDone || !head.keepAlive;
        finish({ status: outcome.httpStatus, verdict: "deny", reason: outcome.reason, bytesUp: bufferedBytes });
        await this.write(refusedOperationResponse(outcome.httpStatus, outcome.code, outcome.reason, close));
        return close ? "close" : "continue";
      }
      const result = outcome.result;
      event.approvers = result.approvals.map((a) => a.approver).join(",") || undefined;
      const operators = result.approvals.map((a) => a.operator).filter((o): o is string => Boolean(o));
      if (operators.length > 0) event.operator = operators.join(",");
      event.approvalMs = result.latencyMs;
      if (result.remembered) event.remembered = true;
      if (result.decision !== "allow") {
        return this.refuse(head, event, finish, { status: 403, rule: decision.rule, reason: result.reason, requestDone: b.done, bufferedBytes });
      }
    }

    // Credential: only what the device's profile grants, with a value we hold.
    let secret: { value: string; needles: string[] } | undefined;
    let credential: Credential | undefined;
    if (decision.credential) {
      credential = policy.credentials.get(decision.credential);
      const profile = policy.profiles.get(device.profile);
      if (!credential) return denied(403, `credential ${decision.credential} is not configured`);
      if (!profile || !profile.credentials.includes(credential.ref)) {
        return denied(403, `profile "${device.profile}" is not granted ${credential.ref}`);
      }
      event.credential = credential.ref;
      const resolved = this.deps.secretFor(credential);
      if (!resolved.ok) {
        log.error("credential unavailable", { credential: credential.ref, reason: resolved.reason });
        return this.refuse(head, event, finish, {
          status: 502,
          rule: decision.rule,
          reason: `credential ${credential.ref} has no value configured on the gateway`,
          requestDone,
          bufferedBytes,
          verdict: "error",
        });
      }
      secret = resolved;
      // A Connection option naming the slot would have a hop drop the credential.
      const slots = credentialSlots(credential);
      if (slots.some((h) => hasToken(head.headers, "connection", h))) {
        return denied(400, "Connection names the credential's header");
      }
    }

    return this.forward({
      head,
      shape,
      endpoint,
      decision,
      credential,
      secret,
      buffered: b.buffered,
      bufferedBytes,
      requestDone,
      sentContinue: b.sentContinue,
      event,
      finish,
    });
  }

  /**
   * Reads request body events into `b` until the message ends or more than
   * `limit` bytes are held (then `truncated`). False when the agent went away.
   */
  private async readBody(head: RequestHead, b: BodyRead, limit: number): Promise<boolean> {
    if (head.expectContinue && !b.sentContinue) {
      await this.write("HTTP/1.1 100 Continue\r\n\r\n");
      b.sentContinue = true;
    }
    while (!b.done && b.bytes <= limit) {
      const ev = await this.nextEvent();
      if (!ev || ev.type === "error") return false;
      if (ev.type === "body") {
        b.buffered.push(ev.data);
        b.bytes += ev.data.length;
      } else if (ev.type === "end") {
        b.done = true;
      }
    }
    b.truncated = !b.done;
    return true;
  }

  /** Body events already received, without waiting for more. */
  private takeArrivedBody(b: BodyRead, limit: number): void {
    while (!b.done && b.bytes <= limit) {
      const ev = this.requests.tryNext();
      if (!ev) break;
      if (ev.type === "body") {
        b.buffered.push(ev.data);
        b.bytes += ev.data.length;
      } else if (ev.type === "end") {
        b.done = true;
        this.timeouts.bodyEnded(Date.now());
      } else {
        // An error (or anything else) is the streaming path's to handle.
        this.events.unshift(ev);
        break;
      }
    }
  }

  /** Answers a refusal in HTTP's own form and keeps the connection when the request was fully read. */
  private async refuse(
    head: RequestHead,
    event: GatewayEvent,
    finish: (f: Partial<GatewayEvent>) => void,
    r: {
      status: number;
      rule: string | undefined;
      reason: string;
      detail?: string | undefined;
      requestDone: boolean;
      bufferedBytes: number;
      verdict?: string;
    },
  ): Promise<Next> {
    let requestDone = r.requestDone;
    let bytesUp = r.bufferedBytes;
    // Drain a small remaining body so the connection can carry on; a large
    // or unbounded one is cut off by closing instead.
    while (!requestDone && bytesUp < DRAIN_LIMIT && !hasToken(head.headers, "expect", "100-continue")) {
      const ev = await this.nextEvent();
      if (!ev || ev.type === "error") break;
      if (ev.type === "body") bytesUp += ev.data.length;
      if (ev.type === "end") requestDone = true;
    }
    const close = !requestDone || !head.keepAlive;
    finish({
      status: r.status,
      verdict: r.verdict ?? "deny",
      reason: r.reason,
      bytesUp,
      ...(r.detail ? { detail: r.detail } : {}),
    });
    await this.write(denyResponse(r.status, r.rule, r.reason, close));
    return close ? "close" : "continue";
  }

  private async forward(x: {
    head: RequestHead;
    shape: RequestShape;
    endpoint: Endpoint;
    decision: Decision;
    credential: Credential | undefined;
    secret: { value: string; needles: string[] } | undefined;
    buffered: Uint8Array[];
    bufferedBytes: number;
    requestDone: boolean;
    sentContinue: boolean;
    event: GatewayEvent;
    finish: (f: Partial<GatewayEvent>) => void;
  }): Promise<Next> {
    const { head, endpoint, credential, secret, event, finish } = x;
    const isUpgrade = head.upgrade !== undefined;

    // The outbound head: hop-by-hop headers are ours, the credential slot is ours.
    const headers: HeaderList = stripHopByHop(head.headers.map(([k, v]) => [k, v] as [string, string]));
    if (isUpgrade) {
      setHeader(headers, "Connection", "Upgrade");
      setHeader(headers, "Upgrade", head.upgrade!);
    }
    if (x.sentContinue) removeHeader(headers, "expect");
    // Framing is ours: written below from what the parser read, never the agent's.
    removeHeader(headers, "content-length");
    removeHeader(headers, "transfer-encoding");
    const outbound = { method: head.method, target: x.shape.target, headers };
    let needles: string[] = [];
    if (credential && secret !== undefined) {
      pluginFor(credential.type).inject(outbound, secret.value, credential);
      needles = secret.needles;
      // Echoed secrets are scrubbed from the response; that needs bytes we can
      // read, so credentialed requests ask for an uncompressed answer. The
      // mask keeps the length, so a Content-Length stays true.
      if (needles.length > 0) {
        setHeader(outbound.headers, "Accept-Encoding", "identity");
        removeHeader(outbound.headers, "sec-websocket-extensions");
      }
    }
    // A chunked body already read whole goes out with a length: an upstream
    // that ignores chunked framing cannot read it as further requests.
    const dechunk = head.bodyKind.kind === "chunked" && x.requestDone;
    const chunked = head.bodyKind.kind === "chunked" && !dechunk;
    if (head.bodyKind.kind === "length") setHeader(outbound.headers, "Content-Length", String(head.bodyKind.length));
    if (dechunk) setHeader(outbound.headers, "Content-Length", String(x.bufferedBytes));
    if (chunked) setHeader(outbound.headers, "Transfer-Encoding", "chunked");
    const headBytes = serializeRequestHead(outbound);

    const target = { host: this.flow.dst.host, port: this.flow.dst.port, sni: this.sni, endpoint };
    // A pooled connection the server closed meanwhile fails before any
    // response byte; a request we still hold whole is then sent again once.
    const replayable = x.requestDone;
    let upstream: UpstreamConn | undefined;
    let attempt = 0;
    let response: { status: number; bytesDown: number; upgraded: boolean; reusable: boolean; agentClose: boolean } | undefined;
    let bytesUp = x.bufferedBytes;
    let requestComplete = x.requestDone;
    for (;;) {
      attempt += 1;
      const pooled = this.deps.pool.takeIdle(target);
      try {
        upstream = pooled ?? (await this.deps.pool.dial(target));
      } catch (e) {
        const message = (e as Error).message;
        log.warn("upstream connect failed", { flow: this.flow.id, host: this.sni, error: message });
        finish({ status: 502, verdict: "allow", reason: x.decision.reason, detail: `upstream: ${message}`, bytesUp });
        await this.write(errorResponse(502, `could not reach ${this.sni}`, !x.requestDone));
        return x.requestDone && head.keepAlive ? "continue" : "close";
      }
      upstream.parser.expectResponseTo(head.method);
      let sent = false;
      const sending = this.sendRequest(upstream, headBytes, x.buffered, chunked, requestComplete).then(
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
      const scrubber = needles.length > 0 ? new StreamScrubber(needles, sameLengthMask) : undefined;
      let failure: Error | undefined;
      response = await this.relayResponse(upstream, head, scrubber, needles, sending, () => sent).catch((e: Error) => {
        log.debug("upstream exchange failed", { flow: this.flow.id, error: e.message });
        failure = e;
        return undefined;
      });
      if (response) break;
      upstream.destroy();
      const refused = failure instanceof RefusedResponse;
      if (refused || !(pooled && replayable && attempt === 1 && !this.responseStarted)) {
        const detail = refused ? failure!.message : "upstream closed the connection";
        finish({ status: 502, verdict: "allow", reason: x.decision.reason, detail, bytesUp });
        const said = refused ? `${this.sni} sent a response the gateway does not forward` : `${this.sni} closed the connection`;
        if (!this.responseStarted) await this.write(errorResponse(502, said, true)).catch(() => undefined);
        return "close";
      }
    }

    finish({
      status: response.status,
      verdict: "allow",
      reason: x.decision.reason,
      bytesUp,
      bytesDown: response.bytesDown,
    });
    if (response.upgraded) {
      await this.spliceUpgraded(upstream!, needles);
      return "close";
    }
    // Back to the pool only at a clean boundary of both parsers: the request
    // sent whole, the response read whole, nothing more buffered. After HEAD
    // a lenient server may still send a body we were told not to expect.
    if (response.reusable && requestComplete && head.method !== "HEAD" && upstream!.atCleanBoundary) this.deps.pool.release(upstream!);
    else upstream!.destroy();
    if (!requestComplete || response.agentClose || !head.keepAlive) return "close";
    return "continue";
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
    scrubber: StreamScrubber | undefined,
    needles: string[],
    sending: Promise<void>,
    requestSent: () => boolean,
  ): Promise<{ status: number; bytesDown: number; upgraded: boolean; reusable: boolean; agentClose: boolean }> {
    this.responseStarted = false;
    /** A final answer before the request was sent whole: the rest of the body is never sent. */
    let early = false;
    /** A coded body on a credentialed request: its head waits until the body is masked. */
    let coded: { body: CodedBody; head: ResponseHead; headers: HeaderList } | undefined;
    const sendCoded = (c: NonNullable<typeof coded>): void => {
      const out = c.body.finish(needles);
      if (out instanceof Error) throw new RefusedResponse(out.message);
      setHeader(c.headers, "Content-Length", String(out.length));
      this.responseStarted = true;
      this.queueOut(serializeResponseHead({ status: c.head.status, reason: maskText(c.head.reason, needles), headers: c.headers }));
      this.queueOut(out);
    };
    let bytesDown = 0;
    let head: ResponseHead | undefined;
    let chunkedToAgent = false;
    let agentClose = false;
    for (;;) {
      const ev = await upstream.nextEvent();
      if (!ev) {
        if (!head) throw new Error("upstream closed before responding");
        // An until-close body ends here; anything else was cut short.
        if (head.bodyKind.kind !== "until-close") throw new Error("upstream closed mid-response");
        if (coded) sendCoded(coded);
        else if (scrubber) this.queueBody(scrubber.flush(), chunkedToAgent);
        if (chunkedToAgent) this.queueOut(LAST_CHUNK);
        await this.flushOut();
        return { status: head.status, bytesDown, upgraded: false, reusable: false, agentClose };
      }
      switch (ev.type) {
        case "informational": {
          // 103 Early Hints and the like: scrubbed as a final head is.
          const info = ev.head;
          let headers = stripHopByHop([...info.headers]);
          if (needles.length > 0) headers = scrubHeaderList(headers, needles);
          this.responseStarted = true;
          this.queueOut(serializeResponseHead({ status: info.status, reason: maskText(info.reason, needles), headers }));
          break;
        }
        case "head": {
          head = ev.head as ResponseHead;
          if (head.status === 101 && (req.upgrade === undefined || (head.upgrade ?? "").trim().toLowerCase() !== "websocket")) {
            throw new RefusedResponse("upstream switched to a protocol the agent did not ask for");
          }
          if (head.status === 101 && needles.length > 0 && getHeader(head.headers, "sec-websocket-extensions") !== undefined) {
            // We offered none: compressed frames would carry an echoed secret past the scrubber.
            throw new RefusedResponse("upstream chose a WebSocket extension the gateway did not offer");
          }
          let coding: ReturnType<typeof recodable>;
          if (needles.length > 0 && !isIdentityCoding(head.headers) && head.bodyKind.kind !== "none") {
            // We asked for identity; a coded body cannot be masked in flight.
            coding = recodable(headerTokens(head.headers, "content-encoding"));
            if (!coding) throw new RefusedResponse(`upstream sent Content-Encoding ${getHeader(head.headers, "content-encoding")} despite identity`);
          }
          let headers: HeaderList = stripHopByHop([...head.headers], { keepUpgrade: head.status === 101 });
          if (needles.length > 0) headers = scrubHeaderList(headers, needles);
          if (head.bodyKind.kind === "chunked") {
            chunkedToAgent = true;
            removeHeader(headers, "content-length");
            setHeader(headers, "Transfer-Encoding", "chunked");
          } else if (head.bodyKind.kind === "until-close") {
            // Keep the agent's connection when it speaks 1.1: re-frame as chunked.
            if (req.version === "1.1") {
              chunkedToAgent = true;
              removeHeader(headers, "content-length");
              setHeader(headers, "Transfer-Encoding", "chunked");
            } else {
              agentClose = true;
            }
          } else if (head.bodyKind.kind === "length") {
            setHeader(headers, "Content-Length", String(head.bodyKind.length));
          }
          // Answered before the request body went out whole: the upstream may
          // read what is left as requests of its own, so it gets none of it,
          // and both connections close after this answer.
          if (head.status !== 101 && !requestSent()) {
            early = true;
            agentClose = true;
          }
          if (!req.keepAlive || agentClose) setHeader(headers, "Connection", "close");
          if (coding) {
            chunkedToAgent = false;
            removeHeader(headers, "transfer-encoding");
            coded = { body: new CodedBody(coding), head, headers };
            break;
          }
          this.responseStarted = true;
          this.queueOut(serializeResponseHead({ status: head.status, reason: maskText(head.reason, needles), headers }));
          if (head.bodyKind.kind === "none" && head.status !== 101) {
            // The end event follows.
          }
          break;
        }
        case "body": {
          bytesDown += ev.data.length;
          if (coded) {
            if (!coded.body.push(ev.data)) throw new RefusedResponse("a coded body too large to mask");
            break;
          }
          const out = scrubber ? scrubber.push(ev.data) : ev.data;
          this.queueBody(out, chunkedToAgent);
          break;
        }
        case "end": {
          // A 101's end is followed by its upgrade event.
          if (head?.status === 101) break;
          if (coded) sendCoded(coded);
          else if (scrubber) this.queueBody(scrubber.flush(), chunkedToAgent);
          if (chunkedToAgent) this.queueOut(LAST_CHUNK);
          await this.flushOut();
          if (early) {
            upstream.destroy();
            return { status: head?.status ?? 502, bytesDown, upgraded: false, reusable: false, agentClose };
          }
          // The request side must have finished for the connection to be reused.
          await sending.catch(() => undefined);
          return {
            status: head?.status ?? 502,
            bytesDown,
            upgraded: false,
            reusable: head !== undefined && head.keepAlive,
            agentClose,
          };
        }
        case "upgrade": {
          // Frames that came with the 101 go through the splice's scrubber.
          this.upgradeRest = ev.rest;
          await this.flushOut();
          return { status: head?.status ?? 101, bytesDown, upgraded: true, reusable: false, agentClose: true };
        }
        case "error":
          throw new Error(`upstream sent a malformed response: ${ev.message}`);
        default:
          break;
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

  private queueBody(data: Uint8Array, chunked: boolean): void {
    if (data.length === 0) return;
    if (!chunked) this.queueOut(data);
    else for (const p of encodeChunk(data)) this.queueOut(p);
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

/** The part of a request body read before deciding. */
interface BodyRead {
  buffered: Uint8Array[];
  bytes: number;
  /** The whole message was read. */
  done: boolean;
  /** More than the inspection limit: the rest is still unread. */
  truncated: boolean;
  sentContinue: boolean;
}

/** Request body bytes read and discarded to keep a connection after a refusal. */
const DRAIN_LIMIT = 256 * 1024;

/** An upstream response the gateway will not relay (it could carry the secret past the scrubber). */
class RefusedResponse extends Error {}

function hasContent(head: RequestHead): boolean {
  return head.bodyKind.kind === "chunked" || (head.bodyKind.kind === "length" && head.bodyKind.length > 0);
}

/** No Content-Encoding, or only `identity`. */
function isIdentityCoding(headers: HeaderList): boolean {
  const codings = headerTokens(headers, "content-encoding");
  return codings.every((c) => c === "identity");
}

/** Header names and values with every needle masked (a reflected secret can sit in either). */
function scrubHeaderList(headers: HeaderList, needles: string[]): HeaderList {
  return scrubHeaders(headers, needles, sameLengthMask).map(([n, v]) => [maskText(n, needles), v]);
}

function maskText(text: string, needles: string[]): string {
  return needles.length > 0 ? scrubText(text, needles, sameLengthMask) : text;
}

function concat(parts: Uint8Array[], max: number): Uint8Array {
  const out = new Uint8Array(max);
  let o = 0;
  for (const p of parts) {
    if (o >= max) break;
    const take = Math.min(p.length, max - o);
    out.set(take === p.length ? p : p.subarray(0, take), o);
    o += take;
  }
  return out;
}

export function denyResponse(status: number, rule: string | undefined, reason: string, close: boolean): Uint8Array {
  const body = JSON.stringify({ error: "denied by clawpatrol", rule: rule ?? null, reason }) + "\n";
  const headers: HeaderList = [["Content-Type", "application/json"]];
  if (close) headers.push(["Connection", "close"]);
  return simpleResponse(status, headers, body);
}

function errorResponse(status: number, message: string, close = true): Uint8Array {
  const body = JSON.stringify({ error: message }) + "\n";
  const headers: HeaderList = [["Content-Type", "application/json"]];
  if (close) headers.push(["Connection", "close"]);
  return simpleResponse(status, headers, body);
}
