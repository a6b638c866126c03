// The ClickHouse native session as playbooks: bytes built from values, fed
// whole or cut, the commands it answers with described as readable lines.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { Playbook } from "../support/playbook.ts";
import { ClickHouseNativeSession, type SessionCommand, type SessionEvent } from "../../../app/endpoints/clickhouse_native/session.ts";
import { Reader, Writer, readClientPacket, readServerHello, writeClientHello, writeServerHello } from "../../../app/endpoints/clickhouse_native/wire/packets.ts";

const CRED = { user: "analyst", password: "real-secret" };

function query(sql: string, opts: { settings?: [string, "uint" | "string", string][]; compression?: boolean; kind?: number; id?: string } = {}): Uint8Array {
  const w = new Writer().varUInt(1).string(opts.id ?? "q1");
  // ClientInfo at 54412: kind, initial user/id/address, interface TCP, os user, hostname, name, versions, quota key, patch.
  w.u8(opts.kind ?? 1).string("").string("").string("0.0.0.0:0").u8(1).string("me").string("box").string("ClickHouse client").varUInt(18).varUInt(16).varUInt(54412).string("").varUInt(1);
  for (const [name, kind, value] of opts.settings ?? []) {
    w.string(name);
    if (kind === "uint") w.varUInt(Number(value));
    else w.string(value);
  }
  w.string("").varUInt(2).varUInt(opts.compression ? 1 : 0).string(sql);
  return w.finish();
}

/** An uncompressed Data packet with one UInt8 column of `rows` rows (0: the empty end-of-data block). */
function data(rows: number): Uint8Array {
  const w = new Writer().varUInt(2).string("").varUInt(1).u8(0).varUInt(2).i32(-1).varUInt(0);
  w.varUInt(rows === 0 ? 0 : 1).varUInt(rows);
  if (rows > 0) w.string("x").string("UInt8").raw(new Uint8Array(rows).fill(7));
  return w.finish();
}

/** The same block compressed (method none: the frame header and the raw block). */
function compressedData(rows: number): Uint8Array {
  const block = data(rows).subarray(2); // without the packet type and the empty table name
  const frame = new Writer().raw(new Uint8Array(16)).u8(0x02).raw(u32(block.length + 9)).raw(u32(block.length)).raw(block).finish();
  return new Writer().varUInt(2).string("").raw(frame).finish();
}

