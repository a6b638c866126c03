// The frontend framing parser: every message whole, at every cut, byte by
// byte and joined with another; the error values for malformed and
// oversized input; the serializers read back by the parser.
import { describe, expect, test } from "bun:test";
import { concatBytes, encodeUtf8 } from "../../../app/endpoints/postgres/wire/bytes.ts";
import {
  FrontendParser,
  decodePasswordMessage,
  decodeSASLInitialResponse,
  serializeBind,
  serializeCancelRequest,
  serializeClose,
  serializeCopyData,
  serializeCopyDone,
  serializeCopyFail,
  serializeDescribe,
  serializeExecute,
  serializeFlush,
  serializeFrontend,
  serializeFunctionCall,
  serializeGSSENCRequest,
  serializeParse,
  serializePasswordMessage,
  serializeQuery,
  serializeSASLInitialResponse,
  serializeSASLResponse,
  serializeSSLRequest,
  serializeStartupMessage,
  serializeSync,
  serializeTerminate,
  type FrontendMessage,
  type FrontendParserOptions,
  type FrontendResult,
} from "../../../app/endpoints/postgres/wire/frontend.ts";
import { feedParser } from "../support/wire-feed.ts";

/** Feeds chunks and collects every result until need-more or an error. */
function feed(chunks: Uint8Array[], options?: FrontendParserOptions): { messages: FrontendMessage[]; last: FrontendResult; parser: FrontendParser } {
  return feedParser<FrontendMessage, FrontendParser>(new FrontendParser(options), chunks);
}

/** Strips raw bytes (checked separately) so fields compare as plain objects. */
function fields(m: FrontendMessage): Record<string, unknown> {
  const { raw: _raw, ...rest } = m;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rest)) {
    if (v instanceof Uint8Array) out[k] = Array.from(v);
    else if (v instanceof Map) out[k] = [...v];
    else if (Array.isArray(v)) out[k] = v.map((x) => (x instanceof Uint8Array ? Array.from(x) : x));
    else out[k] = v;
  }
  return out;
}

interface Fixture {
  name: string;
  phase: "startup" | "normal";
  bytes: Uint8Array;
  expect: Record<string, unknown>;
}

