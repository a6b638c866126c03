// One intercepted HTTPS connection whose agent chose HTTP/2 in ALPN. Bun's
// node:http2 owns the framing: HPACK, flow control, SETTINGS, and the
// limits that keep floods harmless (concurrent streams, header list size,
// CONTINUATION, rapid reset, PING/SETTINGS floods: GOAWAY or RST_STREAM).
// Every stream is one request for the rules: its head (h2head.ts) goes
// through the same exchange decider as an HTTP/1.1 request (decider.ts),
// so rules, approvals, credential injection and masking apply per stream,
// with one event per stream. A refused stream is answered alone; the
// others go on. Allowed streams are forwarded as HTTP/1.1 over the pooled
// upstream connections, the response relayed frame by frame; each stream
// reads its upstream only as fast as the agent's window lets it write
// (backpressure per stream, not per connection).
import http2 from "node:http2";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import type { Flow } from "../../dispatch/flow.ts";
import type { Endpoint } from "../../policy/types.ts";
import type { RequestHead } from "../http1/parser.ts";
import { Http1Parser } from "../http1/parser.ts";
import { encodeChunk, LAST_CHUNK, serializeRequestHead } from "../http1/serialize.ts";
import type { HeaderList } from "../http1/headers.ts";
import { StreamPuller, type PullHooks } from "./puller.ts";
import { ClientTimeouts, type TimeoutReason } from "../http1/timeouts.ts";
import { ExchangeDecider, type DeciderCommand, type DeciderEvent, type EventFields } from "./decider.ts";
import { exchangeEvent, type InterceptDeps } from "./session.ts";
import { errorResponse } from "./outcome.ts";
import { grpcReply, h2Reply, h2RequestHeaders, isGrpc, h2ResponseHeaders, h2Trailers, requestHeadFromH2 } from "./h2head.ts";
import { h2UpstreamsOf, type UpstreamChoice } from "./h2upstream.ts";
import { H2ResponseFilter } from "./h2response.ts";
import { UsageMeter } from "../../spend/usage.ts";
import { maskText } from "./response.ts";
import type { UpstreamConn } from "./upstream.ts";
import { log } from "../../log.ts";
import { HeldBytes } from "../../dispatch/held-bytes.ts";

/** Streams one agent connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
export const MAX_CONCURRENT_STREAMS = 100;
/** Largest header list a stream may send (SETTINGS_MAX_HEADER_LIST_SIZE), as HTTP/1.1's head limit. */
export const MAX_HEADER_LIST_SIZE = 64 * 1024;
/** After the idle GOAWAY, how long a connection may take to close before it is cut. */
const IDLE_CLOSE_GRACE_MS = 1_000;
/** Most fields in one header block. */
const MAX_HEADER_PAIRS = 200;

/**
 * Endpoint types served by the HTTPS runtime whose every request the
 * exchange decider judges: an h2 stream is one such request. (kubernetes:
 * exec and port-forward upgrade HTTP/1.1 connections, which clients open
 * offering http/1.1 alone.)
 */
const H2_ENDPOINT_TYPES = new Set(["https", "kubernetes", "clickhouse_https"]);

/** ALPN offered to the agent: h2 only where every stream can be judged as an HTTP request. */
export function agentAlpn(endpoint: Endpoint): string[] {
  return H2_ENDPOINT_TYPES.has(endpoint.type) ? ["h2", "http/1.1"] : ["http/1.1"];
}

/**
 * The protocol the agent chose once its handshake is done (undefined: the
 * handshake failed, or took longer than `timeoutMs`, as a request head may).
 */
export function negotiatedAlpn(sock: TLSSocket, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => done(undefined), timeoutMs);
    const done = (v: string | undefined) => {
      clearTimeout(timer);
      sock.off("secure", onSecure);
      sock.off("close", onClose);
      resolve(v);
    };
    const onSecure = () => done(typeof sock.alpnProtocol === "string" ? sock.alpnProtocol : "");
    const onClose = () => done(undefined);
    sock.on("secure", onSecure);
    sock.on("close", onClose);
  });
}

type ServerStream = http2.ServerHttp2Stream;

/** What a stream's request body is read through. */
type BodySource = Pick<StreamPuller, "next" | "takeBuffered" | "buffered" | "error">;

