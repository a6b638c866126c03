// One `rule` block -> a Rule: its endpoints (one family), condition compiled in
// that family's CEL environment, verdict or approvers, credential fit, shadow
// mode, rate limit and the command gate's settings; every problem FILE:LINE.
import { readDuration } from "../approvers/config.ts";
import { specOf } from "../endpoints/registry.ts";
import { EXEC_RULE_ATTRIBUTES, readExecSettings } from "../gate/config.ts";
import { compileCondition, rememberCondition, type CompiledCondition } from "./cel.ts";
import { BlockReader } from "./hcl/reader.ts";
import { readOverVerdict } from "./over-verdict.ts";
import { parseRate, type RateSpec } from "./rate-limits.ts";
import type { RefKind } from "./refs.ts";
import type { ConfigError, CredentialType, Endpoint, Family, Rule } from "./types.ts";
import type { Declared } from "./build.ts";

const RULE_ATTRIBUTES = [
  "endpoint",
  "endpoints",
  "priority",
  "disabled",
  "profiles",
  "condition",
  "verdict",
  "approve",
  "reason",
  "credential",
  "remember",
  "mode",
  "rate",
  "burst",
  "per",
  "over_limit",
  ...EXEC_RULE_ATTRIBUTES,
];

export interface Resolvers {
  resolveOne(r: BlockReader, attr: string, kind: RefKind): string | undefined;
  resolveList(r: BlockReader, attr: string, kind: RefKind): string[] | undefined;
}

export function buildRule(
  name: string,
  d: Declared,
  errors: ConfigError[],
  endpoints: Map<string, Endpoint>,
  { resolveOne, resolveList }: Resolvers,
  defaultMode: "shadow" | undefined,
): Rule | undefined {
  const before = errors.length;
  const r = new BlockReader(d.block, `rule "${name}"`, errors);
  r.allow(RULE_ATTRIBUTES);

  let endpointRefs: string[] = [];
  if (r.has("endpoint") && r.has("endpoints")) {
    r.error(r.line("endpoints"), "set endpoint or endpoints, not both");
  } else if (r.has("endpoint")) {
    const one = resolveOne(r, "endpoint", "endpoint");
    if (one !== undefined) endpointRefs = [one];
  } else if (r.has("endpoints")) {
    endpointRefs = resolveList(r, "endpoints", "endpoint") ?? [];
    if (isEmptyList(r.raw("endpoints"))) r.error(r.line("endpoints"), "endpoints must name at least one endpoint");
  } else {
    r.error(d.block.line, "missing endpoint (set endpoint = https.NAME or endpoints = [...])");
  }
  const families = new Map<string, Family>();
  for (const ref of endpointRefs) {
    const e = endpoints.get(ref);
    if (e) families.set(ref, e.family);
  }
  const familyProblem = mixedFamilies(families);
  if (familyProblem) r.error(r.line(r.has("endpoints") ? "endpoints" : "endpoint"), familyProblem);

  const priority = r.number("priority") ?? 0;
  const disabled = r.bool("disabled") ?? false;
  const profiles = resolveList(r, "profiles", "profile");

  const condition = r.string("condition");
  let compiled: CompiledCondition | undefined;
  if (condition !== undefined) {
    // The family the condition is typed in: its endpoints' (an unknown or mixed set reports above).
    const result = compileCondition(condition, [...families.values()][0] ?? "http");
    if (result.ok) compiled = result.condition;
    else r.error(r.line("condition"), result.message);
  }

  const verdict = r.oneOf("verdict", ["allow", "deny"] as const);
  let approve: string[] | undefined;
  if (r.has("verdict") && r.has("approve")) {
    r.error(r.line("approve"), "set verdict or approve, not both");
  } else if (r.has("approve")) {
    approve = resolveList(r, "approve", "approver");
    if (isEmptyList(r.raw("approve"))) r.error(r.line("approve"), "approve must name at least one approver");
  } else if (!r.has("verdict")) {
    r.error(d.block.line, 'missing verdict = "allow" | "deny" or approve = [...]');
  }

  const reason = r.string("reason");
  const rememberMs = readDuration(r, "remember", 1);
  if (r.has("remember") && !r.has("approve")) r.error(r.line("remember"), "remember has no effect without approve = [...]");
  const credential = resolveOne(r, "credential", "credential");
  if (credential !== undefined) {
    const sessionOnce = endpointRefs.filter((ref) => endpoints.get(ref)?.family === "sql");
    if (sessionOnce.length > 0) {
      r.error(r.line("credential"), `credential on a rule has no effect for ${sessionOnce.join(", ")}: a database session authenticates once, with the endpoint's credential`);
    }
    for (const ref of endpointRefs) {
      const e = endpoints.get(ref);
      const misfit = e ? credentialFits(credential, specOf(e.type).credentialTypes) : undefined;
      if (misfit) r.error(r.line("credential"), `${misfit.replace("this endpoint", ref)}`);
    }
  }
  if (r.has("credential") && verdict === "deny") {
    r.error(r.line("credential"), 'credential has no effect on a rule with verdict "deny"');
  }
  const isExec = families.size > 0 && [...families.values()].every((f) => f === "exec");
  for (const attr of EXEC_RULE_ATTRIBUTES) {
    if (r.has(attr) && !isExec) r.error(r.line(attr), `${attr} applies only to rules of exec endpoints`);
  }
  const exec = isExec ? readExecSettings(r, "timeout") : undefined;

  const mode = r.has("mode") ? r.oneOf("mode", ["enforce", "shadow"] as const) : defaultMode;
  const limit = readRateLimit(r, verdict, resolveList);

  if (errors.length > before) return undefined;
  const rule: Rule = {
    name,
    endpoints: endpointRefs,
    family: [...families.values()][0] ?? "http",
    priority,
    disabled,
    readsDeferred: compiled?.readsDeferred ?? false,
    source: d.source,
  };
  if (mode === "shadow") rule.mode = "shadow";
  if (limit) {
    rule.rate = limit.rate;
    rule.overLimit = limit.overLimit;
  }
  if (profiles !== undefined) rule.profiles = profiles;
  if (condition !== undefined) rule.condition = condition;
  if (verdict !== undefined) rule.verdict = verdict;
  if (approve !== undefined) rule.approve = approve;
  if (reason !== undefined) rule.reason = reason;
  if (credential !== undefined) rule.credential = credential;
  if (rememberMs !== undefined) rule.rememberMs = rememberMs;
  if (exec !== undefined) rule.exec = exec;
  if (compiled) rememberCondition(rule, compiled);
  return rule;
}

