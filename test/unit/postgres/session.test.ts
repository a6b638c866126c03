// The Postgres session as playbooks: wire bytes in, commands out, described
// as one line per protocol message so a mismatch reads as a diff. The
// upstream's side is played by hand with the server's real message shapes;
// statements are parsed by a stand-in (the real parser is tested in
// test/unit/sql and end to end in test/integration/postgres).
import { describe, expect, test } from "bun:test";
import { PostgresSession, type SessionCommand, type SessionEvent, type MessageVerdict } from "../../../app/endpoints/postgres/session.ts";
import { Playbook } from "../support/playbook.ts";
import {
  FrontendParser,
  serializeBind,
  serializeCancelRequest,
  serializeDescribe,
  serializeExecute,
  serializeFunctionCall,
  serializeParse,
  serializeQuery,
  serializeSSLRequest,
  serializeStartupMessage,
  serializeSync,
  serializeTerminate,
} from "../../../app/endpoints/postgres/wire/frontend.ts";
import {
  BackendParser,
  serializeAuthenticationCleartextPassword,
  serializeAuthenticationOk,
  serializeBackendKeyData,
  serializeBindComplete,
  serializeCommandComplete,
  serializeErrorResponse,
  serializeParameterStatus,
  serializeParseComplete,
  serializeReadyForQuery,
} from "../../../app/endpoints/postgres/wire/backend.ts";
import type { SqlStatementFacets } from "../../../app/families/sql/family.ts";

const REAL_USER = "app_rw";
const PASSWORD = "s3cret-real-password";
const GATEWAY_KEY = new Uint8Array([1, 2, 3, 4]);

/** A stand-in parser: statements split on `;`, the verb is the first word, tables follow FROM/INTO/UPDATE/TABLE. */
function parse(text: string): { ok: true; statements: SqlStatementFacets[] } | { ok: false; error: string } {
  if (text.includes("syntax error here")) return { ok: false, error: 'syntax error at or near "here"' };
  const statements = text
    .split(";")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map((statement) => {
      const verb = statement.split(/\s+/)[0]!.toLowerCase();
      const tables = [...statement.matchAll(/\b(?:from|into|update|table)\s+([a-z_.]+)/gi)].map((m) => m[1]!.toLowerCase());
      return { verb, tables, functions: [], statement };
    });
  return { ok: true, statements };
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((p) => [...p]));
}

/** A RowDescription with one text column, built as the server sends it. */
function rowDescription(name: string): Uint8Array {
  const body = [...new TextEncoder().encode(name), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0];
  const len = 4 + 2 + body.length;
  return Uint8Array.from([0x54, len >>> 24, (len >>> 16) & 255, (len >>> 8) & 255, len & 255, 0, 1, ...body]);
}

function dataRow(value: string): Uint8Array {
  const v = new TextEncoder().encode(value);
  const len = 4 + 2 + 4 + v.length;
  return Uint8Array.from([0x44, len >>> 24, (len >>> 16) & 255, (len >>> 8) & 255, len & 255, 0, 1, 0, 0, 0, v.length, ...v]);
}

class Described {
  private readonly upstream = new FrontendParser();
  private agentTlsAsked = false;