const fixtures: Fixture[] = [
  {
    name: "StartupMessage",
    phase: "startup",
    bytes: serializeStartupMessage([["user", "agent"], ["database", "app"], ["application_name", "psql"]]),
    expect: { type: "StartupMessage", major: 3, minor: 0, parameters: [["user", "agent"], ["database", "app"], ["application_name", "psql"]] },
  },
  {
    name: "StartupMessage 3.2 with a _pq_ option",
    phase: "startup",
    bytes: serializeStartupMessage([["user", "u"], ["_pq_.x", "1"]], (3 << 16) | 2),
    expect: { type: "StartupMessage", major: 3, minor: 2, parameters: [["user", "u"], ["_pq_.x", "1"]] },
  },
  { name: "SSLRequest", phase: "startup", bytes: serializeSSLRequest(), expect: { type: "SSLRequest" } },
  { name: "GSSENCRequest", phase: "startup", bytes: serializeGSSENCRequest(), expect: { type: "GSSENCRequest" } },
  {
    name: "CancelRequest",
    phase: "startup",
    bytes: serializeCancelRequest(4242, new Uint8Array([1, 2, 3, 4])),
    expect: { type: "CancelRequest", processId: 4242, secretKey: [1, 2, 3, 4] },
  },
  {
    name: "Query",
    phase: "normal",
    bytes: serializeQuery("SELECT 'é' FROM t; DELETE FROM u"),
    expect: { type: "Query", sql: "SELECT 'é' FROM t; DELETE FROM u", utf8: true },
  },
  { name: "empty Query", phase: "normal", bytes: serializeQuery(""), expect: { type: "Query", sql: "", utf8: true } },
  {
    name: "Parse",
    phase: "normal",
    bytes: serializeParse("s1", "SELECT $1::int, $2", [23, 0xffffffff]),
    expect: { type: "Parse", name: "s1", sql: "SELECT $1::int, $2", utf8: true, paramTypes: [23, 0xffffffff] },
  },
  {
    name: "Bind",
    phase: "normal",
    bytes: serializeBind({ portal: "p", statement: "s1", paramFormats: [0, 1], params: [encodeUtf8("42"), null, new Uint8Array()], resultFormats: [1] }),
    expect: { type: "Bind", portal: "p", statement: "s1", paramFormats: [0, 1], params: [[52, 50], null, []], resultFormats: [1] },
  },
  { name: "Describe statement", phase: "normal", bytes: serializeDescribe("S", "s1"), expect: { type: "Describe", kind: "S", name: "s1" } },
  { name: "Describe portal", phase: "normal", bytes: serializeDescribe("P"), expect: { type: "Describe", kind: "P", name: "" } },
  { name: "Close", phase: "normal", bytes: serializeClose("S", "s1"), expect: { type: "Close", kind: "S", name: "s1" } },
  { name: "Execute", phase: "normal", bytes: serializeExecute("p", 100), expect: { type: "Execute", portal: "p", maxRows: 100 } },
  { name: "Sync", phase: "normal", bytes: serializeSync(), expect: { type: "Sync" } },
  { name: "Flush", phase: "normal", bytes: serializeFlush(), expect: { type: "Flush" } },
  { name: "Terminate", phase: "normal", bytes: serializeTerminate(), expect: { type: "Terminate" } },
  { name: "CopyData", phase: "normal", bytes: serializeCopyData(encodeUtf8("1\tone\n")), expect: { type: "CopyData", data: [...encodeUtf8("1\tone\n")] } },
  { name: "CopyDone", phase: "normal", bytes: serializeCopyDone(), expect: { type: "CopyDone" } },
  { name: "CopyFail", phase: "normal", bytes: serializeCopyFail("aborted"), expect: { type: "CopyFail", message: "aborted" } },
  {
    name: "FunctionCall",
    phase: "normal",
    bytes: serializeFunctionCall({ functionOid: 1598, argFormats: [1], args: [new Uint8Array([0, 0, 0, 7]), null], resultFormat: 1 }),
    expect: { type: "FunctionCall", functionOid: 1598, argFormats: [1], args: [[0, 0, 0, 7], null], resultFormat: 1 },
  },
  {
    name: "PasswordMessage",
    phase: "normal",
    bytes: serializePasswordMessage("placeholder"),
    expect: { type: "PasswordMessage", body: [...encodeUtf8("placeholder"), 0] },
  },
  {
    name: "SASLResponse",
    phase: "normal",
    bytes: serializeSASLResponse(encodeUtf8("c=biws,r=abc,p=xyz")),
    expect: { type: "PasswordMessage", body: [...encodeUtf8("c=biws,r=abc,p=xyz")] },
  },
];

describe("every message", () => {
  for (const f of fixtures) {
    const follower = f.phase === "startup" && f.expect.type !== "StartupMessage" ? serializeSSLRequest() : serializeSync();
    test(`${f.name}: whole, at every cut, byte by byte, joined`, () => {
      const opts: FrontendParserOptions = { phase: f.phase };
      const whole = feed([f.bytes], opts);
      expect(whole.messages.length).toBe(1);
      expect(fields(whole.messages[0]!)).toEqual(f.expect);
      expect(Array.from(whole.messages[0]!.raw)).toEqual(Array.from(f.bytes));
      expect(whole.last.kind).toBe("need-more");
      expect(whole.parser.buffered).toBe(0);
      // the serializer reproduces the raw bytes from the fields
      expect(Array.from(serializeFrontend(whole.messages[0]!))).toEqual(Array.from(f.bytes));

      for (let cut = 0; cut <= f.bytes.length; cut++) {
        const r = feed([f.bytes.subarray(0, cut), f.bytes.subarray(cut)], opts);
        expect(r.messages.map(fields)).toEqual([f.expect]);
      }
      const bytewise = feed(Array.from(f.bytes, (b) => new Uint8Array([b])), opts);
      expect(bytewise.messages.map(fields)).toEqual([f.expect]);

      const joined = concatBytes([f.bytes, follower]);
      for (let cut = 0; cut <= joined.length; cut++) {
        const r = feed([joined.subarray(0, cut), joined.subarray(cut)], opts);
        expect(r.messages.length).toBe(2);
        expect(fields(r.messages[0]!)).toEqual(f.expect);
        expect(Array.from(r.messages[1]!.raw)).toEqual(Array.from(follower));
      }
    });
  }

  test("a message inside one chunk is a view of it, not a copy", () => {
    const bytes = concatBytes([serializeQuery("SELECT 1"), serializeSync()]);
    const r = feed([bytes], { phase: "normal" });
    expect(r.messages[0]!.raw.buffer).toBe(bytes.buffer);
    expect(r.messages[1]!.raw.byteOffset).toBe(bytes.byteOffset + r.messages[0]!.raw.length);
  });

  test("a 5 MiB CopyData pushed in 64 KiB pieces comes out once and whole", () => {
    const data = new Uint8Array(5 << 20);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
    const bytes = serializeCopyData(data);
    const pieces: Uint8Array[] = [];
    for (let at = 0; at < bytes.length; at += 65536) pieces.push(bytes.subarray(at, at + 65536));
    const r = feed(pieces, { phase: "normal" });
    expect(r.messages.length).toBe(1);
    const m = r.messages[0]!;
    if (m.type !== "CopyData") throw new Error("not CopyData");
    expect(m.data.length).toBe(data.length);
    expect(Buffer.from(m.data).equals(Buffer.from(data))).toBe(true);
  });

  test("a pipeline of extended-protocol messages in one push", () => {
    const bytes = concatBytes([
      serializeParse("", "SELECT $1"),
      serializeBind({ params: [encodeUtf8("1")] }),
      serializeDescribe("P"),
      serializeExecute(),
      serializeSync(),
      serializeQuery("SELECT 2"),
    ]);
    const r = feed([bytes], { phase: "normal" });
    expect(r.messages.map((m) => m.type)).toEqual(["Parse", "Bind", "Describe", "Execute", "Sync", "Query"]);
  });
});

