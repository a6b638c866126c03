// Judging one Kubernetes API request: its k8s facets from the parsed head,
// the rules (engine.ts `judge`), then impersonation: a request carrying
// Impersonate-* headers passes only when a rule that matched it allowed it
// (or sent it for approval), never by the default verdict.
import type { Decision, HttpFacts, Policy, RequestContext } from "../../policy/types.ts";
import { judge } from "../../policy/engine.ts";
import { k8sFacts, type K8sFacts } from "../../families/k8s.ts";

export function judgeKubernetes(policy: Policy, ctx: RequestContext, http: HttpFacts, target: string): { decision: Decision; facts: K8sFacts } {
  const facts = k8sFacts(http, target);
  const decision = judge(policy, ctx, facts);
  const headers = Object.keys(facts.impersonate);
  if (headers.length === 0 || decision.verdict === "deny" || decision.rule !== undefined) return { decision, facts };
  const named = headers.map((h) => `Impersonate-${capitalise(h)}`).join(", ");
  return { decision: { verdict: "deny", reason: `impersonation (${named}) needs a rule that allows it` }, facts };
}

function capitalise(s: string): string {
  return s.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase());
}