  lines(c: SessionCommand): string[] {
    switch (c.type) {
      case "send-agent":
        return this.agentLines(c.data);
      case "send-upstream": {
        this.upstream.push(c.data);
        const out: string[] = [];
        for (;;) {
          const r = this.upstream.next();
          if (r.kind === "need-more") break;
          if (r.kind === "error") return [...out, `upstream: ERROR ${r.error.reason}`];
          const m = r.message;
          switch (m.type) {
            case "StartupMessage":
              out.push(`upstream: StartupMessage ${[...m.parameters].map(([k, v]) => `${k}=${v}`).join(" ")}`);
              break;
            case "Query":
              out.push(`upstream: Query ${m.sql.startsWith("DO $clawpatrol$") ? `raise(${/MESSAGE = '(.*)'; END/.exec(m.sql)?.[1]})` : m.sql}`);
              break;
            case "Parse":
              out.push(`upstream: Parse ${m.name || '""'} ${m.sql.startsWith("DO $clawpatrol$") ? "raise" : m.sql}`);
              break;
            case "PasswordMessage":
              out.push(`upstream: PasswordMessage ${new TextDecoder().decode(m.body.subarray(0, -1)) === PASSWORD ? "(the real password)" : "(other)"}`);
              break;
            default:
              out.push(`upstream: ${m.type}`);
          }
        }
        return out;
      }
      case "judge":
        return [`judge ${c.kind} #${c.id}: ${c.actions.map((a) => a.facets?.verb ?? `unknown(${a.unknownReason ?? "unparsed"})`).join(", ")}`];
      case "record":
        return [`record ${c.record.verdict} ${c.record.facts.facets?.verb ?? "?"}${c.record.rows !== undefined ? ` rows=${c.record.rows}` : ""}${c.record.sqlstate ? ` ${c.record.sqlstate}` : ""}`];
      case "start-agent-tls":
        this.agentTlsAsked = true;
        return ["start-agent-tls"];
      case "register-keys":
        return [`register-keys upstream=${c.upstreamProcessId}`];
      case "cancel":
        return [`cancel ${c.processId}`];
      case "log":
        return [];
      default:
        return [c.type];
    }
  }

  private agentLines(data: Uint8Array): string[] {
    if (data.length === 1 && (data[0] === 0x53 || data[0] === 0x4e)) return [`agent: ${String.fromCharCode(data[0]!)}`];
    const p = new BackendParser();
    p.push(data);
    const out: string[] = [];
    for (;;) {
      const r = p.next();
      if (r.kind === "need-more") break;
      if (r.kind === "error") return [...out, `agent: ERROR ${r.error.reason}`];
      const m = r.message;
      switch (m.type) {
        case "ReadyForQuery":
          out.push(`agent: ReadyForQuery ${m.status}`);
          break;
        case "ErrorResponse":
          out.push(`agent: ErrorResponse ${m.fields.code} ${m.fields.message}${m.fields.where ? " +where" : ""}`);
          break;
        case "CommandComplete":
          out.push(`agent: CommandComplete ${m.tag}`);
          break;
        case "ParameterStatus":
          out.push(`agent: ParameterStatus ${m.name}=${m.value}`);
          break;
        case "BackendKeyData":
          out.push(`agent: BackendKeyData ${m.processId} ${[...m.secretKey].join(",")}`);
          break;
        default:
          out.push(`agent: ${m.type === "Authentication" ? `Authentication${"auth" in m ? m.auth : ""}` : m.type}`);
      }
    }
    return out;
  }
}

function session(opts: { needsFacets?: boolean; credential?: boolean; policyVersion?: () => unknown } = {}) {
  const s = new PostgresSession({
    credential: opts.credential === false ? undefined : { user: REAL_USER, password: PASSWORD },
    allowMd5: false,
    agentTls: true,
    now: () => 1000,
    parse,
    needsFacets: opts.needsFacets ?? true,
    ...(opts.policyVersion ? { policyVersion: opts.policyVersion } : {}),
    processId: 4242,
    secretKey: GATEWAY_KEY,
    nonce: () => "fixed-nonce",
  });
  const d = new Described();
  return { s, p: new Playbook<SessionEvent, SessionCommand>(s, (c) => d.lines(c)) };
}

const agent = (...parts: Uint8Array[]): SessionEvent => ({ type: "agent-data", data: concat(...parts) });
const server = (...parts: Uint8Array[]): SessionEvent => ({ type: "upstream-data", data: concat(...parts) });
const allow = (id: number, n = 1): SessionEvent => ({ type: "verdict", id, verdict: { outcomes: Array.from({ length: n }, () => ({ allow: true, reason: "ok" })) } });
const deny = (id: number, reason = "writes need a human", rule = "no-writes"): SessionEvent => ({
  type: "verdict",
  id,
  verdict: { outcomes: [{ allow: false, reason, rule }] } satisfies MessageVerdict,
});

