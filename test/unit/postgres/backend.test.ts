// The backend framing parser and the backend serializers: every message
// whole, at every cut and joined with another; literal wire bytes as a
// real server writes them; error values.
import { describe, expect, test } from "bun:test";
import { concatBytes, encodeUtf8 } from "../../../app/endpoints/postgres/wire/bytes.ts";
import {
  BackendParser,
  parseCommandTag,
  serializeAuthenticationCleartextPassword,
  serializeAuthenticationCode,
  serializeAuthenticationMD5Password,
  serializeAuthenticationOk,
  serializeAuthenticationSASL,
  serializeAuthenticationSASLContinue,
  serializeAuthenticationSASLFinal,
  serializeBackendKeyData,
  serializeBindComplete,
  serializeCloseComplete,
  serializeCommandComplete,
  serializeCopyResponse,
  serializeEmptyQueryResponse,
  serializeEncryptionResponse,
  serializeErrorResponse,
  serializeNoData,
  serializeNegotiateProtocolVersion,
  serializeNoticeResponse,
  serializeNotificationResponse,
  serializeParameterStatus,
  serializeParseComplete,
  serializeReadyForQuery,
  type BackendMessage,
  type BackendParserOptions,
  type BackendResult,
} from "../../../app/endpoints/postgres/wire/backend.ts";
import { feedParser } from "../support/wire-feed.ts";

function feed(chunks: Uint8Array[], options?: BackendParserOptions): { messages: BackendMessage[]; last: BackendResult; parser: BackendParser } {
  return feedParser<BackendMessage, BackendParser>(new BackendParser(options), chunks);
}

function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return Array.from(v);
  if (v instanceof Map) return Object.fromEntries(v);
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

function fields(m: BackendMessage): unknown {
  const { raw: _raw, ...rest } = m;
  return plain(rest);
}

function typed(code: string, body: number[] | Uint8Array, length?: number): Uint8Array {
  const b = body instanceof Uint8Array ? body : new Uint8Array(body);
  const len = length ?? b.length + 4;
  return concatBytes([new Uint8Array([code.charCodeAt(0), len >>> 24, (len >>> 16) & 255, (len >>> 8) & 255, len & 255]), b]);
}
const s = (text: string) => [...encodeUtf8(text), 0];

// A RowDescription and DataRow as PostgreSQL 15 writes them for `SELECT 1 AS one`.
const rowDescription = typed("T", [0, 1, ...s("one"), 0, 0, 0, 0, 0, 0, 0, 0, 0, 23, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 0]);
const dataRow = typed("D", [0, 1, 0, 0, 0, 1, 0x31]);