/** `rate`, `burst`, `per` and `over_limit` of a rule (all FILE:LINE checked). */
function readRateLimit(
  r: BlockReader,
  verdict: "allow" | "deny" | undefined,
  resolveList: Resolvers["resolveList"],
): { rate: RateSpec; overLimit: NonNullable<Rule["overLimit"]> } | undefined {
  if (!r.has("rate")) {
    for (const attr of ["burst", "per", "over_limit"]) if (r.has(attr)) r.error(r.line(attr), `${attr} has no effect without rate = "N/period"`);
    return undefined;
  }
  if (verdict === "deny") {
    r.error(r.line("rate"), 'rate has no effect on a rule with verdict "deny" (it limits what a rule lets through)');
    return undefined;
  }
  const text = r.string("rate");
  const parsed = text === undefined ? undefined : parseRate(text);
  if (!parsed) {
    r.error(r.line("rate"), 'rate must be a count per period, like "60/m", "10/s", "1000/h" or "500/day"');
    return undefined;
  }
  const burst = r.has("burst") ? r.integer("burst", 1) : parsed.count;
  const per = r.oneOf("per", ["device", "profile", "endpoint", "credential"] as const) ?? "device";
  const overLimit = readOverVerdict(r, "over_limit", (reader, attr) => resolveList(reader, attr, "approver"));
  if (burst === undefined) return undefined;
  return { rate: { ...parsed, burst, per, text: text! }, overLimit };
}

export function isEmptyList(v: unknown): boolean {
  return Array.isArray(v) && v.length === 0;
}

/** Why a credential ref does not fit an endpoint type's slot, or undefined when it does. */
export function credentialFits(ref: string, types: readonly CredentialType[]): string | undefined {
  const type = ref.slice(0, ref.indexOf(".")) as CredentialType;
  if (types.includes(type)) return undefined;
  return `credential ${ref} does not fit this endpoint (it takes ${types.join(", ")})`;
}

/** A rule's endpoints must share one family (one set of CEL variables). Exported for tests. */
export function mixedFamilies(families: Map<string, Family>): string | undefined {
  if (new Set(families.values()).size <= 1) return undefined;
  const list = [...families].map(([ref, family]) => `${ref} is ${family}`).join(", ");
  return `endpoints mix rule families (${list})`;
}