describe("phases", () => {
  test("SSLRequest keeps the startup phase; StartupMessage moves to normal", () => {
    const p = new FrontendParser();
    p.push(serializeSSLRequest());
    expect(p.next()).toMatchObject({ kind: "message", message: { type: "SSLRequest" } });
    expect(p.phase).toBe("startup");
    p.push(concatBytes([serializeStartupMessage([["user", "u"]]), serializeQuery("SELECT 1")]));
    expect(p.next()).toMatchObject({ kind: "message", message: { type: "StartupMessage" } });
    expect(p.phase).toBe("normal");
    expect(p.next()).toMatchObject({ kind: "message", message: { type: "Query", sql: "SELECT 1" } });
  });

  test("bytes sent after an SSLRequest are visible as buffered (CVE-2021-23214)", () => {
    const p = new FrontendParser();
    p.push(concatBytes([serializeSSLRequest(), serializeQuery("injected")]));
    expect(p.next()).toMatchObject({ kind: "message", message: { type: "SSLRequest" } });
    expect(p.buffered).toBe(serializeQuery("injected").length);
    expect(p.takeBuffered().length).toBe(serializeQuery("injected").length);
    expect(p.buffered).toBe(0);
  });

  test("a Query byte in the startup phase is read as a packet length, and refused", () => {
    const r = feed([serializeQuery("SELECT 1")]);
    // 'Q' 00 00 00 is a length of 0x51000000
    expect(r.last).toMatchObject({ kind: "error", error: { code: "too-large" } });
  });
});

/** A typed message with a hand-written body. */
function typed(code: string, body: number[] | Uint8Array, length?: number): Uint8Array {
  const b = body instanceof Uint8Array ? body : new Uint8Array(body);
  const len = length ?? b.length + 4;
  return concatBytes([new Uint8Array([code.charCodeAt(0), len >>> 24, (len >>> 16) & 255, (len >>> 8) & 255, len & 255]), b]);
}

function packet(words: number[], tail: number[] = [], length?: number): Uint8Array {
  const body: number[] = [];
  for (const w of words) body.push(w >>> 24, (w >>> 16) & 255, (w >>> 8) & 255, w & 255);
  body.push(...tail);
  const len = length ?? body.length + 4;
  return new Uint8Array([len >>> 24, (len >>> 16) & 255, (len >>> 8) & 255, len & 255, ...body]);
}

const s = (text: string) => [...encodeUtf8(text), 0];

