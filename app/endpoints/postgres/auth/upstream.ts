// The gateway's authentication to the real PostgreSQL server, sans-IO.
//
// The caller writes the StartupMessage (serializeStartupMessage, with the
// real user) itself, then feeds every backend message it reads to
// `receive()` and carries out the step returned:
//   - "send":     write `bytes` upstream, then keep feeding messages;
//   - "continue": nothing to write, keep feeding;
//   - "ok":       authenticated; `session` holds what followed
//                 AuthenticationOk (ParameterStatus, BackendKeyData, notices,
//                 ReadyForQuery's status); the connection is ready;
//   - "failed":   close the upstream connection; `failure` says why.
//
// Stages:
//   1. START: the server's first Authentication request picks the method:
//      SASL -> SCRAM-SHA-256-PLUS when over TLS with binding data and
//      offered, else SCRAM-SHA-256; MD5Password only with allowMd5;
//      CleartextPassword only over TLS; Ok (trust) only with allowTrust;
//      anything else (Kerberos, GSS, SSPI, SCM) is refused.
//   2. SCRAM: SASLInitialResponse -> SASLContinue -> SASLResponse ->
//      SASLFinal, whose ServerSignature must verify before AuthenticationOk
//      is accepted (an Ok that skips it is refused).
//   3. STARTUP: after AuthenticationOk, collect ParameterStatus,
//      BackendKeyData and NoticeResponse until ReadyForQuery.
// An ErrorResponse at any point is a failure carrying the server's SQLSTATE.
//
// Failures: `agentMessage` is fit for the agent: it names neither the real
// user nor the password (it never quotes the server). `logDetail` says what
// happened, may quote the server (which can name the user), and never holds
// the password: any occurrence is replaced before it is returned.

import type { TransactionStatus } from "../wire/codes.ts";
import type { BackendMessage, NoticeFields } from "../wire/backend.ts";
import type { WireError } from "../wire/error.ts";
import { serializePasswordMessage, serializeSASLInitialResponse, serializeSASLResponse } from "../wire/frontend.ts";
import { md5PasswordResponse } from "./md5.ts";
import {
  DEFAULT_MAX_ITERATIONS,
  SCRAM_SHA_256,
  SCRAM_SHA_256_PLUS,
  clientFinalMessage,
  clientFirstMessage,
  parseServerFirst,
  randomNonce,
  verifyServerFinal,
  type ChannelBindingFlag,
  type ClientFinal,
  type ClientFirst,
} from "./scram.ts";

export interface UpstreamAuthOptions {
  /** The real role name (as sent in the StartupMessage; used by md5). */
  user: string;
  /** The real password (the credential's secret). */
  password: string;
  /** Answer AuthenticationMD5Password (endpoint `allow_md5`). */
  allowMd5: boolean;
  /** The connection to the server is TLS (cleartext passwords are sent only then). */
  overTls: boolean;
  /** tls-server-end-point data of the server certificate (tlsServerEndPoint()); enables SCRAM-SHA-256-PLUS. */
  channelBinding?: Uint8Array | null;
  /** Refuse to authenticate without channel binding (libpq's channel_binding=require). Default false. */
  requireChannelBinding?: boolean;
  /** Accept a server that asks for no authentication (trust). Default false: fail closed. */
  allowTrust?: boolean;
  /** Client nonce source; tests inject a fixed one. Default 18 random bytes, base64. */
  nonce?: () => string;
  /** Highest SCRAM iteration count accepted. Default 1,000,000. */
  maxIterations?: number;
}

export type AuthMethod = "scram-sha-256-plus" | "scram-sha-256" | "md5" | "password" | "trust";

/** What followed AuthenticationOk, up to and including ReadyForQuery. */
export interface UpstreamSession {
  method: AuthMethod;
  /** ParameterStatus pairs in arrival order (server_version, client_encoding, ...). */
  parameters: [string, string][];
  /** The server's BackendKeyData, for mapping the agent's CancelRequest; null if none was sent. */
  backendKey: { processId: number; secretKey: Uint8Array } | null;
  transactionStatus: TransactionStatus;
  /** NoticeResponse messages received during startup, raw, to replay to the agent if wanted. */
  notices: Uint8Array[];
  /** The raw ParameterStatus, BackendKeyData and ReadyForQuery messages, in order. */
  raw: Uint8Array[];
}

export interface AuthFailure {
  /** The server's SQLSTATE when it refused; 28000 when the gateway refused a method; 08P01 for a protocol fault. */
  sqlstate: string;
  /** Safe for the agent: no user name, no password, no server text. */
  agentMessage: string;
  /** For the gateway's log: what happened; never contains the password. */
  logDetail: string;
}

