// "Block requests like this": a recorded request -> an HCL `rule` block
// that denies it and, as wide as the operator picks, requests like it.
// Pure: the caller hands in the event and the rules already loaded (for a
// free name and a priority that puts the new rule first); nothing is read,
// written or applied here.
//   1. Check the event is a judged action on an endpoint (http request,
//      sql statement or gated command; only those meet rules).
//   2. Build the CEL condition from the scope. http: host always; method
//      unless "any"; path exact, under the same prefix, or any path on the
//      host. sql: this verb on these tables, this verb anywhere, or any
//      statement touching these tables. exec: this exact argv, commands
//      starting with the same words (exec.prefix), or the command at all.
//   3. Pick a readable, unused name and a priority above the endpoint's rules.
//   4. Emit the block, every string escaped for CEL inside HCL.
import type { GatewayEvent } from "../events/types.ts";
import { normalizeHost } from "./host.ts";
import type { Rule } from "./types.ts";

export type PathScope = "exact" | "prefix" | "host";

/** sql: verb-tables: this verb on any of these tables; verb: this verb anywhere; tables: any statement touching these tables. */
export type SqlScope = "verb-tables" | "verb" | "tables";
export const SQL_SCOPES: readonly SqlScope[] = ["verb-tables", "verb", "tables"];

/** exec: exact: this argv; prefix: the command and its first argument (exec.prefix); command: the command with any arguments. */
export type ExecScope = "exact" | "prefix" | "command";
export const EXEC_SCOPES: readonly ExecScope[] = ["exact", "prefix", "command"];

export interface SuggestScope {
  /** http. exact: this path only; prefix: this path's folder and below; host: any path on the host. Default exact. */
  path?: PathScope;
  /** http. Any method, or (default) only this request's method. */
  anyMethod?: boolean;
  /** sql. Default verb-tables (verb alone when the statement names no table). */
  sql?: SqlScope;
  /** exec. Default prefix (command when the command had no argument). */
  exec?: ExecScope;
  /** Only for this request's profile (adds `profiles = [profile.NAME]`). */
  onlyProfile?: boolean;
}

export type SuggestInput = Pick<GatewayEvent, "kind" | "endpoint" | "host" | "method" | "path" | "profile" | "device"> &
  Partial<Pick<GatewayEvent, "action">> & { id?: number };

export type Suggestion =
  | { ok: true; name: string; hcl: string; condition: string; priority: number; description: string }
  | { ok: false; error: string };

const REF = /^[A-Za-z_][A-Za-z0-9_-]*\.[A-Za-z_][A-Za-z0-9_-]*$/;
const IDENT = /^[A-Za-z_][A-Za-z0-9_-]*$/;
const NAME_MAX = 60;

/** `{path, anyMethod?, onlyProfile?}` (http) or `{sql, onlyProfile?}` (sql); undefined when malformed. */
export function parseScope(v: unknown): SuggestScope | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (o.path === undefined && o.sql === undefined && o.exec === undefined) return undefined;
  if (o.exec !== undefined && !(EXEC_SCOPES as readonly unknown[]).includes(o.exec)) return undefined;
  if (o.path !== undefined && o.path !== "exact" && o.path !== "prefix" && o.path !== "host") return undefined;
  if (o.sql !== undefined && !(SQL_SCOPES as readonly unknown[]).includes(o.sql)) return undefined;
  for (const k of ["anyMethod", "onlyProfile"]) if (o[k] !== undefined && typeof o[k] !== "boolean") return undefined;
  const scope: SuggestScope = { anyMethod: o.anyMethod === true, onlyProfile: o.onlyProfile === true };
  if (o.path !== undefined) scope.path = o.path;
  if (o.sql !== undefined) scope.sql = o.sql as SqlScope;
  if (o.exec !== undefined) scope.exec = o.exec as ExecScope;
  return scope;
}

type RuleRefs = readonly Pick<Rule, "name" | "endpoints" | "priority">[];

export function suggestRule(e: SuggestInput, scope: SuggestScope, rules: RuleRefs = []): Suggestion {
  // 1. Only judged actions on an endpoint are decided by rules.
  if (!e.endpoint || (e.kind !== "http" && e.kind !== "sql" && e.kind !== "exec") || (e.kind === "http" && !e.method)) {
    return { ok: false, error: "only HTTP requests, SQL statements and gated commands on an endpoint can be blocked by a rule (this one was relayed or passed through)" };
  }
  if (!REF.test(e.endpoint)) return { ok: false, error: `the endpoint ${JSON.stringify(e.endpoint)} is not a reference a rule can name` };
  if (scope.onlyProfile && !IDENT.test(e.profile)) return { ok: false, error: `the profile ${JSON.stringify(e.profile)} cannot be named in a rule` };
  if (e.kind === "sql") return suggestSqlRule(e, e.endpoint, scope, rules);
  if (e.kind === "exec") return suggestExecRule(e, e.endpoint, scope, rules);
  return suggestHttpRule(e, e.endpoint, e.method!, { ...scope, path: scope.path ?? "exact" }, rules);
}

