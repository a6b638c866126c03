// Recorded actions judged again under a config: what the dashboard's "block
// requests like this" shows for one request, and what `clawpatrol-gateway
// replay --config NEW.hcl --since 24h` reports for a day of them.
//
// A recorded action keeps what its event kept: an HTTP request its method,
// host and path (no headers, no body), a statement its parsed facets. So a
// replay judges the running config and the candidate on the same facts and
// reports where they differ, not against the verdict recorded at the time
// (which saw headers and bodies a replay cannot): a rule that did not change
// changes nothing. Rate limits are not counted (a replay is not traffic).
import type { StoredAction } from "../store/actions.ts";
import type { SqlFacts } from "../families/sql/family.ts";
import type { ExecFacts } from "../families/exec.ts";
import { judge, matchEndpoint, normalizeHost, visibleEndpoints } from "./engine.ts";
import type { Decision, HttpFacts, Policy } from "./types.ts";

/** What a config answers for a recorded action; undefined when rules never judged such an action (a relayed connection). */
export function judgeRecorded(policy: Policy, e: StoredAction): Decision | undefined {
  if (e.kind === "sql") {
    const endpoint = e.endpoint === undefined ? undefined : policy.endpoints.get(e.endpoint);
    if (!endpoint || endpoint.family !== "sql" || !visibleEndpoints(policy, e.profile)(endpoint)) return undefined;
    return judge(policy, { device: e.device, profile: e.profile, endpoint }, sqlFactsFromAction(e.action ?? {}, e.path ?? ""), { limiter: null });
  }
  if (e.kind === "exec") {
    const endpoint = e.endpoint === undefined ? undefined : policy.endpoints.get(e.endpoint);
    const facts = endpoint?.family === "exec" ? execFactsFromAction(e.action ?? {}) : undefined;
    if (!endpoint || !facts || !visibleEndpoints(policy, e.profile)(endpoint)) return undefined;
    return judge(policy, { device: e.device, profile: e.profile, endpoint }, facts, { limiter: null });
  }
  if (e.kind !== "http" || !e.method) return undefined;
  const endpoint = matchEndpoint(policy, e.host, e.profile);
  if (!endpoint) return undefined;
  return judge(policy, { device: e.device, profile: e.profile, endpoint }, httpFactsFromAction(e), { limiter: null });
}

/** The exec facts a recorded command still has (environment names, never values: they read as ""). */
function execFactsFromAction(a: Record<string, unknown>): ExecFacts | undefined {
  const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);
  const argv = strings(a.argv);
  if (typeof a.command !== "string" || argv.length === 0) return undefined;
  return {
    command: a.command,
    path: typeof a.path === "string" ? a.path : "",
    argv,
    cwd: typeof a.cwd === "string" ? a.cwd : "/",
    env: Object.fromEntries(strings(a.env).map((k) => [k, ""])),
    paths: strings(a.paths),
    tty: a.tty === true,
    uid: typeof a.uid === "number" ? a.uid : 0,
  };
}

/** The http facts a recorded request still has: method, host, path and query. */
function httpFactsFromAction(e: StoredAction): HttpFacts {
  const raw = e.path ?? "/";
  const q = raw.search(/[?#]/);
  const query = Object.create(null) as Record<string, string>;
  if (q >= 0 && raw[q] === "?") {
    for (const [k, v] of new URLSearchParams(raw.slice(q + 1).split("#")[0])) if (!(k in query)) query[k] = v;
  }
  return {
    method: e.method!.toUpperCase(),
    host: normalizeHost(e.host),
    path: (q >= 0 ? raw.slice(0, q) : raw) || "/",
    query,
    headers: Object.create(null) as Record<string, string>,
    body: "",
    bodyJson: null,
    bodyTruncated: false,
  };
}

/** The SqlFacts a stored sql action describes; a statement the parser rejected (verb null) keeps its facets unknown. */
export function sqlFactsFromAction(a: Record<string, unknown>, fallbackText: string): SqlFacts {
  const strings = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);
  const text = typeof a.statement === "string" ? a.statement : fallbackText;
  const facts: SqlFacts = {
    database: typeof a.database === "string" ? a.database : "",
    user: typeof a.user === "string" ? a.user : "",
    text,
  };
  if (typeof a.verb === "string") facts.facets = { verb: a.verb, tables: strings(a.tables), functions: strings(a.functions), statement: text };
  else facts.unknownReason = "the recorded statement did not parse";
  return facts;
}

export type ReplayVerdict = "allowed" | "denied" | "held";

export interface ReplayChange {
  id: number;
  time: string;
  device: string;
  /** One line: `DELETE api.github.com/repos/x`, `delete public.users`. */
  what: string;
  from: { verdict: ReplayVerdict; rule: string | undefined };
  to: { verdict: ReplayVerdict; rule: string | undefined };
}

export interface ReplayReport {
  replayed: number;
  /** Actions no rule judges (relayed connections) or whose endpoint neither config has. */
  skipped: number;
  changes: ReplayChange[];
}

function verdictOf(d: Decision): ReplayVerdict {
  return d.verdict === "allow" ? "allowed" : d.verdict === "approve" ? "held" : "denied";
}

/** Every action judged by both configs; the ones whose verdict differs. */
export function replayActions(current: Policy, candidate: Policy, actions: Iterable<StoredAction>): ReplayReport {
  const report: ReplayReport = { replayed: 0, skipped: 0, changes: [] };
  for (const e of actions) {
    const before = judgeRecorded(current, e);
    const after = judgeRecorded(candidate, e);
    if (!before && !after) {
      report.skipped++;
      continue;
    }
    report.replayed++;
    // An endpoint only one config has: the other lets the flow pass unjudged (relay or passthrough), i.e. allowed.
    const from = before ? { verdict: verdictOf(before), rule: before.rule } : { verdict: "allowed" as const, rule: undefined };
    const to = after ? { verdict: verdictOf(after), rule: after.rule } : { verdict: "allowed" as const, rule: undefined };
    if (from.verdict === to.verdict) continue;
    report.changes.push({ id: e.id, time: e.time, device: e.device, what: e.summary ?? `${e.method ?? ""} ${e.host}${e.path ?? ""}`.trim(), from, to });
  }
  return report;
}

/** Per rule of the candidate (or of the running config when the candidate's default decides): allowed→denied, denied→allowed, newly held. */
export function formatReplay(report: ReplayReport, examplesPerGroup = 3): string {
  const lines = [`replayed ${report.replayed} recorded actions (${report.skipped} not judged by rules); ${report.changes.length} would change`];
  const groups = new Map<string, ReplayChange[]>();
  for (const c of report.changes) {
    const rule = c.to.rule ?? c.from.rule;
    const key = `${rule === undefined ? "the default verdict" : `rule "${rule}"`}: ${c.from.verdict} → ${c.to.verdict}`;
    groups.set(key, [...(groups.get(key) ?? []), c]);
  }
  for (const [key, changes] of [...groups].sort((a, b) => b[1].length - a[1].length)) {
    lines.push(`  ${key}: ${changes.length}`);
    for (const c of changes.slice(0, examplesPerGroup)) lines.push(`      #${c.id} ${c.time} ${c.device}  ${c.what}`);
    if (changes.length > examplesPerGroup) lines.push(`      … and ${changes.length - examplesPerGroup} more`);
  }
  return lines.join("\n") + "\n";
}
