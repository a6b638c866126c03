// A rule decision carried through to its outcome for endpoints that judge
// actions one at a time (Postgres and ClickHouse statements, SSH requests):
// allow and deny as they are; an approval held on the gateway's approval
// gate (this action waits, the session's others do not), with who decided
// and how long it took as event fields. Fails closed: no approver available,
// or a hold that could not be made, denies.
import type { ApprovalGate } from "../endpoints/https/approval.ts";
import type { ApprovalRequest } from "./types.ts";
import type { Decision, Policy } from "../policy/types.ts";

export interface SettledOutcome {
  allow: boolean;
  reason: string;
  rule?: string;
  /** Event fields of a decided approval: approvers, operator, approvalMs, remembered. */
  approval?: Record<string, unknown>;
}

export async function settleDecision(x: {
  policy: Policy;
  decision: Decision;
  gate: ApprovalGate | undefined;
  /** Built only when the decision asks for an approval. */
  request: () => ApprovalRequest;
  /** Aborted when the agent goes away: the hold then ends as a deny. */
  signal: AbortSignal;
}): Promise<SettledOutcome> {
  const d = x.decision;
  const rule = d.rule !== undefined ? { rule: d.rule } : {};
  if (d.verdict === "allow") return { allow: true, reason: d.reason, ...rule };
  if (d.verdict === "deny") return { allow: false, reason: d.reason, ...rule };
  const r = x.policy.rules.find((candidate) => candidate.name === d.rule);
  if (!x.gate || !r || !d.approvers) return { allow: false, reason: `${d.reason} (approval required; no approver is available)`, ...rule };
  const outcome = await x.gate.hold({ request: x.request(), rule: r, chain: d.approvers, operationId: undefined, signal: x.signal });
  if (outcome.status !== "decided") return { allow: false, reason: "the approval could not be held", ...rule };
  const result = outcome.result;
  const operators = result.approvals.map((a) => a.operator).filter((o): o is string => Boolean(o));
  const approval: Record<string, unknown> = {
    approvers: result.approvals.map((a) => a.approver).join(",") || undefined,
    ...(operators.length > 0 ? { operator: operators.join(",") } : {}),
    approvalMs: result.latencyMs,
    ...(result.remembered ? { remembered: true } : {}),
  };
  return { allow: result.decision === "allow", reason: result.reason, approval, ...rule };
}