/** The body of a stream whose HEADERS ended it: none (no puller, no listeners on the stream). */
const NO_BODY: BodySource = { next: async () => undefined, takeBuffered: () => [], buffered: 0, error: undefined };

export class H2InterceptSession {
  /** Streams of gRPC calls: refusals go to them in gRPC's form. */
  private readonly grpcStreams = new WeakSet<ServerStream>();
  /** Streams being served, ended when the agent's connection goes. */
  private readonly live = new Set<ServerStream>();
  /** Streams whose request body came slower than min_rate: cut off (408 when no response had begun). */
  private readonly outOfTime = new WeakMap<ServerStream, { reason: TimeoutReason; answered: boolean }>();

  constructor(
    private readonly flow: Flow,
    private readonly agent: Duplex,
    private readonly sni: string,
    private readonly deps: InterceptDeps,
  ) {}

  /** Serves the connection; resolves when it is over. */
  run(): Promise<void> {
    const d = this.deps.policy().defaults;
    const server = http2.createServer({
      // No RFC 8441 extended CONNECT (WebSockets over h2): a tunnel no rule could judge. Clients may not
      // send :protocol unless this is 1; one that does is reset by the library before it is a stream.
      settings: { maxConcurrentStreams: MAX_CONCURRENT_STREAMS, maxHeaderListSize: MAX_HEADER_LIST_SIZE, enablePush: false, enableConnectProtocol: false },
      maxHeaderListPairs: MAX_HEADER_PAIRS,
    });
    return new Promise((resolve) => {
      let finished = false;
      let session: http2.ServerHttp2Session | undefined;
      // Idle: no stream open for idle_timeout closes the connection with GOAWAY, as
      // HTTP/1.1's idle timeout does between requests. PINGs, SETTINGS and a header
      // block that never ends (h2's slowloris: the library shows a stream only once
      // its headers are whole) do not keep it open.
      let open = 0;
      let idle: ReturnType<typeof setTimeout> | undefined;
      const armIdle = () => {
        if (idle) clearTimeout(idle);
        idle = setTimeout(() => {
          // GOAWAY; a header block still open is a stream to the library, which would wait on it: cut after a grace.
          session?.close();
          setTimeout(() => session?.destroy(), IDLE_CLOSE_GRACE_MS).unref?.();
        }, d.idleTimeoutMs);
        idle.unref?.();
      };
      const finish = () => {
        if (finished) return;
        finished = true;
        if (idle) clearTimeout(idle);
        server.close();
        // The agent's connection is gone: every stream still relaying ends now (its
        // event is published with what was sent), whether or not the library said so.
        for (const stream of this.live) if (!stream.destroyed) stream.destroy();
        resolve();
      };
      server.on("session", (s: http2.ServerHttp2Session) => {
        session = s;
        armIdle();
        s.on("error", (e: Error) => log.debug("h2 agent session error", { flow: this.flow.id, error: e.message }));
        s.on("close", finish);
      });
      // Streams that arrived in one batch of frames are judged after it was read whole:
      // one the agent resets in the same batch (rapid reset) is never judged.
      let arrived: [ServerStream, http2.IncomingHttpHeaders][] = [];
      const serveArrived = () => {
        const batch = arrived;
        arrived = [];
        for (const [stream, headers] of batch) {
          if (stream.destroyed) continue;
          this.live.add(stream);
          void this.serveStream(stream, headers).catch((e: Error) => {
            log.debug("h2 stream failed", { flow: this.flow.id, error: e.message });
            resetStream(stream, http2.constants.NGHTTP2_INTERNAL_ERROR);
          });
        }
      };
      server.on("stream", (stream: ServerStream, headers: http2.IncomingHttpHeaders) => {
        open += 1;
        if (idle) clearTimeout(idle);
        idle = undefined;
        stream.once("close", () => {
          open -= 1;
          this.live.delete(stream);
          if (open === 0 && !finished) armIdle();
        });
        if (arrived.push([stream, headers]) === 1) setImmediate(serveArrived);
      });
      server.on("sessionError", (e: Error) => log.debug("h2 agent session error", { flow: this.flow.id, error: e.message }));
      this.agent.on("close", finish);
      // An agent that is gone shows first as the end of its bytes (an h2 client never half-closes).
      this.agent.on("end", finish);
      this.flow.conn.on("close", finish);
      this.agent.on("error", () => finish());
      server.emit("connection", this.agent);
    });
  }

