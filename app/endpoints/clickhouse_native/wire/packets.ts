// ClickHouse native-protocol packets, as the gateway reads and writes them
// (Core/Protocol.h names; revisions from Core/Defines.h). Packets the
// gateway reads in full are parsed to values; Data blocks are only measured
// (block.ts) and forwarded as they came.
import { NeedMore, Reader, WireError, Writer } from "./reader.ts";
import { skipCompressedBlock, skipNativeBlock } from "./block.ts";
import { SETTING_WIRE_KINDS } from "./settings.ts";

/** Protocol::Client */
export const ClientPacket = { Hello: 0, Query: 1, Data: 2, Cancel: 3, Ping: 4, TablesStatusRequest: 5 } as const;
/** Protocol::Server */
export const ServerPacket = { Hello: 0, Data: 1, Exception: 2, Progress: 3, Pong: 4, EndOfStream: 5 } as const;

export const DBMS_MIN_REVISION_WITH_CLIENT_INFO = 54032;
export const DBMS_MIN_REVISION_WITH_SERVER_TIMEZONE = 54058;
export const DBMS_MIN_REVISION_WITH_QUOTA_KEY_IN_CLIENT_INFO = 54060;
export const DBMS_MIN_REVISION_WITH_SERVER_DISPLAY_NAME = 54372;
export const DBMS_MIN_REVISION_WITH_VERSION_PATCH = 54401;
/** Settings become strings with flags at 54429; the gateway stays below. */
export const DBMS_MIN_REVISION_WITH_SETTINGS_SERIALIZED_AS_STRINGS = 54429;

/** The newest revision the gateway reads (ClickHouse 18.16's); both sides are negotiated down to it. */
export const GATEWAY_MAX_REVISION = 54412;
/** Older clients are refused: their Query packets lack the client info and quota key read here. */
export const GATEWAY_MIN_REVISION = DBMS_MIN_REVISION_WITH_QUOTA_KEY_IN_CLIENT_INFO;

/** ErrorCodes the gateway answers with. */
export const ErrorCode = { UNEXPECTED_PACKET_FROM_CLIENT: 102, UNKNOWN_PACKET_FROM_CLIENT: 100, AUTHENTICATION_FAILED: 516, ACCESS_DENIED: 497, ALL_CONNECTION_TRIES_FAILED: 279, CLIENT_HAS_CONNECTED_TO_WRONG_PORT: 217 } as const;

export interface ClientHello {
  clientName: string;
  major: number;
  minor: number;
  revision: number;
  database: string;
  user: string;
  password: string;
}

export interface ServerHello {
  name: string;
  major: number;
  minor: number;
  revision: number;
  timezone?: string;
  displayName?: string;
  patch?: number;
}

export interface QueryPacket {
  queryId: string;
  /** ClientInfo's query_kind: 1 initial (what clients send), 2 secondary (server to server). */
  queryKind: number;
  settings: Record<string, string>;
  stage: number;
  compression: boolean;
  query: string;
}

export type ClientMessage =
  | { type: "Hello"; hello: ClientHello }
  | { type: "Query"; query: QueryPacket }
  | { type: "Data" }
  | { type: "Cancel" }
  | { type: "Ping" }
  | { type: "TablesStatusRequest" };

/**
 * One client packet at r.pos. `revision` is the negotiated one (0 before
 * Hello); `compressed` whether Data blocks are (the last Query's choice).
 * Throws NeedMore or WireError; r.pos ends after the packet.
 */
export function readClientPacket(r: Reader, revision: number, compressed: boolean): ClientMessage {
  const type = r.varUInt();
  switch (type) {
    case ClientPacket.Hello:
      return { type: "Hello", hello: { clientName: r.string(), major: r.varUInt(), minor: r.varUInt(), revision: r.varUInt(), database: r.string(), user: r.string(), password: r.string() } };
    case ClientPacket.Query:
      return { type: "Query", query: readQuery(r, revision) };
    case ClientPacket.Data:
      r.stringBytes();
      if (compressed) skipCompressedBlock(r);
      else skipNativeBlock(r);
      return { type: "Data" };
    case ClientPacket.Cancel:
      return { type: "Cancel" };
    case ClientPacket.Ping:
      return { type: "Ping" };
    case ClientPacket.TablesStatusRequest: {
      const n = r.varUInt();
      if (n > 100_000) throw new WireError("a TablesStatusRequest naming too many tables");
      for (let i = 0; i < n; i++) {
        r.stringBytes();
        r.stringBytes();
      }
      return { type: "TablesStatusRequest" };
    }
    default:
      throw new WireError(`an unknown client packet type ${type}`);
  }
}

