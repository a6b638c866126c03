// What a limit answers once reached (a rule's `over_limit`, a budget's
// `over_budget`): "deny", or a non-empty list of approvers. One reader, so
// both attributes take the same forms with the same FILE:LINE errors.
import type { BlockReader } from "./hcl/reader.ts";

export type OverVerdict = { verdict: "deny" } | { approve: string[] };

/** The attribute's answer; "deny" when absent or wrong (the error is reported on `r`). */
export function readOverVerdict(r: BlockReader, attr: string, resolveApprovers: (r: BlockReader, attr: string) => string[] | undefined): OverVerdict {
  if (!r.has(attr)) return { verdict: "deny" };
  const raw = r.raw(attr);
  if (raw === "deny") return { verdict: "deny" };
  if (Array.isArray(raw)) {
    const approve = resolveApprovers(r, attr);
    if (raw.length === 0) r.error(r.line(attr), `${attr} must name at least one approver, or be "deny"`);
    else if (approve) return { approve };
    return { verdict: "deny" };
  }
  r.error(r.line(attr), `${attr} must be "deny" or a list of approvers, like [dashboard]`);
  return { verdict: "deny" };
}