/** Startup through cleartext-over-TLS to the ready state. */
function ready(opts: { needsFacets?: boolean; policyVersion?: () => unknown } = {}) {
  const x = session(opts);
  x.p
    .in(agent(serializeStartupMessage([["user", "agent"], ["database", "app"], ["application_name", "psql"]])))
    .out("open-upstream")
    .in({ type: "upstream-ready", tls: true })
    .out("upstream: StartupMessage user=app_rw database=app application_name=psql")
    .in(server(serializeAuthenticationCleartextPassword()))
    .out("upstream: PasswordMessage (the real password)")
    .in(
      server(
        serializeAuthenticationOk(),
        serializeParameterStatus("server_version", "15.8"),
        serializeBackendKeyData(77, new Uint8Array([9, 9, 9, 9])),
        serializeReadyForQuery("I"),
      ),
    )
    .out("register-keys upstream=77", "agent: AuthenticationOk", "agent: ParameterStatus server_version=15.8", "agent: BackendKeyData 4242 1,2,3,4", "agent: ReadyForQuery I");
  return x;
}

describe("startup", () => {
  test("the gateway answers the agent's authentication and authenticates upstream with the real credential", () => {
    ready().p.done();
  });

  test("SSLRequest is accepted with TLS; bytes sent before the handshake are a protocol violation", () => {
    const { p } = session();
    p.in(agent(serializeSSLRequest())).out("agent: S", "start-agent-tls");
    p.in(agent(serializeQuery("select 1"))).out("agent: ErrorResponse 08P01 invalid frontend message: bytes before the TLS handshake finished", "close");
    p.done();
  });

  test("SSLRequest followed at once by more bytes is refused before TLS starts", () => {
    const { p } = session();
    p.in(agent(serializeSSLRequest(), serializeStartupMessage([["user", "a"]]))).out(
      "agent: ErrorResponse 08P01 invalid frontend message: data after SSLRequest before the TLS handshake",
      "close",
    );
    p.done();
  });

  test("after TLS the startup goes on", () => {
    const { p } = session();
    p.in(agent(serializeSSLRequest())).out("agent: S", "start-agent-tls");
    p.in({ type: "agent-tls-ready" }).out();
    p.in(agent(serializeStartupMessage([["user", "agent"]]))).out("open-upstream");
    p.done();
  });

  test("an upstream authentication failure is 28P01 naming neither the real user nor the secret", () => {
    const { p, s } = session();
    p.in(agent(serializeStartupMessage([["user", "agent"]]))).out("open-upstream");
    p.in({ type: "upstream-ready", tls: true }).out("upstream: StartupMessage user=app_rw database=agent");
    p.in(server(serializeAuthenticationCleartextPassword())).out("upstream: PasswordMessage (the real password)");
    const cmds = s.handle(server(serializeErrorResponse({ severity: "FATAL", code: "28P01", message: `password authentication failed for user "${REAL_USER}"` })));
    const text = new TextDecoder().decode(concat(...cmds.flatMap((c) => (c.type === "send-agent" ? [c.data] : []))));
    expect(text).toContain("28P01");
    expect(text).not.toContain(REAL_USER);
    expect(text).not.toContain(PASSWORD);
    expect(cmds.map((c) => c.type)).toContain("close");
  });

  test("cleartext over plain TCP is refused: the password never leaves", () => {
    const { p, s } = session();
    p.in(agent(serializeStartupMessage([["user", "agent"]]))).out("open-upstream");
    p.in({ type: "upstream-ready", tls: false }).out("upstream: StartupMessage user=app_rw database=agent");
    const cmds = s.handle(server(serializeAuthenticationCleartextPassword()));
    expect(cmds.some((c) => c.type === "send-upstream")).toBe(false);
    expect(cmds.map((c) => c.type)).toContain("close");
  });

  test("a CancelRequest is handed to the shell to map onto the upstream's key", () => {
    const { p } = session();
    p.in(agent(serializeCancelRequest(4242, GATEWAY_KEY))).out("cancel 4242", "close");
    p.done();
  });

  test("startup parameters that set server settings no rule saw are not forwarded", () => {
    const { p } = session();
    p.in(agent(serializeStartupMessage([["user", "agent"], ["database", "app"], ["options", "-c role=admin"], ["search_path", "evil"], ["client_encoding", "UTF8"]]))).out("open-upstream");
    p.in({ type: "upstream-ready", tls: true }).out("upstream: StartupMessage user=app_rw database=app client_encoding=UTF8");
    p.done();
  });

  test("replication connections are refused", () => {
    const { p } = session();
    p.in(agent(serializeStartupMessage([["user", "agent"], ["replication", "database"]]))).out(
      "agent: ErrorResponse 42501 replication connections are not allowed through the gateway",
      "close",
    );
    p.done();
  });

  test("without a credential the agent is refused at startup", () => {
    const { p } = session({ credential: false });
    p.in(agent(serializeStartupMessage([["user", "agent"]]))).out("agent: ErrorResponse 28P01 no credential is configured for this database", "close");
    p.done();
  });
});

