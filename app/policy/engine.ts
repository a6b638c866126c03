// The rule engine, one for every family: which endpoint claims a host,
// whether a handler must gather the deferred facts (the http body, the parsed
// SQL), and the decision for one action. Runs per action, so everything that
// can be is computed once per Policy (lazily, cached beside it) and judge()
// only walks a precomputed list.
import { activationFor, conditionOf, type CelActivation, type CompiledCondition } from "./cel.ts";
import type { Decision, Endpoint, HttpFacts, Policy, RequestContext, Rule, ShadowVerdict } from "./types.ts";
import { rateLimiter, type RateLimiter, type RatePer } from "./rate-limits.ts";
import { spendLedger, type SpendLedger } from "../spend/ledger.ts";
import { applyBudgets } from "../spend/budget.ts";

import { normalizeHost } from "./host.ts";

export { httpFactsFromRequest } from "./facts.ts";
export { normalizeHost } from "./host.ts";

interface PreparedRule {
  rule: Rule;
  condition: CompiledCondition | undefined;
  readsDeferred: boolean;
  /** The agent-safe reason when the rule matches. */
  reason: string;
}

interface PolicyIndex {
  exact: Map<string, Endpoint[]>;
  /** `*.suffix` patterns as ".suffix", longest first (stable: declaration order on ties). */
  wildcards: { suffix: string; endpoint: Endpoint }[];
  /** Endpoint refs visible to each declared profile; undefined = all. */
  visible: Map<string, Set<string> | undefined>;
  /** Enabled rules per endpoint ref, in evaluation order. */
  rulesByEndpoint: Map<string, PreparedRule[]>;
  /** Per `endpoint\0profile`: the rules that apply, and whether any reads the body. */
  applicable: Map<string, { rules: PreparedRule[]; readsDeferred: boolean }>;
}

const indexes = new WeakMap<Policy, PolicyIndex>();

function indexOf(policy: Policy): PolicyIndex {
  let index = indexes.get(policy);
  if (!index) {
    index = buildIndex(policy);
    indexes.set(policy, index);
  }
  return index;
}

function buildIndex(policy: Policy): PolicyIndex {
  const exact = new Map<string, Endpoint[]>();
  const wildcards: PolicyIndex["wildcards"] = [];
  for (const endpoint of policy.endpoints.values()) {
    for (const host of endpoint.hosts) {
      if (host.startsWith("*.")) wildcards.push({ suffix: host.slice(1), endpoint });
      else exact.set(host, [...(exact.get(host) ?? []), endpoint]);
    }
  }
  wildcards.sort((a, b) => b.suffix.length - a.suffix.length);

  const visible = new Map<string, Set<string> | undefined>();
  for (const profile of policy.profiles.values()) {
    visible.set(profile.name, profile.endpoints ? new Set(profile.endpoints) : undefined);
  }

  const rulesByEndpoint = new Map<string, PreparedRule[]>();
  for (const rule of policy.rules) {
    if (rule.disabled) continue;
    const condition = conditionOf(rule);
    const prepared: PreparedRule = {
      rule,
      condition,
      // Trust the compiled AST walk, but never less than what the rule declares.
      readsDeferred: rule.readsDeferred || (condition?.readsDeferred ?? false),
      reason: rule.reason ?? `rule "${rule.name}"`,
    };
    for (const ref of rule.endpoints) rulesByEndpoint.set(ref, [...(rulesByEndpoint.get(ref) ?? []), prepared]);
  }
  return { exact, wildcards, visible, rulesByEndpoint, applicable: new Map() };
}

/**
 * The endpoint that claims `host` for this profile: exact names beat
 * wildcards, the longest `*.suffix` wins; a profile not declared sees none.
 */
export function matchEndpoint(policy: Policy, host: string, profile: string): Endpoint | undefined {
  const index = indexOf(policy);
  if (!index.visible.has(profile)) return undefined;
  const visible = index.visible.get(profile);
  const canSee = (e: Endpoint) => visible === undefined || visible.has(e.ref);
  const h = normalizeHost(host);
  const exact = index.exact.get(h)?.find(canSee);
  if (exact) return exact;
  for (const w of index.wildcards) {
    if (h.length > w.suffix.length && h.endsWith(w.suffix) && canSee(w.endpoint)) return w.endpoint;
  }
  return undefined;
}

