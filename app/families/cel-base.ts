// What every family's CEL environment shares: the evaluation limits, the
// `device` variable, and the AST walk that tells which fields a condition reads.
import { Environment, type ASTNode } from "@marcbachmann/cel-js";

export class DeviceValue {
  constructor(
    readonly name: string,
    readonly profile: string,
  ) {}
}

// Small limits: conditions are written by operators, but nothing bounds
// evaluation time except the size of the expression.
const LIMITS = { maxAstNodes: 2000, maxDepth: 64, maxListElements: 500, maxMapEntries: 200, maxCallArguments: 16 };

/** A new environment with `device` declared; a family adds its own type and variable. */
export function baseEnvironment(): Environment {
  return new Environment({ limits: LIMITS }).registerType("Device", { ctor: DeviceValue, fields: { name: "string", profile: "string" } }).registerVariable("device", "Device");
}

/**
 * Whether the expression can read one of `fields` of `variable`.
 * Conservative: any use of the variable other than a field access to a
 * field outside the set counts (`http[k]`, passing `sql` whole to a macro).
 */
export function astReadsFields(ast: ASTNode, variable: string, fields: ReadonlySet<string>): boolean {
  let reads = false;
  const visit = (node: unknown, parent: ASTNode | undefined): void => {
    if (reads || !isNode(node)) {
      if (Array.isArray(node)) for (const n of node) visit(n, parent);
      return;
    }
    if (node.op === "id" && node.args === variable) {
      reads = !parent || !accessesOtherField(parent, node, fields);
      return;
    }
    const args: unknown = node.args;
    if (Array.isArray(args)) for (const a of args) visit(a, node);
  };
  visit(ast, undefined);
  return reads;
}

function accessesOtherField(parent: ASTNode, child: ASTNode, fields: ReadonlySet<string>): boolean {
  if ((parent.op === "." || parent.op === ".?") && parent.args[0] === child) return !fields.has(parent.args[1]);
  if ((parent.op === "[]" || parent.op === "[?]") && parent.args[0] === child) {
    const key = parent.args[1];
    return key.op === "value" && typeof key.args === "string" && !fields.has(key.args);
  }
  // `has(http.x)` and macros reach the variable through a `.` node, handled above.
  return false;
}

function isNode(v: unknown): v is ASTNode {
  return typeof v === "object" && v !== null && !Array.isArray(v) && "op" in v;
}