describe("simple query protocol", () => {
  test("an allowed statement is forwarded and recorded with its rows", () => {
    const { p } = ready();
    p.in(agent(serializeQuery("select name from users"))).out("judge statement #1: select");
    p.in(allow(1)).out("upstream: Query select name from users");
    p.in(server(rowDescription("name"), dataRow("ada"), serializeCommandComplete("SELECT 1"), serializeReadyForQuery("I"))).out(
      "record allow select rows=1",
      "agent: RowDescription",
      "agent: DataRow",
      "agent: CommandComplete SELECT 1",
      "agent: ReadyForQuery I",
    );
    p.done();
  });

  test("the server's answer read in one piece reaches the agent as the same bytes, without a copy", () => {
    const { p, s } = ready();
    p.in(agent(serializeQuery("select name from users"))).out("judge statement #1: select");
    p.in(allow(1)).out("upstream: Query select name from users");
    const answer = concat(rowDescription("name"), dataRow("ada"), serializeCommandComplete("SELECT 1"), serializeReadyForQuery("I"));
    const chunk = new Uint8Array(answer.length + 8);
    chunk.set(answer, 4);
    const sent = s.handle({ type: "upstream-data", data: chunk.subarray(4, 4 + answer.length) }).flatMap((c) => (c.type === "send-agent" ? [c.data] : []));
    expect(sent.length).toBe(1);
    expect([...sent[0]!]).toEqual([...answer]);
    expect(sent[0]!.buffer).toBe(chunk.buffer);
    // Parts that are not back to back in memory are copied into one buffer.
    p.in(agent(serializeQuery("select 2"))).out("judge statement #2: select");
    p.in(allow(2)).out("upstream: Query select 2");
    // CommandComplete cut across two reads (copied when whole), then ReadyForQuery from the second read.
    const whole = concat(dataRow("x"), serializeCommandComplete("SELECT 1"), serializeReadyForQuery("I"));
    const cut = whole.length - 9;
    const out1 = s.handle({ type: "upstream-data", data: whole.slice(0, cut) });
    const out2 = s.handle({ type: "upstream-data", data: whole.slice(cut) });
    const second = out2.flatMap((c) => (c.type === "send-agent" ? [c.data] : []));
    expect(second.length).toBe(1);
    const bytes = [...out1, ...out2].flatMap((c) => (c.type === "send-agent" ? [...c.data] : []));
    expect(bytes).toEqual([...whole]);
  });

  test("a denied statement is raised by the server as 42501 and the session goes on", () => {
    const { p } = ready();
    p.in(agent(serializeQuery("delete from users"))).out("judge statement #1: delete");
    p.in(deny(1)).out("record deny delete 42501", "upstream: Query raise(denied by clawpatrol: writes need a human)");
    p.in(
      server(
        serializeErrorResponse({ severity: "ERROR", code: "42501", message: "denied by clawpatrol: writes need a human" }),
        serializeReadyForQuery("I"),
      ),
    ).out("agent: ErrorResponse 42501 denied by clawpatrol: writes need a human", "agent: ReadyForQuery I");
    p.in(agent(serializeQuery("select 1"))).out("judge statement #2: select");
    p.done();
  });

  test("inside a transaction block the server's transaction fails too, and the client is told E", () => {
    const { p, s } = ready();
    p.in(agent(serializeQuery("begin"))).out("judge statement #1: begin");
    p.in(allow(1)).out("upstream: Query begin");
    p.in(server(serializeCommandComplete("BEGIN"), serializeReadyForQuery("T"))).out("record allow begin", "agent: CommandComplete BEGIN", "agent: ReadyForQuery T");
    p.in(agent(serializeQuery("update users set admin = true"))).out("judge statement #2: update");
    p.in(deny(2)).out("record deny update 42501", "upstream: Query raise(denied by clawpatrol: writes need a human)");
    p.in(server(serializeErrorResponse({ severity: "ERROR", code: "42501", message: "denied by clawpatrol: writes need a human" }), serializeReadyForQuery("E"))).out(
      "agent: ErrorResponse 42501 denied by clawpatrol: writes need a human",
      "agent: ReadyForQuery E",
    );
    expect(s.transactionStatus).toBe("E");
    p.done();
  });

  test("one denied statement denies the whole message; every statement is recorded", () => {
    const { p } = ready();
    p.in(agent(serializeQuery("select 1; delete from users"))).out("judge statement #1: select, delete");
    p.in({ type: "verdict", id: 1, verdict: { outcomes: [{ allow: true, reason: "ok" }, { allow: false, reason: "no deletes", rule: "r" }] } }).out(
      "record deny select 42501",
      "record deny delete 42501",
      "upstream: Query raise(denied by clawpatrol: no deletes)",
    );
    p.done();
  });

  test("a statement the parser rejects is judged with unknown facets (rules reading them fail closed)", () => {
    const { p } = ready();
    p.in(agent(serializeQuery("syntax error here"))).out("judge statement #1: unknown(syntax error at or near \"here\")");
    p.done();
  });

  test("with no rule reading the parse, the text is judged whole without parsing", () => {
    const { p } = ready({ needsFacets: false });
    p.in(agent(serializeQuery("select 1; select 2"))).out("judge statement #1: unknown(unparsed)");
    p.done();
  });

  test("the reason cannot break out of the raise statement", () => {
    const { p } = ready();
    p.in(agent(serializeQuery("drop table t"))).out("judge statement #1: drop");
    p.in(deny(1, "it's $clawpatrol$; drop table x; --")).out("record deny drop 42501", "upstream: Query raise(denied by clawpatrol: it''s clawpatrol; drop table x; --)");
    p.done();
  });
});

