// Deciding one intercepted HTTPS request, sans-IO: the parsed head in (then
// the body, an approval's outcome, a drained rest as asked for), commands
// out. The session (session.ts) reads, holds and writes; every decision
// about the request is made here, with time, the secret lookup and the
// policy passed in.
//
// 1. shape: method, Host against the TLS server name, target and path
//    (shape.ts); a GET or HEAD with a body. Refused, connection closed.
// 2. endpoint: the one claiming the server name for the device's profile;
//    none any more: 403.
// 3. body: read up to the inspection limit when a rule may read it (a
//    `100 Continue` first when the agent waits for one); otherwise the part
//    of a chunked body already here is taken, never waited for.
// 4. rules: judged (engine.ts); deny: 403.
// 5. approval: the body read (bounded) for the approvers, the request held
//    by the shell's gate; pending: 202, a refused operation: 404/409, denied:
//    403.
// 6. credential: configured, granted to the profile, with a value (else
//    502), and no Connection option naming its slot.
// 7. forward: the outbound head (hop-by-hop fields and framing are ours, the
//    credential injected), the secret's needles to scrub, the framing.
// A refusal first drains a small rest of the body, so that the connection
// can carry another request.
//
// Plain HTTP (`plain` in the context: the explicit proxy's absolute-form
// requests, or port 80 in the tunnel) goes the same way, with the host
// named by each request instead of the TLS server name: an SNI-claimed
// endpoint naming the host on one of its plain ports (80 and its `ports`)
// judges it with `http.scheme == "http"`; a host none claims follows
// `unknown_host` (forwarded unjudged, or 403); the credential is injected
// only where the endpoint sets `allow_plaintext_credentials`.
import type { ApprovalRequest } from "../../approvers/types.ts";
import type { HoldOutcome } from "../../approvers/hub.ts";
import type { GatewayEvent } from "../../events/types.ts";
import type { Credential, Decision, Endpoint, Policy, Rule } from "../../policy/types.ts";
import { httpFactsFromRequest, judge, matchEndpoints, needsBody } from "../../policy/engine.ts";
import { specOf } from "../registry.ts";
import { pluginFor } from "../../credentials/plugin.ts";
import type { RequestHead } from "../http1/parser.ts";
import { getHeader, hasToken, removeHeader, setHeader, stripHopByHop, type HeaderList } from "../http1/headers.ts";
import { simpleResponse } from "../http1/serialize.ts";
import { buildApprovalRequest, OPERATION_HEADER, pendingResponse, refusedOperationResponse } from "./approval.ts";
import { checkRequestShape, credentialSlots } from "./shape.ts";
import { kubernetesDecision, kubernetesRefusal, kubernetesClientCert, type KubernetesJudged } from "../kubernetes/hooks.ts";
import type { ClientCertificate } from "../kubernetes/client-cert.ts";
import { KUBERNETES_UPGRADES } from "../kubernetes/spdyframes.ts";
import { clickhouseHttpFacts } from "../clickhouse_https/facts.ts";
import type { ClickHouseHttpFacts } from "../../families/clickhouse_http.ts";
import { sqlFamily } from "../../families/sql/family.ts";
import { clickhouseDenyResponse } from "../clickhouse_https/deny.ts";
import { providerOf } from "../../spend/budget.ts";
import type { LlmProvider } from "../../spend/usage.ts";
import { parseHostField } from "../http1/target.ts";

/** Ports on which an SNI-claimed endpoint also claims its hosts for plain HTTP: 80 and its `ports`. */
export const PLAIN_HTTP_PORT = 80;
export function plainHttpPorts(e: Endpoint): number[] {
  return [PLAIN_HTTP_PORT, ...(e.ports ?? [])];
}

/** Whether the endpoint lets its credential travel over plain HTTP. */
export function allowsPlaintextCredentials(e: Endpoint): boolean {
  return e.settings?.allowPlaintextCredentials === true;
}

/** A credential's value and the strings that would reveal it if echoed back. */
export type SecretLookup = (
  cred: Credential,
) => { ok: true; value: string; needles: string[] } | { ok: false; reason: string };

