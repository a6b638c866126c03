// CEL conditions for the http family: one typed environment, each rule's
// condition parsed and type-checked once, evaluated per request.
import { Environment, type ASTNode } from "@marcbachmann/cel-js";
import type { HttpFacts, Rule } from "./types.ts";

/** Thrown when a condition reads a body that was cut at the inspection limit. */
export class BodyTruncatedError extends Error {
  constructor() {
    super("the request body was truncated past the inspection limit");
  }
}

/**
 * What `http` looks like to CEL. Field names are the CEL names. The body is
 * read through getters so that a truncated body fails closed only for a
 * condition that actually reaches it (`http.path == '/x' && http.body...`
 * short-circuits past it for other paths).
 */
class HttpRequestValue {
  readonly #body: string;
  readonly #bodyJson: unknown;
  readonly #truncated: boolean;
  constructor(
    readonly method: string,
    readonly host: string,
    readonly path: string,
    readonly query: Record<string, string>,
    readonly headers: Record<string, string>,
    body: string,
    bodyJson: unknown,
    truncated: boolean,
    readonly raw_path: string = path,
  ) {
    this.#body = body;
    this.#bodyJson = bodyJson;
    this.#truncated = truncated;
  }
  get body(): string {
    if (this.#truncated) throw new BodyTruncatedError();
    return this.#body;
  }
  get body_json(): unknown {
    if (this.#truncated) throw new BodyTruncatedError();
    return this.#bodyJson;
  }
}

class DeviceValue {
  constructor(
    readonly name: string,
    readonly profile: string,
  ) {}
}

// Small limits: conditions are written by operators, but nothing bounds
// evaluation time except the size of the expression.
const LIMITS = { maxAstNodes: 2000, maxDepth: 64, maxListElements: 500, maxMapEntries: 200, maxCallArguments: 16 };

const httpEnvironment = new Environment({ limits: LIMITS })
  .registerType("HttpRequest", {
    ctor: HttpRequestValue,
    fields: {
      method: "string",
      host: "string",
      path: "string",
      raw_path: "string",
      query: "map<string, string>",
      headers: "map<string, string>",
      body: "string",
      body_json: "dyn",
    },
  })
  .registerType("Device", { ctor: DeviceValue, fields: { name: "string", profile: "string" } })
  .registerVariable("http", "HttpRequest")
  .registerVariable("device", "Device");

/** The per-request variables a condition sees; build once per request, share across rules. */
export type CelActivation = { http: HttpRequestValue; device: DeviceValue };

export function celActivation(facts: HttpFacts, device: string, profile: string): CelActivation {
  return {
    http: new HttpRequestValue(facts.method, facts.host, facts.path, facts.query, facts.headers, facts.body, facts.bodyJson, facts.bodyTruncated, facts.rawPath ?? facts.path),
    device: new DeviceValue(device, profile),
  };
}

export interface CompiledCondition {
  /** True when the condition reads `http.body` or `http.body_json`. */
  readsBody: boolean;
  /** Throws when evaluation fails (missing key, non-bool result): callers fail closed. */
  test(activation: CelActivation): boolean;
}

export type CompileResult = { ok: true; condition: CompiledCondition } | { ok: false; message: string };

export function compileCondition(source: string): CompileResult {
  let program: ReturnType<typeof httpEnvironment.parse>;
  try {
    program = httpEnvironment.parse(source);
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
      readsBody: astReadsBody(program.ast),
      test(activation) {
        const v: unknown = program(activation);
        if (typeof v !== "boolean") throw new Error(`condition returned ${typeof v}, not a bool`);
        return v;
      },
    },
  };
}

/** The first line of a cel-js error (the rest is a source excerpt with a caret). */
export function summaryOf(e: unknown): string {
  if (e && typeof e === "object" && "summary" in e && typeof e.summary === "string" && e.summary) return e.summary;
  const text = e instanceof Error ? e.message : String(e);
  return text.split("\n")[0] ?? text;
}

const BODY_FIELDS = new Set(["body", "body_json"]);

/**
 * Whether the expression can read the body. Conservative: any use of `http`
 * other than a field access to a non-body field counts (e.g. `http[k]`).
 */
export function astReadsBody(ast: ASTNode): boolean {
  let reads = false;
  const visit = (node: unknown, parent: ASTNode | undefined): void => {
    if (reads || !isNode(node)) {
      if (Array.isArray(node)) for (const n of node) visit(n, parent);
      return;
    }
    if (node.op === "id" && node.args === "http") {
      reads = !parent || !accessesOtherField(parent, node);
      return;
    }
    const args: unknown = node.args;
    if (Array.isArray(args)) for (const a of args) visit(a, node);
  };
  visit(ast, undefined);
  return reads;
}

function accessesOtherField(parent: ASTNode, child: ASTNode): boolean {
  if ((parent.op === "." || parent.op === ".?") && parent.args[0] === child) return !BODY_FIELDS.has(parent.args[1]);
  if ((parent.op === "[]" || parent.op === "[?]") && parent.args[0] === child) {
    const key = parent.args[1];
    return key.op === "value" && typeof key.args === "string" && !BODY_FIELDS.has(key.args);
  }
  // `has(http.x)` and macros reach `http` through a `.` node, handled above.
  return false;
}

function isNode(v: unknown): v is ASTNode {
  return typeof v === "object" && v !== null && !Array.isArray(v) && "op" in v;
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
    const result = compileCondition(rule.condition);
    const message = result.ok ? "" : result.message;
    c = result.ok
      ? result.condition
      : {
          readsBody: true,
          test() {
            throw new Error(message);
          },
        };
    compiledByRule.set(rule, c);
  }
  return c;
}