describe("extended query protocol", () => {
  test("a denied Parse: the raise in its place, the client's messages dropped until Sync, the session in step", () => {
    const { p } = ready();
    p.in(agent(serializeParse("", "delete from users where id = $1"), serializeBind({ portal: "", statement: "", paramFormats: [], params: [new TextEncoder().encode("1")], resultFormats: [] }), serializeDescribe("P", ""), serializeExecute("", 0), serializeSync())).out(
      "judge statement #1: delete",
    );
    p.in(deny(1)).out("record deny delete 42501", 'upstream: Parse "" raise', "upstream: Bind", "upstream: Execute", "upstream: Sync");
    p.in(
      server(
        serializeParseComplete(),
        serializeBindComplete(),
        serializeErrorResponse({ severity: "ERROR", code: "42501", message: "denied by clawpatrol: writes need a human" }),
        serializeReadyForQuery("I"),
      ),
    ).out("agent: ErrorResponse 42501 denied by clawpatrol: writes need a human", "agent: ReadyForQuery I");
    p.done();
  });

  test("pipelined batches stay in order around a denial", () => {
    const { p } = ready();
    const batch = (sql: string) => [serializeParse("", sql), serializeBind({ portal: "", statement: "", paramFormats: [], params: [], resultFormats: [] }), serializeExecute("", 0), serializeSync()];
    p.in(agent(...batch("select 1"), ...batch("delete from t"), ...batch("select 2"))).out("judge statement #1: select");
    p.in(allow(1)).out("upstream: Parse \"\" select 1", "upstream: Bind", "upstream: Execute", "upstream: Sync", "judge statement #2: delete");
    p.in(deny(2)).out("record deny delete 42501", 'upstream: Parse "" raise', "upstream: Bind", "upstream: Execute", "upstream: Sync", "judge statement #3: select");
    p.in(allow(3)).out("upstream: Parse \"\" select 2", "upstream: Bind", "upstream: Execute", "upstream: Sync");
    p.in(
      server(
        serializeParseComplete(), serializeBindComplete(), dataRow("1"), serializeCommandComplete("SELECT 1"), serializeReadyForQuery("I"),
        serializeParseComplete(), serializeBindComplete(), serializeErrorResponse({ severity: "ERROR", code: "42501", message: "denied by clawpatrol: writes need a human" }), serializeReadyForQuery("I"),
        serializeParseComplete(), serializeBindComplete(), dataRow("2"), serializeCommandComplete("SELECT 1"), serializeReadyForQuery("I"),
      ),
    ).out(
      "record allow select rows=1",
      "record allow select rows=1",
      "agent: ParseComplete", "agent: BindComplete", "agent: DataRow", "agent: CommandComplete SELECT 1", "agent: ReadyForQuery I",
      "agent: ErrorResponse 42501 denied by clawpatrol: writes need a human", "agent: ReadyForQuery I",
      "agent: ParseComplete", "agent: BindComplete", "agent: DataRow", "agent: CommandComplete SELECT 1", "agent: ReadyForQuery I",
    );
    p.done();
  });

  test("messages forwarded as they came leave in one write, a view of the agent's read; a dropped one between them forces a copy", () => {
    const { p, s } = ready();
    const bind = serializeBind({ portal: "", statement: "", paramFormats: [], params: [], resultFormats: [] });
    const pass = concat(bind, serializeExecute("", 0), serializeSync());
    const chunk = new Uint8Array(pass.length + 6);
    chunk.set(pass, 3);
    const sent = s.handle({ type: "agent-data", data: chunk.subarray(3, 3 + pass.length) }).flatMap((c) => (c.type === "send-upstream" ? [c.data] : []));
    expect(sent.length).toBe(1);
    expect([...sent[0]!]).toEqual([...pass]);
    expect(sent[0]!.buffer).toBe(chunk.buffer);
    p.in(server(serializeBindComplete(), serializeCommandComplete("SELECT 0"), serializeReadyForQuery("I"))).out("agent: BindComplete", "agent: CommandComplete SELECT 0", "agent: ReadyForQuery I");
    // A denied Parse: the agent's Bind and Execute are dropped, its Sync still goes.
    p.in(agent(serializeParse("", "delete from t"), bind, serializeExecute("", 0), serializeSync())).out("judge statement #1: delete");
    const denied = s.handle(deny(1)).flatMap((c) => (c.type === "send-upstream" ? [c.data] : []));
    expect(denied.length).toBe(1);
    const text = new TextDecoder().decode(denied[0]!);
    expect(text).toContain("RAISE EXCEPTION");
    expect(text).not.toContain("delete from t");
    expect(denied[0]![denied[0]!.length - 5]).toBe(0x53); // ends with the agent's Sync
  });

  test("a named statement is judged once at Parse; each Execute of it is recorded", () => {
    const { p } = ready();
    p.in(agent(serializeParse("s1", "select * from users"), serializeSync())).out("judge statement #1: select");
    p.in(allow(1)).out('upstream: Parse s1 select * from users', "upstream: Sync");
    p.in(server(serializeParseComplete(), serializeReadyForQuery("I"))).out("agent: ParseComplete", "agent: ReadyForQuery I");
    const exec = [serializeBind({ portal: "", statement: "s1", paramFormats: [], params: [], resultFormats: [] }), serializeExecute("", 0), serializeSync()];
    p.in(agent(...exec)).out("upstream: Bind", "upstream: Execute", "upstream: Sync");
    p.in(server(serializeBindComplete(), serializeCommandComplete("SELECT 4"), serializeReadyForQuery("I"))).out(
      "record allow select rows=4",
      "agent: BindComplete",
      "agent: CommandComplete SELECT 4",
      "agent: ReadyForQuery I",
    );
    p.done();
  });

  test("a prepared statement is judged again at its next Bind once the policy was reloaded, and allowed goes on as before", () => {
    let policy = 1;
    const { p } = ready({ policyVersion: () => policy });
    p.in(agent(serializeParse("s1", "select * from users"), serializeSync())).out("judge statement #1: select");
    p.in(allow(1)).out("upstream: Parse s1 select * from users", "upstream: Sync");
    p.in(server(serializeParseComplete(), serializeReadyForQuery("I"))).out("agent: ParseComplete", "agent: ReadyForQuery I");
    const exec = [serializeBind({ portal: "", statement: "s1", paramFormats: [], params: [], resultFormats: [] }), serializeExecute("", 0), serializeSync()];
    // Same policy: the Bind goes straight through.
    p.in(agent(...exec)).out("upstream: Bind", "upstream: Execute", "upstream: Sync");
    p.in(server(serializeBindComplete(), serializeCommandComplete("SELECT 4"), serializeReadyForQuery("I"))).out("record allow select rows=4", "agent: BindComplete", "agent: CommandComplete SELECT 4", "agent: ReadyForQuery I");
    // Reloaded: held at Bind until judged; nothing after it is read meanwhile.
    policy = 2;
    p.in(agent(...exec)).out("judge statement #2: select");
    p.in(allow(2)).out("upstream: Bind", "upstream: Execute", "upstream: Sync");
    p.in(server(serializeBindComplete(), serializeCommandComplete("SELECT 2"), serializeReadyForQuery("I"))).out("record allow select rows=2", "agent: BindComplete", "agent: CommandComplete SELECT 2", "agent: ReadyForQuery I");
    // Judged under the new policy: the next Bind goes straight through again.
    p.in(agent(...exec)).out("upstream: Bind", "upstream: Execute", "upstream: Sync");
    p.done();
  });

  test("a prepared statement the reloaded policy denies: the raise in place of its Bind, the batch dropped until Sync, and every later Bind judged again", () => {
    let policy = 1;
    const { p } = ready({ policyVersion: () => policy });
    p.in(agent(serializeParse("s1", "delete from users"), serializeSync())).out("judge statement #1: delete");
    p.in(allow(1)).out("upstream: Parse s1 delete from users", "upstream: Sync");
    p.in(server(serializeParseComplete(), serializeReadyForQuery("I"))).out("agent: ParseComplete", "agent: ReadyForQuery I");
    policy = 2;
    const exec = [serializeBind({ portal: "", statement: "s1", paramFormats: [], params: [], resultFormats: [] }), serializeExecute("", 0), serializeSync()];
    p.in(agent(...exec)).out("judge statement #2: delete");
    p.in(deny(2)).out("record deny delete 42501", 'upstream: Parse "" raise', "upstream: Bind", "upstream: Execute", "upstream: Sync");
    p.in(
      server(
        serializeParseComplete(),
        serializeBindComplete(),
        serializeErrorResponse({ severity: "ERROR", code: "42501", message: "denied by clawpatrol: writes need a human" }),
        serializeReadyForQuery("I"),
      ),
    ).out("agent: ErrorResponse 42501 denied by clawpatrol: writes need a human", "agent: ReadyForQuery I");
    // Still denied: judged again, not let through on the old verdict.
    p.in(agent(...exec)).out("judge statement #3: delete");
    p.done();
  });

  test("a server error in a batch skips the rest of it on both sides", () => {
    const { p } = ready();
    p.in(agent(serializeParse("", "select * from missing"), serializeBind({ portal: "", statement: "", paramFormats: [], params: [], resultFormats: [] }), serializeExecute("", 0), serializeSync())).out(
      "judge statement #1: select",
    );
    p.in(allow(1)).out('upstream: Parse "" select * from missing', "upstream: Bind", "upstream: Execute", "upstream: Sync");
    p.in(server(serializeErrorResponse({ severity: "ERROR", code: "42P01", message: 'relation "missing" does not exist' }), serializeReadyForQuery("I"))).out(
      "record error select 42P01",
      'agent: ErrorResponse 42P01 relation "missing" does not exist',
      "agent: ReadyForQuery I",
    );
    p.done();
  });
});

