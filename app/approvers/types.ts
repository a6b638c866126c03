// The contract between the HTTPS pipeline, the approval hub and each
// approver plugin (dashboard, human over Slack/Discord/Telegram, LLM).
//
// A rule with `approve = [a, b]` holds the request: the hub runs the chain in
// order, every approver must allow, and an error, a malformed answer or a
// timeout is a deny. Plugins never see secrets: the request they get is
// already redacted.

/** What an approver is shown about a held request (redacted, bounded). */
export interface ApprovalRequest {
  /** Stable id of this hold (also the operation id of an async hold). */
  id: string;
  /** ISO time the request arrived. */
  time: string;
  device: string;
  profile: string;
  /** Endpoint ref, e.g. `https.github`. */
  endpoint: string;
  /** The rule that asked for approval, and its reason text. */
  rule: string;
  reason: string;
  method: string;
  host: string;
  /** Path with query. */
  path: string;
  /** Lower-cased names; credential slots and secrets already redacted. */
  headers: Record<string, string>;
  /** The body as text, redacted, at most a few KiB. */
  bodyPreview: string;
  /** True when bodyPreview was cut. */
  bodyTruncated: boolean;
  /** sha256 of (method, host, path, body): identical requests share it (async retry, `remember`). */
  fingerprint: string;
  /** The rule family (`http` when absent); for sql, method is the verb and path/bodyPreview the statement. Additive. */
  family?: string;
  /** One line: `delete public.users`. Additive. */
  summary?: string;
}

export interface ApproverVerdict {
  decision: "allow" | "deny";
  /** Why, in the approver's words (shown to the agent on deny). */
  reason: string;
  /** Approver ref that decided, e.g. `dashboard`, `human_approver.oncall`. */
  approver: string;
  /** Who decided: an operator or chat user identity, or the model name. */
  operator?: string;
}

export interface ApproverContext {
  /** Aborted when the chain no longer needs this answer (timeout, earlier deny, agent gone). */
  signal: AbortSignal;
  now: () => number;
  /** The approver's `message` template rendered for this request (chat plugins post it). Additive. */
  message?: string;
  /** Operators who already allowed this step (with `require_approvers` > 1), so a plugin can show "1 of 2". Additive. */
  approvedBy?: string[];
  /** How many distinct operators must allow this step (default 1). Additive. */
  requireApprovers?: number;
}

export interface ApproverPlugin {
  /** `dashboard`, `human_approver.NAME`, `llm_approver.NAME`. */
  readonly ref: string;
  readonly type: "dashboard" | "human_approver" | "llm_approver";
  /** Asks for a verdict. Rejects or resolves with deny on any failure: never throws past the hub. */
  ask(req: ApprovalRequest, ctx: ApproverContext): Promise<ApproverVerdict>;
  /** HTTP routes this approver needs on the public API (chat interactivity callbacks). */
  routes?(): ApproverRoute[];
  close?(): void;
  /** Whether the approver can work now (e.g. Telegram's webhook registration), for operators. Additive. */
  health?(): ApproverHealth;
}

export interface ApproverHealth {
  status: "starting" | "ok" | "error";
  /** What is wrong or what was done; never a secret. */
  detail?: string;
}

export interface ApproverRoute {
  method: "GET" | "POST";
  /** Under the dashboard/public API, e.g. `/api/approvers/slack/oncall/interactions`. */
  path: string;
  handler(req: Request): Promise<Response>;
}
