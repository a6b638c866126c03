// Backend messages (what a server sends): a sans-IO framing parser for the
// upstream side, and serializers for what the gateway writes to the agent.
//
// Stages of the parser:
//   1. FRAME: type byte (unknown bytes are refused at once), int32 length
//      (at least 4, at most `maxMessageBytes`, default 1 GiB, PostgreSQL's
//      largest allocation), body; the partial tail is buffered.
//   2. DECODE: the messages the gateway acts on become plain objects
//      (Authentication subtypes, ParameterStatus, BackendKeyData,
//      ReadyForQuery, ErrorResponse/NoticeResponse fields, CommandComplete
//      with its row count, Copy*Response, NotificationResponse,
//      NegotiateProtocolVersion); every other message is kept as
//      `{ type: name, raw }`. Every message keeps `raw` to forward untouched.
//
// The single byte a server answers SSLRequest/GSSENCRequest with is not a
// message: read it from the stream before feeding this parser.
//
// Results are values ("need-more", a message, a WireError); after an error
// the parser is dead. Nothing throws on input.

import { AuthCode, BackendCode, backendCodeName, type BackendCodeName, type TransactionStatus } from "./codes.ts";
import { Reader, Writer, emptyMessage } from "./bytes.ts";
import { describeByte, malformed, tooLarge, type WireError } from "./error.ts";
import { FramingParser, fail, takeTypedFrame, type FrameRules, type WireResult } from "./framing.ts";

export const DEFAULT_MAX_BACKEND_MESSAGE_BYTES = 0x40000000;

/** Authentication request ('R') subtypes. */
export type AuthenticationRequest =
  | { auth: "Ok" }
  | { auth: "CleartextPassword" }
  | { auth: "MD5Password"; salt: Uint8Array }
  | { auth: "SASL"; mechanisms: string[] }
  | { auth: "SASLContinue"; data: Uint8Array }
  | { auth: "SASLFinal"; data: Uint8Array }
  /** KerberosV5, SCMCredential, GSS, GSSContinue, SSPI, or a code this module does not know. */
  | { auth: "Unsupported"; code: number; name: string };

/**
 * ErrorResponse / NoticeResponse fields by their one-letter codes (protocol
 * docs "Error and Notice Message Fields"), with the common ones named.
 */
export interface NoticeFields {
  /** S: localized severity (ERROR, FATAL, PANIC, WARNING, NOTICE, ...). */
  severity: string;
  /** V: severity, never localized (PostgreSQL 9.6+); "" when absent. */
  severityNonLocalized: string;
  /** C: the SQLSTATE. */
  code: string;
  /** M: the primary message. */
  message: string;
  detail?: string;
  hint?: string;
  position?: string;
  where?: string;
  schema?: string;
  table?: string;
  column?: string;
  constraint?: string;
  /** Every field, by its code letter. */
  all: Map<string, string>;
}

/** Names of the messages kept raw (not decoded further). */
export type RawBackendType = Exclude<
  BackendCodeName,
  | "Authentication"
  | "ParameterStatus"
  | "BackendKeyData"
  | "ReadyForQuery"
  | "ErrorResponse"
  | "NoticeResponse"
  | "CommandComplete"
  | "CopyInResponse"
  | "CopyOutResponse"
  | "CopyBothResponse"
  | "NotificationResponse"
  | "NegotiateProtocolVersion"
>;

export type BackendMessage =
  | ({ type: "Authentication"; raw: Uint8Array } & AuthenticationRequest)
  | { type: "ParameterStatus"; raw: Uint8Array; name: string; value: string }
  /** `secretKey` is 4 bytes in protocol 3.0 (up to 256 in 3.2). */
  | { type: "BackendKeyData"; raw: Uint8Array; processId: number; secretKey: Uint8Array }
  | { type: "ReadyForQuery"; raw: Uint8Array; status: TransactionStatus }
  | { type: "ErrorResponse"; raw: Uint8Array; fields: NoticeFields }
  | { type: "NoticeResponse"; raw: Uint8Array; fields: NoticeFields }
  /** `rows`: the count at the end of tags like "INSERT 0 5", "SELECT 3", "COPY 10"; null for "BEGIN". */
  | { type: "CommandComplete"; raw: Uint8Array; tag: string; command: string; rows: number | null }
  | { type: "CopyInResponse" | "CopyOutResponse" | "CopyBothResponse"; raw: Uint8Array; format: number; columnFormats: number[] }
  | { type: "NotificationResponse"; raw: Uint8Array; processId: number; channel: string; payload: string }
  | { type: "NegotiateProtocolVersion"; raw: Uint8Array; newestMinor: number; unrecognizedOptions: string[] }
  | { type: RawBackendType; raw: Uint8Array };