  /**
   * One stream, with what it holds (a body read for a rule or an approval,
   * kept until the exchange ends) counted against the device's
   * buffered-bytes quota.
   */
  private async serveStream(stream: ServerStream, h: http2.IncomingHttpHeaders): Promise<void> {
    const held = this.deps.buffers ? new HeldBytes(this.deps.buffers(this.flow.device)) : undefined;
    try {
      await this.serveStreamHolding(stream, h, held);
    } finally {
      held?.close();
    }
  }

  /** Body reads that keep what they read, within the device's budget; undefined: not counted. */
  private keeper(stream: ServerStream, held: HeldBytes | undefined): BodyKeeper | undefined {
    if (!held) return undefined;
    let kept = 0;
    const idleMs = this.deps.policy().defaults.idleTimeoutMs;
    return {
      kept: (n) => held.set((kept += n)),
      // At the quota, wait for room while the stream lives, at most the idle timeout (the device's streams could wait on each other for ever).
      room: async () => {
        if (!held.full) return true;
        const waited = new AbortController();
        const stop = () => waited.abort();
        stream.once("close", stop);
        const timer = setTimeout(stop, idleMs);
        timer.unref?.();
        await held.room(waited.signal);
        clearTimeout(timer);
        stream.off("close", stop);
        return !stream.destroyed && !held.full;
      },
    };
  }

  /** One stream: judged as one request, then answered or forwarded. */
  private async serveStreamHolding(stream: ServerStream, h: http2.IncomingHttpHeaders, held: HeldBytes | undefined): Promise<void> {
    const started = Date.now();
    if (isGrpc(h)) this.grpcStreams.add(stream);
    const endStream = stream.endAfterHeaders || stream.readableEnded;
    const parsed = requestHeadFromH2(h, endStream);
    if (!parsed.ok) {
      const head = { method: String(h[":method"] ?? "?"), target: String(h[":path"] ?? "") };
      const reply = errorResponse(parsed.status, parsed.reason, false);
      this.publish(stream, head, started, { status: parsed.status, verdict: "deny", reason: parsed.reason });
      return this.replyStream(stream, reply, !endStream);
    }
    const head = parsed.head;
    const body: BodySource = endStream ? NO_BODY : new StreamPuller(stream, this.bodyClock(stream));
    const policy = this.deps.policy();
    const decider = new ExchangeDecider({
      policy,
      device: { name: this.flow.device.name, profile: this.flow.device.profile },
      sni: this.sni,
      port: this.flow.dst.port,
      now: started,
      secretFor: this.deps.secretFor,
      redact: this.deps.redact ?? ((t) => t),
      approvals: this.deps.approvals !== undefined,
    });
    let commands = decider.handle({ type: "head", head });
    let bodyDone = endStream;
    for (;;) {
      let reply: DeciderEvent | undefined;
      for (const c of commands) {
        switch (c.type) {
          case "log":
            log[c.level](c.message, { flow: this.flow.id, ...c.fields });
            break;
          case "read-body": {
            if (c.sendContinue) stream.additionalHeaders({ ":status": 100 });
            const keep = this.keeper(stream, held);
            const got = c.wait ? await readBody(body, stream, c.atMost, keep) : takeBuffered(body, stream, c.atMost, keep);
            if (got.starved) {
              log.info("h2 stream reset: waited too long at the device's buffered-bytes quota", { flow: this.flow.id, device: this.flow.device.name });
              return resetStream(stream, http2.constants.NGHTTP2_REFUSED_STREAM);
            }
            bodyDone ||= got.done;
            reply = { type: "body", chunks: got.chunks, done: got.done };
            break;
          }
          case "drain": {
            const got = await readBody(body, stream, c.atMost);
            bodyDone ||= got.done;
            reply = { type: "drained", bytes: got.bytes, done: got.done };
            break;
          }
          case "hold": {
            const gate = this.deps.approvals;
            if (!gate) throw new Error("hold without an approval gate");
            // The agent resetting the stream ends the hold.
            const gone = new AbortController();
            const onClose = () => gone.abort();
            if (stream.destroyed) gone.abort();
            else stream.once("close", onClose);
            const outcome = await gate.hold({ request: c.request, rule: c.rule, chain: c.chain, operationId: c.operationId, signal: gone.signal }).finally(() => stream.off("close", onClose));
            reply = { type: "approval", outcome };
            break;
          }
          case "reply":
            this.publish(stream, head, started, c.event);
            return this.replyStream(stream, c.data, !bodyDone);
          case "forward":
            return this.forward(stream, head, body, c, started);
        }
      }
      if (!reply) throw new Error("exchange decider asked for nothing");
      // Cut off for its pace while the rules waited for its body: answered already (408).
      if (this.outOfTime.has(stream)) return this.publish(stream, head, started, { verdict: "deny", reason: "request body too slow" });
      if (stream.destroyed && reply.type !== "approval") return;
      commands = decider.handle(reply);
    }
  }

