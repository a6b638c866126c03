// Frontend messages (what a client sends): a sans-IO framing parser for the
// agent's side, and serializers for what the gateway sends upstream.
//
// Stages of the parser:
//   1. STARTUP phase (no type byte): int32 length, int32 code. The code says
//      SSLRequest, GSSENCRequest, CancelRequest or a StartupMessage (protocol
//      3.x, then name/value C-string pairs ending in an empty name). After a
//      StartupMessage the parser moves to the normal phase by itself; after
//      SSLRequest/GSSENCRequest it stays in the startup phase.
//   2. NORMAL phase: type byte, int32 length (itself included), body. The
//      type byte is checked first and the length next, so an unknown type or
//      an oversized message is refused before its body is buffered.
//   3. DECODE: the messages the gateway must understand become plain objects;
//      every message keeps `raw`, its exact bytes, to forward untouched.
//
// Results are values: "need-more", a message, or a WireError. After an
// error the parser is dead and keeps returning that error. Nothing throws.
//
// Limits (all on the declared length, length field included):
//   - a startup-phase packet: 8..10000 bytes (PostgreSQL's own
//     MAX_STARTUP_PACKET_LENGTH is 10000);
//   - CopyData, Bind and FunctionCall (they carry row and parameter data):
//     `maxDataMessageBytes`, default 64 MiB;
//   - every other typed message: `maxMessageBytes`, default 1 MiB (query
//     text, names, auth tokens);
//   - Sync, Flush, Terminate and CopyDone must have length exactly 4.
//
// TLS: when the session answers an SSLRequest with 'S', bytes that arrived
// after the SSLRequest and before the handshake were sent in clear and must
// not be trusted (CVE-2021-23214): check `buffered === 0` before starting
// TLS, and feed the decrypted stream to a new parser.
//
// Text: strings are decoded as UTF-8 (invalid sequences become U+FFFD);
// Query and Parse say whether their text was valid UTF-8 (`utf8`), so a
// caller can fail closed on text it cannot read faithfully.

import {
  CANCEL_REQUEST_CODE,
  FrontendCode,
  GSSENC_REQUEST_CODE,
  PROTOCOL_3_0,
  SPECIAL_MAJOR,
  SSL_REQUEST_CODE,
} from "./codes.ts";
import { Reader, Writer, decodeUtf8Checked, emptyMessage } from "./bytes.ts";
import { describeByte, malformed, tooLarge, unsupported, type WireError } from "./error.ts";
import { FramingParser, NEED_MORE, fail, takeTypedFrame, type FrameRules, type WireResult } from "./framing.ts";

export const MAX_STARTUP_PACKET_BYTES = 10000;
export const DEFAULT_MAX_MESSAGE_BYTES = 1 << 20;
export const DEFAULT_MAX_DATA_MESSAGE_BYTES = 64 << 20;

/** 'S' a prepared statement, 'P' a portal (Describe and Close). */
export type StatementOrPortal = "S" | "P";

/** A Bind/FunctionCall value: its bytes, or null for SQL NULL (length -1). */
export type WireValue = Uint8Array | null;

export type FrontendMessage =
  | { type: "StartupMessage"; raw: Uint8Array; major: number; minor: number; parameters: Map<string, string> }
  | { type: "SSLRequest"; raw: Uint8Array }
  | { type: "GSSENCRequest"; raw: Uint8Array }
  /** `secretKey` is 4 bytes in protocol 3.0 (up to 256 in 3.2). */
  | { type: "CancelRequest"; raw: Uint8Array; processId: number; secretKey: Uint8Array }
  | { type: "Query"; raw: Uint8Array; sql: string; utf8: boolean }
  | { type: "Parse"; raw: Uint8Array; name: string; sql: string; utf8: boolean; paramTypes: number[] }
  | {
      type: "Bind";
      raw: Uint8Array;
      portal: string;
      statement: string;
      paramFormats: number[];
      params: WireValue[];
      resultFormats: number[];
    }
  | { type: "Describe"; raw: Uint8Array; kind: StatementOrPortal; name: string }
  | { type: "Close"; raw: Uint8Array; kind: StatementOrPortal; name: string }
  /** `maxRows` 0 means no limit. */
  | { type: "Execute"; raw: Uint8Array; portal: string; maxRows: number }
  | { type: "Sync"; raw: Uint8Array }
  | { type: "Flush"; raw: Uint8Array }
  | { type: "Terminate"; raw: Uint8Array }
  | { type: "CopyData"; raw: Uint8Array; data: Uint8Array }
  | { type: "CopyDone"; raw: Uint8Array }
  | { type: "CopyFail"; raw: Uint8Array; message: string }
  | {
      type: "FunctionCall";
      raw: Uint8Array;
      functionOid: number;
      argFormats: number[];
      args: WireValue[];
      resultFormat: number;
    }
  /**
   * 'p': PasswordMessage, SASLInitialResponse, SASLResponse or GSSResponse;
   * which one depends on the authentication request it answers. Decode with
   * decodePasswordMessage / decodeSASLInitialResponse; a SASLResponse's data
   * is the body itself.
   */
  | { type: "PasswordMessage"; raw: Uint8Array; body: Uint8Array };

