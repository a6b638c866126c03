// One agent's PostgreSQL session through the gateway, as a sans-IO state
// machine: events in (bytes from either side, the upstream's readiness, the
// verdicts it asked for), commands out (bytes to send, TLS to start, a
// verdict to ask for, a statement to record). The shell (serve.ts) owns the
// sockets, the clock's timers and the policy; tests drive this as playbooks.
//
//  1. startup: SSLRequest -> 'S' and TLS with the gateway's leaf (the device
//     trusts its CA); GSSENCRequest -> 'N'; CancelRequest -> mapped to the
//     upstream's key by the shell; StartupMessage -> keep database and
//     application_name, open the upstream.
//  2. upstream: StartupMessage as the credential's user, SCRAM (or what the
//     endpoint allows) with the real password, then the server's
//     ParameterStatus and ReadyForQuery reach the agent after our own
//     AuthenticationOk and BackendKeyData. The agent never authenticates:
//     the tunnel already did. An upstream authentication failure is 28P01
//     naming neither the real user nor the secret.
//  3. ready: every Query (each statement in it), Parse and FunctionCall is
//     judged before it is forwarded; other messages pass in order. A deny
//     is answered by the server itself: the gateway sends, in place of the
//     denied message, a statement that raises 42501 with the rule's reason,
//     so the server's transaction fails exactly as the client is told it
//     did, and the extended protocol's discard-until-Sync happens on both
//     sides. The gateway drops the client's remaining messages up to Sync.
//  4. responses: forwarded as they come; CommandComplete, ErrorResponse and
//     ReadyForQuery are read to record one event per statement (rows,
//     duration, verdict) and to know the transaction status.
import {
  FrontendParser,
  serializeBind,
  serializeExecute,
  serializeParse,
  serializeQuery,
  serializeStartupMessage,
  type FrontendMessage,
} from "./wire/frontend.ts";
import {
  BackendParser,
  serializeAuthenticationOk,
  serializeBackendKeyData,
  serializeEncryptionResponse,
  serializeErrorResponse,
  serializeParameterStatus,
  serializeReadyForQuery,
  type BackendMessage,
} from "./wire/backend.ts";
import type { TransactionStatus } from "./wire/codes.ts";
import { joinViews } from "./wire/bytes.ts";
import { DENY_SQLSTATE, raiseStatement } from "./deny.ts";
import { ResponseLedger, type ActionOutcome, type StatementRecord } from "./ledger.ts";

export type { ActionOutcome, StatementRecord } from "./ledger.ts";
import type { WireError } from "./wire/error.ts";
import type { SqlFacts, SqlStatementFacets } from "../../families/sql/family.ts";
import { UpstreamAuth } from "./auth/upstream.ts";

/** What the shell found when it opened the upstream. */
export interface UpstreamReady {
  tls: boolean;
  /** RFC 5929 tls-server-end-point data of the server certificate, for SCRAM-SHA-256-PLUS. */
  channelBinding?: Uint8Array;
}

/** The verdict on the actions of one message (every statement of a simple Query). */
export interface MessageVerdict {
  outcomes: ActionOutcome[];
}

export type SessionEvent =
  | { type: "agent-data"; data: Uint8Array }
  /** TLS with the agent is up; later agent-data is decrypted. */
  | { type: "agent-tls-ready" }
  | { type: "agent-closed" }
  | ({ type: "upstream-ready" } & UpstreamReady)
  | { type: "upstream-failed"; reason: string }
  | { type: "upstream-data"; data: Uint8Array }
  | { type: "upstream-closed" }
  | { type: "verdict"; id: number; verdict: MessageVerdict };

export type SessionCommand =
  | { type: "send-agent"; data: Uint8Array }
  | { type: "send-upstream"; data: Uint8Array }
  /** Answer-to-SSLRequest was sent: wrap the agent's stream in TLS now. */
  | { type: "start-agent-tls" }
  /** Dial the upstream (and negotiate TLS per the endpoint's sslmode), then report upstream-ready or upstream-failed. */
  | { type: "open-upstream" }
  /** Judge these actions (rules, approvals); reply with a verdict event carrying `id`. */
  | { type: "judge"; id: number; actions: SqlFacts[]; kind: "statement" | "function-call" }
  /** A CancelRequest arrived: the shell maps the gateway's key to the upstream session's and cancels there. */
  | { type: "cancel"; processId: number; secretKey: Uint8Array }
  /** The session's keys are known: the gateway's (given to the agent) and the upstream's. */
  | { type: "register-keys"; processId: number; secretKey: Uint8Array; upstreamProcessId: number; upstreamSecretKey: Uint8Array }
  | { type: "record"; record: StatementRecord }
  | { type: "close" }
  | { type: "log"; level: "debug" | "info" | "warn"; message: string; fields?: Record<string, unknown> };