  /**
   * The request body's pace, as HTTP/1.1's (ClientTimeouts' body phase):
   * min_rate bytes/s after a grace of header_timeout, counting only time
   * spent waiting on the agent (a stream paused because its upstream is
   * slow is never the agent's fault). Too slow: 408 on the stream when no
   * response began, else RST_STREAM; the other streams go on.
   */
  private bodyClock(stream: ServerStream): PullHooks | undefined {
    const d = this.deps.policy().defaults;
    if (d.minRateBytesPerSec <= 0) return undefined;
    const clock = new ClientTimeouts({ headerMs: d.headerTimeoutMs, idleMs: d.idleTimeoutMs, minRateBytesPerSec: d.minRateBytesPerSec }, Date.now());
    clock.headParsed(Date.now(), true);
    let timer: ReturnType<typeof setTimeout> | undefined;
    let due = 0;
    const stop = () => {
      if (timer) clearTimeout(timer);
      timer = undefined;
    };
    // One timer per stream, kept when due earlier than the deadline (re-checked when it fires), as the HTTP/1.1 shell does.
    const arm = () => {
      const at = clock.deadline();
      if (at === undefined) return stop();
      if (timer && due <= at) return;
      stop();
      due = at;
      timer = setTimeout(() => {
        timer = undefined;
        const reason = clock.expired(Date.now());
        if (reason) this.cutOff(stream, reason);
        else arm();
      }, Math.max(0, at - Date.now()));
      timer.unref?.();
    };
    stream.once("end", () => {
      clock.bodyEnded(Date.now());
      stop();
    });
    stream.once("close", stop);
    return {
      onData: (n) => clock.received(Date.now(), n),
      onWait: () => {
        clock.waiting(Date.now());
        arm();
      },
    };
  }

  /** The stream can take no response of ours any more: reset, or cut off for its pace. */
  private lost(stream: ServerStream): boolean {
    return stream.destroyed || this.outOfTime.has(stream);
  }

  private cutOff(stream: ServerStream, reason: TimeoutReason): void {
    if (stream.destroyed || this.outOfTime.has(stream)) return;
    const answered = !stream.headersSent;
    this.outOfTime.set(stream, { reason, answered });
    log.debug("intercepted h2 stream out of time", { flow: this.flow.id, reason });
    if (answered) this.replyStream(stream, errorResponse(408, "request body too slow", false), true);
    else resetStream(stream, http2.constants.NGHTTP2_CANCEL);
  }

  /** A whole response the decider wrote (403, 202, 502), on this stream alone. */
  private replyStream(stream: ServerStream, data: Uint8Array, bodyUnread: boolean): void {
    if (stream.destroyed || stream.headersSent) return;
    const reply = h2Reply(data);
    if (this.grpcStreams.has(stream)) {
      stream.respond(grpcReply(reply), { endStream: true });
    } else {
      stream.respond(reply.headers, { endStream: reply.body.length === 0 });
      if (reply.body.length > 0) stream.end(reply.body);
    }
    // The rest of an unread request body is not wanted: the stream is closed (RFC 9113 §8.1).
    if (bodyUnread) stream.once("finish", () => resetStream(stream, http2.constants.NGHTTP2_NO_ERROR));
  }