export type FrontendMessageType = FrontendMessage["type"];

export type FrontendResult = WireResult<FrontendMessage>;

export interface FrontendParserOptions {
  /** Start in the normal phase (for a stream whose startup was already read). */
  phase?: "startup" | "normal";
  /** Declared-length limit of typed messages other than the data-carrying ones. Default 1 MiB. */
  maxMessageBytes?: number;
  /** Declared-length limit of CopyData, Bind and FunctionCall. Default 64 MiB. */
  maxDataMessageBytes?: number;
}

const DATA_CODES = new Set<number>([FrontendCode.CopyData, FrontendCode.Bind, FrontendCode.FunctionCall]);
const EMPTY_CODES = new Set<number>([FrontendCode.Sync, FrontendCode.Flush, FrontendCode.Terminate, FrontendCode.CopyDone]);
const KNOWN_CODES = new Set<number>(Object.values(FrontendCode));

export class FrontendParser extends FramingParser<FrontendMessage> {
  private currentPhase: "startup" | "normal";
  private readonly rules: FrameRules;

  constructor(options: FrontendParserOptions = {}) {
    super();
    this.currentPhase = options.phase ?? "startup";
    const maxMessage = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    const maxData = options.maxDataMessageBytes ?? DEFAULT_MAX_DATA_MESSAGE_BYTES;
    this.rules = {
      side: "frontend",
      known: (code) => KNOWN_CODES.has(code),
      refuse: (code, len) => {
        if (EMPTY_CODES.has(code) && len !== 4) return malformed(`message ${describeByte(code)} length ${len}, expected 4`);
        const limit = DATA_CODES.has(code) ? maxData : maxMessage;
        return len > limit ? tooLarge(`message ${describeByte(code)} length ${len} over ${limit}`) : undefined;
      },
    };
  }

  get phase(): "startup" | "normal" {
    return this.currentPhase;
  }

  protected read(): FrontendResult {
    return this.currentPhase === "startup" ? this.nextStartup() : this.nextTyped();
  }

  private nextStartup(): FrontendResult {
    const q = this.queue;
    if (q.size < 4) return NEED_MORE;
    const len = q.int32At(0);
    if (len < 8) return fail(malformed(`startup packet length ${len} below 8`));
    if (len > MAX_STARTUP_PACKET_BYTES) return fail(tooLarge(`startup packet length ${len} over ${MAX_STARTUP_PACKET_BYTES}`));
    if (q.size < 8) return NEED_MORE;
    const code = q.int32At(4);
    const major = code >>> 16;
    if (major !== 3 && major !== SPECIAL_MAJOR) return fail(unsupported(`protocol version ${major}.${code & 0xffff}`));
    if (major === SPECIAL_MAJOR && code !== SSL_REQUEST_CODE && code !== GSSENC_REQUEST_CODE && code !== CANCEL_REQUEST_CODE) {
      return fail(unsupported(`startup request code ${code}`));
    }
    if ((code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) && len !== 8) {
      return fail(malformed(`encryption request length ${len}, expected 8`));
    }
    if (code === CANCEL_REQUEST_CODE && (len < 16 || len > 12 + 256)) return fail(malformed(`CancelRequest length ${len}`));
    if (q.size < len) return NEED_MORE;
    const raw = q.take(len);
    if (code === SSL_REQUEST_CODE) return msg({ type: "SSLRequest", raw });
    if (code === GSSENC_REQUEST_CODE) return msg({ type: "GSSENCRequest", raw });
    const r = new Reader(raw.subarray(8));
    if (code === CANCEL_REQUEST_CODE) {
      const processId = r.int32("process id")!;
      return msg({ type: "CancelRequest", raw, processId, secretKey: r.rest() });
    }
    const parameters = new Map<string, string>();
    for (;;) {
      const name = r.cstring("parameter name");
      if (name === undefined) return fail(malformed(r.error!));
      if (name === "") break;
      const value = r.cstring("parameter value");
      if (value === undefined) return fail(malformed(r.error!));
      parameters.set(name, value);
    }
    r.end("startup parameters");
    if (r.error !== undefined) return fail(malformed(r.error));
    this.currentPhase = "normal";
    return msg({ type: "StartupMessage", raw, major, minor: code & 0xffff, parameters });
  }