/** Request body bytes read and discarded to keep a connection after a refusal. */
export const DRAIN_LIMIT = 256 * 1024;

export interface DeciderContext {
  /** The policy this request is judged by (one snapshot for the whole exchange). */
  policy: Policy;
  device: { name: string; profile: string };
  /** The TLS server name the session was claimed by. */
  sni: string;
  /** The port the agent dialed: of two endpoints sharing the server name, the one claiming it. */
  port?: number;
  /** When the request's head was read (ms since the epoch). */
  now: number;
  secretFor: SecretLookup;
  /** Masks configured secrets in text shown to approvers. */
  redact: (text: string) => string;
  /** Whether the shell has an approval gate (without one, approval rules deny). */
  approvals: boolean;
  /**
   * Plain HTTP: each request names its host (absolute-form target, else its
   * Host). `port`: the port the connection was dialed on (the tunnel); absent
   * for the explicit proxy, whose requests name their own (80 by default).
   */
  plain?: { port?: number };
}

/** Where a plain-HTTP request goes: the host it named; `claimed` when an endpoint judged it (dialed by name). */
export interface PlainUpstream {
  host: string;
  port: number;
  claimed: boolean;
}

/** The outbound request head (what `serializeRequestHead` writes). */
export interface OutboundHead {
  method: string;
  target: string;
  headers: HeaderList;
}

export type DeciderEvent =
  | { type: "head"; head: RequestHead }
  /** Body read since the last read-body command (`done`: the message ended). */
  | { type: "body"; chunks: Uint8Array[]; done: boolean }
  /** What drain discarded. */
  | { type: "drained"; bytes: number; done: boolean }
  | { type: "approval"; outcome: HoldOutcome };

/** Fields of the exchange's event (the shell adds duration, family, summary and action). */
export type EventFields = Partial<GatewayEvent>;

export type DeciderCommand =
  | { type: "log"; level: "warn" | "error"; message: string; fields: Record<string, unknown> }
  /**
   * Read body events: with `wait`, until the message ends or more than
   * `atMost` further bytes are held (a `100 Continue` first when
   * `sendContinue`); without, only what already arrived. Reply with a body
   * event; an agent that went away ends the exchange instead.
   */
  | { type: "read-body"; wait: boolean; atMost: number; sendContinue: boolean }
  /** Read and discard body events until the message ends or `atMost` bytes; reply with drained. */
  | { type: "drain"; atMost: number }
  /** Hold the request with the approval gate (aborted when the agent goes away); reply with approval. */
  | { type: "hold"; request: ApprovalRequest; rule: Rule; chain: string[]; operationId: string | undefined }
  /** Answer the agent with `data` and publish the event; the connection closes after when `close`. */
  | { type: "reply"; data: Uint8Array; close: boolean; event: EventFields }
  /** Send the request upstream; the rest of the exchange is HTTP/1.1 forwarding. */
  | {
      type: "forward";
      /** The endpoint the request goes to (the upstream pool's key); none for plain HTTP to an unclaimed host. */
      endpoint?: Endpoint;
      /** Plain HTTP: the host and port this request named. */
      upstream?: PlainUpstream;
      head: OutboundHead;
      /** Body already read, to be sent after the head. */
      body: Uint8Array[];
      bodyBytes: number;
      /** The request was read whole (it can be sent again on a fresh connection). */
      complete: boolean;
      /** The rest of the body goes out chunked as it comes. */
      chunked: boolean;
      /** Strings to mask in whatever the upstream sends back. */
      needles: string[];
      /** Presented to the upstream in its TLS handshake (k8s_client_cert). */
      clientCert?: ClientCertificate;
      /** An LLM credential was injected: read the usage its API reports in the response. */
      meter?: LlmProvider;
      event: EventFields;
    };