export interface SessionOptions {
  /** The credential's user and secret for the upstream. */
  credential: { user: string; password: string } | undefined;
  allowMd5: boolean;
  /** Whether the gateway can terminate the agent's TLS (it has a leaf for the endpoint's host). */
  agentTls: boolean;
  now(): number;
  /** SQL text -> facets of each statement (the real parser; cached); ok:false leaves facets unknown. */
  parse(text: string): { ok: true; statements: SqlStatementFacets[] } | { ok: false; error: string };
  /** Whether any rule that applies reads the parsed facets (else nothing is parsed). */
  needsFacets: boolean;
  /**
   * The policy in force (any value that changes when it is reloaded). A
   * prepared statement judged under another is judged again at its next
   * Bind: a reload may have changed its verdict. Absent: one policy for the
   * session's life.
   */
  policyVersion?: () => unknown;
  /** The gateway's own BackendKeyData for this session. */
  processId: number;
  secretKey: Uint8Array;
  /** SCRAM nonce source (tests pass a fixed one). */
  nonce?: () => string;
}

/**
 * Startup parameters forwarded from the agent (besides `database`, which is
 * kept, and `user`, which is the credential's). Others set server settings no
 * rule saw (`options=-c role=...`, `-c session_replication_role=...`), so
 * they are dropped; the agent can still `SET` them, where rules judge it.
 */
const FORWARDED_STARTUP = new Set(["application_name", "client_encoding", "DateStyle", "TimeZone", "IntervalStyle", "extra_float_digits"]);

type State =
  | "startup"
  | "agent-tls"
  | "connecting"
  | "authenticating"
  | "ready"
  | "closed";

interface PreparedStatement {
  actions: SqlFacts[];
  outcomes: ActionOutcome[];
  /** The policy it was judged under (SessionOptions.policyVersion). */
  policy: unknown;
}

export class PostgresSession {
  private state: State = "startup";
  private readonly frontend = new FrontendParser();
  private readonly backend = new BackendParser();
  private out: SessionCommand[] = [];
  private params = new Map<string, string>();
  private database = "";
  private agentUser = "";
  private auth: UpstreamAuth | undefined;
  private status: TransactionStatus = "I";
  /** A message waiting for its verdict: nothing after it is read meanwhile. */
  private waiting: { id: number; message: FrontendMessage; actions: SqlFacts[] } | undefined;
  private nextJudgeId = 1;
  private discardUntilSync = false;
  private readonly ledger = new ResponseLedger();
  private readonly statements = new Map<string, PreparedStatement>();
  private readonly portals = new Map<string, PreparedStatement>();
  private pendingToAgent: Uint8Array[] = [];

  constructor(private readonly opts: SessionOptions) {}

  get transactionStatus(): TransactionStatus {
    return this.status;
  }

  get closed(): boolean {
    return this.state === "closed";
  }

  handle(ev: SessionEvent): SessionCommand[] {
    this.out = [];
    if (this.state !== "closed") {
      switch (ev.type) {
        case "agent-data":
          if (this.state === "agent-tls") {
            this.protocolViolation("bytes before the TLS handshake finished");
            break;
          }
          this.frontend.push(ev.data);
          this.pumpFrontend();
          break;
        case "agent-tls-ready":
          if (this.state === "agent-tls") this.state = "startup";
          this.pumpFrontend();
          break;
        case "agent-closed":
          this.close();
          break;
        case "upstream-ready":
          this.onUpstreamReady(ev);
          break;
        case "upstream-failed":
          this.failStartup("08006", "could not connect to the database server", ev.reason);
          break;
        case "upstream-data":
          this.backend.push(ev.data);
          this.pumpBackend();
          break;
        case "upstream-closed":
          if (this.state === "ready" || this.state === "authenticating") {
            this.flushAgent();
            this.sendError("57P01", "the database server closed the connection");
          }
          this.close();
          break;
        case "verdict":
          this.onVerdict(ev.id, ev.verdict);
          break;
      }
    }
    this.flushAgent();
    return this.out;
  }