  /** The request as HTTP/1.1 over a pooled upstream connection; the response back frame by frame. */
  private async forward(stream: ServerStream, head: RequestHead, body: BodySource, x: Extract<DeciderCommand, { type: "forward" }>, started: number): Promise<void> {
    const fields: EventFields = { ...x.event, verdict: "allow" };
    const target = { host: this.flow.dst.host, port: this.flow.dst.port, sni: this.sni, endpoint: x.endpoint, ...(x.clientCert ? { clientCert: x.clientCert } : {}) };
    // A stream the agent reset while it was judged costs no upstream connection.
    if (this.lost(stream)) return this.publish(stream, head, started, { ...fields, detail: "agent reset the stream", bytesUp: x.bodyBytes });
    let choice: UpstreamChoice;
    try {
      choice = await h2UpstreamsOf(this.deps.pool).take(target);
    } catch (e) {
      log.warn("upstream connect failed", { flow: this.flow.id, host: this.sni, error: (e as Error).message });
      this.publish(stream, head, started, { ...fields, status: 502, detail: `upstream: ${(e as Error).message}`, bytesUp: x.bodyBytes });
      return this.replyStream(stream, errorResponse(502, `could not reach ${this.sni}`, false), !x.complete);
    }
    if (choice.kind === "h2") return this.forwardOverH2(stream, head, body, x, started, choice.session);
    const conn = choice.conn;
    if (this.lost(stream)) {
      conn.destroy();
      return this.publish(stream, head, started, { ...fields, detail: "agent reset the stream", bytesUp: x.bodyBytes, action: { closedBy: "client" } });
    }
    const onAgentGone = () => conn.destroy();
    stream.once("close", onAgentGone);
    let bytesUp = x.bodyBytes;
    const frame = (d: Uint8Array) => (x.chunked ? encodeChunk(d) : [d]);
    // The request: head and what was read, then the rest of the body as the agent sends it.
    const first: Uint8Array[] = [serializeRequestHead(x.head)];
    for (const b of x.body) first.push(...frame(b));
    if (x.complete && x.chunked) first.push(LAST_CHUNK);
    const sending = (async () => {
      await conn.write(Buffer.concat(first));
      if (x.complete) return true;
      for (;;) {
        const chunk = await body.next();
        if (!chunk) break;
        bytesUp += chunk.length;
        await conn.write(Buffer.concat(frame(chunk)));
      }
      // A stream reset by the agent mid-body: the request was never whole.
      if (body.error || !stream.readableEnded) return false;
      if (x.chunked) await conn.write(LAST_CHUNK);
      return true;
    })().catch(() => false);
    const meter = x.meter ? new UsageMeter(x.meter, x.head.target) : undefined;
    const r = await this.relay(stream, head, conn, new H2ResponseFilter(x.needles, meter));
    stream.off("close", onAgentGone);
    const requestWhole = r.ok && r.early ? false : await sending;
    if (r.ok && requestWhole && r.reusable && conn.atCleanBoundary) this.deps.pool.release(conn);
    else conn.destroy();
    this.publish(stream, head, started, { ...fields, bytesUp, bytesDown: r.bytesDown, ...(r.status ? { status: r.status } : {}), ...(r.ok ? {} : { detail: r.detail, action: { closedBy: closedBy(r.detail) } }), ...usageOf(meter, r.ok, x.needles) });
  }