export type AuthStep =
  | { kind: "send"; bytes: Uint8Array }
  | { kind: "continue" }
  | { kind: "ok"; session: UpstreamSession }
  | { kind: "failed"; failure: AuthFailure };

type State =
  | { name: "start" }
  | { name: "scram-first-sent"; first: ClientFirst; flag: ChannelBindingFlag; plus: boolean }
  | { name: "scram-final-sent"; final: ClientFinal; plus: boolean }
  | { name: "scram-verified"; plus: boolean }
  | { name: "password-sent"; method: "md5" | "password" }
  | { name: "startup"; session: UpstreamSession }
  | { name: "done" };

const CONTINUE: AuthStep = { kind: "continue" };
const utf8 = new TextDecoder("utf-8", { fatal: false });

export class UpstreamAuth {
  private state: State = { name: "start" };

  constructor(private readonly options: UpstreamAuthOptions) {}

  /** True once "ok" or "failed" was returned. */
  get finished(): boolean {
    return this.state.name === "done";
  }

  /** Feeds one backend message read from the server. */
  receive(m: BackendMessage): AuthStep {
    const st = this.state;
    if (st.name === "done") throw new Error("UpstreamAuth.receive after the exchange finished");
    if (m.type === "ErrorResponse") return this.serverRefused(m.fields);
    if (m.type === "NoticeResponse") {
      if (st.name === "startup") st.session.notices.push(m.raw);
      return CONTINUE;
    }
    if (m.type === "NegotiateProtocolVersion" && st.name === "start") return CONTINUE;
    switch (st.name) {
      case "start":
        return m.type === "Authentication" ? this.onFirstRequest(m) : this.unexpected(m, "an authentication request");
      case "scram-first-sent":
        if (m.type !== "Authentication" || m.auth !== "SASLContinue") return this.unexpected(m, "AuthenticationSASLContinue");
        return this.onServerFirst(st, m.data);
      case "scram-final-sent": {
        if (m.type !== "Authentication" || m.auth !== "SASLFinal") {
          if (m.type === "Authentication" && m.auth === "Ok") {
            return this.fail("08P01", "server skipped the SCRAM final message (no server signature): refused");
          }
          return this.unexpected(m, "AuthenticationSASLFinal");
        }
        const verdict = verifyServerFinal(utf8.decode(m.data), st.final.expectedServerSignature);
        if (verdict !== "ok") return this.fail("28P01", `SCRAM: ${verdict}`);
        this.state = { name: "scram-verified", plus: st.plus };
        return CONTINUE;
      }
      case "scram-verified":
        if (m.type !== "Authentication" || m.auth !== "Ok") return this.unexpected(m, "AuthenticationOk");
        return this.authenticated(st.plus ? "scram-sha-256-plus" : "scram-sha-256");
      case "password-sent":
        if (m.type !== "Authentication" || m.auth !== "Ok") return this.unexpected(m, "AuthenticationOk");
        return this.authenticated(st.method);
      case "startup":
        return this.onStartup(st.session, m);
      default: {
        const never: never = st;
        throw new Error(`unknown state ${JSON.stringify(never)}`);
      }
    }
  }

  /** A failure for a WireError from the backend parser (the server's bytes were not protocol). */
  static wireFailure(e: WireError): AuthFailure {
    return { sqlstate: "08P01", agentMessage: AGENT_MESSAGES.protocol, logDetail: `upstream sent unreadable bytes during authentication: ${e.reason}` };
  }

