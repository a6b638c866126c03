// `clawpatrol-gateway import clawrden policy.yaml`: a clawrden policy as
// HCL for the command gate. Pure: YAML text in, HCL text and notes out.
//   1. read the YAML (default_action, rules: command, action, args or
//      patterns, timeout); anything else is named in the notes;
//   2. one `rule` per clawrden rule, in clawrden's order (first match wins
//      there, so priorities count down): `exec.command == 'npm'`, plus
//      `exec.args.matches(...)` when it has argument patterns (globs: `*`
//      any run of characters, `?` one), allow / deny / ask -> verdict or
//      `approve = [dashboard]`, `timeout`;
//   3. default_action as a last rule matching every command (priority 0);
//   4. the endpoint `exec.NAME` they name, and the gate list a profile needs.
import { hclString } from "../policy/suggest.ts";
import { gateNameProblem } from "../families/exec.ts";

export interface ImportResult {
  hcl: string;
  /** Parts that could not be mapped (and why), for the operator. */
  notes: string[];
}

export class ImportError extends Error {}

const RULE_KEYS = new Set(["command", "action", "args", "patterns", "timeout"]);
const TOP_KEYS = new Set(["default_action", "rules"]);

/** A glob over the joined arguments as an anchored RE2 regex. */
export function globToRegex(glob: string): string {
  let out = "^";
  for (const ch of glob) {
    if (ch === "*") out += ".*";
    else if (ch === "?") out += ".";
    else out += /[\\^$.|+()[\]{}]/.test(ch) ? `\\${ch}` : ch;
  }
  return out + "$";
}

/** A CEL single-quoted string. */
function cel(s: string): string {
  return `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/([$%])\{/g, "$1\\u007b")}'`;
}

/** clawrden's timeouts: Go durations ("2m", "1m30s", "500ms") or a number of seconds. */
function duration(v: unknown): string | undefined {
  if (typeof v === "number" && Number.isInteger(v) && v > 0) return `${v}s`;
  if (typeof v === "string" && /^(\d+(ms|s|m|h))+$/.test(v.trim())) return v.trim();
  return undefined;
}

function verdictLines(action: unknown): string[] | undefined {
  if (action === "allow") return [`  verdict   = "allow"`];
  if (action === "deny") return [`  verdict   = "deny"`];
  if (action === "ask") return [`  approve   = [dashboard]`];
  return undefined;
}

export function importClawrden(yamlText: string, endpointName = "clawrden", source = "policy.yaml"): ImportResult {
  let doc: unknown;
  try {
    doc = Bun.YAML.parse(yamlText);
  } catch (e) {
    throw new ImportError(`${source} is not YAML: ${(e as Error).message}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new ImportError(`${source}: expected a mapping with default_action and rules`);
  if (!/^[A-Za-z_][A-Za-z0-9_-]*$/.test(endpointName)) throw new ImportError(`the endpoint name ${JSON.stringify(endpointName)} is not a name a rule can use`);
  const top = doc as Record<string, unknown>;
  const notes: string[] = [];
  for (const k of Object.keys(top)) if (!TOP_KEYS.has(k)) notes.push(`${k}: not mapped (the command gate has no such setting)`);
  const rules = top.rules === undefined ? [] : top.rules;
  if (!Array.isArray(rules)) throw new ImportError(`${source}: rules must be a list`);

  const blocks: string[] = [];
  const names = new Set<string>();
  const gated = new Set<string>();
  rules.forEach((raw, i) => {
    const where = `rules[${i}]`;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      notes.push(`${where}: not a mapping; skipped`);
      return;
    }
    const r = raw as Record<string, unknown>;
    for (const k of Object.keys(r)) if (!RULE_KEYS.has(k)) notes.push(`${where}.${k}: not mapped`);
    const command = r.command;
    if (typeof command !== "string" || gateNameProblem(command)) {
      notes.push(`${where}: command ${JSON.stringify(command)} is not a command name; skipped`);
      return;
    }
    const verdict = verdictLines(r.action);
    if (!verdict) {
      notes.push(`${where} (${command}): action ${JSON.stringify(r.action)} is not allow, deny or ask; skipped`);
      return;
    }
    const patternsRaw = r.args ?? r.patterns;
    const patterns = patternsRaw === undefined ? [] : Array.isArray(patternsRaw) ? patternsRaw : [patternsRaw];
    if (!patterns.every((p): p is string => typeof p === "string")) {
      notes.push(`${where} (${command}): argument patterns must be strings; skipped`);
      return;
    }
    let condition = `exec.command == ${cel(command)}`;
    if (patterns.length > 0) condition += ` && (${patterns.map((p) => `exec.args.matches(${cel(globToRegex(p))})`).join(" || ")})`;
    const lines = [`rule ${hclString(uniqueName(`clawrden-${command}`, names))} {`, `  endpoint  = exec.${endpointName}`, `  priority  = ${rules.length - i}`, `  condition = ${hclString(condition)}`, ...verdict];
    if (r.timeout !== undefined) {
      const d = duration(r.timeout);
      if (d) lines.push(`  timeout   = ${hclString(d)}`);
      else notes.push(`${where} (${command}): timeout ${JSON.stringify(r.timeout)} is not a duration; left out`);
    }
    lines.push(`  reason    = ${hclString(`clawrden rule ${i + 1}: ${r.action} ${command}${patterns.length ? ` ${patterns.join(" | ")}` : ""}`)}`, "}");
    blocks.push(lines.join("\n"));
    gated.add(command);
  });

  const fallback = verdictLines(top.default_action ?? "deny");
  if (!fallback) notes.push(`default_action ${JSON.stringify(top.default_action)} is not allow, deny or ask; every other command is denied`);
  blocks.push(
    [
      `rule ${hclString(uniqueName("clawrden-default", names))} {`,
      `  endpoint  = exec.${endpointName}`,
      `  priority  = 0`,
      `  condition = "true"`,
      ...(fallback ?? [`  verdict   = "deny"`]),
      `  reason    = ${hclString(`clawrden default_action: ${String(top.default_action ?? "deny")}`)}`,
      "}",
    ].join("\n"),
  );

  const gate = [...gated];
  const head = [
    `# Imported from clawrden ${source} by clawpatrol-gateway import clawrden.`,
    `# Gate these commands on the devices' profile, e.g. profile "agents" { gate = [${gate.map((g) => JSON.stringify(g)).join(", ")}] },`,
    `# and give that profile this endpoint.`,
    `endpoint "exec" ${hclString(endpointName)} {}`,
  ];
  return { hcl: [...head, "", ...blocks.flatMap((b) => [b, ""])].join("\n"), notes };
}

function uniqueName(base: string, taken: Set<string>): string {
  const clean = base.toLowerCase().replace(/[^a-z0-9_-]+/g, "-");
  let name = clean;
  for (let i = 2; taken.has(name); i++) name = `${clean}-${i}`;
  taken.add(name);
  return name;
}