const fixtures: { name: string; bytes: Uint8Array; expect: unknown }[] = [
  { name: "AuthenticationOk", bytes: serializeAuthenticationOk(), expect: { type: "Authentication", auth: "Ok" } },
  { name: "AuthenticationCleartextPassword", bytes: serializeAuthenticationCleartextPassword(), expect: { type: "Authentication", auth: "CleartextPassword" } },
  {
    name: "AuthenticationMD5Password",
    bytes: serializeAuthenticationMD5Password(new Uint8Array([1, 2, 3, 4])),
    expect: { type: "Authentication", auth: "MD5Password", salt: [1, 2, 3, 4] },
  },
  {
    name: "AuthenticationSASL",
    bytes: serializeAuthenticationSASL(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]),
    expect: { type: "Authentication", auth: "SASL", mechanisms: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"] },
  },
  {
    name: "AuthenticationSASLContinue",
    bytes: serializeAuthenticationSASLContinue(encodeUtf8("r=abc,s=c2FsdA==,i=4096")),
    expect: { type: "Authentication", auth: "SASLContinue", data: [...encodeUtf8("r=abc,s=c2FsdA==,i=4096")] },
  },
  {
    name: "AuthenticationSASLFinal",
    bytes: serializeAuthenticationSASLFinal(encodeUtf8("v=xyz")),
    expect: { type: "Authentication", auth: "SASLFinal", data: [...encodeUtf8("v=xyz")] },
  },
  { name: "AuthenticationGSS", bytes: serializeAuthenticationCode(7), expect: { type: "Authentication", auth: "Unsupported", code: 7, name: "GSS" } },
  { name: "AuthenticationSSPI", bytes: serializeAuthenticationCode(9), expect: { type: "Authentication", auth: "Unsupported", code: 9, name: "SSPI" } },
  { name: "Authentication code 99", bytes: serializeAuthenticationCode(99), expect: { type: "Authentication", auth: "Unsupported", code: 99, name: "code 99" } },
  {
    name: "ParameterStatus",
    bytes: serializeParameterStatus("server_version", "15.10"),
    expect: { type: "ParameterStatus", name: "server_version", value: "15.10" },
  },
  {
    name: "BackendKeyData",
    bytes: serializeBackendKeyData(12345, new Uint8Array([0xde, 0xad, 0xbe, 0xef])),
    expect: { type: "BackendKeyData", processId: 12345, secretKey: [0xde, 0xad, 0xbe, 0xef] },
  },
  { name: "ReadyForQuery I", bytes: serializeReadyForQuery("I"), expect: { type: "ReadyForQuery", status: "I" } },
  { name: "ReadyForQuery T", bytes: serializeReadyForQuery("T"), expect: { type: "ReadyForQuery", status: "T" } },
  { name: "ReadyForQuery E", bytes: serializeReadyForQuery("E"), expect: { type: "ReadyForQuery", status: "E" } },
  {
    name: "ErrorResponse",
    bytes: serializeErrorResponse({ severity: "ERROR", code: "42501", message: "denied by rule no-writes", detail: "d", hint: "h" }),
    expect: {
      type: "ErrorResponse",
      fields: {
        severity: "ERROR", severityNonLocalized: "ERROR", code: "42501", message: "denied by rule no-writes", detail: "d", hint: "h",
        all: { S: "ERROR", V: "ERROR", C: "42501", M: "denied by rule no-writes", D: "d", H: "h" },
      },
    },
  },
  {
    name: "NoticeResponse",
    bytes: serializeNoticeResponse({ severity: "NOTICE", code: "00000", message: "hello" }),
    expect: {
      type: "NoticeResponse",
      fields: { severity: "NOTICE", severityNonLocalized: "NOTICE", code: "00000", message: "hello", all: { S: "NOTICE", V: "NOTICE", C: "00000", M: "hello" } },
    },
  },
  { name: "CommandComplete INSERT", bytes: serializeCommandComplete("INSERT 0 5"), expect: { type: "CommandComplete", tag: "INSERT 0 5", command: "INSERT", rows: 5 } },
  { name: "CommandComplete BEGIN", bytes: serializeCommandComplete("BEGIN"), expect: { type: "CommandComplete", tag: "BEGIN", command: "BEGIN", rows: null } },
  { name: "EmptyQueryResponse", bytes: serializeEmptyQueryResponse(), expect: { type: "EmptyQueryResponse" } },
  { name: "NoData", bytes: serializeNoData(), expect: { type: "NoData" } },
  { name: "ParseComplete", bytes: serializeParseComplete(), expect: { type: "ParseComplete" } },
  { name: "BindComplete", bytes: serializeBindComplete(), expect: { type: "BindComplete" } },
  { name: "CloseComplete", bytes: serializeCloseComplete(), expect: { type: "CloseComplete" } },
  { name: "CopyInResponse", bytes: serializeCopyResponse("CopyInResponse", 0, [0, 0]), expect: { type: "CopyInResponse", format: 0, columnFormats: [0, 0] } },
  { name: "CopyOutResponse", bytes: serializeCopyResponse("CopyOutResponse", 1, [1]), expect: { type: "CopyOutResponse", format: 1, columnFormats: [1] } },
  { name: "CopyBothResponse", bytes: serializeCopyResponse("CopyBothResponse", 0, []), expect: { type: "CopyBothResponse", format: 0, columnFormats: [] } },
  {
    name: "NotificationResponse",
    bytes: serializeNotificationResponse(77, "jobs", "42"),
    expect: { type: "NotificationResponse", processId: 77, channel: "jobs", payload: "42" },
  },
  {
    name: "NegotiateProtocolVersion",
    bytes: typed("v", [0, 0, 0, 0, 0, 0, 0, 1, ...s("_pq_.x")]),
    expect: { type: "NegotiateProtocolVersion", newestMinor: 0, unrecognizedOptions: ["_pq_.x"] },
  },
  {
    name: "NegotiateProtocolVersion (serialized)",
    bytes: serializeNegotiateProtocolVersion(0, ["_pq_.a", "_pq_.b"]),
    expect: { type: "NegotiateProtocolVersion", newestMinor: 0, unrecognizedOptions: ["_pq_.a", "_pq_.b"] },
  },
  { name: "RowDescription (raw)", bytes: rowDescription, expect: { type: "RowDescription" } },
  { name: "DataRow (raw)", bytes: dataRow, expect: { type: "DataRow" } },
  { name: "PortalSuspended (raw)", bytes: typed("s", []), expect: { type: "PortalSuspended" } },
  { name: "ParameterDescription (raw)", bytes: typed("t", [0, 1, 0, 0, 0, 23]), expect: { type: "ParameterDescription" } },
  { name: "FunctionCallResponse (raw)", bytes: typed("V", [0, 0, 0, 1, 7]), expect: { type: "FunctionCallResponse" } },
  { name: "CopyData (raw)", bytes: typed("d", [...encodeUtf8("1\n")]), expect: { type: "CopyData" } },
  { name: "CopyDone (raw)", bytes: typed("c", []), expect: { type: "CopyDone" } },
];