describe("error values", () => {
  const cases: { name: string; phase: "startup" | "normal"; bytes: Uint8Array; code: string; reason: RegExp; options?: FrontendParserOptions }[] = [
    { name: "startup length below 8", phase: "startup", bytes: packet([], [], 4), code: "malformed", reason: /below 8/ },
    { name: "startup negative length", phase: "startup", bytes: packet([], [], -1), code: "malformed", reason: /below 8/ },
    { name: "startup over 10000 bytes", phase: "startup", bytes: packet([196608], [], 10001), code: "too-large", reason: /10000/ },
    { name: "protocol 2.0", phase: "startup", bytes: packet([0x20000], [0]), code: "unsupported", reason: /protocol version 2\.0/ },
    { name: "unknown special code", phase: "startup", bytes: packet([80877199]), code: "unsupported", reason: /request code/ },
    { name: "SSLRequest with a body", phase: "startup", bytes: packet([80877103, 0]), code: "malformed", reason: /expected 8/ },
    { name: "CancelRequest too short", phase: "startup", bytes: packet([80877102, 1]), code: "malformed", reason: /CancelRequest/ },
    { name: "startup parameter without NUL", phase: "startup", bytes: packet([196608], [...encodeUtf8("user")]), code: "malformed", reason: /missing NUL/ },
    { name: "startup value without NUL", phase: "startup", bytes: packet([196608], [...s("user"), 0x61]), code: "malformed", reason: /missing NUL after parameter value/ },
    { name: "startup without the final NUL", phase: "startup", bytes: packet([196608], [...s("user"), ...s("u")]), code: "malformed", reason: /missing NUL/ },
    { name: "startup bytes after the final NUL", phase: "startup", bytes: packet([196608], [...s("user"), ...s("u"), 0, 7]), code: "malformed", reason: /unexpected bytes/ },
    { name: "unknown type byte", phase: "normal", bytes: typed("z", []), code: "malformed", reason: /unknown frontend message type 'z'/ },
    { name: "NUL type byte", phase: "normal", bytes: typed("\0", []), code: "malformed", reason: /0x00/ },
    { name: "length below 4", phase: "normal", bytes: typed("Q", [], 3), code: "malformed", reason: /below 4/ },
    { name: "negative length", phase: "normal", bytes: typed("Q", [], -5), code: "malformed", reason: /below 4/ },
    { name: "Sync with a body", phase: "normal", bytes: typed("S", [0]), code: "malformed", reason: /expected 4/ },
    { name: "Terminate with a body", phase: "normal", bytes: typed("X", [1, 2]), code: "malformed", reason: /expected 4/ },
    { name: "Query without NUL", phase: "normal", bytes: typed("Q", [...encodeUtf8("SELECT 1")]), code: "malformed", reason: /Query: missing NUL/ },
    { name: "Query with a second statement after the NUL", phase: "normal", bytes: typed("Q", [...s("SELECT 1"), ...s("DROP TABLE t")]), code: "malformed", reason: /unexpected bytes/ },
    { name: "Parse truncated in its types", phase: "normal", bytes: typed("P", [...s(""), ...s("SELECT $1"), 0, 2, 0, 0, 0, 23]), code: "malformed", reason: /truncated parameter type/ },
    { name: "Parse negative type count", phase: "normal", bytes: typed("P", [...s(""), ...s("x"), 0xff, 0xff]), code: "malformed", reason: /negative/ },
    { name: "Bind parameter longer than the message", phase: "normal", bytes: typed("B", [...s(""), ...s(""), 0, 0, 0, 1, 0, 0, 0, 9, 1, 2, 0, 0]), code: "malformed", reason: /truncated parameter/ },
    { name: "Bind parameter length -2", phase: "normal", bytes: typed("B", [...s(""), ...s(""), 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe, 0, 0]), code: "malformed", reason: /length -2/ },
    { name: "Bind missing result formats", phase: "normal", bytes: typed("B", [...s(""), ...s(""), 0, 0, 0, 0]), code: "malformed", reason: /truncated result format count/ },
    { name: "Describe with kind X", phase: "normal", bytes: typed("D", [0x58, 0]), code: "malformed", reason: /target kind 'X'/ },
    { name: "Describe without name", phase: "normal", bytes: typed("D", [0x53]), code: "malformed", reason: /missing NUL/ },
    { name: "Execute without row limit", phase: "normal", bytes: typed("E", s("")), code: "malformed", reason: /truncated row limit/ },
    { name: "FunctionCall truncated", phase: "normal", bytes: typed("F", [0, 0, 6, 62, 0]), code: "malformed", reason: /FunctionCall/ },
    { name: "Query over 1 MiB (header only)", phase: "normal", bytes: typed("Q", [], (1 << 20) + 1), code: "too-large", reason: /over 1048576/ },
    { name: "CopyData over 64 MiB (header only)", phase: "normal", bytes: typed("d", [], (64 << 20) + 1), code: "too-large", reason: /over 67108864/ },
    { name: "CopyData over a configured limit", phase: "normal", bytes: typed("d", [], 1001), code: "too-large", reason: /over 1000/, options: { maxDataMessageBytes: 1000 } },
    { name: "Query over a configured limit", phase: "normal", bytes: typed("Q", s("x".repeat(100))), code: "too-large", reason: /over 50/, options: { maxMessageBytes: 50 } },
  ];

  for (const c of cases) {
    test(c.name, () => {
      const r = feed([c.bytes], { ...c.options, phase: c.phase });
      expect(r.messages).toEqual([]);
      if (r.last.kind !== "error") throw new Error(`expected an error, got ${r.last.kind}`);
      expect(r.last.error.code).toBe(c.code as "malformed");
      expect(r.last.error.reason).toMatch(c.reason);
      expect(r.last.error.sqlstate).toBe(c.code === "malformed" ? "08P01" : c.code === "too-large" ? "54000" : "0A000");
      // dead after an error: the same error again, more bytes ignored
      r.parser.push(serializeSync());
      expect(r.parser.next()).toEqual(r.last);
    });
  }

  test("an oversized message is refused from its header, before its body arrives", () => {
    const p = new FrontendParser({ phase: "normal" });
    p.push(typed("d", [], 100 << 20).subarray(0, 5));
    expect(p.next()).toMatchObject({ kind: "error", error: { code: "too-large" } });
  });

  test("an unknown type byte is refused before its length arrives", () => {
    const p = new FrontendParser({ phase: "normal" });
    p.push(new Uint8Array([0x7a]));
    expect(p.next()).toMatchObject({ kind: "error", error: { code: "malformed" } });
  });

  test("invalid UTF-8 in a Query is flagged, not hidden", () => {
    const r = feed([typed("Q", [0x53, 0xff, 0x45, 0])], { phase: "normal" });
    expect(r.messages[0]).toMatchObject({ type: "Query", utf8: false, sql: "S\ufffdE" });
  });

  test("the error reason never repeats message content", () => {
    const r = feed([typed("Q", [...encodeUtf8("SELECT secret_value")])], { phase: "normal" });
    if (r.last.kind !== "error") throw new Error("expected error");
    expect(r.last.error.reason).not.toContain("secret_value");
  });
});