/** Whether the profile sees an endpoint (a profile the policy does not declare sees none). */
export function visibleEndpoints(policy: Policy, profile: string): (e: Endpoint) => boolean {
  const index = indexOf(policy);
  if (!index.visible.has(profile)) return () => false;
  const visible = index.visible.get(profile);
  return (e) => visible === undefined || visible.has(e.ref);
}

/**
 * Every endpoint that claims `host` for this profile, best first (exact
 * names before wildcards, longer suffixes first, then declaration order):
 * two endpoints may share a host on different ports.
 */
export function matchEndpoints(policy: Policy, host: string, profile: string): Endpoint[] {
  const index = indexOf(policy);
  if (!index.visible.has(profile)) return [];
  const visible = index.visible.get(profile);
  const canSee = (e: Endpoint) => visible === undefined || visible.has(e.ref);
  const h = normalizeHost(host);
  const out = (index.exact.get(h) ?? []).filter(canSee);
  for (const w of index.wildcards) {
    if (h.length > w.suffix.length && h.endsWith(w.suffix) && canSee(w.endpoint) && !out.includes(w.endpoint)) out.push(w.endpoint);
  }
  return out;
}

function applicable(index: PolicyIndex, endpoint: Endpoint, profile: string): { rules: PreparedRule[]; readsDeferred: boolean } {
  const key = `${endpoint.ref}\0${profile}`;
  let entry = index.applicable.get(key);
  if (!entry) {
    const rules = (index.rulesByEndpoint.get(endpoint.ref) ?? []).filter(
      (p) => p.rule.profiles === undefined || p.rule.profiles.includes(profile),
    );
    entry = { rules, readsDeferred: rules.some((p) => p.readsDeferred) };
    // Profiles come from the policy and device records, so this stays small.
    index.applicable.set(key, entry);
  }
  return entry;
}

/**
 * Whether any enabled rule that applies here reads the deferred facts (so
 * the handler must buffer the body, or parse the statement).
 */
export function needsDeferredFacts(policy: Policy, endpoint: Endpoint, profile: string): boolean {
  return applicable(indexOf(policy), endpoint, profile).readsDeferred;
}

/** The http family's name for needsDeferredFacts: the body must be buffered. */
export const needsBody = needsDeferredFacts;

/** The decision for one http request (judge, typed for the http family). */
export function decide(policy: Policy, ctx: RequestContext, facts: HttpFacts, opts: JudgeOptions = {}): Decision {
  return judge(policy, ctx, facts, opts);
}

/** How judge() counts rate-limited rules. */
export interface JudgeOptions {
  /**
   * The buckets a rule's `rate` is counted in. Default: the gateway's
   * (app/policy/rate-limits.ts); null: limits are not consulted (a preview,
   * a replay, a fixture that does not test them), so nothing is counted.
   */
  limiter?: RateLimiter | null;
  /**
   * The day's LLM spend that budgets are checked against. Default: the
   * gateway's (app/spend/ledger.ts); null: budgets are not consulted.
   */
  spend?: SpendLedger | null;
}

/**
 * The decision for one action of any family: the first matching rule by
 * priority wins, else the default; a condition that cannot be evaluated
 * (an error, facts that are unknown or cut off) denies. `facts` are the
 * endpoint's family's facts (HttpFacts, SqlFacts, ...). Shadow rules are
 * judged on the way and recorded in `shadow`, never applied; a matching rule
 * with a `rate` takes a token, and over its rate the answer is its over_limit.
 * A decision that would inject an LLM credential whose budget is spent gets
 * the budget's over_budget instead (app/spend/budget.ts).
 */
export function judge(policy: Policy, ctx: RequestContext, facts: unknown, opts: JudgeOptions = {}): Decision {
  const decision = judgeRules(policy, ctx, facts, opts);
  const ledger = opts.spend === undefined ? spendLedger() : opts.spend;
  return ledger ? applyBudgets(policy, ctx, decision, ledger) : decision;
}