describe("every message", () => {
  const follower = serializeReadyForQuery("I");
  for (const f of fixtures) {
    test(`${f.name}: whole, at every cut, joined`, () => {
      const whole = feed([f.bytes]);
      expect(whole.messages.map(fields)).toEqual([f.expect]);
      expect(Array.from(whole.messages[0]!.raw)).toEqual(Array.from(f.bytes));
      expect(whole.parser.buffered).toBe(0);
      for (let cut = 0; cut <= f.bytes.length; cut++) {
        expect(feed([f.bytes.subarray(0, cut), f.bytes.subarray(cut)]).messages.map(fields)).toEqual([f.expect]);
      }
      const joined = concatBytes([f.bytes, follower]);
      for (let cut = 0; cut <= joined.length; cut++) {
        const r = feed([joined.subarray(0, cut), joined.subarray(cut)]);
        expect(r.messages.length).toBe(2);
        expect(fields(r.messages[0]!)).toEqual(f.expect);
        expect(fields(r.messages[1]!)).toEqual({ type: "ReadyForQuery", status: "I" });
      }
    });
  }

  test("serializers write the bytes a server writes", () => {
    expect(Array.from(serializeAuthenticationOk())).toEqual([0x52, 0, 0, 0, 8, 0, 0, 0, 0]);
    expect(Array.from(serializeAuthenticationCleartextPassword())).toEqual([0x52, 0, 0, 0, 8, 0, 0, 0, 3]);
    expect(Array.from(serializeReadyForQuery("T"))).toEqual([0x5a, 0, 0, 0, 5, 0x54]);
    expect(Array.from(serializeParseComplete())).toEqual([0x31, 0, 0, 0, 4]);
    expect(Array.from(serializeBindComplete())).toEqual([0x32, 0, 0, 0, 4]);
    expect(Array.from(serializeCloseComplete())).toEqual([0x33, 0, 0, 0, 4]);
    expect(Array.from(serializeNoData())).toEqual([0x6e, 0, 0, 0, 4]);
    expect(Array.from(serializeEmptyQueryResponse())).toEqual([0x49, 0, 0, 0, 4]);
    expect(Array.from(serializeCommandComplete("SELECT 1"))).toEqual([0x43, 0, 0, 0, 13, ...s("SELECT 1")]);
    expect(Array.from(serializeParameterStatus("a", "b"))).toEqual([0x53, 0, 0, 0, 8, 0x61, 0, 0x62, 0]);
    expect(Array.from(serializeBackendKeyData(1, new Uint8Array([9, 9, 9, 9])))).toEqual([0x4b, 0, 0, 0, 12, 0, 0, 0, 1, 9, 9, 9, 9]);
    expect(Array.from(serializeErrorResponse({ severity: "ERROR", code: "42501", message: "no" }))).toEqual([
      0x45, 0, 0, 0, 30, 0x53, ...s("ERROR"), 0x56, ...s("ERROR"), 0x43, ...s("42501"), 0x4d, ...s("no"), 0,
    ]);
    expect(Array.from(serializeEncryptionResponse(true))).toEqual([0x53]);
    expect(Array.from(serializeEncryptionResponse(false))).toEqual([0x4e]);
  });

  test("a server's password failure, byte for byte as PostgreSQL 15 sends it", () => {
    const bytes = typed("E", [
      0x53, ...s("FATAL"), 0x56, ...s("FATAL"), 0x43, ...s("28P01"),
      0x4d, ...s('password authentication failed for user "app"'), 0x46, ...s("auth.c"), 0x4c, ...s("335"), 0x52, ...s("auth_failed"), 0,
    ]);
    const m = feed([bytes]).messages[0]!;
    if (m.type !== "ErrorResponse") throw new Error("type");
    expect(m.fields.code).toBe("28P01");
    expect(m.fields.severity).toBe("FATAL");
    expect(m.fields.all.get("R")).toBe("auth_failed");
  });

  test("a query's whole answer in one push", () => {
    const bytes = concatBytes([rowDescription, dataRow, dataRow, serializeCommandComplete("SELECT 2"), serializeReadyForQuery("I")]);
    const r = feed([bytes]);
    expect(r.messages.map((m) => m.type)).toEqual(["RowDescription", "DataRow", "DataRow", "CommandComplete", "ReadyForQuery"]);
    expect(r.messages[3]).toMatchObject({ rows: 2 });
  });
});