  // ---------------------------------------------------------------- agent side

  private pumpFrontend(): void {
    while (this.state !== "closed" && this.state !== "agent-tls" && this.state !== "connecting" && this.waiting === undefined) {
      // Until the upstream is ready, a message after the StartupMessage waits in the parser.
      if (this.state === "authenticating") return;
      const r = this.frontend.next();
      if (r.kind === "need-more") return;
      if (r.kind === "error") {
        this.wireError(r.error);
        return;
      }
      if (this.state === "startup") this.onStartupMessage(r.message);
      else this.onReadyMessage(r.message);
    }
  }

  private onStartupMessage(m: FrontendMessage): void {
    switch (m.type) {
      case "SSLRequest":
        if (!this.opts.agentTls) {
          this.sendAgent(serializeEncryptionResponse(false));
          return;
        }
        // Bytes after the request would be read as plaintext inside TLS (CVE-2021-23214's shape).
        if (this.frontend.buffered > 0) {
          this.protocolViolation("data after SSLRequest before the TLS handshake");
          return;
        }
        this.sendAgent(serializeEncryptionResponse(true));
        this.flushAgent();
        this.out.push({ type: "start-agent-tls" });
        this.state = "agent-tls";
        return;
      case "GSSENCRequest":
        this.sendAgent(serializeEncryptionResponse(false));
        return;
      case "CancelRequest":
        this.out.push({ type: "cancel", processId: m.processId, secretKey: m.secretKey });
        this.close();
        return;
      case "StartupMessage": {
        if (m.major !== 3 || m.minor !== 0) {
          // 3.2 clients retry with 3.0 on this error, as with an older server.
          this.failStartup("0A000", `unsupported frontend protocol ${m.major}.${m.minor}: the gateway speaks 3.0`);
          return;
        }
        const user = m.parameters.get("user");
        if (!user) {
          this.failStartup("28000", "no PostgreSQL user name specified in startup packet");
          return;
        }
        const replication = m.parameters.get("replication");
        if (replication !== undefined && !["false", "off", "no", "0"].includes(replication.toLowerCase())) {
          this.failStartup("42501", "replication connections are not allowed through the gateway");
          return;
        }
        this.agentUser = user;
        this.database = m.parameters.get("database") || user;
        const dropped: string[] = [];
        for (const [k, v] of m.parameters) {
          if (FORWARDED_STARTUP.has(k)) this.params.set(k, v);
          else if (k !== "user" && k !== "database" && k !== "replication") dropped.push(k);
        }
        if (dropped.length > 0) this.out.push({ type: "log", level: "info", message: "startup parameters not forwarded", fields: { parameters: dropped.join(",") } });
        if (!this.opts.credential) {
          this.failStartup("28P01", `no credential is configured for this database`);
          return;
        }
        this.state = "connecting";
        this.out.push({ type: "open-upstream" });
        return;
      }
      default:
        this.protocolViolation(`${m.type} before the startup message`);
    }
  }

