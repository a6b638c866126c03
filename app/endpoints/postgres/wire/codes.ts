// PostgreSQL frontend/backend protocol 3.0: every message type byte, with the
// names the protocol documentation uses ("Message Formats", PostgreSQL 15
// docs §55.7), and the special codes of the untyped startup-phase packets.
//
// One byte can mean different messages in each direction ('S' is Sync from
// the frontend and ParameterStatus from the backend; 'D', 'C', 'E', 'H' are
// shared too), so each direction has its own table.

const c = (ch: string): number => ch.charCodeAt(0);

/** Type bytes of messages the frontend (the agent, or the gateway upstream) sends. */
export const FrontendCode = {
  Bind: c("B"),
  Close: c("C"),
  CopyData: c("d"),
  CopyDone: c("c"),
  CopyFail: c("f"),
  Describe: c("D"),
  Execute: c("E"),
  Flush: c("H"),
  FunctionCall: c("F"),
  Parse: c("P"),
  /** PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse all use 'p'. */
  PasswordMessage: c("p"),
  Query: c("Q"),
  Sync: c("S"),
  Terminate: c("X"),
} as const;
export type FrontendCodeName = keyof typeof FrontendCode;

/** Type bytes of messages the backend (the server, or the gateway toward the agent) sends. */
export const BackendCode = {
  Authentication: c("R"),
  BackendKeyData: c("K"),
  BindComplete: c("2"),
  CloseComplete: c("3"),
  CommandComplete: c("C"),
  CopyBothResponse: c("W"),
  CopyData: c("d"),
  CopyDone: c("c"),
  CopyInResponse: c("G"),
  CopyOutResponse: c("H"),
  DataRow: c("D"),
  EmptyQueryResponse: c("I"),
  ErrorResponse: c("E"),
  FunctionCallResponse: c("V"),
  NegotiateProtocolVersion: c("v"),
  NoData: c("n"),
  NoticeResponse: c("N"),
  NotificationResponse: c("A"),
  ParameterDescription: c("t"),
  ParameterStatus: c("S"),
  ParseComplete: c("1"),
  PortalSuspended: c("s"),
  ReadyForQuery: c("Z"),
  RowDescription: c("T"),
} as const;
export type BackendCodeName = keyof typeof BackendCode;

/** Reverse lookups: type byte -> name (undefined for bytes the protocol does not define). */
export const frontendCodeName: ReadonlyMap<number, FrontendCodeName> = new Map(
  (Object.entries(FrontendCode) as [FrontendCodeName, number][]).map(([k, v]) => [v, k]),
);
export const backendCodeName: ReadonlyMap<number, BackendCodeName> = new Map(
  (Object.entries(BackendCode) as [BackendCodeName, number][]).map(([k, v]) => [v, k]),
);

/** Protocol 3.0 in a StartupMessage: major 3 in the high 16 bits, minor 0. */
export const PROTOCOL_3_0 = 196608;
/** The "protocol version" of the special startup-phase requests: 1234 in the high half. */
export const SPECIAL_MAJOR = 1234;
/** SSLRequest: 1234 << 16 | 5679. */
export const SSL_REQUEST_CODE = 80877103;
/** GSSENCRequest: 1234 << 16 | 5680. */
export const GSSENC_REQUEST_CODE = 80877104;
/** CancelRequest: 1234 << 16 | 5678. */
export const CANCEL_REQUEST_CODE = 80877102;

/** The single bytes a server answers SSLRequest/GSSENCRequest with. */
export const SSL_ACCEPT = c("S");
export const SSL_REFUSE = c("N");

/** Authentication request subtypes (the int32 after 'R'). */
export const AuthCode = {
  Ok: 0,
  KerberosV5: 2,
  CleartextPassword: 3,
  MD5Password: 5,
  SCMCredential: 6,
  GSS: 7,
  GSSContinue: 8,
  SSPI: 9,
  SASL: 10,
  SASLContinue: 11,
  SASLFinal: 12,
} as const;

/** Transaction status in ReadyForQuery: idle, in a transaction block, in a failed block. */
export type TransactionStatus = "I" | "T" | "E";

/** SQLSTATE codes this module and its callers produce (PostgreSQL errcodes.txt). */
export const SqlState = {
  ProtocolViolation: "08P01",
  ConnectionFailure: "08006",
  FeatureNotSupported: "0A000",
  InvalidAuthorizationSpecification: "28000",
  InvalidPassword: "28P01",
  ProgramLimitExceeded: "54000",
  InsufficientPrivilege: "42501",
} as const;