function readQuery(r: Reader, revision: number): QueryPacket {
  const queryId = r.string();
  let queryKind = 1;
  if (revision >= DBMS_MIN_REVISION_WITH_CLIENT_INFO) {
    queryKind = r.u8();
    if (queryKind !== 0) {
      r.stringBytes(); // initial_user
      r.stringBytes(); // initial_query_id
      r.stringBytes(); // initial_address
      const iface = r.u8();
      if (iface === 1) {
        r.stringBytes(); // os_user
        r.stringBytes(); // client_hostname
        r.stringBytes(); // client_name
        r.varUInt();
        r.varUInt();
        r.varUInt(); // client major, minor, revision
      } else if (iface === 2) {
        r.u8(); // http_method
        r.stringBytes(); // http_user_agent
      } else throw new WireError(`an unknown client interface ${iface}`);
      if (revision >= DBMS_MIN_REVISION_WITH_QUOTA_KEY_IN_CLIENT_INFO) r.stringBytes();
      if (iface === 1 && revision >= DBMS_MIN_REVISION_WITH_VERSION_PATCH) r.varUInt();
    }
  }
  const settings = readSettingsBinary(r);
  const stage = r.varUInt();
  const compression = r.varUInt();
  if (compression > 1) throw new WireError(`an unknown compression flag ${compression}`);
  const query = r.string();
  return { queryId, queryKind, settings, stage, compression: compression === 1, query };
}

/** Settings before 54429: name, then the value in its type's own binary form; an empty name ends them. */
function readSettingsBinary(r: Reader): Record<string, string> {
  const out: Record<string, string> = {};
  for (let n = 0; ; n++) {
    if (n > 1000) throw new WireError("more settings than a server knows");
    const name = r.string();
    if (name === "") return out;
    const kind = SETTING_WIRE_KINDS.get(name);
    if (kind === undefined) throw new WireError(`a setting this gateway does not know (${name.slice(0, 64)})`);
    if (kind === "uint") out[name] = String(r.varUInt());
    else if (kind === "int") {
      const z = r.varUInt();
      out[name] = String(z % 2 === 0 ? z / 2 : -(z + 1) / 2);
    } else out[name] = r.string();
  }
}

/** The server's first packet: its Hello, or an Exception (a refused login). */
export function readServerHello(r: Reader, revision: number): { type: "Hello"; hello: ServerHello } | { type: "Exception" } {
  const type = r.varUInt();
  if (type === ServerPacket.Exception) return { type: "Exception" };
  if (type !== ServerPacket.Hello) throw new WireError(`the server answered Hello with packet ${type}`);
  const hello: ServerHello = { name: r.string(), major: r.varUInt(), minor: r.varUInt(), revision: r.varUInt() };
  const negotiated = Math.min(revision, hello.revision);
  if (negotiated >= DBMS_MIN_REVISION_WITH_SERVER_TIMEZONE) hello.timezone = r.string();
  if (negotiated >= DBMS_MIN_REVISION_WITH_SERVER_DISPLAY_NAME) hello.displayName = r.string();
  if (negotiated >= DBMS_MIN_REVISION_WITH_VERSION_PATCH) hello.patch = r.varUInt();
  return { type: "Hello", hello };
}

export function writeClientHello(h: ClientHello): Uint8Array {
  return new Writer().varUInt(ClientPacket.Hello).string(h.clientName).varUInt(h.major).varUInt(h.minor).varUInt(h.revision).string(h.database).string(h.user).string(h.password).finish();
}

/** The server's Hello as the client should see it: `revision` is what the client negotiates with. */
export function writeServerHello(h: ServerHello, negotiated: number): Uint8Array {
  const w = new Writer().varUInt(ServerPacket.Hello).string(h.name).varUInt(h.major).varUInt(h.minor).varUInt(h.revision);
  if (negotiated >= DBMS_MIN_REVISION_WITH_SERVER_TIMEZONE) w.string(h.timezone ?? "");
  if (negotiated >= DBMS_MIN_REVISION_WITH_SERVER_DISPLAY_NAME) w.string(h.displayName ?? "");
  if (negotiated >= DBMS_MIN_REVISION_WITH_VERSION_PATCH) w.varUInt(h.patch ?? 0);
  return w.finish();
}

/** An Exception packet: code, DB::Exception, the message, no stack trace, nothing nested. */
export function writeException(code: number, message: string): Uint8Array {
  return new Writer().varUInt(ServerPacket.Exception).i32(code).string("DB::Exception").string(message).string("").u8(0).finish();
}

export { NeedMore, Reader, WireError, Writer };