  private onReadyMessage(m: FrontendMessage): void {
    switch (m.type) {
      case "Query": {
        const actions = this.factsOf(m.sql, m.utf8);
        if (actions.length === 0) {
          // An empty query judges nothing; the server answers EmptyQueryResponse.
          this.sendUpstream(m.raw);
          this.ledger.push({ kind: "query", actions: [], outcomes: [], index: 0, failed: false, startedAt: this.opts.now() });
          return;
        }
        this.ask(m, actions, "statement");
        return;
      }
      case "Parse":
        if (this.discardUntilSync) return;
        this.ask(m, this.factsOf(m.sql, m.utf8), "statement");
        return;
      case "FunctionCall": {
        const facts: SqlFacts = {
          database: this.database,
          user: this.agentUser,
          text: `FunctionCall ${m.functionOid}`,
          facets: { verb: "functioncall", tables: [], functions: [`oid:${m.functionOid}`], statement: `FunctionCall ${m.functionOid}` },
        };
        this.ask(m, [facts], "function-call");
        return;
      }
      case "Bind": {
        if (this.discardUntilSync) return;
        const prepared = this.statements.get(m.statement);
        // Judged at Parse; again only when the policy was reloaded since (fail closed: held until then).
        if (prepared && prepared.actions.length > 0 && prepared.policy !== this.opts.policyVersion?.()) {
          this.ask(m, prepared.actions, "statement");
          return;
        }
        if (prepared) this.portals.set(m.portal, prepared);
        else this.portals.delete(m.portal);
        this.sendUpstream(m.raw);
        return;
      }
      case "Execute": {
        if (this.discardUntilSync) return;
        const prepared = this.portals.get(m.portal);
        this.ledger.push({
          kind: "execute",
          actions: prepared?.actions ?? [],
          outcomes: prepared?.outcomes ?? [],
          startedAt: this.opts.now(),
        });
        this.sendUpstream(m.raw);
        return;
      }
      case "Close":
        if (this.discardUntilSync) return;
        if (m.kind === "S") this.statements.delete(m.name);
        else this.portals.delete(m.name);
        this.sendUpstream(m.raw);
        return;
      case "Describe":
        if (this.discardUntilSync) return;
        this.sendUpstream(m.raw);
        return;
      case "Sync":
        this.discardUntilSync = false;
        this.ledger.push({ kind: "sync" });
        this.sendUpstream(m.raw);
        return;
      case "Flush":
        // Even while discarding: the server must send the denial it owes.
        this.sendUpstream(m.raw);
        return;
      case "Terminate":
        this.sendUpstream(m.raw);
        this.close();
        return;
      case "CopyData":
      case "CopyDone":
      case "CopyFail":
        // Part of a COPY FROM STDIN the statement's verdict already allowed;
        // outside COPY the server ignores them (as it does without the gateway).
        this.sendUpstream(m.raw);
        return;
      case "PasswordMessage":
        this.protocolViolation("a password message after authentication");
        return;
      case "StartupMessage":
      case "SSLRequest":
      case "GSSENCRequest":
      case "CancelRequest":
        this.protocolViolation(`${m.type} after startup`);
        return;
    }
  }

  private factsOf(sql: string, utf8: boolean): SqlFacts[] {
    const base = { database: this.database, user: this.agentUser };
    if (!utf8) return [{ ...base, text: sql, unknownReason: "the statement is not valid UTF-8" }];
    if (!this.opts.needsFacets) {
      // No applicable rule reads the parse: one action for the whole text.
      return sql.trim() === "" ? [] : [{ ...base, text: sql }];
    }
    const parsed = this.opts.parse(sql);
    if (!parsed.ok) return [{ ...base, text: sql, unknownReason: parsed.error }];
    return parsed.statements.map((facets) => ({ ...base, text: facets.statement, facets }));
  }

  private ask(message: FrontendMessage, actions: SqlFacts[], kind: "statement" | "function-call"): void {
    const id = this.nextJudgeId++;
    this.waiting = { id, message, actions };
    this.out.push({ type: "judge", id, actions, kind });
  }

  private onVerdict(id: number, verdict: MessageVerdict): void {
    const w = this.waiting;
    if (!w || w.id !== id) return;
    this.waiting = undefined;
    const { message, actions } = w;
    const denied = verdict.outcomes.find((o) => !o.allow) ?? (verdict.outcomes.length < actions.length ? { allow: false, reason: "not judged" } : undefined);
    const now = this.opts.now();
    if (denied) {
      actions.forEach((facts, i) => {
        const o = verdict.outcomes[i];
        const own = o && !o.allow ? o : undefined;
        this.record({
          facts,
          verdict: "deny",
          ...(own?.rule !== undefined ? { rule: own.rule } : denied.rule !== undefined ? { rule: denied.rule } : {}),
          reason: own ? own.reason : `another statement in the message was denied: ${denied.reason}`,
          sqlstate: DENY_SQLSTATE,
          startedAt: now,
          durationMs: 0,
          ...(o?.approval ? { approval: o.approval } : {}),
        });
      });
      this.deny(message, denied.reason);
    } else {
      this.allow(message, actions, verdict.outcomes, now);
    }
    this.pumpFrontend();
  }

