// One agent's ClickHouse native-protocol session through the gateway, as a
// sans-IO state machine: events in (bytes from either side, the upstream's
// readiness, verdicts), commands out (bytes to send, the upstream to open, a
// Query to judge, a record). The shell (serve.ts) owns sockets and policy.
//
//  1. hello: the client's Hello names a user and password (placeholders);
//     both are replaced by the credential's, its revision is capped at
//     GATEWAY_MAX_REVISION, and the upstream is opened.
//  2. server hello: the server's Hello goes back with its revision capped too,
//     so both sides settle on min(client, server, gateway). A refused login
//     (an Exception) is passed back as it came.
//  3. ready: every client packet is framed. A Query is judged before it is
//     forwarded (its SQL read by the ClickHouse dialect, its settings and the
//     SETTINGS clause as sql.settings, USE tracked as sql.database); nothing
//     after it is read meanwhile. Allowed: forwarded as it came. Denied: the
//     agent gets an Exception (497 ACCESS_DENIED, naming the rule and the
//     reason), and the Data and Cancel packets that belong to that query are
//     dropped; the session goes on. Data blocks (compressed or not), Ping,
//     Cancel and TablesStatusRequest pass untouched. Server bytes after its
//     Hello pass untouched.
//  4. a packet that cannot be framed: an Exception to the agent, then close.
import { parseStatements } from "../../families/sql/dialect.ts";
import type { SqlFacts, SqlStatementFacets } from "../../families/sql/family.ts";
import {
  ErrorCode,
  GATEWAY_MAX_REVISION,
  GATEWAY_MIN_REVISION,
  NeedMore,
  Reader,
  WireError,
  readClientPacket,
  readServerHello,
  writeClientHello,
  writeException,
  writeServerHello,
  type ClientHello,
  type QueryPacket,
} from "./wire/packets.ts";

/** The verdict on a Query: its statements judged in order; the first denial decides. */
export interface QueryVerdict {
  allow: boolean;
  reason: string;
  rule?: string;
  detail?: string;
  /** Event fields of a decided approval (approvers, operator, approvalMs, remembered). */
  approval?: Record<string, unknown>;
}

export interface QueryRecord {
  startedAt: number;
  facts: SqlFacts;
  verdict: "allow" | "deny";
  reason: string;
  rule?: string;
  detail?: string;
  queryId: string;
  approval?: Record<string, unknown>;
}

export type SessionEvent =
  | { type: "agent-data"; data: Uint8Array }
  | { type: "agent-closed" }
  | { type: "upstream-ready" }
  | { type: "upstream-failed"; reason: string }
  | { type: "upstream-data"; data: Uint8Array }
  | { type: "upstream-closed" }
  | { type: "verdict"; id: number; verdict: QueryVerdict };

export type SessionCommand =
  | { type: "send-agent"; data: Uint8Array }
  | { type: "send-upstream"; data: Uint8Array }
  | { type: "open-upstream" }
  /** Judge each statement of one Query (rules, approvals); reply with a verdict event carrying `id`. */
  | { type: "judge"; id: number; actions: SqlFacts[] }
  | { type: "record"; record: QueryRecord }
  | { type: "close" }
  | { type: "log"; level: "debug" | "info" | "warn"; message: string; fields?: Record<string, unknown> };

export interface SessionOptions {
  /** The credential's user and secret; undefined: every login is refused. */
  credential: { user: string; password: string } | undefined;
  /** Why there is no credential (told to the agent). */
  credentialProblem?: string;
  now(): number;
}

type State = "hello" | "connecting" | "server-hello" | "ready" | "refused" | "closed";

/** A client may buffer this much before a packet completes (a large Data block); more is a protocol error. */
export const MAX_BUFFERED = 512 * 1024 * 1024;

export class ClickHouseNativeSession {
  private state: State = "hello";
  private out: SessionCommand[] = [];
  private agentBuf: Uint8Array = new Uint8Array(0);
  private upstreamBuf: Uint8Array = new Uint8Array(0);
  private hello: ClientHello | undefined;
  /** The revision sent upstream in our Hello (the client's, capped). */
  private sentRevision = 0;
  /** The revision both sides use. */
  private revision = 0;
  private database = "default";
  private compressed = false;
  /** Data and Cancel packets of a denied Query are dropped until the next packet of another kind. */
  private dropping = false;
  private waiting: { id: number; bytes: Uint8Array; query: QueryPacket; actions: SqlFacts[]; useDatabase?: string; startedAt: number } | undefined;
  private nextId = 1;
  private pendingUpstream: Uint8Array[] = [];

  constructor(private readonly opts: SessionOptions) {}

  get closed(): boolean {
    return this.state === "closed";
  }

  /** The revision both sides settled on (0 until the server's Hello). */
  get negotiatedRevision(): number {
    return this.revision;
  }

