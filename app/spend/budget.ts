// Daily spend budgets on LLM APIs (`budget { daily_usd = 20 }` on a profile
// or a credential): once the day's spend in the budget's scope reaches its
// amount, a request that would inject a metered credential gets the
// budget's `over_budget` instead (deny: HTTP 429 with Retry-After until
// the next UTC midnight; or an approval chain). Spend is what the API
// reported for earlier responses, so the call that crosses the line
// completes and the next one is stopped.
import type { CredentialType, Decision, Policy, RequestContext, SourceRef } from "../policy/types.ts";
import { msToNextUtcDay, type SpendLedger, type SpendScope } from "./ledger.ts";
import type { LlmProvider } from "./usage.ts";

export type BudgetPer = "device" | "profile" | "credential";

export interface Budget {
  dailyUsd: number;
  /** On a profile: each device (default) or the whole profile; on a credential: the credential (default) or each device. */
  per: BudgetPer;
  overBudget: { verdict: "deny" } | { approve: string[] };
  source: SourceRef;
}

/** Credential types whose API reports token usage the gateway can read. */
export const METERED: Partial<Record<CredentialType, LlmProvider>> = {
  anthropic_manual_key: "anthropic",
  openai_api_key: "openai",
  gemini_api_key: "gemini",
};

export function providerOf(type: CredentialType): LlmProvider | undefined {
  return METERED[type];
}

/** What a decision becomes when a budget that covers it is spent; `decision` itself when none is. */
export function applyBudgets(policy: Policy, ctx: RequestContext, decision: Decision, ledger: SpendLedger): Decision {
  if (decision.verdict === "deny" || decision.credential === undefined) return decision;
  const credential = policy.credentials.get(decision.credential);
  if (!credential || providerOf(credential.type) === undefined) return decision;
  const budgets: { budget: Budget; owner: string; scope: SpendScope; key: string }[] = [];
  const profileBudget = policy.profiles.get(ctx.profile)?.budget;
  if (profileBudget) {
    const byProfile = profileBudget.per === "profile";
    budgets.push({ budget: profileBudget, owner: `profile "${ctx.profile}"`, scope: byProfile ? "profile" : "device", key: byProfile ? ctx.profile : ctx.device });
  }
  if (credential.budget) {
    const byDevice = credential.budget.per === "device";
    budgets.push({ budget: credential.budget, owner: credential.ref, scope: byDevice ? "credential-device" : "credential", key: byDevice ? `${credential.ref}\0${ctx.device}` : credential.ref });
  }
  for (const b of budgets) {
    const spentUsd = ledger.spent(b.scope, b.key);
    if (spentUsd < b.budget.dailyUsd) continue;
    const per = b.scope === "credential-device" ? "device" : b.scope;
    const reason = `the daily budget of ${usd(b.budget.dailyUsd)} of ${b.owner} is spent (${usd(spentUsd)} today, per ${per})`;
    const overBudget = { budget: b.owner, dailyUsd: b.budget.dailyUsd, spentUsd, retryAfterMs: msToNextUtcDay(ledger.now()) };
    const over = b.budget.overBudget;
    const base: Decision = { verdict: "deny", reason, overBudget };
    if (decision.rule !== undefined) base.rule = decision.rule;
    if (decision.shadow) base.shadow = decision.shadow;
    if ("approve" in over) return { ...base, verdict: "approve", approvers: over.approve, credential: decision.credential };
    return base;
  }
  return decision;
}

export function usd(n: number): string {
  return `$${n.toFixed(2)}`;
}