  /** The request as a stream of the upstream's own h2 session; the response back frame by frame, trailers included. */
  private async forwardOverH2(
    stream: ServerStream,
    head: RequestHead,
    body: BodySource,
    x: Extract<DeciderCommand, { type: "forward" }>,
    started: number,
    session: http2.ClientHttp2Session,
  ): Promise<void> {
    const fields: EventFields = { ...x.event, verdict: "allow" };
    let bytesUp = x.bodyBytes;
    let bytesDown = 0;
    let status: number | undefined;
    const meter = x.meter ? new UsageMeter(x.meter, x.head.target) : undefined;
    const publish = (more: EventFields, ended = false) =>
      this.publish(stream, head, started, {
        ...fields,
        bytesUp,
        bytesDown,
        ...(status ? { status } : {}),
        ...more,
        ...(more.detail ? { action: { closedBy: closedBy(more.detail) } } : {}),
        ...usageOf(meter, ended, x.needles),
      });
    if (this.lost(stream)) return publish({ detail: "agent reset the stream" });
    const noBody = x.complete && x.bodyBytes === 0;
    let req: http2.ClientHttp2Stream;
    try {
      const te = head.headers.some(([n, v]) => n === "te" && v.trim().toLowerCase() === "trailers");
      req = session.request(h2RequestHeaders(x.head, this.sni, this.flow.dst.port, te), { endStream: noBody });
    } catch (e) {
      publish({ status: 502, detail: `upstream: ${(e as Error).message}` });
      return this.replyStream(stream, errorResponse(502, `could not reach ${this.sni}`, false), !x.complete);
    }
    const onAgentGone = () => resetStream(req as unknown as ServerStream, http2.constants.NGHTTP2_CANCEL);
    stream.once("close", onAgentGone);
    req.on("error", () => undefined);
    // The request body: what was read, then the rest as the agent's DATA comes, at the upstream's pace.
    if (!noBody) {
      void (async () => {
        for (const b of x.body) if (!(await writeStream(req as unknown as ServerStream, b))) return;
        if (!x.complete) {
          for (let c = await body.next(); c; c = await body.next()) {
            bytesUp += c.length;
            if (!(await writeStream(req as unknown as ServerStream, c))) return;
          }
          if (!stream.readableEnded || body.error) return resetStream(req as unknown as ServerStream, http2.constants.NGHTTP2_CANCEL);
        }
        req.end();
      })().catch(() => resetStream(req as unknown as ServerStream, http2.constants.NGHTTP2_CANCEL));
    }
    const response = await new Promise<http2.IncomingHttpHeaders | undefined>((resolve) => {
      req.once("response", (h) => resolve(h));
      req.once("close", () => resolve(undefined));
    });
    if (!response) {
      stream.off("close", onAgentGone);
      publish({ status: 502, detail: `upstream reset the stream (code ${req.rstCode ?? "?"})` });
      return this.replyStream(stream, errorResponse(502, `${this.sni} reset the request`, false), false);
    }
    status = Number(response[":status"]);
    const list: HeaderList = [];
    for (const [n, v] of Object.entries(response)) {
      if (n.startsWith(":") || v === undefined) continue;
      for (const one of Array.isArray(v) ? v : [v]) list.push([n, String(one)]);
    }
    const filter = new H2ResponseFilter(x.needles, meter);
    const ended = req.endAfterHeaders;
    const first = filter.head(status, list, !ended);
    if (first.type === "refuse") {
      resetStream(req as unknown as ServerStream, http2.constants.NGHTTP2_CANCEL);
      stream.off("close", onAgentGone);
      publish({ status: 502, detail: first.message });
      return this.replyStream(stream, errorResponse(502, first.message, false), false);
    }
    let trailers: http2.IncomingHttpHeaders | undefined;
    req.once("trailers", (t) => (trailers = t));
    if (this.lost(stream)) return publish({ detail: "agent reset the stream" });
    if (first.type === "respond") stream.respond(first.headers, { endStream: ended, waitForTrailers: !ended });
    if (!ended) {
      const down = new StreamPuller(req);
      let refused: string | undefined;
      for (let c = await down.next(); c; c = await down.next()) {
        bytesDown += c.length;
        const out = filter.body(c);
        if (out.type === "refuse") {
          refused = out.message;
          break;
        }
        if (out.data.length > 0 && !(await writeStream(stream, out.data))) break;
      }
      const last = refused === undefined && req.readableEnded && !down.error ? filter.end() : undefined;
      if (last?.type === "refuse") refused = last.message;
      if (refused !== undefined) {
        resetStream(req as unknown as ServerStream, http2.constants.NGHTTP2_CANCEL);
        stream.off("close", onAgentGone);
        if (!stream.headersSent && !stream.destroyed) this.replyStream(stream, errorResponse(502, refused, false), false);
        else resetStream(stream, http2.constants.NGHTTP2_INTERNAL_ERROR);
        return publish({ status: 502, detail: refused });
      }
      if (last?.type !== "end") {
        stream.off("close", onAgentGone);
        resetStream(stream, http2.constants.NGHTTP2_INTERNAL_ERROR);
        return publish({ detail: stream.destroyed ? "agent reset the stream" : "upstream reset the stream" });
      }
      const t: HeaderList = [];
      for (const [n, v] of Object.entries(trailers ?? {})) {
        if (n.startsWith(":") || v === undefined) continue;
        for (const one of Array.isArray(v) ? v : [v]) t.push([n, String(one)]);
      }
      if (!this.lost(stream)) {
        if (last.headers) stream.respond(last.headers, { endStream: false, waitForTrailers: true });
        stream.once("wantTrailers", () => sendTrailers(stream, h2Trailers(t, x.needles)));
        if (last.data.length > 0) stream.end(last.data);
        else stream.end();
      }
    }
    stream.off("close", onAgentGone);
    publish({}, true);
  }