function judgeRules(policy: Policy, ctx: RequestContext, facts: unknown, opts: JudgeOptions): Decision {
  const { rules } = applicable(indexOf(policy), ctx.endpoint, ctx.profile);
  let activation: CelActivation | undefined;
  let shadow: ShadowVerdict[] | undefined;
  for (const p of rules) {
    const shadowed = p.rule.mode === "shadow";
    if (p.condition) {
      activation ??= activationFor(ctx.endpoint.family, facts, ctx.device, ctx.profile);
      let matched: boolean;
      try {
        matched = p.condition.test(activation);
      } catch (e) {
        // A shadow rule fails closed too, in what it records: it would have denied.
        if (shadowed) {
          (shadow ??= []).push({ rule: p.rule.name, would: "deny" });
          continue;
        }
        return withShadow(failClosed(p.rule, e instanceof Error ? e.message.split("\n")[0]! : String(e)), shadow);
      }
      if (!matched) continue;
    }
    if (shadowed) {
      (shadow ??= []).push({ rule: p.rule.name, would: p.rule.approve !== undefined ? "approve" : (p.rule.verdict ?? "deny") });
      continue;
    }
    return withShadow(ruleDecision(p, ctx, opts.limiter === undefined ? rateLimiter() : opts.limiter), shadow);
  }
  const verdict = policy.defaults.verdict;
  const decision: Decision = { verdict, reason: `no rule matched (default ${verdict})` };
  if (verdict === "allow" && ctx.endpoint.credential !== undefined) decision.credential = ctx.endpoint.credential;
  return withShadow(decision, shadow);
}

function withShadow(decision: Decision, shadow: ShadowVerdict[] | undefined): Decision {
  if (shadow) decision.shadow = shadow;
  return decision;
}

function ruleDecision(p: PreparedRule, ctx: RequestContext, limiter: RateLimiter | null): Decision {
  const { rule } = p;
  const { endpoint } = ctx;
  const credential = rule.credential ?? endpoint.credential;
  if (rule.rate && limiter) {
    const taken = limiter.take(rule.name, rateKey(rule.rate.per, ctx, credential), rule.rate);
    if (!taken.ok) return overLimit(p, credential, taken.retryAfterMs);
  }
  if (rule.approve !== undefined) {
    const decision: Decision = { verdict: "approve", rule: rule.name, reason: p.reason, approvers: rule.approve };
    if (credential !== undefined) decision.credential = credential;
    return decision;
  }
  const verdict = rule.verdict ?? "deny";
  const decision: Decision = { verdict, rule: rule.name, reason: p.reason };
  if (verdict === "allow" && credential !== undefined) decision.credential = credential;
  return decision;
}

/** What a rate limit is counted per: the device (default), its profile, the endpoint or the credential. */
function rateKey(per: RatePer, ctx: RequestContext, credential: string | undefined): string {
  switch (per) {
    case "device":
      return `device:${ctx.device}`;
    case "profile":
      return `profile:${ctx.profile}`;
    case "endpoint":
      return `endpoint:${ctx.endpoint.ref}`;
    case "credential":
      return `credential:${credential ?? ""}`;
  }
}

function overLimit(p: PreparedRule, credential: string | undefined, retryAfterMs: number): Decision {
  const { rule } = p;
  const spec = rule.rate!;
  const limited = { rate: spec.text, retryAfterMs };
  const reason = `over the rate limit of rule "${rule.name}" (${spec.text} per ${spec.per})`;
  const over = rule.overLimit ?? { verdict: "deny" };
  if ("approve" in over) {
    const decision: Decision = { verdict: "approve", rule: rule.name, reason, approvers: over.approve, limited };
    if (credential !== undefined) decision.credential = credential;
    return decision;
  }
  return { verdict: "deny", rule: rule.name, reason, limited };
}

function failClosed(rule: Rule, detail: string): Decision {
  return { verdict: "deny", rule: rule.name, reason: `rule "${rule.name}" could not be evaluated`, detail };
}