/** One request's decision, as a state machine the shell drives with events. */
export class ExchangeDecider {
  private head: RequestHead | undefined;
  private readonly event: EventFields = {};
  private target = "";
  private endpoint: Endpoint | undefined;
  private decision: Decision | undefined;
  private rule: Rule | undefined;
  /** A kubernetes endpoint's request as judged (its facets; refusals are Status objects). */
  private k8s: KubernetesJudged | undefined;
  private readonly chunks: Uint8Array[] = [];
  private bytes = 0;
  private done = false;
  private truncated = false;
  private sentContinue = false;
  /** What the awaited event is for. */
  private step: "head" | "rules-body" | "arrived-body" | "approval-body" | "approval" | "drain" | "decided" = "head";
  /** The refusal waiting for its drain. */
  private refusal: { status: number; reason: string; detail: string | undefined; verdict: string } | undefined;
  /** Retry-After (seconds) on a refusal for a rate limit. */
  private retryAfterS: number | undefined;
  /** Plain HTTP: the host and port the request named (the TLS server name otherwise). */
  private plainTarget: { host: string; port: number } | undefined;
  /** Plain HTTP to a host no endpoint claims, forwarded unjudged (unknown_host = passthrough). */
  private unclaimed = false;

  constructor(private readonly ctx: DeciderContext) {}

  handle(ev: DeciderEvent): DeciderCommand[] {
    switch (ev.type) {
      case "head":
        this.expect("head", ev.type);
        return this.onHead(ev.head);
      case "body":
        if (this.step !== "rules-body" && this.step !== "arrived-body" && this.step !== "approval-body") this.unexpected(ev.type);
        return this.onBody(ev.chunks, ev.done);
      case "drained":
        this.expect("drain", ev.type);
        return this.onDrained(ev.bytes, ev.done);
      case "approval":
        this.expect("approval", ev.type);
        return this.onApproval(ev.outcome);
    }
  }

  /** The host the request is judged under: the TLS server name, or the host a plain-HTTP request named. */
  private get name(): string {
    return this.plainTarget?.host ?? this.ctx.sni;
  }

  /** The endpoint claiming the request: by server name and dialed port, or for plain HTTP on one of its plain ports. */
  private claiming(): Endpoint | undefined {
    const { policy, device } = this.ctx;
    const p = this.plainTarget;
    if (!p) return claimingEndpoint(policy, this.ctx.sni, device.profile, this.ctx.port);
    return matchEndpoints(policy, p.host, device.profile).find((e) => specOf(e.type).claim === "sni" && plainHttpPorts(e).includes(p.port));
  }

  private onHead(head: RequestHead): DeciderCommand[] {
    const { policy, device } = this.ctx;
    this.head = head;
    this.done = head.bodyKind.kind === "none";
    if (this.ctx.plain) {
      const named = plainRequestTarget(head, this.ctx.plain.port);
      if (!named.ok) return this.closeWith(named.status, named.reason);
      this.plainTarget = { host: named.host, port: named.port };
      this.event.host = named.host;
      this.event.port = named.port;
    }
    const sni = this.name;
    // The endpoint was claimed by SNI: a request the rules could misread (a
    // Host or target naming another server, a method or path the upstream
    // may take otherwise) is refused before any rule sees it, and the
    // connection closed, since its framing is no longer trusted.
    // A kubernetes endpoint also bridges SPDY/3.1 (kubectl's exec falls back to it).
    const upgrades = this.claiming()?.family === "k8s" ? KUBERNETES_UPGRADES : undefined;
    const shape = checkRequestShape(head, sni, [], upgrades);
    if (!shape.ok) return this.closeWith(shape.status, shape.reason);
    this.target = shape.target;
    this.event.path = shape.target;
    // GET and HEAD carry no content (RFC 9110 §9.3.1-2); servers that ignore
    // a body there read it as the next request, which no rule judged.
    if ((head.method === "GET" || head.method === "HEAD") && hasContent(head)) {
      return this.closeWith(400, `a ${head.method} request with a body is not forwarded`);
    }
    this.endpoint = this.claiming();
    if (!this.endpoint && this.plainTarget) return this.unclaimedPlain(this.plainTarget);
    if (!this.endpoint) {
      this.step = "decided";
      return [
        {
          type: "reply",
          data: denyResponse(403, undefined, `no endpoint claims ${sni}`, !this.done),
          close: !(this.done && head.keepAlive),
          event: { ...this.event, status: 403, verdict: "deny", reason: `no endpoint claims ${sni} any more` },
        },
      ];
    }
    this.event.endpoint = this.endpoint.ref;
    // Collect the body when a rule may read it. A client waiting on
    // `Expect: 100-continue` gets our 100 first, since we read before deciding.
    if (!this.done && needsBody(policy, this.endpoint, device.profile)) return [this.readBody("rules-body")];
    if (!this.done && head.bodyKind.kind === "chunked") {
      // What of a chunked body already arrived is taken now (never waited
      // for: a streaming upload must not stall): when it is whole, it goes
      // out with a Content-Length, which an upstream that does not speak
      // chunked cannot misread as requests.
      this.step = "arrived-body";
      return [{ type: "read-body", wait: false, atMost: this.ctx.policy.defaults.inspectLimitBytes - this.bytes, sendContinue: false }];
    }
    return this.judge();
  }