export type BackendResult = WireResult<BackendMessage>;

export interface BackendParserOptions {
  /** Declared-length limit of any message. Default 1 GiB. */
  maxMessageBytes?: number;
}

export class BackendParser extends FramingParser<BackendMessage> {
  private readonly rules: FrameRules;

  constructor(options: BackendParserOptions = {}) {
    super();
    const max = options.maxMessageBytes ?? DEFAULT_MAX_BACKEND_MESSAGE_BYTES;
    this.rules = {
      side: "backend",
      known: (code) => backendCodeName.has(code),
      refuse: (code, len) => (len > max ? tooLarge(`message ${describeByte(code)} length ${len} over ${max}`) : undefined),
    };
  }

  protected read(): BackendResult {
    const raw = takeTypedFrame(this.queue, this.rules);
    if (!(raw instanceof Uint8Array)) return raw;
    const m = decodeBackend(backendCodeName.get(raw[0]!)!, raw);
    return "type" in m ? { kind: "message", message: m } : fail(m);
  }
}

/** The messages whose bodies are decoded; the rest (DataRow, RowDescription, ...) pass as `{ type, raw }`. */
const DECODED: ReadonlySet<BackendCodeName> = new Set<BackendCodeName>([
  "Authentication",
  "ParameterStatus",
  "BackendKeyData",
  "ReadyForQuery",
  "ErrorResponse",
  "NoticeResponse",
  "CommandComplete",
  "CopyInResponse",
  "CopyOutResponse",
  "CopyBothResponse",
  "NotificationResponse",
  "NegotiateProtocolVersion",
]);

/** Decodes one complete backend message (type byte, length, body). */
export function decodeBackend(name: BackendCodeName, raw: Uint8Array): BackendMessage | WireError {
  // Most of a result (its rows) is forwarded untouched: no body view, no reader.
  if (!DECODED.has(name)) return { type: name as RawBackendType, raw };
  const r = new Reader(raw.subarray(5));
  const done = (m: BackendMessage): BackendMessage | WireError => {
    r.end(`${m.type} body`);
    return r.error === undefined ? m : malformed(`${m.type}: ${r.error}`);
  };
  switch (name) {
    case "Authentication": {
      const code = r.int32("authentication code");
      if (code === undefined) return malformed(`Authentication: ${r.error}`);
      switch (code) {
        case AuthCode.Ok:
          return done({ type: name, raw, auth: "Ok" });
        case AuthCode.CleartextPassword:
          return done({ type: name, raw, auth: "CleartextPassword" });
        case AuthCode.MD5Password: {
          const salt = r.bytesN(4, "salt");
          if (salt === undefined) return malformed(`Authentication: ${r.error}`);
          return done({ type: name, raw, auth: "MD5Password", salt });
        }
        case AuthCode.SASL: {
          const mechanisms: string[] = [];
          for (;;) {
            const m = r.cstring("mechanism");
            if (m === undefined) return malformed(`Authentication: ${r.error}`);
            if (m === "") break;
            mechanisms.push(m);
          }
          return done({ type: name, raw, auth: "SASL", mechanisms });
        }
        case AuthCode.SASLContinue:
          return { type: name, raw, auth: "SASLContinue", data: r.rest() };
        case AuthCode.SASLFinal:
          return { type: name, raw, auth: "SASLFinal", data: r.rest() };
        default: {
          const known = Object.entries(AuthCode).find(([, v]) => v === code)?.[0];
          return { type: name, raw, auth: "Unsupported", code, name: known ?? `code ${code}` };
        }
      }
    }
    case "ParameterStatus": {
      const pname = r.cstring("parameter name");
      const value = r.cstring("parameter value");
      if (pname === undefined || value === undefined) return malformed(`ParameterStatus: ${r.error}`);
      return done({ type: name, raw, name: pname, value });
    }
    case "BackendKeyData": {
      const processId = r.int32("process id");
      if (processId === undefined) return malformed(`BackendKeyData: ${r.error}`);
      const secretKey = r.rest();
      if (secretKey.length < 4 || secretKey.length > 256) return malformed(`BackendKeyData: secret key of ${secretKey.length} bytes`);
      return { type: name, raw, processId, secretKey };
    }
    case "ReadyForQuery": {
      const s = r.int8("transaction status");
      if (s === undefined) return malformed(`ReadyForQuery: ${r.error}`);
      if (s !== 0x49 && s !== 0x54 && s !== 0x45) return malformed(`ReadyForQuery: transaction status ${describeByte(s)}`);
      return done({ type: name, raw, status: String.fromCharCode(s) as TransactionStatus });
    }
    case "ErrorResponse":
    case "NoticeResponse": {
      const fields = readNoticeFields(r);
      if (fields === undefined) return malformed(`${name}: ${r.error}`);
      return done({ type: name, raw, fields });
    }
    case "CommandComplete": {
      const tag = r.cstring("command tag");
      if (tag === undefined) return malformed(`CommandComplete: ${r.error}`);
      return done({ type: name, raw, ...parseCommandTag(tag) });
    }
    case "CopyInResponse":
    case "CopyOutResponse":
    case "CopyBothResponse": {
      const format = r.int8("format");
      const n = r.int16("column count");
      const columnFormats: number[] = [];
      if (n !== undefined && n < 0) return malformed(`${name}: negative column count`);
      for (let i = 0; i < (n ?? 0); i++) {
        const f = r.int16("column format");
        if (f === undefined) break;
        columnFormats.push(f);
      }
      if (format === undefined || r.error !== undefined) return malformed(`${name}: ${r.error}`);
      return done({ type: name, raw, format, columnFormats });
    }
    case "NotificationResponse": {
      const processId = r.int32("process id");
      const channel = r.cstring("channel");
      const payload = r.cstring("payload");
      if (processId === undefined || channel === undefined || payload === undefined) return malformed(`NotificationResponse: ${r.error}`);
      return done({ type: name, raw, processId, channel, payload });
    }
    case "NegotiateProtocolVersion": {
      const newestMinor = r.int32("newest minor version");
      const n = r.int32("option count");
      const unrecognizedOptions: string[] = [];
      if (n !== undefined && n < 0) return malformed("NegotiateProtocolVersion: negative option count");
      for (let i = 0; i < (n ?? 0); i++) {
        const o = r.cstring("option");
        if (o === undefined) break;
        unrecognizedOptions.push(o);
      }
      if (newestMinor === undefined || r.error !== undefined) return malformed(`NegotiateProtocolVersion: ${r.error}`);
      return done({ type: name, raw, newestMinor, unrecognizedOptions });
    }
    default:
      return { type: name, raw };
  }
}