  private nextTyped(): FrontendResult {
    const raw = takeTypedFrame(this.queue, this.rules);
    if (!(raw instanceof Uint8Array)) return raw;
    const decoded = decodeTyped(raw[0]!, raw);
    return "type" in decoded ? msg(decoded) : fail(decoded);
  }
}

function msg(message: FrontendMessage): FrontendResult {
  return { kind: "message", message };
}

function int16List(r: Reader, what: string): number[] | undefined {
  const n = r.int16(`${what} count`);
  if (n === undefined) return undefined;
  if (n < 0) {
    r.error ??= `negative ${what} count`;
    return undefined;
  }
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const v = r.int16(what);
    if (v === undefined) return undefined;
    out.push(v);
  }
  return out;
}

function valueList(r: Reader, what: string): WireValue[] | undefined {
  const n = r.int16(`${what} count`);
  if (n === undefined) return undefined;
  if (n < 0) {
    r.error ??= `negative ${what} count`;
    return undefined;
  }
  const out: WireValue[] = [];
  for (let i = 0; i < n; i++) {
    const len = r.int32(`${what} length`);
    if (len === undefined) return undefined;
    if (len === -1) {
      out.push(null);
      continue;
    }
    if (len < -1) {
      r.error ??= `${what} ${i} length ${len}`;
      return undefined;
    }
    const v = r.bytesN(len, what);
    if (v === undefined) return undefined;
    out.push(v);
  }
  return out;
}

function decodeTyped(code: number, raw: Uint8Array): FrontendMessage | WireError {
  const r = new Reader(raw.subarray(5));
  const done = (m: FrontendMessage): FrontendMessage | WireError => {
    r.end(`${m.type} body`);
    return r.error === undefined ? m : malformed(`${m.type}: ${r.error}`);
  };
  switch (code) {
    case FrontendCode.Query: {
      const sqlBytes = r.cstringBytes("query");
      if (sqlBytes === undefined) return malformed(`Query: ${r.error}`);
      const { text, utf8 } = decodeUtf8Checked(sqlBytes);
      return done({ type: "Query", raw, sql: text, utf8 });
    }
    case FrontendCode.Parse: {
      const stmt = r.cstring("statement name");
      const sqlBytes = r.cstringBytes("query");
      const n = r.int16("parameter type count");
      const paramTypes: number[] = [];
      if (n !== undefined && n < 0) return malformed("Parse: negative parameter type count");
      for (let i = 0; i < (n ?? 0); i++) {
        const t = r.int32("parameter type");
        if (t === undefined) break;
        paramTypes.push(t >>> 0);
      }
      if (r.error !== undefined || stmt === undefined || sqlBytes === undefined) return malformed(`Parse: ${r.error}`);
      const { text, utf8 } = decodeUtf8Checked(sqlBytes);
      return done({ type: "Parse", raw, name: stmt, sql: text, utf8, paramTypes });
    }
    case FrontendCode.Bind: {
      const portal = r.cstring("portal name");
      const statement = r.cstring("statement name");
      const paramFormats = int16List(r, "parameter format");
      const params = valueList(r, "parameter");
      const resultFormats = int16List(r, "result format");
      if (portal === undefined || statement === undefined || !paramFormats || !params || !resultFormats) {
        return malformed(`Bind: ${r.error}`);
      }
      return done({ type: "Bind", raw, portal, statement, paramFormats, params, resultFormats });
    }
    case FrontendCode.Describe:
    case FrontendCode.Close: {
      const type = code === FrontendCode.Describe ? "Describe" : "Close";
      const kind = r.int8("target kind");
      const target = r.cstring("name");
      if (kind === undefined || target === undefined) return malformed(`${type}: ${r.error}`);
      if (kind !== 0x53 && kind !== 0x50) return malformed(`${type}: target kind ${describeByte(kind)}`);
      return done({ type, raw, kind: kind === 0x53 ? "S" : "P", name: target });
    }
    case FrontendCode.Execute: {
      const portal = r.cstring("portal name");
      const maxRows = r.int32("row limit");
      if (portal === undefined || maxRows === undefined) return malformed(`Execute: ${r.error}`);
      return done({ type: "Execute", raw, portal, maxRows });
    }
    case FrontendCode.Sync:
      return { type: "Sync", raw };
    case FrontendCode.Flush:
      return { type: "Flush", raw };
    case FrontendCode.Terminate:
      return { type: "Terminate", raw };
    case FrontendCode.CopyDone:
      return { type: "CopyDone", raw };
    case FrontendCode.CopyData:
      return { type: "CopyData", raw, data: r.rest() };
    case FrontendCode.CopyFail: {
      const message = r.cstring("message");
      if (message === undefined) return malformed(`CopyFail: ${r.error}`);
      return done({ type: "CopyFail", raw, message });
    }
    case FrontendCode.FunctionCall: {
      const oid = r.int32("function oid");
      const argFormats = int16List(r, "argument format");
      const args = valueList(r, "argument");
      const resultFormat = r.int16("result format");
      if (oid === undefined || !argFormats || !args || resultFormat === undefined) return malformed(`FunctionCall: ${r.error}`);
      return done({ type: "FunctionCall", raw, functionOid: oid >>> 0, argFormats, args, resultFormat });
    }
    case FrontendCode.PasswordMessage:
      return { type: "PasswordMessage", raw, body: r.rest() };
    default:
      return malformed(`unknown frontend message type ${describeByte(code)}`);
  }
}