describe("FunctionCall", () => {
  test("is judged as a call by OID; a denial is the server's own error and ReadyForQuery", () => {
    const { p } = ready();
    p.in(agent(serializeFunctionCall({ functionOid: 1598, argFormats: [], args: [], resultFormat: 0 }))).out("judge function-call #1: functioncall");
    p.in(deny(1, "a FunctionCall needs a rule that allows it", "")).out("record deny functioncall 42501", "upstream: Query raise(denied by clawpatrol: a FunctionCall needs a rule that allows it)");
    p.done();
  });
});

describe("robustness", () => {
  test("a malformed message is answered with 08P01 and the session closed", () => {
    const { p } = ready();
    p.in(agent(Uint8Array.from([0x51, 0, 0, 0, 2]))).out("agent: ErrorResponse 08P01 invalid frontend message: message 'Q' length 2 below 4", "close");
    p.done();
  });

  test("Terminate is forwarded and ends the session", () => {
    const { p } = ready();
    p.in(agent(serializeTerminate())).out("upstream: Terminate", "close");
    p.done();
  });
});

describe("fuzz", () => {
  // Seeded: any failure reproduces. Mutations of valid traffic, both directions.
  function rng(seed: number) {
    let x = seed >>> 0 || 1;
    return () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) / 2 ** 32;
    };
  }
  const agentCorpus = [
    serializeQuery("select 1; delete from t"),
    serializeParse("s", "select $1"),
    serializeBind({ portal: "", statement: "s", paramFormats: [0], params: [new Uint8Array([49])], resultFormats: [] }),
    serializeExecute("", 0),
    serializeSync(),
    serializeFunctionCall({ functionOid: 1, argFormats: [], args: [], resultFormat: 0 }),
    serializeTerminate(),
  ];
  const serverCorpus = [
    serializeCommandComplete("SELECT 1"),
    serializeReadyForQuery("T"),
    serializeErrorResponse({ severity: "ERROR", code: "42501", message: "x" }),
    serializeParseComplete(),
    serializeBindComplete(),
    dataRow("v"),
  ];
  const mutate = (r: () => number, b: Uint8Array): Uint8Array => {
    const out = Uint8Array.from(b);
    const flips = Math.floor(r() * 4);
    for (let i = 0; i < flips && out.length > 0; i++) out[Math.floor(r() * out.length)] = Math.floor(r() * 256);
    const cut = r() < 0.3 ? Math.floor(r() * (out.length + 1)) : out.length;
    return out.subarray(0, cut);
  };

  test("no sequence of mutated messages from either side throws; every verdict is answered", () => {
    const r = rng(0x5eed);
    let closed = 0;
    for (let round = 0; round < 2000; round++) {
      const { s } = ready();
      for (let i = 0; i < 30 && !s.closed; i++) {
        const fromAgent = r() < 0.6;
        const corpus = fromAgent ? agentCorpus : serverCorpus;
        const msg = mutate(r, corpus[Math.floor(r() * corpus.length)]!);
        const cmds = s.handle(fromAgent ? agent(msg) : server(msg));
        for (const c of cmds) if (c.type === "judge") s.handle(r() < 0.5 ? allow(c.id, c.actions.length) : deny(c.id));
      }
      if (s.closed) closed++;
    }
    // Some rounds hit the protocol's own errors and closed; none threw.
    expect(closed).toBeGreaterThan(0);
  });
});
