// CEL conditions: each rule's condition parsed and type-checked once, in the
// environment of its family (app/families/), and evaluated per action.
import type { ASTNode } from "@marcbachmann/cel-js";
import { DeviceValue } from "../families/cel-base.ts";
import { FAMILY_VARIABLES, familyOf, type FamilyName } from "../families/index.ts";
import { BodyTruncatedError } from "../families/http.ts";
import type { HttpFacts, Rule } from "./types.ts";

export { BodyTruncatedError };

/** The per-action variables a condition sees (`http` or `sql`, and `device`); build once per action, share across rules. */
export type CelActivation = Record<string, object> & { device: DeviceValue };

export function activationFor(family: FamilyName, facts: unknown, device: string, profile: string): CelActivation {
  const def = familyOf(family);
  const also = def.alsoSees?.values(facts);
  return { ...also, [def.variable]: def.celValue(facts), device: new DeviceValue(device, profile) } as CelActivation;
}

/** The http family's activation (kept for callers that only judge HTTP). */
export function celActivation(facts: HttpFacts, device: string, profile: string): CelActivation {
  return activationFor("http", facts, device, profile);
}

export interface CompiledCondition {
  /** True when the condition reads facts gathered on demand (the http body, the parsed SQL). */
  readsDeferred: boolean;
  /** Throws when evaluation fails (missing key, non-bool result, unknown facets): callers fail closed. */
  test(activation: CelActivation): boolean;
}

export type CompileResult = { ok: true; condition: CompiledCondition } | { ok: false; message: string };

export function compileCondition(source: string, family: FamilyName = "http"): CompileResult {
  const def = familyOf(family);
  const foreign = foreignVariable(source, family);
  if (foreign) {
    return { ok: false, message: `condition reads ${foreign.variable}.*, but its endpoints are of the ${family} family (use ${def.variable}.* and device.*)` };
  }
  let program: ReturnType<typeof def.environment.parse>;
  try {
    program = def.environment.parse(source);
  } catch (e) {
    return { ok: false, message: `condition does not parse: ${summaryOf(e)}` };
  }
  const checked = program.check();
  if (!checked.valid) return { ok: false, message: `condition is not valid: ${summaryOf(checked.error)}` };
  // dyn is allowed (e.g. `http.body_json.admin`); a non-bool at run time fails closed.
  if (checked.type !== "bool" && checked.type !== "dyn") {
    return { ok: false, message: `condition must be a bool, not ${checked.type}` };
  }
  return {
    ok: true,
    condition: {
      readsDeferred: def.readsDeferred(program.ast),
      test(activation) {
        const v: unknown = program(activation);
        if (typeof v !== "boolean") throw new Error(`condition returned ${typeof v}, not a bool`);
        return v;
      },
    },
  };
}

/** Another family's variable used as `name.` outside string literals. */
function foreignVariable(source: string, family: FamilyName): { variable: string } | undefined {
  const code = source.replace(/'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"/g, "''");
  const def = familyOf(family);
  const own = new Set([def.variable, ...(def.alsoSees?.variables ?? [])]);
  for (const [variable, owner] of FAMILY_VARIABLES) {
    if (owner !== family && !own.has(variable) && new RegExp(`(^|[^A-Za-z0-9_.])${variable}\\s*\\.`).test(code)) return { variable };
  }
  return undefined;
}

/** The first line of a cel-js error (the rest is a source excerpt with a caret). */
export function summaryOf(e: unknown): string {
  if (e && typeof e === "object" && "summary" in e && typeof e.summary === "string" && e.summary) return e.summary;
  const text = e instanceof Error ? e.message : String(e);
  return text.split("\n")[0] ?? text;
}

/** Whether an http condition can read the body (kept for the http family's tests). */
export function astReadsBody(ast: ASTNode): boolean {
  return familyOf("http").readsDeferred(ast);
}

// Compiled conditions live beside the public Rule objects, so a Policy stays
// plain data. Rules built without the loader are compiled on first use.
const compiledByRule = new WeakMap<Rule, CompiledCondition>();

export function rememberCondition(rule: Rule, condition: CompiledCondition): void {
  compiledByRule.set(rule, condition);
}

/** The rule's compiled condition; undefined when it has none. A condition that does not compile always throws. */
export function conditionOf(rule: Rule): CompiledCondition | undefined {
  if (rule.condition === undefined) return undefined;
  let c = compiledByRule.get(rule);
  if (!c) {
    const result = compileCondition(rule.condition, rule.family);
    const message = result.ok ? "" : result.message;
    c = result.ok
      ? result.condition
      : {
          readsDeferred: true,
          test() {
            throw new Error(message);
          },
        };
    compiledByRule.set(rule, c);
  }
  return c;
}