  /** The upstream's response to the agent's stream; the agent's window paces the upstream's reads. */
  private async relay(
    stream: ServerStream,
    head: RequestHead,
    conn: UpstreamConn,
    filter: H2ResponseFilter,
  ): Promise<{ ok: true; status: number; bytesDown: number; reusable: boolean; early: boolean } | { ok: false; status?: number; bytesDown: number; detail: string }> {
    const parser = new Http1Parser("response");
    parser.expectResponseTo(head.method);
    let status: number | undefined;
    let keepAlive = false;
    let chunked = false;
    let bytesDown = 0;
    /** Masked body not yet written: kept back one event so the last piece goes out with END_STREAM. */
    let pending: Uint8Array | undefined;
    const fail = (detail: string, code = http2.constants.NGHTTP2_INTERNAL_ERROR) => {
      if (!stream.headersSent && !stream.destroyed) this.replyStream(stream, errorResponse(502, detail, false), false);
      else resetStream(stream, code);
      return { ok: false as const, ...(status ? { status } : { status: 502 }), bytesDown, detail };
    };
    const gone = () => ({ ok: false as const, ...(status ? { status } : {}), bytesDown, detail: "agent reset the stream" });
    for (;;) {
      const chunk = await conn.puller.next();
      if (this.lost(stream)) return gone();
      const events = chunk ? parser.push(chunk) : parser.end();
      if (!chunk && events.length === 0) return fail("upstream closed mid-response");
      for (const ev of events) {
        switch (ev.type) {
          case "informational":
            // 103 Early Hints, the upstream's own 100: passed on, masked as a final head is.
            if (!stream.headersSent && !stream.destroyed) stream.additionalHeaders(h2ResponseHeaders(ev.head.status, ev.head.headers, filter.needles));
            break;
          case "head": {
            if (!("status" in ev.head)) break;
            const h = ev.head;
            if (h.status === 101) return fail("upstream switched protocols on an HTTP/2 stream");
            status = h.status;
            keepAlive = h.keepAlive;
            chunked = h.bodyKind.kind === "chunked";
            const noBody = h.bodyKind.kind === "none";
            const out = filter.head(h.status, h.headers, !noBody);
            if (out.type === "refuse") return fail(out.message);
            if (out.type === "respond") stream.respond(out.headers, { endStream: noBody, waitForTrailers: chunked });
            break;
          }
          case "body": {
            bytesDown += ev.data.length;
            const out = filter.body(ev.data);
            if (out.type === "refuse") return fail(out.message);
            if (out.data.length === 0) break;
            if (pending && !(await writeStream(stream, pending))) return gone();
            pending = out.data;
            break;
          }
          case "end": {
            const out = filter.end();
            if (out.type === "refuse") return fail(out.message);
            const trailers = (ev.trailers ?? []) as HeaderList;
            if (out.headers && !this.lost(stream)) stream.respond(out.headers, { endStream: false, waitForTrailers: chunked });
            const last = pending && out.data.length > 0 ? Buffer.concat([pending, out.data]) : (pending ?? out.data);
            if (!this.lost(stream) && !stream.writableEnded && stream.headersSent) {
              if (chunked) stream.once("wantTrailers", () => sendTrailers(stream, h2Trailers(trailers, filter.needles)));
              if (last.length > 0) stream.end(last);
              else stream.end();
            }
            return { ok: true, status: status ?? 502, bytesDown, reusable: keepAlive && parser.idle, early: false };
          }
          case "error":
            return fail(`upstream sent a malformed response: ${ev.message}`);
          default:
            return fail("upstream sent what an HTTP/2 stream cannot carry");
        }
      }
      // What this read gave goes out before the next read: the agent's window paces the upstream.
      if (pending) {
        const p = pending;
        pending = undefined;
        if (!(await writeStream(stream, p))) return gone();
      }
    }
  }