function readNoticeFields(r: Reader): NoticeFields | undefined {
  const all = new Map<string, string>();
  for (;;) {
    const code = r.int8("field code");
    if (code === undefined) return undefined;
    if (code === 0) break;
    const value = r.cstring("field value");
    if (value === undefined) return undefined;
    all.set(String.fromCharCode(code), value);
  }
  const f: NoticeFields = {
    severity: all.get("S") ?? "",
    severityNonLocalized: all.get("V") ?? "",
    code: all.get("C") ?? "",
    message: all.get("M") ?? "",
    all,
  };
  const optional: [keyof NoticeFields, string][] = [
    ["detail", "D"], ["hint", "H"], ["position", "P"], ["where", "W"],
    ["schema", "s"], ["table", "t"], ["column", "c"], ["constraint", "n"],
  ];
  for (const [k, letter] of optional) {
    const v = all.get(letter);
    if (v !== undefined) (f as unknown as Record<string, string>)[k] = v;
  }
  return f;
}

/**
 * Splits a CommandComplete tag: the command word(s) and the trailing row
 * count, if the tag carries one. "INSERT oid rows" has the count last;
 * "SELECT n", "UPDATE n", "DELETE n", "MERGE n", "FETCH n", "MOVE n",
 * "COPY n" likewise. Tags without a count ("BEGIN", "CREATE TABLE") give null.
 */
export function parseCommandTag(tag: string): { tag: string; command: string; rows: number | null } {
  const m = /^(INSERT \d+|SELECT|UPDATE|DELETE|MERGE|FETCH|MOVE|COPY) (\d+)$/.exec(tag);
  if (m === null) return { tag, command: tag, rows: null };
  const command = m[1]!.startsWith("INSERT") ? "INSERT" : m[1]!;
  const rows = Number(m[2]);
  return { tag, command, rows: Number.isSafeInteger(rows) ? rows : null };
}

// ---- serializers: what the gateway writes toward the agent (and test servers) ----

export function serializeAuthenticationOk(): Uint8Array {
  return new Writer().int32(AuthCode.Ok).message(BackendCode.Authentication);
}

export function serializeAuthenticationCleartextPassword(): Uint8Array {
  return new Writer().int32(AuthCode.CleartextPassword).message(BackendCode.Authentication);
}