  handle(ev: SessionEvent): SessionCommand[] {
    this.out = [];
    if (this.state === "closed") return this.out;
    switch (ev.type) {
      case "agent-data":
        this.agentBuf = append(this.agentBuf, ev.data);
        if (this.agentBuf.length > MAX_BUFFERED) this.protocolError("a packet larger than the gateway buffers");
        else this.pumpAgent();
        break;
      case "agent-closed":
        this.close();
        break;
      case "upstream-ready":
        if (this.state !== "connecting" || !this.hello || !this.opts.credential) break;
        this.state = "server-hello";
        this.out.push({
          type: "send-upstream",
          data: writeClientHello({ ...this.hello, revision: this.sentRevision, user: this.opts.credential.user, password: this.opts.credential.password }),
        });
        break;
      case "upstream-failed":
        this.log("warn", "clickhouse upstream unreachable", { reason: ev.reason });
        this.fail(ErrorCode.ALL_CONNECTION_TRIES_FAILED, "clawpatrol: the ClickHouse server could not be reached");
        break;
      case "upstream-data":
        if (this.state === "ready" || this.state === "refused") {
          this.out.push({ type: "send-agent", data: ev.data });
          break;
        }
        this.upstreamBuf = append(this.upstreamBuf, ev.data);
        this.pumpServerHello();
        break;
      case "upstream-closed":
        this.close();
        break;
      case "verdict":
        this.onVerdict(ev.id, ev.verdict);
        break;
    }
    return this.out;
  }

  // ------------------------------------------------------------ agent side

  private pumpAgent(): void {
    while (this.state !== "closed" && this.waiting === undefined && this.agentBuf.length > 0) {
      if (this.state === "connecting" || this.state === "server-hello" || this.state === "refused") return;
      const r = new Reader(this.agentBuf);
      if (this.state === "hello" && this.agentBuf[0] !== 0) {
        this.fail(ErrorCode.UNEXPECTED_PACKET_FROM_CLIENT, "clawpatrol: the first packet must be Hello");
        return;
      }
      let msg;
      try {
        msg = readClientPacket(r, this.revision, this.compressed);
      } catch (e) {
        if (e instanceof NeedMore) break;
        if (e instanceof WireError) {
          this.protocolError(e.message);
          return;
        }
        throw e;
      }
      const bytes = this.agentBuf.subarray(0, r.pos);
      this.agentBuf = this.agentBuf.subarray(r.pos);
      if (this.state === "hello") {
        if (msg.type === "Hello") this.onHello(msg.hello);
        continue;
      }
      switch (msg.type) {
        case "Hello":
          this.protocolError("a second Hello");
          return;
        case "Query":
          this.onQuery(bytes, msg.query);
          break;
        case "Data":
        case "Cancel":
          if (!this.dropping) this.forward(bytes);
          break;
        case "Ping":
        case "TablesStatusRequest":
          this.dropping = false;
          this.forward(bytes);
          break;
      }
    }
    this.flushUpstream();
  }

  private onHello(hello: ClientHello): void {
    if (hello.revision < GATEWAY_MIN_REVISION) {
      this.fail(ErrorCode.UNEXPECTED_PACKET_FROM_CLIENT, `clawpatrol: client protocol revision ${hello.revision} is older than ${GATEWAY_MIN_REVISION}`);
      return;
    }
    if (!this.opts.credential) {
      this.fail(ErrorCode.AUTHENTICATION_FAILED, `clawpatrol: no credential for this endpoint (${this.opts.credentialProblem ?? "none configured"})`);
      return;
    }
    this.hello = hello;
    this.sentRevision = Math.min(hello.revision, GATEWAY_MAX_REVISION);
    if (hello.database !== "") this.database = hello.database;
    this.state = "connecting";
    this.out.push({ type: "open-upstream" });
  }

  private onQuery(bytes: Uint8Array, query: QueryPacket): void {
    this.flushUpstream();
    this.compressed = query.compression;
    this.dropping = false;
    const startedAt = this.opts.now();
    if (query.queryKind !== 1) {
      // Secondary queries are server-to-server; a client sending one is not a client.
      this.protocolError(`a Query of kind ${query.queryKind} (only initial queries are accepted)`);
      return;
    }
    const base = { database: this.database, user: this.hello?.user ?? "", text: query.query };
    const parsed = parseStatements("clickhouse", query.query);
    let actions: SqlFacts[];
    let useDatabase: string | undefined;
    if (!parsed.ok) actions = [{ ...base, unknownReason: parsed.error }];
    else if (parsed.statements.length === 0) actions = [{ ...base, unknownReason: "an empty query" }];
    else {
      actions = parsed.statements.map((s) => ({ ...base, facets: withPacketSettings(s, query.settings) }));
      const last = parsed.statements[parsed.statements.length - 1] as SqlStatementFacets & { database?: string };
      if (last.verb === "use" && last.database !== undefined) useDatabase = last.database;
    }
    const id = this.nextId++;
    this.waiting = { id, bytes, query, actions, startedAt, ...(useDatabase !== undefined ? { useDatabase } : {}) };
    this.out.push({ type: "judge", id, actions });
  }