  /** Plain HTTP to a host no endpoint claims: `unknown_host` decides, no rule runs. */
  private unclaimedPlain(p: { host: string; port: number }): DeciderCommand[] {
    const what = `no endpoint claims ${p.host}:${p.port}`;
    if (this.ctx.policy.defaults.unknownHost === "deny") return this.refuse(403, `${what} (unknown_host = deny)`);
    this.unclaimed = true;
    this.event.verdict = "passthrough";
    this.event.reason = `${what} (unknown_host = passthrough)`;
    return this.credentialAndForward();
  }

  private readBody(step: "rules-body" | "approval-body"): DeciderCommand {
    this.step = step;
    const sendContinue = this.head!.expectContinue && !this.sentContinue;
    if (sendContinue) this.sentContinue = true;
    return { type: "read-body", wait: true, atMost: this.ctx.policy.defaults.inspectLimitBytes - this.bytes, sendContinue };
  }

  private onBody(chunks: Uint8Array[], done: boolean): DeciderCommand[] {
    for (const c of chunks) {
      this.chunks.push(c);
      this.bytes += c.length;
    }
    if (done) this.done = true;
    const step = this.step;
    // A waiting read stops past the limit: the rest of the body is unread.
    if (step !== "arrived-body") this.truncated = !this.done;
    if (step === "approval-body") return this.hold();
    return this.judge();
  }

  private judge(): DeciderCommand[] {
    const { policy, device } = this.ctx;
    const sni = this.name;
    const head = this.head!;
    const endpoint = this.endpoint!;
    const limit = policy.defaults.inspectLimitBytes;
    const body = this.chunks.length > 0 ? concat(this.chunks, Math.min(this.bytes, limit)) : undefined;
    const http = httpFactsFromRequest(head.method, sni, head.target, head.headers, body, this.truncated, this.plainTarget ? "http" : "https");
    const ctx = { device: device.name, profile: device.profile, endpoint };
    // A family that judges more than the request (clickhouse_https: the SQL it carries) gets its own facts.
    const facts = endpoint.family === "clickhouse_http" ? clickhouseHttpFacts(http, head.target, body, this.truncated) : http;
    if (facts !== http) this.event.action = sqlFamily.action((facts as ClickHouseHttpFacts).sql);
    if (endpoint.family === "k8s") {
      this.k8s = kubernetesDecision(policy, ctx, http, this.target);
      Object.assign(this.event, this.k8s.event);
    }
    const decision = this.k8s?.decision ?? judge(policy, ctx, facts);
    this.decision = decision;
    this.event.rule = decision.rule;
    if (decision.shadow) this.event.shadow = decision.shadow;
    const out: DeciderCommand[] = [];
    if (decision.detail) {
      out.push({ type: "log", level: "warn", message: "rule evaluation failed closed", fields: { rule: decision.rule, detail: decision.detail } });
    }
    if (decision.verdict === "deny") {
      // Over a rule's rate or a spend budget: 429 with when to try again (RFC 6585 §4), not a 403.
      const later = decision.limited ?? decision.overBudget;
      if (later) this.retryAfterS = Math.max(1, Math.ceil(later.retryAfterMs / 1000));
      return [...out, ...this.refuse(later ? 429 : 403, decision.reason, decision.detail)];
    }
    if (decision.verdict === "approve") {
      // A spent budget's approval is the budget's own, whichever rule (or the default) allowed the request.
      const rule = decision.overBudget ? budgetRule(decision, endpoint) : policy.rules.find((r) => r.name === decision.rule);
      if (!this.ctx.approvals || !rule || !decision.approvers) {
        return [...out, ...this.refuse(403, `${decision.reason} (approval required; no approver is available)`)];
      }
      this.rule = rule;
      // Approvers see the body (bounded), and identical retries are known by it.
      if (!this.done) return [...out, this.readBody("approval-body")];
      return [...out, ...this.hold()];
    }
    return [...out, ...this.credentialAndForward()];
  }