export function serializeAuthenticationMD5Password(salt: Uint8Array): Uint8Array {
  return new Writer().int32(AuthCode.MD5Password).bytes(salt).message(BackendCode.Authentication);
}

export function serializeAuthenticationSASL(mechanisms: readonly string[]): Uint8Array {
  const w = new Writer().int32(AuthCode.SASL);
  for (const m of mechanisms) w.cstring(m);
  return w.int8(0).message(BackendCode.Authentication);
}

export function serializeAuthenticationSASLContinue(data: Uint8Array): Uint8Array {
  return new Writer().int32(AuthCode.SASLContinue).bytes(data).message(BackendCode.Authentication);
}

export function serializeAuthenticationSASLFinal(data: Uint8Array): Uint8Array {
  return new Writer().int32(AuthCode.SASLFinal).bytes(data).message(BackendCode.Authentication);
}

/** Any Authentication subtype by its code (for tests of refused methods). */
export function serializeAuthenticationCode(code: number): Uint8Array {
  return new Writer().int32(code).message(BackendCode.Authentication);
}

export function serializeParameterStatus(name: string, value: string): Uint8Array {
  return new Writer().cstring(name).cstring(value).message(BackendCode.ParameterStatus);
}

export function serializeBackendKeyData(processId: number, secretKey: Uint8Array): Uint8Array {
  return new Writer().int32(processId).bytes(secretKey).message(BackendCode.BackendKeyData);
}

export function serializeReadyForQuery(status: TransactionStatus): Uint8Array {
  return new Writer().int8(status.charCodeAt(0)).message(BackendCode.ReadyForQuery);
}

/** Fields of an ErrorResponse or NoticeResponse the gateway writes. */
export interface NoticeToSend {
  /** ERROR, FATAL (errors); WARNING, NOTICE, INFO, ... (notices). Sent as S and V. */
  severity: string;
  /** SQLSTATE, e.g. "42501". */
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

function noticeBody(n: NoticeToSend): Writer {
  const w = new Writer();
  const field = (letter: string, v: string | undefined) => {
    if (v !== undefined) w.int8(letter.charCodeAt(0)).cstring(v);
  };
  field("S", n.severity);
  field("V", n.severity);
  field("C", n.code);
  field("M", n.message);
  field("D", n.detail);
  field("H", n.hint);
  return w.int8(0);
}

export function serializeErrorResponse(e: NoticeToSend): Uint8Array {
  return noticeBody(e).message(BackendCode.ErrorResponse);
}

export function serializeNoticeResponse(n: NoticeToSend): Uint8Array {
  return noticeBody(n).message(BackendCode.NoticeResponse);
}

export function serializeCommandComplete(tag: string): Uint8Array {
  return new Writer().cstring(tag).message(BackendCode.CommandComplete);
}

export function serializeEmptyQueryResponse(): Uint8Array {
  return emptyMessage(BackendCode.EmptyQueryResponse);
}

export function serializeNoData(): Uint8Array {
  return emptyMessage(BackendCode.NoData);
}

export function serializeParseComplete(): Uint8Array {
  return emptyMessage(BackendCode.ParseComplete);
}

export function serializeBindComplete(): Uint8Array {
  return emptyMessage(BackendCode.BindComplete);
}

export function serializeCloseComplete(): Uint8Array {
  return emptyMessage(BackendCode.CloseComplete);
}

export function serializeNotificationResponse(processId: number, channel: string, payload: string): Uint8Array {
  return new Writer().int32(processId).cstring(channel).cstring(payload).message(BackendCode.NotificationResponse);
}

export function serializeCopyResponse(
  type: "CopyInResponse" | "CopyOutResponse" | "CopyBothResponse",
  format: number,
  columnFormats: readonly number[],
): Uint8Array {
  const w = new Writer().int8(format).int16(columnFormats.length);
  for (const f of columnFormats) w.int16(f);
  return w.message(BackendCode[type]);
}

/** NegotiateProtocolVersion: the newest minor version spoken, and the `_pq_.` options not recognized. */
export function serializeNegotiateProtocolVersion(newestMinor: number, unrecognizedOptions: readonly string[]): Uint8Array {
  const w = new Writer().int32(newestMinor).int32(unrecognizedOptions.length);
  for (const o of unrecognizedOptions) w.cstring(o);
  return w.message(BackendCode.NegotiateProtocolVersion);
}

/** The one byte answering SSLRequest/GSSENCRequest: 'S' go ahead with TLS, 'N' no. */
export function serializeEncryptionResponse(accept: boolean): Uint8Array {
  return new Uint8Array([accept ? 0x53 : 0x4e]);
}