describe("'p' body helpers", () => {
  test("PasswordMessage", () => {
    const m = feed([serializePasswordMessage("hunter2")], { phase: "normal" }).messages[0]!;
    if (m.type !== "PasswordMessage") throw new Error("type");
    expect(decodePasswordMessage(m.body)).toEqual({ password: "hunter2" });
    expect(decodePasswordMessage(new Uint8Array([0x61]))).toMatchObject({ code: "malformed" });
    expect(decodePasswordMessage(new Uint8Array([0x61, 0, 0x62]))).toMatchObject({ code: "malformed" });
  });

  test("SASLInitialResponse with data and without", () => {
    const withData = feed([serializeSASLInitialResponse("SCRAM-SHA-256", encodeUtf8("n,,n=,r=abc"))], { phase: "normal" }).messages[0]!;
    if (withData.type !== "PasswordMessage") throw new Error("type");
    const d = decodeSASLInitialResponse(withData.body);
    if ("code" in d) throw new Error(d.reason);
    expect(d.mechanism).toBe("SCRAM-SHA-256");
    expect(new TextDecoder().decode(d.data!)).toBe("n,,n=,r=abc");
    const none = serializeSASLInitialResponse("SCRAM-SHA-256", null).subarray(5);
    expect(decodeSASLInitialResponse(none)).toEqual({ mechanism: "SCRAM-SHA-256", data: null });
  });

  test("SASLInitialResponse malformed", () => {
    expect(decodeSASLInitialResponse(new Uint8Array([...s("M"), 0, 0, 0, 9, 1]))).toMatchObject({ code: "malformed" });
    expect(decodeSASLInitialResponse(new Uint8Array([...s("M"), 0, 0, 0]))).toMatchObject({ code: "malformed" });
    expect(decodeSASLInitialResponse(new Uint8Array([...s("M"), 0, 0, 0, 1, 1, 2]))).toMatchObject({ code: "malformed" });
    expect(decodeSASLInitialResponse(new Uint8Array([...s("M"), 0xff, 0xff, 0xff, 0xf0]))).toMatchObject({ code: "malformed" });
  });
});