// ---- 'p' bodies, decoded once the session knows which request they answer ----

/** A PasswordMessage body: the password (cleartext, or "md5..." hex) as a C string. */
export function decodePasswordMessage(body: Uint8Array): { password: string } | WireError {
  const r = new Reader(body);
  const password = r.cstring("password");
  r.end("password");
  return r.error === undefined && password !== undefined ? { password } : malformed(`PasswordMessage: ${r.error}`);
}

/** A SASLInitialResponse body: mechanism name, int32 length (-1: no data), data. */
export function decodeSASLInitialResponse(body: Uint8Array): { mechanism: string; data: Uint8Array | null } | WireError {
  const r = new Reader(body);
  const mechanism = r.cstring("mechanism");
  const len = r.int32("data length");
  let data: Uint8Array | null = null;
  if (len !== undefined && len !== -1) {
    if (len < -1) return malformed(`SASLInitialResponse: data length ${len}`);
    data = r.bytesN(len, "data") ?? null;
  }
  r.end("data");
  if (r.error !== undefined || mechanism === undefined) return malformed(`SASLInitialResponse: ${r.error}`);
  return { mechanism, data };
}

// ---- serializers (what the gateway writes upstream, and test fixtures) ----

/** StartupMessage for protocol 3.0; parameters in insertion order (user, database, ...). */
export function serializeStartupMessage(parameters: Iterable<[string, string]>, version = PROTOCOL_3_0): Uint8Array {
  const w = new Writer().int32(version);
  for (const [k, v] of parameters) w.cstring(k).cstring(v);
  return w.int8(0).packet();
}

export function serializeSSLRequest(): Uint8Array {
  return new Writer().int32(SSL_REQUEST_CODE).packet();
}

export function serializeGSSENCRequest(): Uint8Array {
  return new Writer().int32(GSSENC_REQUEST_CODE).packet();
}

export function serializeCancelRequest(processId: number, secretKey: Uint8Array): Uint8Array {
  return new Writer().int32(CANCEL_REQUEST_CODE).int32(processId).bytes(secretKey).packet();
}

/** PasswordMessage: a cleartext password or an "md5"-prefixed hash. */
export function serializePasswordMessage(password: string): Uint8Array {
  return new Writer().cstring(password).message(FrontendCode.PasswordMessage);
}

export function serializeSASLInitialResponse(mechanism: string, data: Uint8Array | null): Uint8Array {
  const w = new Writer().cstring(mechanism);
  if (data === null) w.int32(-1);
  else w.int32(data.length).bytes(data);
  return w.message(FrontendCode.PasswordMessage);
}

export function serializeSASLResponse(data: Uint8Array): Uint8Array {
  return new Writer().bytes(data).message(FrontendCode.PasswordMessage);
}

export function serializeQuery(sql: string): Uint8Array {
  return new Writer().cstring(sql).message(FrontendCode.Query);
}