  private onFirstRequest(m: Extract<BackendMessage, { type: "Authentication" }>): AuthStep {
    const o = this.options;
    switch (m.auth) {
      case "SASL": {
        const offersPlus = m.mechanisms.includes(SCRAM_SHA_256_PLUS);
        const offersPlain = m.mechanisms.includes(SCRAM_SHA_256);
        if (offersPlus && !o.overTls) {
          return this.fail("08P01", "server offered SCRAM-SHA-256-PLUS over a connection without TLS: refused");
        }
        const canBind = o.overTls && o.channelBinding != null && o.channelBinding.length > 0;
        const plus = offersPlus && canBind;
        if (!plus && o.requireChannelBinding) {
          return this.fail("28000", `channel binding required but not possible (server offers ${m.mechanisms.join(", ") || "nothing"}; TLS ${o.overTls ? "on" : "off"}; binding data ${canBind ? "present" : "absent"})`, "method");
        }
        if (!plus && !offersPlain) {
          return this.fail("28000", `no supported SASL mechanism among: ${m.mechanisms.join(", ") || "(none)"}`, "method");
        }
        const flag: ChannelBindingFlag = plus ? "p" : canBind ? "y" : "n";
        const first = clientFirstMessage(flag, (o.nonce ?? randomNonce)());
        this.state = { name: "scram-first-sent", first, flag, plus };
        return { kind: "send", bytes: serializeSASLInitialResponse(plus ? SCRAM_SHA_256_PLUS : SCRAM_SHA_256, new TextEncoder().encode(first.message)) };
      }
      case "MD5Password":
        if (!o.allowMd5) return this.fail("28000", "server asked for md5 password authentication and allow_md5 is off: refused", "method");
        this.state = { name: "password-sent", method: "md5" };
        return { kind: "send", bytes: serializePasswordMessage(md5PasswordResponse(o.user, o.password, m.salt)) };
      case "CleartextPassword":
        if (!o.overTls) return this.fail("28000", "server asked for a cleartext password over a connection without TLS: refused", "method");
        this.state = { name: "password-sent", method: "password" };
        return { kind: "send", bytes: serializePasswordMessage(o.password) };
      case "Ok":
        if (!o.allowTrust) return this.fail("28000", "server accepted the connection without authentication (trust) and allowTrust is off: refused", "method");
        return this.authenticated("trust");
      case "Unsupported":
        return this.fail("28000", `server asked for ${m.name} authentication, which the gateway does not support`, "method");
      case "SASLContinue":
      case "SASLFinal":
        return this.unexpected(m, "an authentication request");
      default: {
        const never: never = m;
        throw new Error(`unknown authentication request ${JSON.stringify(never)}`);
      }
    }
  }

  private onServerFirst(st: Extract<State, { name: "scram-first-sent" }>, data: Uint8Array): AuthStep {
    const server = parseServerFirst(utf8.decode(data), st.first.clientNonce, this.options.maxIterations ?? DEFAULT_MAX_ITERATIONS);
    if (typeof server === "string") return this.fail("08P01", `SCRAM: ${server}`);
    const binding = st.flag === "p" ? this.options.channelBinding! : new Uint8Array();
    const final = clientFinalMessage(this.options.password, st.first, server, binding);
    this.state = { name: "scram-final-sent", final, plus: st.plus };
    return { kind: "send", bytes: serializeSASLResponse(new TextEncoder().encode(final.message)) };
  }

  private authenticated(method: AuthMethod): AuthStep {
    this.state = { name: "startup", session: { method, parameters: [], backendKey: null, transactionStatus: "I", notices: [], raw: [] } };
    return CONTINUE;
  }

  private onStartup(session: UpstreamSession, m: BackendMessage): AuthStep {
    switch (m.type) {
      case "ParameterStatus":
        session.parameters.push([m.name, m.value]);
        session.raw.push(m.raw);
        return CONTINUE;
      case "BackendKeyData":
        session.backendKey = { processId: m.processId, secretKey: m.secretKey };
        session.raw.push(m.raw);
        return CONTINUE;
      case "ReadyForQuery":
        session.transactionStatus = m.status;
        session.raw.push(m.raw);
        this.state = { name: "done" };
        return { kind: "ok", session };
      default:
        return this.unexpected(m, "ParameterStatus, BackendKeyData or ReadyForQuery");
    }
  }

  private serverRefused(f: NoticeFields): AuthStep {
    const sqlstate = /^[0-9A-Z]{5}$/.test(f.code) ? f.code : "28000";
    const kind = sqlstate === "28P01" || sqlstate === "28000" ? "refused" : "server";
    return this.fail(sqlstate, `server error ${f.severity} ${sqlstate}: ${f.message}`, kind);
  }

  private unexpected(m: BackendMessage, wanted: string): AuthStep {
    const what = m.type === "Authentication" ? `Authentication${m.auth}` : m.type;
    return this.fail("08P01", `server sent ${what} where ${wanted} was expected`);
  }

  private fail(sqlstate: string, detail: string, kind: keyof typeof AGENT_MESSAGES = "protocol"): AuthStep {
    this.state = { name: "done" };
    const pw = this.options.password;
    const logDetail = pw.length > 0 ? detail.split(pw).join("[password]") : detail;
    return { kind: "failed", failure: { sqlstate, agentMessage: AGENT_MESSAGES[kind], logDetail } };
  }
}

const AGENT_MESSAGES = {
  refused: "upstream authentication failed: the server refused the gateway's credential",
  method: "upstream authentication failed: the server asked for an authentication method the gateway does not allow",
  protocol: "upstream authentication failed: the server did not complete a valid authentication exchange",
  server: "upstream connection failed during startup",
} as const;