  private onVerdict(id: number, verdict: QueryVerdict): void {
    const w = this.waiting;
    if (!w || w.id !== id || this.state !== "ready") return;
    this.waiting = undefined;
    const first = w.actions[0]!;
    const record: QueryRecord = {
      startedAt: w.startedAt,
      facts: first,
      verdict: verdict.allow ? "allow" : "deny",
      reason: verdict.reason,
      queryId: w.query.queryId,
      ...(verdict.rule !== undefined ? { rule: verdict.rule } : {}),
      ...(verdict.detail !== undefined ? { detail: verdict.detail } : {}),
      ...(verdict.approval !== undefined ? { approval: verdict.approval } : {}),
    };
    if (verdict.allow) {
      this.forward(w.bytes);
      this.flushUpstream();
      if (w.useDatabase !== undefined) this.database = w.useDatabase;
    } else {
      const rule = verdict.rule !== undefined ? ` by rule "${verdict.rule}"` : "";
      this.out.push({ type: "send-agent", data: writeException(ErrorCode.ACCESS_DENIED, `clawpatrol: access denied${rule}: ${verdict.reason}`) });
      this.dropping = true;
    }
    this.out.push({ type: "record", record });
    this.pumpAgent();
  }

  // ------------------------------------------------------------ server side

  private pumpServerHello(): void {
    if (this.state !== "server-hello") return;
    const r = new Reader(this.upstreamBuf);
    let first;
    try {
      first = readServerHello(r, this.sentRevision);
    } catch (e) {
      if (e instanceof NeedMore) return;
      if (e instanceof WireError) {
        this.log("warn", "clickhouse server sent a malformed Hello", { error: e.message });
        this.fail(ErrorCode.UNEXPECTED_PACKET_FROM_CLIENT, "clawpatrol: the ClickHouse server's Hello could not be read");
        return;
      }
      throw e;
    }
    if (first.type === "Exception") {
      // A refused login: the server's own words, then it closes.
      this.state = "refused";
      this.out.push({ type: "send-agent", data: this.upstreamBuf });
      this.upstreamBuf = new Uint8Array(0);
      return;
    }
    const hello = first.hello;
    this.revision = Math.min(this.sentRevision, hello.revision);
    const shown = Math.min(hello.revision, GATEWAY_MAX_REVISION);
    this.out.push({ type: "send-agent", data: writeServerHello({ ...hello, revision: shown }, this.revision) });
    const rest = this.upstreamBuf.subarray(r.pos);
    this.upstreamBuf = new Uint8Array(0);
    if (rest.length > 0) this.out.push({ type: "send-agent", data: rest });
    this.state = "ready";
    this.log("debug", "clickhouse session ready", { revision: this.revision, server: `${hello.name} ${hello.major}.${hello.minor}` });
    this.pumpAgent();
  }

  // ------------------------------------------------------------ helpers

  private forward(bytes: Uint8Array): void {
    this.pendingUpstream.push(bytes);
  }

  private flushUpstream(): void {
    if (this.pendingUpstream.length === 0) return;
    const data = this.pendingUpstream.length === 1 ? this.pendingUpstream[0]! : concatAll(this.pendingUpstream);
    this.pendingUpstream = [];
    // Our buffer may be reused by later appends: hand out a copy.
    this.out.push({ type: "send-upstream", data: data.slice() });
  }

  private protocolError(why: string): void {
    this.log("warn", "clickhouse protocol error", { error: why });
    this.fail(ErrorCode.UNKNOWN_PACKET_FROM_CLIENT, `clawpatrol: protocol error: ${why}`);
  }

  private fail(code: number, message: string): void {
    this.flushUpstream();
    this.out.push({ type: "send-agent", data: writeException(code, message) });
    this.close();
  }

  private close(): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.out.push({ type: "close" });
  }

  private log(level: "debug" | "info" | "warn", message: string, fields?: Record<string, unknown>): void {
    this.out.push({ type: "log", level, message, ...(fields ? { fields } : {}) });
  }
}

/** The statement's facets with the Query packet's settings under its own SETTINGS clause (the clause wins, as on the server). */
function withPacketSettings(s: SqlStatementFacets, packet: Record<string, string>): SqlStatementFacets {
  if (Object.keys(packet).length === 0) return s;
  return { ...s, settings: { ...packet, ...(s.settings ?? {}) } };
}

function append(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b.slice();
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function concatAll(parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