describe("command tags", () => {
  const cases: [string, string, number | null][] = [
    ["INSERT 0 5", "INSERT", 5],
    ["INSERT 16384 1", "INSERT", 1],
    ["SELECT 3", "SELECT", 3],
    ["UPDATE 2", "UPDATE", 2],
    ["DELETE 0", "DELETE", 0],
    ["MERGE 4", "MERGE", 4],
    ["COPY 10", "COPY", 10],
    ["FETCH 7", "FETCH", 7],
    ["MOVE 1", "MOVE", 1],
    ["BEGIN", "BEGIN", null],
    ["CREATE TABLE", "CREATE TABLE", null],
    ["SELECT", "SELECT", null],
    ["UPDATE x", "UPDATE x", null],
    ["", "", null],
  ];
  for (const [tag, command, rows] of cases) {
    test(JSON.stringify(tag), () => expect(parseCommandTag(tag)).toEqual({ tag, command, rows }));
  }
});

describe("error values", () => {
  const cases: { name: string; bytes: Uint8Array; reason: RegExp; code?: string; options?: BackendParserOptions }[] = [
    { name: "unknown type byte", bytes: typed("q", []), reason: /unknown backend message type 'q'/ },
    { name: "length below 4", bytes: typed("Z", [], 2), reason: /below 4/ },
    { name: "ReadyForQuery status X", bytes: typed("Z", [0x58]), reason: /transaction status 'X'/ },
    { name: "ReadyForQuery with two bytes", bytes: typed("Z", [0x49, 0x49]), reason: /unexpected bytes/ },
    { name: "Authentication without a code", bytes: typed("R", [0, 0]), reason: /truncated authentication code/ },
    { name: "MD5Password without a salt", bytes: typed("R", [0, 0, 0, 5, 1, 2]), reason: /truncated salt/ },
    { name: "SASL mechanisms without the final NUL", bytes: typed("R", [0, 0, 0, 10, ...s("SCRAM-SHA-256")]), reason: /missing NUL/ },
    { name: "AuthenticationOk with trailing bytes", bytes: typed("R", [0, 0, 0, 0, 1]), reason: /unexpected bytes/ },
    { name: "ParameterStatus without value", bytes: typed("S", s("a")), reason: /missing NUL/ },
    { name: "BackendKeyData too short", bytes: typed("K", [0, 0, 0, 1, 2]), reason: /secret key of 1 bytes/ },
    { name: "ErrorResponse without terminator", bytes: typed("E", [0x53, ...s("ERROR")]), reason: /truncated field code/ },
    { name: "ErrorResponse field without NUL", bytes: typed("E", [0x53, 0x45]), reason: /missing NUL/ },
    { name: "CommandComplete without NUL", bytes: typed("C", [...encodeUtf8("SELECT 1")]), reason: /missing NUL/ },
    { name: "CopyInResponse truncated", bytes: typed("G", [0, 0, 2, 0, 0]), reason: /truncated column format/ },
    { name: "CopyOutResponse negative count", bytes: typed("H", [0, 0xff, 0xff]), reason: /negative/ },
    { name: "NotificationResponse truncated", bytes: typed("A", [0, 0, 0, 1, ...s("ch")]), reason: /missing NUL after payload/ },
    { name: "over the configured limit (header only)", bytes: typed("D", [], 1 << 20), reason: /over 1000/, code: "too-large", options: { maxMessageBytes: 1000 } },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const r = feed([c.bytes], c.options);
      expect(r.messages).toEqual([]);
      if (r.last.kind !== "error") throw new Error(`expected an error, got ${r.last.kind}`);
      expect(r.last.error.code).toBe((c.code ?? "malformed") as "malformed");
      expect(r.last.error.reason).toMatch(c.reason);
      r.parser.push(serializeReadyForQuery("I"));
      expect(r.parser.next()).toEqual(r.last);
    });
  }
});