function suggestHttpRule(e: SuggestInput, endpoint: string, eventMethod: string, scope: SuggestScope & { path: PathScope }, rules: RuleRefs): Suggestion {
  const method = eventMethod.toUpperCase();
  const host = normalizeHost(e.host);
  const path = pathOf(e.path ?? "/");

  // 2. The condition.
  const terms = [`http.host == ${celString(host)}`];
  if (!scope.anyMethod) terms.push(`http.method == ${celString(method)}`);
  let shown = `${host}${path}`;
  if (scope.path === "exact") terms.push(`http.path == ${celString(path)}`);
  else if (scope.path === "prefix") {
    const prefix = prefixOf(path);
    if (prefix !== "") {
      terms.push(`(http.path == ${celString(prefix)} || http.path.startsWith(${celString(prefix + "/")}))`);
      shown = `${host}${prefix}/…`;
    } else shown = `${host}/…`;
  } else shown = `${host}/…`;
  const condition = terms.join(" && ");

  // 3. Name and priority.
  const verb = scope.anyMethod ? "any" : method.toLowerCase();
  const where = scope.path === "host" ? host : `${host}${scope.path === "prefix" ? prefixOf(path) : path}`;
  const name = freeName(slug(`block-${verb}-${where}`), new Set(rules.map((r) => r.name)));
  const priority = priorityAbove(rules, endpoint);

  // 4. The block.
  const description = `${scope.anyMethod ? "any method" : method} ${shown}${scope.onlyProfile ? ` for profile ${e.profile}` : ""}`;
  const comments = [`# Generated from ${e.id !== undefined ? `request #${e.id}` : "a request"} (${method} ${host}${path} by ${e.device}).`];
  return { ok: true, name, condition, priority, description, hcl: ruleBlock(comments, name, endpoint, priority, scope.onlyProfile ? e.profile : undefined, condition, description) };
}

/** sql: a condition over sql.verb and sql.tables, from the statement's recorded facets. */
function suggestSqlRule(e: SuggestInput, endpoint: string, scope: SuggestScope, rules: RuleRefs): Suggestion {
  const a = e.action ?? {};
  const verb = typeof a.verb === "string" ? a.verb : undefined;
  if (verb === undefined || !/^[a-z_]+$/.test(verb)) {
    return { ok: false, error: "the parser could not read this statement, so a rule over sql.* cannot describe it (rules that read sql.* already deny it: unknown facets fail closed)" };
  }
  const tables = Array.isArray(a.tables) ? [...new Set(a.tables.filter((t): t is string => typeof t === "string"))] : [];
  let kind = scope.sql ?? "verb-tables";
  if (kind === "verb-tables" && tables.length === 0) kind = "verb";
  if (kind === "tables" && tables.length === 0) return { ok: false, error: `this ${verb} names no table; block the verb instead` };

  // 2. The condition. A table matches as written, and with or without `public.`
  // (the schema a bare name usually resolves to), so `users` and `public.users` are one.
  const names = tables.flatMap(spellings);
  const touches = names.length === 1 ? `${celString(names[0]!)} in sql.tables` : `sql.tables.exists(t, t in [${names.map(celString).join(", ")}])`;
  const terms: string[] = [];
  if (kind !== "tables") terms.push(`sql.verb == ${celString(verb)}`);
  if (kind !== "verb") terms.push(touches);
  const condition = terms.join(" && ");

  // 3. Name and priority.
  const shownTables = tables.join(", ");
  const description =
    (kind === "verb-tables" ? `${verb} on ${shownTables}` : kind === "verb" ? `any ${verb}` : `any statement touching ${shownTables}`) +
    (scope.onlyProfile ? ` for profile ${e.profile}` : "");
  const what = kind === "verb-tables" ? `${verb}-${tables.join("-")}` : kind === "verb" ? `any-${verb}` : `any-sql-on-${tables.join("-")}`;
  const name = freeName(slug(`block-${what}`), new Set(rules.map((r) => r.name)));
  const priority = priorityAbove(rules, endpoint);

  // 4. The block.
  const statement = typeof a.statement === "string" ? a.statement : (e.path ?? "");
  const database = typeof a.database === "string" ? ` on ${a.database}` : "";
  const comments = [
    `# Generated from ${e.id !== undefined ? `statement #${e.id}` : "a statement"} (${verb}${database} by ${e.device}):`,
    `#   ${cutLine(statement, 120)}`,
  ];
  return { ok: true, name, condition, priority, description, hcl: ruleBlock(comments, name, endpoint, priority, scope.onlyProfile ? e.profile : undefined, condition, description) };
}

/** exec: a condition over exec.argv, exec.prefix or exec.command, from the recorded argv. */
function suggestExecRule(e: SuggestInput, endpoint: string, scope: SuggestScope, rules: RuleRefs): Suggestion {
  const a = e.action ?? {};
  const argv = Array.isArray(a.argv) && a.argv.every((x): x is string => typeof x === "string") ? a.argv : [];
  const command = typeof a.command === "string" ? a.command : argv[0];
  if (!command || argv.length === 0) return { ok: false, error: "this command's arguments were not recorded, so a rule cannot describe it" };
  let kind = scope.exec ?? "prefix";
  if (kind === "prefix" && argv.length < 2) kind = "command";
  const words = kind === "exact" ? argv : kind === "prefix" ? argv.slice(0, 2) : [command];
  const list = `[${words.map(celString).join(", ")}]`;
  const condition = kind === "exact" ? `exec.argv == ${list}` : kind === "prefix" ? `exec.prefix(${list})` : `exec.command == ${celString(command)}`;
  const shown = cutLine(words.join(" "), 80);
  const description = (kind === "exact" ? `exactly \`${shown}\`` : kind === "prefix" ? `\`${shown} …\`` : `any \`${command}\` command`) + (scope.onlyProfile ? ` for profile ${e.profile}` : "");
  const name = freeName(slug(`block-${kind === "command" ? `any-${command}` : words.join("-")}`), new Set(rules.map((r) => r.name)));
  const priority = priorityAbove(rules, endpoint);
  const cwd = typeof a.cwd === "string" ? ` in ${a.cwd}` : "";
  const comments = [`# Generated from ${e.id !== undefined ? `command #${e.id}` : "a command"} (by ${e.device}${cwd}):`, `#   ${cutLine(argv.join(" "), 120)}`];
  return { ok: true, name, condition, priority, description, hcl: ruleBlock(comments, name, endpoint, priority, scope.onlyProfile ? e.profile : undefined, condition, description) };
}

/** `users` -> users, public.users; `public.users` -> public.users, users; other schemas as written. */
function spellings(table: string): string[] {
  if (table.startsWith("public.") && table.indexOf(".", 7) < 0) return [table, table.slice(7)];
  if (!table.includes(".")) return [table, `public.${table}`];
  return [table];
}

function cutLine(text: string, max: number): string {
  const one = text.replace(/\s+/g, " ").trim();
  return one.length <= max ? one : `${one.slice(0, max - 1)}…`;
}

/** A priority above every rule already on the endpoint (0 when it has none). */
function priorityAbove(rules: RuleRefs, endpoint: string): number {
  const onEndpoint = rules.filter((r) => r.endpoints.includes(endpoint));
  return onEndpoint.length ? Math.max(0, ...onEndpoint.map((r) => r.priority + 1)) : 0;
}

function ruleBlock(comments: string[], name: string, endpoint: string, priority: number, profile: string | undefined, condition: string, description: string): string {
  const lines = [...comments, `# Denies ${description}. Copy it into your config; a reload applies it.`, `rule ${hclString(name)} {`, `  endpoint  = ${endpoint}`];
  if (priority > 0) lines.push(`  priority  = ${priority} # checked before this endpoint's other rules`);
  if (profile !== undefined) lines.push(`  profiles  = [profile.${profile}]`);
  lines.push(
    `  condition = ${hclString(condition)}`,
    `  verdict   = "deny"`,
    `  reason    = ${hclString(`blocked by an operator: ${description}`)}`,
    "}",
  );
  return comment(lines).join("\n") + "\n";
}

/** The path without query or fragment, as the policy sees `http.path`. */
function pathOf(target: string): string {
  let rest = target.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, "");
  const cut = rest.search(/[?#]/);
  if (cut >= 0) rest = rest.slice(0, cut);
  return rest || "/";
}

/** `/repos/o/r/git/refs` -> `/repos/o/r/git`; a top-level `/echo` keeps itself; `/` has none. */
export function prefixOf(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  if (trimmed === "") return "";
  const parent = trimmed.slice(0, trimmed.lastIndexOf("/"));
  return parent === "" ? trimmed : parent;
}

function slug(s: string): string {
  const out = s.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  return out.slice(0, NAME_MAX).replace(/-+$/, "") || "block-request";
}

function freeName(base: string, taken: Set<string>): string {
  if (!taken.has(base)) return base;
  for (let i = 2; ; i++) if (!taken.has(`${base}-${i}`)) return `${base}-${i}`;
}

/** A CEL single-quoted string literal; `{` after `$` or `%` as an escape, so HCL sees no template. */
function celString(s: string): string {
  return `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/([$%])\{/g, "$1\\u007b")}'`;
}

/**
 * An HCL double-quoted string. The loader refuses strings with `${` (it
 * reads them as references), so a template marker becomes `$ {`: only
 * request text in the reason can hold one, and the condition escapes its own.
 */
export function hclString(s: string): string {
  const escaped = s
    .replace(/\\/g, "\\\\")
    .replace(/"/g, '\\"')
    .replace(/\n/g, "\\n")
    .replace(/\r/g, "\\r")
    .replace(/\t/g, "\\t")
    .replace(/([$%])\{/g, "$1 {");
  return `"${escaped}"`;
}

/** Comment lines carry request text: no control characters may end them early. */
function comment(lines: string[]): string[] {
  return lines.map((l) => (l.startsWith("#") ? l.replace(/[\u0000-\u001f\u007f]/g, "?") : l));
}