  private allow(message: FrontendMessage, actions: SqlFacts[], outcomes: ActionOutcome[], now: number): void {
    switch (message.type) {
      case "Query":
        this.ledger.push({ kind: "query", actions, outcomes, index: 0, failed: false, startedAt: now });
        break;
      case "Parse":
        this.statements.set(message.name, { actions, outcomes, policy: this.opts.policyVersion?.() });
        break;
      case "Bind": {
        // A prepared statement judged again under the reloaded policy.
        const prepared = { actions, outcomes, policy: this.opts.policyVersion?.() };
        this.statements.set(message.statement, prepared);
        this.portals.set(message.portal, prepared);
        break;
      }
      case "FunctionCall":
        // Answered by FunctionCallResponse (or an error) and ReadyForQuery, like a query.
        this.ledger.push({ kind: "query", actions, outcomes, index: 0, failed: false, startedAt: now });
        break;
      default:
        break;
    }
    this.sendUpstream(message.raw);
  }

  /** The denial, raised by the server itself so both sides agree on the transaction's state. */
  private deny(message: FrontendMessage, reason: string): void {
    const raise = raiseStatement(reason);
    if (message.type === "Parse" || message.type === "Bind") {
      // Extended protocol: our raise in place of the statement (or of the
      // Bind of a prepared one the reloaded policy denies: it stays prepared
      // and is judged again at its next Bind); the agent's
      // Bind/Execute/Describe up to Sync are dropped, the server skips to Sync after the error.
      if (message.type === "Parse") this.statements.delete(message.name);
      else this.portals.delete(message.portal);
      this.ledger.push({ kind: "denied", simple: false, swallow: 2 });
      this.sendUpstream(serializeParse("", raise));
      this.sendUpstream(serializeBind({ portal: "", statement: "", paramFormats: [], params: [], resultFormats: [] }));
      this.sendUpstream(serializeExecute("", 0));
      this.discardUntilSync = true;
      return;
    }
    // Query and FunctionCall end with ReadyForQuery: a simple query raising the error does too.
    this.ledger.push({ kind: "denied", simple: true, swallow: 0 });
    this.sendUpstream(serializeQuery(raise));
  }

  // ------------------------------------------------------------- upstream side

  private onUpstreamReady(ev: UpstreamReady): void {
    if (this.state !== "connecting" || !this.opts.credential) return;
    const startup: [string, string][] = [
      ["user", this.opts.credential.user],
      ["database", this.database],
      ...this.params,
    ];
    this.auth = new UpstreamAuth({
      user: this.opts.credential.user,
      password: this.opts.credential.password,
      allowMd5: this.opts.allowMd5,
      overTls: ev.tls,
      ...(ev.channelBinding ? { channelBinding: ev.channelBinding } : {}),
      ...(this.opts.nonce ? { nonce: this.opts.nonce } : {}),
    });
    this.state = "authenticating";
    this.sendUpstream(serializeStartupMessage(startup));
  }

  private pumpBackend(): void {
    for (;;) {
      if (this.state === "closed") return;
      const r = this.backend.next();
      if (r.kind === "need-more") return;
      if (r.kind === "error") {
        this.out.push({ type: "log", level: "warn", message: "the database server sent a malformed message", fields: { reason: r.error.reason } });
        this.flushAgent();
        this.sendError("08P01", "the database server sent a malformed message");
        this.close();
        return;
      }
      const m = r.message;
      switch (this.state) {
        case "authenticating":
          this.onAuthMessage(m);
          break;
        case "ready":
          this.onResponse(m);
          break;
        default:
          break;
      }
    }
  }

