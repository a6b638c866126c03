// One record per decided request or relayed connection. Every sink receives
// it only after the redaction pass (see redact.ts), so no secret value can
// reach the database, the JSON-lines file or the log.

import type { FamilyName } from "../families/types.ts";
import type { LlmUsage } from "../spend/usage.ts";

/** A judged action of a family (`http`, `sql`), or a relayed/refused connection. */
export type EventKind = FamilyName | "connection";

export interface GatewayEvent {
  /** ISO-8601 time the request (or connection) started. */
  time: string;
  kind: EventKind;
  /** Capture mode flow id, for joining the requests of one connection. */
  flowId: string;
  device: string;
  profile: string;
  /** Endpoint ref (`https.github`), absent for plain relays. */
  endpoint?: string;
  host: string;
  port: number;
  method?: string;
  path?: string;
  /** HTTP status sent to the agent (403 on deny), absent for relays. */
  status?: number;
  bytesUp: number;
  bytesDown: number;
  durationMs: number;
  rule?: string;
  /** allow | deny for requests; relay | passthrough | deny for connections. */
  verdict: string;
  reason: string;
  /** Credential ref (`bearer_token.gh`); never its value. */
  credential?: string;
  /** Diagnostic detail for operators (e.g. a CEL error); redacted like the rest. */
  detail?: string;
  /** Approver refs that answered a held request, in chain order (`dashboard,llm_approver.judge`). */
  approvers?: string;
  /** Who decided: operator, chat user or model identities, in the same order. */
  operator?: string;
  /** How long the request was held for approval. */
  approvalMs?: number;
  /** The approval came from a `remember` window, not a fresh ask. */
  remembered?: boolean;
  /** The rule family that judged it (absent for connections). */
  family?: FamilyName;
  /** One line: `GET api.github.com/user`, `delete public.users`. */
  summary?: string;
  /** The family's structured action (sql: database, user, verb, tables, functions, statement, rows). */
  action?: Record<string, unknown>;
  /** What shadow rules would have decided (`would`: allow, deny, approve); never applied. */
  shadow?: { rule: string; would: string }[];
  /** LLM APIs: the tokens the response reported, and what they cost by the config's prices. */
  usage?: LlmUsage;
}

export interface EventSink {
  write(event: GatewayEvent): void;
  close?(): void | Promise<void>;
}