export function serializeParse(name: string, sql: string, paramTypes: readonly number[] = []): Uint8Array {
  const w = new Writer().cstring(name).cstring(sql).int16(paramTypes.length);
  for (const t of paramTypes) w.int32(t);
  return w.message(FrontendCode.Parse);
}

function writeValues(w: Writer, values: readonly WireValue[]): void {
  w.int16(values.length);
  for (const v of values) {
    if (v === null) w.int32(-1);
    else w.int32(v.length).bytes(v);
  }
}

function writeInt16s(w: Writer, values: readonly number[]): void {
  w.int16(values.length);
  for (const v of values) w.int16(v);
}

export function serializeBind(b: {
  portal?: string;
  statement?: string;
  paramFormats?: readonly number[];
  params?: readonly WireValue[];
  resultFormats?: readonly number[];
}): Uint8Array {
  const w = new Writer().cstring(b.portal ?? "").cstring(b.statement ?? "");
  writeInt16s(w, b.paramFormats ?? []);
  writeValues(w, b.params ?? []);
  writeInt16s(w, b.resultFormats ?? []);
  return w.message(FrontendCode.Bind);
}

export function serializeDescribe(kind: StatementOrPortal, name = ""): Uint8Array {
  return new Writer().int8(kind.charCodeAt(0)).cstring(name).message(FrontendCode.Describe);
}

export function serializeClose(kind: StatementOrPortal, name = ""): Uint8Array {
  return new Writer().int8(kind.charCodeAt(0)).cstring(name).message(FrontendCode.Close);
}

export function serializeExecute(portal = "", maxRows = 0): Uint8Array {
  return new Writer().cstring(portal).int32(maxRows).message(FrontendCode.Execute);
}

export function serializeSync(): Uint8Array {
  return emptyMessage(FrontendCode.Sync);
}

export function serializeFlush(): Uint8Array {
  return emptyMessage(FrontendCode.Flush);
}

export function serializeTerminate(): Uint8Array {
  return emptyMessage(FrontendCode.Terminate);
}

export function serializeCopyData(data: Uint8Array): Uint8Array {
  return new Writer(data.length + 8).bytes(data).message(FrontendCode.CopyData);
}

export function serializeCopyDone(): Uint8Array {
  return emptyMessage(FrontendCode.CopyDone);
}

export function serializeCopyFail(message: string): Uint8Array {
  return new Writer().cstring(message).message(FrontendCode.CopyFail);
}

export function serializeFunctionCall(f: {
  functionOid: number;
  argFormats?: readonly number[];
  args?: readonly WireValue[];
  resultFormat?: number;
}): Uint8Array {
  const w = new Writer().int32(f.functionOid);
  writeInt16s(w, f.argFormats ?? []);
  writeValues(w, f.args ?? []);
  return w.int16(f.resultFormat ?? 0).message(FrontendCode.FunctionCall);
}

/** Serializes any decoded frontend message from its fields (its `raw` is ignored). */
export function serializeFrontend(m: FrontendMessage): Uint8Array {
  switch (m.type) {
    case "StartupMessage":
      return serializeStartupMessage(m.parameters, (m.major << 16) | m.minor);
    case "SSLRequest":
      return serializeSSLRequest();
    case "GSSENCRequest":
      return serializeGSSENCRequest();
    case "CancelRequest":
      return serializeCancelRequest(m.processId, m.secretKey);
    case "Query":
      return serializeQuery(m.sql);
    case "Parse":
      return serializeParse(m.name, m.sql, m.paramTypes);
    case "Bind":
      return serializeBind(m);
    case "Describe":
      return serializeDescribe(m.kind, m.name);
    case "Close":
      return serializeClose(m.kind, m.name);
    case "Execute":
      return serializeExecute(m.portal, m.maxRows);
    case "Sync":
      return serializeSync();
    case "Flush":
      return serializeFlush();
    case "Terminate":
      return serializeTerminate();
    case "CopyData":
      return serializeCopyData(m.data);
    case "CopyDone":
      return serializeCopyDone();
    case "CopyFail":
      return serializeCopyFail(m.message);
    case "FunctionCall":
      return serializeFunctionCall(m);
    case "PasswordMessage":
      return new Writer().bytes(m.body).message(FrontendCode.PasswordMessage);
    default: {
      const never: never = m;
      throw new Error(`unknown message ${JSON.stringify(never)}`);
    }
  }
}

