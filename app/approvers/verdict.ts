// What an approver plugin answered, checked against the contract in
// types.ts before the chain runner believes it, and how a verdict names
// who made it.
import type { ApproverVerdict } from "./types.ts";

/** A plugin's answer, checked: decision allow|deny, reason a string, operator a string if present. */
export function checkVerdict(v: unknown, ref: string): ApproverVerdict | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const { decision, reason, operator } = v as Record<string, unknown>;
  if (decision !== "allow" && decision !== "deny") return undefined;
  if (typeof reason !== "string") return undefined;
  if (operator !== undefined && (typeof operator !== "string" || operator === "")) return undefined;
  const out: ApproverVerdict = { decision, reason: reason.slice(0, 2000), approver: ref };
  if (operator !== undefined) out.operator = operator;
  return out;
}

/** "operator (approver)", or the approver alone. */
export function who(v: ApproverVerdict): string {
  return v.operator ? `${v.operator} (${v.approver})` : v.approver;
}