  private hold(): DeciderCommand[] {
    const { device, policy } = this.ctx;
    const sni = this.name;
    const head = this.head!;
    const decision = this.decision!;
    const rule = this.rule!;
    const shown = this.chunks.length > 0 ? concat(this.chunks, Math.min(this.bytes, policy.defaults.inspectLimitBytes)) : undefined;
    const request = buildApprovalRequest({
      time: this.ctx.now,
      device: device.name,
      profile: device.profile,
      endpoint: this.endpoint!.ref,
      rule: rule.name,
      reason: decision.reason,
      method: head.method,
      host: sni,
      path: head.target,
      headers: head.headers,
      body: shown,
      bodyTruncated: this.truncated,
      redact: this.ctx.redact,
    });
    this.step = "approval";
    return [{ type: "hold", request, rule, chain: decision.approvers!, operationId: getHeader(head.headers, OPERATION_HEADER) }];
  }

  private onApproval(outcome: HoldOutcome): DeciderCommand[] {
    const close = !this.done || !this.head!.keepAlive;
    if (outcome.status === "pending") {
      this.step = "decided";
      const reason = `held for approval (operation ${outcome.operation})`;
      return [
        {
          type: "reply",
          data: pendingResponse(outcome.operation, outcome.retryAfterS, close),
          close,
          event: { ...this.event, status: 202, verdict: "pending", reason, bytesUp: this.bytes },
        },
      ];
    }
    if (outcome.status === "refused") {
      this.step = "decided";
      return [
        {
          type: "reply",
          data: refusedOperationResponse(outcome.httpStatus, outcome.code, outcome.reason, close),
          close,
          event: { ...this.event, status: outcome.httpStatus, verdict: "deny", reason: outcome.reason, bytesUp: this.bytes },
        },
      ];
    }
    const result = outcome.result;
    this.event.approvers = result.approvals.map((a) => a.approver).join(",") || undefined;
    const operators = result.approvals.map((a) => a.operator).filter((o): o is string => Boolean(o));
    if (operators.length > 0) this.event.operator = operators.join(",");
    this.event.approvalMs = result.latencyMs;
    if (result.remembered) this.event.remembered = true;
    if (result.decision !== "allow") return this.refuse(403, result.reason);
    return this.credentialAndForward();
  }