function u32(n: number): Uint8Array {
  return Uint8Array.of(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
}

const HELLO = writeClientHello({ clientName: "ClickHouse client", major: 18, minor: 16, revision: 54412, database: "default", user: "agent", password: "placeholder" });
const SERVER_HELLO = writeServerHello({ name: "ClickHouse", major: 18, minor: 16, revision: 54412, timezone: "UTC", displayName: "vm", patch: 1 }, 54412);

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

/** What the agent or upstream got, decoded where the test cares. */
function describeCommand(c: SessionCommand): string[] {
  switch (c.type) {
    case "send-agent": {
      const r = new Reader(c.data);
      const type = r.varUInt();
      if (type === 2) {
        const code = r.u32();
        r.string();
        return [`agent <- Exception ${code} ${r.string()}`];
      }
      if (type === 0) {
        const h = readServerHello(new Reader(c.data), 54412);
        return [`agent <- Hello revision ${h.type === "Hello" ? h.hello.revision : "?"}`];
      }
      return [`agent <- ${hex(c.data)}`];
    }
    case "send-upstream": {
      const r = new Reader(c.data);
      const lines: string[] = [];
      while (r.remaining > 0) {
        const start = r.pos;
        let m;
        try {
          m = readClientPacket(r, 54412, false);
        } catch {
          // Compressed data is not described packet by packet.
          return [`upstream <- ${c.data.length} bytes`];
        }
        if (m.type === "Hello") lines.push(`upstream <- Hello ${m.hello.user}/${m.hello.password} revision ${m.hello.revision}`);
        else if (m.type === "Query") lines.push(`upstream <- Query ${m.query.query}`);
        else lines.push(`upstream <- ${m.type} (${r.pos - start} bytes)`);
      }
      return lines;
    }
    case "judge":
      return [`judge ${c.id}: ${c.actions.map((a) => `${a.facets?.verb ?? "unknown"} [${a.facets?.tables.join(",") ?? ""}] db=${a.database}${a.facets?.settings && Object.keys(a.facets.settings).length > 0 ? ` settings=${JSON.stringify(a.facets.settings)}` : ""}`).join("; ")}`];
    case "record":
      return [`record ${c.record.verdict} ${c.record.facts.facets?.verb ?? c.record.facts.text}`];
    case "log":
      return [`log ${c.level} ${c.message}`];
    default:
      return [c.type];
  }
}

function ready(credential: typeof CRED | undefined = CRED) {
  const s = new ClickHouseNativeSession({ credential, now: () => 1000 });
  const p = new Playbook<SessionEvent, SessionCommand>(s, describeCommand);
  p.in({ type: "agent-data", data: HELLO }).out("open-upstream");
  p.in({ type: "upstream-ready" }).out("upstream <- Hello analyst/real-secret revision 54412");
  p.in({ type: "upstream-data", data: SERVER_HELLO }).out("agent <- Hello revision 54412", "log debug clickhouse session ready");
  return { s, p };
}

describe("hello", () => {
  test("the placeholder user and password are replaced; revisions are capped at 54412 both ways", () => {
    const s = new ClickHouseNativeSession({ credential: CRED, now: () => 0 });
    const p = new Playbook<SessionEvent, SessionCommand>(s, describeCommand);
    const newer = writeClientHello({ clientName: "c", major: 23, minor: 8, revision: 54465, database: "", user: "agent", password: "ph" });
    p.in({ type: "agent-data", data: newer }).out("open-upstream");
    p.in({ type: "upstream-ready" }).out("upstream <- Hello analyst/real-secret revision 54412");
    const server = writeServerHello({ name: "ClickHouse", major: 23, minor: 8, revision: 54465, timezone: "UTC", displayName: "x", patch: 2 }, 54412);
    p.in({ type: "upstream-data", data: server }).out("agent <- Hello revision 54412", "log debug clickhouse session ready");
    expect(s.negotiatedRevision).toBe(54412);
    p.done();
  });

  test("an older server: its revision is what both use", () => {
    const s = new ClickHouseNativeSession({ credential: CRED, now: () => 0 });
    const p = new Playbook<SessionEvent, SessionCommand>(s, describeCommand);
    p.in({ type: "agent-data", data: HELLO }).out("open-upstream");
    p.in({ type: "upstream-ready" }).out("upstream <- Hello analyst/real-secret revision 54412");
    p.in({ type: "upstream-data", data: writeServerHello({ name: "ClickHouse", major: 18, minor: 1, revision: 54380, timezone: "UTC", displayName: "x" }, 54380) }).out(
      "agent <- Hello revision 54380",
      "log debug clickhouse session ready",
    );
    expect(s.negotiatedRevision).toBe(54380);
    p.done();
  });

  test("no credential: AUTHENTICATION_FAILED and close, nothing dialed", () => {
    const s = new ClickHouseNativeSession({ credential: undefined, credentialProblem: "not granted", now: () => 0 });
    new Playbook<SessionEvent, SessionCommand>(s, describeCommand)
      .in({ type: "agent-data", data: HELLO })
      .out("agent <- Exception 516 clawpatrol: no credential for this endpoint (not granted)", "close")
      .done();
  });

  test("a first packet that is not Hello is refused", () => {
    const s = new ClickHouseNativeSession({ credential: CRED, now: () => 0 });
    new Playbook<SessionEvent, SessionCommand>(s, describeCommand)
      .in({ type: "agent-data", data: query("SELECT 1") })
      .out("agent <- Exception 102 clawpatrol: the first packet must be Hello", "close")
      .done();
  });
});

describe("queries", () => {
  test("allowed: forwarded as it came, then its data; USE changes the database of later queries", () => {
    const { p } = ready();
    p.in({ type: "agent-data", data: query("USE analytics") }).out("judge 1: use [] db=default");
    p.in({ type: "verdict", id: 1, verdict: { allow: true, reason: "ok" } }).out("upstream <- Query USE analytics", "record allow use");
    p.in({ type: "agent-data", data: data(0) }).out("upstream <- Data (12 bytes)");
    p.in({ type: "agent-data", data: query("SELECT * FROM events", { settings: [["max_threads", "uint", "8"], ["load_balancing", "string", "random"]] }) }).out(
      'judge 2: select [events] db=analytics settings={"max_threads":"8","load_balancing":"random"}',
    );
    p.done();
  });

  test("denied: Exception 497 with rule and reason; the query's Data is dropped; the next query is judged", () => {
    const { p } = ready();
    p.in({ type: "agent-data", data: query("DROP TABLE db.t") }).out("judge 1: drop [db.t] db=default");
    p.in({ type: "verdict", id: 1, verdict: { allow: false, reason: "no drops", rule: "r1" } }).out(
      'agent <- Exception 497 clawpatrol: access denied by rule "r1": no drops',
      "record deny drop",
    );
    p.in({ type: "agent-data", data: data(0) }).out();
    p.in({ type: "agent-data", data: new Writer().varUInt(3).finish() }).out();
    p.in({ type: "agent-data", data: query("SELECT 1") }).out("judge 2: select [] db=default");
    p.in({ type: "verdict", id: 2, verdict: { allow: true, reason: "ok" } }).out("upstream <- Query SELECT 1", "record allow select");
    p.done();
  });

  test("nothing after a Query is read until its verdict; then it follows in order", () => {
    const { p } = ready();
    const both = new Writer().raw(query("INSERT INTO t VALUES", { compression: true })).raw(compressedData(0)).raw(compressedData(3)).raw(new Writer().varUInt(4).finish()).finish();
    p.in({ type: "agent-data", data: both }).out("judge 1: insert [t] db=default");
    const out = p.in({ type: "verdict", id: 1, verdict: { allow: true, reason: "ok" } }).peek();
    const upstream = out.filter((c) => c.type === "send-upstream").map((c) => (c as { data: Uint8Array }).data);
    expect(hex(Buffer.concat(upstream))).toBe(hex(both));
    p.out("upstream <- Query INSERT INTO t VALUES", "record allow insert", `upstream <- ${both.length - query("INSERT INTO t VALUES", { compression: true }).length} bytes`);
    p.done();
  });

  test("a text the reader cannot judge has unknown facets (rules reading them fail closed)", () => {
    const { p } = ready();
    p.in({ type: "agent-data", data: query("SYSTEM DROP DNS CACHE") }).out("judge 1: unknown [] db=default");
    p.done();
  });

  test("a secondary query (server to server) is a protocol error", () => {
    const { p } = ready();
    p.in({ type: "agent-data", data: query("SELECT 1", { kind: 2 }) }).out(
      "log warn clickhouse protocol error",
      "agent <- Exception 100 clawpatrol: protocol error: a Query of kind 2 (only initial queries are accepted)",
      "close",
    );
    p.done();
  });

  test("server bytes after its Hello pass untouched", () => {
    const { p } = ready();
    p.in({ type: "upstream-data", data: Uint8Array.of(5) }).out("agent <- 05");
    p.done();
  });
});

describe("framing", () => {
  const stream = new Writer().raw(query("SELECT a FROM t", { settings: [["max_threads", "uint", "2"]] })).raw(data(0)).finish();

  test("a Query cut at every offset is judged once, whole", () => {
    for (let cut = 1; cut < stream.length; cut++) {
      const { s } = ready();
      const first = s.handle({ type: "agent-data", data: stream.subarray(0, cut) });
      const second = s.handle({ type: "agent-data", data: stream.subarray(cut) });
      const judged = [...first, ...second].filter((c) => c.type === "judge");
      expect(judged.length).toBe(1);
    }
  });

  test("random bytes after Hello: a protocol error or waiting, never a throw, never a forward", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const { s } = ready();
        const out = s.handle({ type: "agent-data", data: bytes });
        for (const c of out) {
          if (c.type === "send-upstream") {
            // Only whole packets that frame: the same bytes read back as packets.
            const r = new Reader(c.data);
            while (r.remaining > 0) readClientPacket(r, 54412, false);
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  test("a valid stream with bytes flipped never throws", () => {
    fc.assert(
      fc.property(fc.nat(stream.length - 1), fc.integer({ min: 0, max: 255 }), (at, v) => {
        const { s } = ready();
        const copy = stream.slice();
        copy[at] = v;
        s.handle({ type: "agent-data", data: copy });
      }),
      { numRuns: 500 },
    );
  });
});