  private onAuthMessage(m: BackendMessage): void {
    const step = this.auth!.receive(m);
    switch (step.kind) {
      case "continue":
        return;
      case "send":
        this.sendUpstream(step.bytes);
        return;
      case "failed": {
        const f = step.failure;
        // Authentication failures are 28P01 toward the agent, whatever the server's class-28 code.
        this.failStartup(f.sqlstate.startsWith("28") ? "28P01" : f.sqlstate, f.agentMessage, f.logDetail);
        return;
      }
      case "ok": {
        const session = step.session;
        this.status = session.transactionStatus;
        this.sendAgent(serializeAuthenticationOk());
        for (const [name, value] of session.parameters) this.sendAgent(serializeParameterStatus(name, value));
        for (const notice of session.notices) this.sendAgent(notice);
        this.sendAgent(serializeBackendKeyData(this.opts.processId, this.opts.secretKey));
        this.sendAgent(serializeReadyForQuery(session.transactionStatus));
        if (session.backendKey) {
          this.out.push({
            type: "register-keys",
            processId: this.opts.processId,
            secretKey: this.opts.secretKey,
            upstreamProcessId: session.backendKey.processId,
            upstreamSecretKey: session.backendKey.secretKey,
          });
        }
        this.out.push({ type: "log", level: "debug", message: "postgres session ready", fields: { method: session.method } });
        this.state = "ready";
        this.pumpFrontend();
        return;
      }
    }
  }

  private onResponse(m: BackendMessage): void {
    const now = this.opts.now();
    switch (m.type) {
      case "ParseComplete":
      case "BindComplete":
        if (this.ledger.owedForRaise()) return;
        break;
      case "CommandComplete":
        this.records(this.ledger.completed(m.rows ?? undefined, now));
        break;
      case "EmptyQueryResponse":
        this.records(this.ledger.completed(undefined, now));
        break;
      case "PortalSuspended":
        this.records(this.ledger.suspended(now));
        break;
      case "ErrorResponse": {
        const { records, ourRaise } = this.ledger.failed(m.fields.code, m.fields.message, now);
        this.records(records);
        if (ourRaise && m.fields.code === DENY_SQLSTATE) {
          // Our raise: the agent gets the denial without the PL/pgSQL context lines.
          this.sendAgent(serializeErrorResponse({ severity: "ERROR", code: DENY_SQLSTATE, message: m.fields.message ?? "denied by clawpatrol" }));
          return;
        }
        break;
      }
      case "ReadyForQuery":
        this.status = m.status;
        this.ledger.readyForQuery();
        break;
      default:
        break;
    }
    this.sendAgent(m.raw);
  }

  // ------------------------------------------------------------------ helpers

  private record(r: StatementRecord): void {
    this.out.push({ type: "record", record: r });
  }

  private records(rs: StatementRecord[]): void {
    for (const r of rs) this.record(r);
  }

  private sendUpstream(data: Uint8Array): void {
    const last = this.out[this.out.length - 1];
    // Consecutive messages leave in one write.
    if (last?.type === "send-upstream") last.data = joinViews([last.data, data]);
    else this.out.push({ type: "send-upstream", data });
  }

  private sendAgent(data: Uint8Array): void {
    this.pendingToAgent.push(data);
  }

  private flushAgent(): void {
    if (this.pendingToAgent.length === 0) return;
    const data = joinViews(this.pendingToAgent);
    this.pendingToAgent = [];
    this.out.push({ type: "send-agent", data });
  }

  private sendError(sqlstate: string, message: string): void {
    this.sendAgent(serializeErrorResponse({ severity: "FATAL", code: sqlstate, message }));
  }

  /** A startup that cannot go on: the agent gets the error, and the connection closes. */
  private failStartup(sqlstate: string, agentMessage: string, logDetail?: string): void {
    this.out.push({ type: "log", level: "info", message: "postgres session refused at startup", fields: { sqlstate, ...(logDetail ? { detail: logDetail } : {}) } });
    this.sendError(sqlstate, agentMessage);
    this.close();
  }

  private wireError(e: WireError): void {
    this.out.push({ type: "log", level: "info", message: "malformed frontend message", fields: { reason: e.reason } });
    this.flushAgent();
    this.sendError(e.sqlstate, `invalid frontend message: ${e.reason}`);
    this.close();
  }

  private protocolViolation(reason: string): void {
    this.wireError({ code: "malformed", sqlstate: "08P01", reason });
  }

  /** Server messages at startup may name the credential's real user; the agent knows only its own. */
  private scrubUser(message: string): string {
    const real = this.opts.credential?.user;
    return real ? message.split(real).join(this.agentUser || "user") : message;
  }

  private close(): void {
    if (this.state === "closed") return;
    this.flushAgent();
    this.state = "closed";
    this.out.push({ type: "close" });
  }
}