  /** The stream's one event; a stream cut off for its pace says so, whatever its forwarding saw. */
  private publish(stream: ServerStream, head: Pick<RequestHead, "method" | "target">, started: number, fields: EventFields): void {
    const late = this.outOfTime.get(stream);
    if (late) fields = { ...fields, ...(late.answered ? { status: 408 } : {}), detail: `client out of time (${late.reason})`, action: { closedBy: "client" } };
    this.deps.publish(exchangeEvent(this.flow, this.sni, head, started, Date.now() - started, fields, { prices: this.deps.policy().prices }));
  }
}

/** The LLM usage a response reported (`ended`: it reached its end, so the counts are final), for the event; the model name masked as the body was. */
function usageOf(meter: UsageMeter | undefined, ended: boolean, needles: string[]): EventFields {
  const usage = meter?.finish(ended);
  return usage ? { usage: { ...usage, model: maskText(usage.model, needles) } } : {};
}

/** Who ended a stream early, as HTTP/1.1's events say it (`action.closedBy`): the agent, the upstream, or the gateway refusing. */
function closedBy(detail: string): "client" | "upstream" | "gateway" {
  if (detail.startsWith("agent")) return "client";
  return detail.startsWith("upstream") && !detail.includes("despite identity") ? "upstream" : "gateway";
}

/** Counts a stream's kept body against the device's budget, and waits for room before reading more (false: none came). */
interface BodyKeeper {
  kept(bytes: number): void;
  room(): Promise<boolean>;
}

/** Body chunks until the stream ends or more than `atMost` bytes were read; `starved`: no room came in the budget. */
async function readBody(body: BodySource, stream: ServerStream, atMost: number, keep?: BodyKeeper): Promise<{ chunks: Uint8Array[]; bytes: number; done: boolean; starved?: boolean }> {
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  while (bytes <= atMost) {
    if (keep && !(await keep.room())) return { chunks, bytes, done: false, starved: true };
    const c = await body.next();
    // Ended by END_STREAM, not by a reset.
    if (!c) return { chunks, bytes, done: stream.readableEnded && !body.error };
    chunks.push(c);
    bytes += c.length;
    keep?.kept(c.length);
  }
  return { chunks, bytes, done: false };
}

/** What of the body already arrived, never waiting. */
function takeBuffered(body: BodySource, stream: ServerStream, atMost: number, keep?: BodyKeeper): { chunks: Uint8Array[]; done: boolean; starved?: boolean } {
  const chunks = body.takeBuffered(atMost);
  for (const c of chunks) keep?.kept(c.length);
  return { chunks, done: stream.readableEnded && body.buffered === 0 && !body.error };
}

/** Writes to the agent's stream; resolves once its window took it (false: the stream is gone). */
function writeStream(stream: ServerStream, data: Uint8Array): Promise<boolean> {
  if (stream.destroyed) return Promise.resolve(false);
  if (stream.write(data)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const onDrain = () => {
      stream.off("close", onClose);
      resolve(true);
    };
    const onClose = () => {
      stream.off("drain", onDrain);
      resolve(false);
    };
    stream.once("drain", onDrain);
    stream.once("close", onClose);
  });
}

/** Trailers, unless the stream went away meanwhile (an event handler must never throw). */
function sendTrailers(stream: ServerStream, trailers: http2.OutgoingHttpHeaders): void {
  try {
    stream.sendTrailers(trailers);
  } catch {
    stream.destroy();
  }
}

function resetStream(stream: ServerStream, code: number): void {
  if (stream.destroyed || stream.closed) return;
  try {
    stream.close(code);
  } catch {
    stream.destroy();
  }
}
