// "Block requests like this": a recorded request -> an HCL `rule` block
// that denies it and, as wide as the operator picks, requests like it.
// Pure: the caller hands in the event and the rules already loaded (for a
// free name and a priority that puts the new rule first); nothing is read,
// written or applied here.
//   1. Check the event is an HTTP request on an endpoint (only those meet rules).
//   2. Build the CEL condition from the scope: host always; method unless
//      "any"; path exact, under the same prefix, or any path on the host.
//   3. Pick a readable, unused name and a priority above the endpoint's rules.
//   4. Emit the block, every string escaped for CEL inside HCL.
import type { GatewayEvent } from "../events/types.ts";
import { normalizeHost } from "./host.ts";
import type { Rule } from "./types.ts";

export type PathScope = "exact" | "prefix" | "host";

export interface SuggestScope {
  /** exact: this path only; prefix: this path's folder and below; host: any path on the host. */
  path: PathScope;
  /** Any method, or (default) only this request's method. */
  anyMethod?: boolean;
  /** Only for this request's profile (adds `profiles = [profile.NAME]`). */
  onlyProfile?: boolean;
}

export type SuggestInput = Pick<GatewayEvent, "kind" | "endpoint" | "host" | "method" | "path" | "profile" | "device"> & { id?: number };

export type Suggestion =
  | { ok: true; name: string; hcl: string; condition: string; priority: number; description: string }
  | { ok: false; error: string };

const REF = /^[A-Za-z_][A-Za-z0-9_-]*\.[A-Za-z_][A-Za-z0-9_-]*$/;
const IDENT = /^[A-Za-z_][A-Za-z0-9_-]*$/;
const NAME_MAX = 60;

export function parseScope(v: unknown): SuggestScope | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (o.path !== "exact" && o.path !== "prefix" && o.path !== "host") return undefined;
  for (const k of ["anyMethod", "onlyProfile"]) if (o[k] !== undefined && typeof o[k] !== "boolean") return undefined;
  return { path: o.path, anyMethod: o.anyMethod === true, onlyProfile: o.onlyProfile === true };
}

export function suggestRule(e: SuggestInput, scope: SuggestScope, rules: readonly Pick<Rule, "name" | "endpoints" | "priority">[] = []): Suggestion {
  // 1. Only HTTP requests on an endpoint are decided by rules.
  if (e.kind !== "http" || !e.endpoint || !e.method) {
    return { ok: false, error: "only HTTP requests on an endpoint can be blocked by a rule (this one was relayed or passed through)" };
  }
  if (!REF.test(e.endpoint)) return { ok: false, error: `the endpoint ${JSON.stringify(e.endpoint)} is not a reference a rule can name` };
  if (scope.onlyProfile && !IDENT.test(e.profile)) return { ok: false, error: `the profile ${JSON.stringify(e.profile)} cannot be named in a rule` };
  const method = e.method.toUpperCase();
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
  const onEndpoint = rules.filter((r) => r.endpoints.includes(e.endpoint!));
  const priority = onEndpoint.length ? Math.max(0, ...onEndpoint.map((r) => r.priority + 1)) : 0;

  // 4. The block.
  const description = `${scope.anyMethod ? "any method" : method} ${shown}${scope.onlyProfile ? ` for profile ${e.profile}` : ""}`;
  const lines = [
    `# Generated from ${e.id !== undefined ? `request #${e.id}` : "a request"} (${method} ${host}${path} by ${e.device}).`,
    `# Denies ${description}. Copy it into your config; a reload applies it.`,
    `rule ${hclString(name)} {`,
    `  endpoint  = ${e.endpoint}`,
  ];
  if (priority > 0) lines.push(`  priority  = ${priority} # checked before this endpoint's other rules`);
  if (scope.onlyProfile) lines.push(`  profiles  = [profile.${e.profile}]`);
  lines.push(
    `  condition = ${hclString(condition)}`,
    `  verdict   = "deny"`,
    `  reason    = ${hclString(`blocked by an operator: ${description}`)}`,
    "}",
  );
  return { ok: true, name, hcl: comment(lines).join("\n") + "\n", condition, priority, description };
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