  /** Credential: only what the device's profile grants, with a value we hold; then the outbound request. */
  private credentialAndForward(): DeciderCommand[] {
    const { policy, device } = this.ctx;
    const head = this.head!;
    // A plain-HTTP request no endpoint claims was judged by no rule.
    const decision = this.unclaimed ? undefined : this.decision!;
    const isUpgrade = head.upgrade !== undefined;

    // The outbound head: hop-by-hop headers are ours, the credential slot is ours.
    // stripHopByHop returns a copy (fresh pairs too): the parsed head stays as read.
    const headers: HeaderList = stripHopByHop(head.headers);
    if (isUpgrade) {
      setHeader(headers, "Connection", "Upgrade");
      setHeader(headers, "Upgrade", head.upgrade!);
    }
    if (this.sentContinue) removeHeader(headers, "expect");
    // Framing is ours: written below from what the parser read, never the agent's.
    removeHeader(headers, "content-length");
    removeHeader(headers, "transfer-encoding");
    const outbound: OutboundHead = { method: head.method, target: this.target, headers };
    let needles: string[] = [];
    let clientCert: ClientCertificate | undefined;
    let meter: LlmProvider | undefined;
    if (decision?.credential && this.plainTarget && !allowsPlaintextCredentials(this.endpoint!)) {
      // Never in clear unless the endpoint says so: the request goes as the agent sent it.
      this.event.detail = `credential ${decision.credential} not injected over plain HTTP (the endpoint does not set allow_plaintext_credentials)`;
    } else if (decision?.credential) {
      const credential = policy.credentials.get(decision.credential);
      const profile = policy.profiles.get(device.profile);
      if (!credential) return this.refuse(403, `credential ${decision.credential} is not configured`);
      if (!profile || !profile.credentials.includes(credential.ref)) {
        return this.refuse(403, `profile "${device.profile}" is not granted ${credential.ref}`);
      }
      this.event.credential = credential.ref;
      const resolved = this.ctx.secretFor(credential);
      if (!resolved.ok) {
        return [
          { type: "log", level: "error", message: "credential unavailable", fields: { credential: credential.ref, reason: resolved.reason } },
          ...this.refuse(502, `credential ${credential.ref} has no value configured on the gateway`, undefined, "error"),
        ];
      }
      // A Connection option naming the slot would have a hop drop the credential.
      const slots = credentialSlots(credential);
      if (slots.some((h) => hasToken(head.headers, "connection", h))) return this.refuse(400, "Connection names the credential's header");
      pluginFor(credential.type).inject(outbound, resolved.value, credential);
      needles = resolved.needles;
      clientCert = kubernetesClientCert(credential, resolved.value);
      meter = providerOf(credential.type);
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
    const dechunk = head.bodyKind.kind === "chunked" && this.done;
    const chunked = head.bodyKind.kind === "chunked" && !dechunk;
    if (head.bodyKind.kind === "length") setHeader(outbound.headers, "Content-Length", String(head.bodyKind.length));
    if (dechunk) setHeader(outbound.headers, "Content-Length", String(this.bytes));
    if (chunked) setHeader(outbound.headers, "Transfer-Encoding", "chunked");
    this.step = "decided";
    const p = this.plainTarget;
    return [
      {
        type: "forward",
        ...(this.endpoint ? { endpoint: this.endpoint } : {}),
        ...(p ? { upstream: { host: p.host, port: p.port, claimed: this.endpoint !== undefined } } : {}),
        head: outbound,
        body: [...this.chunks],
        bodyBytes: this.bytes,
        complete: this.done,
        chunked,
        needles,
        ...(clientCert ? { clientCert } : {}),
        ...(meter ? { meter } : {}),
        event: decision ? { ...this.event, reason: decision.reason } : { ...this.event },
      },
    ];
  }

  /** Refused before any rule: answered and closed (the framing is no longer trusted). */
  private closeWith(status: number, reason: string): DeciderCommand[] {
    this.step = "decided";
    return [{ type: "reply", data: denyResponse(status, undefined, reason, true), close: true, event: { ...this.event, status, verdict: "deny", reason } }];
  }

  /** A refusal in HTTP's own form, after draining a small rest of the body so the connection can go on. */
  private refuse(status: number, reason: string, detail?: string, verdict = "deny"): DeciderCommand[] {
    this.refusal = { status, reason, detail, verdict };
    // A large or unbounded rest is cut off by closing instead; an agent
    // waiting on 100-continue sends none.
    if (!this.done && this.bytes < DRAIN_LIMIT && !hasToken(this.head!.headers, "expect", "100-continue")) {
      this.step = "drain";
      return [{ type: "drain", atMost: DRAIN_LIMIT - this.bytes }];
    }
    return this.refused(this.bytes);
  }

  private onDrained(bytes: number, done: boolean): DeciderCommand[] {
    if (done) this.done = true;
    return this.refused(this.bytes + bytes);
  }

  private refused(bytesUp: number): DeciderCommand[] {
    const r = this.refusal!;
    this.step = "decided";
    const close = !this.done || !this.head!.keepAlive;
    const event: EventFields = { ...this.event, status: r.status, verdict: r.verdict, reason: r.reason, bytesUp };
    if (r.detail) event.detail = r.detail;
    const rule = this.decision?.rule;
    const data = this.k8s
      ? kubernetesRefusal(r.status, rule, r.reason, close, this.k8s)
      : this.endpoint?.type === "clickhouse_https"
        ? clickhouseDenyResponse(r.status, rule, r.reason, close)
        : denyResponse(r.status, rule, r.reason, close, this.retryAfterS);
    return [{ type: "reply", data, close, event }];
  }

  private expect(step: typeof this.step, got: string): void {
    if (this.step !== step) this.unexpected(got);
  }

  private unexpected(got: string): never {
    throw new Error(`exchange decider: ${got} event while awaiting ${this.step}`);
  }
}

export function denyResponse(status: number, rule: string | undefined, reason: string, close: boolean, retryAfterS?: number): Uint8Array {
  const body = JSON.stringify({ error: "denied by clawpatrol", rule: rule ?? null, reason }) + "\n";
  const headers: HeaderList = [["Content-Type", "application/json"]];
  if (retryAfterS !== undefined) headers.push(["Retry-After", String(retryAfterS)]);
  if (close) headers.push(["Connection", "close"]);
  return simpleResponse(status, headers, body);
}

/** The endpoint claiming the server name for the profile; of several (one host, different ports), the one claiming the port. */
/**
 * The endpoint intercepted by this name: of those claimed by SNI (one
 * claimed by address may share the name: clickhouse_native beside
 * clickhouse_https), the one claiming the dialed port (two clusters on one
 * address), else the best match.
 */
function claimingEndpoint(policy: Policy, sni: string, profile: string, port: number | undefined): Endpoint | undefined {
  const all = matchEndpoints(policy, sni, profile).filter((e) => specOf(e.type).claim === "sni");
  if (port === undefined) return all[0];
  return all.find((e) => (e.ports ?? specOf(e.type).defaultPorts).includes(port)) ?? all[0];
}

/**
 * The host and port a plain-HTTP request names: an absolute-form `http://`
 * target (the explicit proxy; port 80 unless given), else, in the tunnel
 * (`dialedPort`), its Host on the dialed port. The Host must name the same
 * host (checkRequestShape holds it to that).
 */
export function plainRequestTarget(
  head: RequestHead,
  dialedPort: number | undefined,
): { ok: true; host: string; port: number } | { ok: false; status: 400; reason: string } {
  const abs = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)/i.exec(head.target);
  if (abs) {
    if (abs[1]!.toLowerCase() !== "http") return { ok: false, status: 400, reason: `a ${abs[1]}:// request is not forwarded as plain HTTP (use CONNECT)` };
    const authority = parseHostField(abs[2]!);
    if (!authority) return { ok: false, status: 400, reason: "malformed authority in the request target" };
    return { ok: true, host: authority.name, port: dialedPort ?? authority.port ?? PLAIN_HTTP_PORT };
  }
  if (dialedPort === undefined) return { ok: false, status: 400, reason: "a proxy request needs an absolute-form http:// target" };
  const hosts = head.headers.filter(([n]) => n.toLowerCase() === "host");
  const host = hosts.length === 1 ? parseHostField(hosts[0]![1]) : undefined;
  if (!host) return { ok: false, status: 400, reason: hosts.length === 1 ? "malformed Host header" : "a plain-HTTP request needs exactly one Host header" };
  return { ok: true, host: host.name, port: dialedPort };
}

function hasContent(head: RequestHead): boolean {
  return head.bodyKind.kind === "chunked" || (head.bodyKind.kind === "length" && head.bodyKind.length > 0);
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

/** The rule an over-budget approval is held under: named after the budget, so approvers see what ran out. */
function budgetRule(decision: Decision, endpoint: Endpoint): Rule {
  const budget = decision.overBudget!;
  return {
    name: `budget of ${budget.budget}`,
    endpoints: [endpoint.ref],
    family: endpoint.family,
    priority: 0,
    disabled: false,
    readsDeferred: false,
    approve: decision.approvers ?? [],
    reason: decision.reason,
    source: endpoint.source,
  };
}
