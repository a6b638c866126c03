// `clawpatrol-gateway test CONFIG FIXTURES`: replay recorded requests and
// statements through the policy and compare the decisions with the expected ones.
//   1. Read FIXTURES (a JSON file, or a directory of *.json), validate cases:
//      an http case has a `request` ({method, url, headers, body}); an sql
//      case names its `endpoint` (postgres.db) and its `sql` text, with
//      `database` and `user` as the agent's startup would give them.
//   2. For each case: http finds the endpoint from the URL host (or applies
//      `unknown_host` when none claims it), builds the facts and decides.
//      sql parses the text with the real PostgreSQL parser and judges each
//      statement as the gateway does: the first deny denies the case, a
//      text the parser rejects leaves the facets unknown (rules reading
//      them fail closed).
//      Cases run in order at one instant against one set of rate-limit
//      buckets, so the 61st case under a `rate = "60/m"` rule is limited.
//   3. Report every mismatch; exit 0 all match, 1 drift, 2 usage error.
//      `expect` may also name the shadow verdicts (`"shadow": {"rule": "deny"}`)
//      and whether a rate limit answered (`"limited": true`). A case may
//      say what was spent today (`"spent_usd": 25`, in every budget's scope)
//      and expect whether a spend budget answered (`"over_budget": true`).
import { readdir, readFile, stat } from "node:fs/promises";
import * as nodePath from "node:path";
import { decide, judge, matchEndpoint, visibleEndpoints } from "./engine.ts";
import { httpFactsFromRequest } from "./facts.ts";
import type { HeaderList } from "../endpoints/http1/headers.ts";
import type { SqlFacts } from "../families/sql/family.ts";
import { loadSqlParser, sqlFacts } from "../families/sql/index.ts";
import type { Decision, Policy } from "./types.ts";
import { RateLimiter } from "./rate-limits.ts";
import { SpendLedger, type SpendScope } from "../spend/ledger.ts";

export interface FixtureRun {
  exitCode: 0 | 1 | 2;
  report: string;
}

type ExpectedVerdict = "allow" | "deny" | "approve" | "passthrough";
const VERDICTS: readonly ExpectedVerdict[] = ["allow", "deny", "approve", "passthrough"];

interface CaseBase {
  file: string;
  index: number;
  name: string;
  device: string;
  profile: string;
  expect: {
    verdict: ExpectedVerdict;
    /** undefined: not checked; null: no rule may match. */
    rule: string | null | undefined;
    credential: string | null | undefined;
    /** undefined: not checked; else exactly these shadow rules, with what each would have decided. */
    shadow: Record<string, string> | undefined;
    /** undefined: not checked. */
    limited: boolean | undefined;
    /** undefined: not checked. */
    overBudget: boolean | undefined;
  };
  /** The day's spend in every budget scope, as the case is judged (default 0). */
  spentUsd: number;
}

interface HttpCase extends CaseBase {
  family: "http";
  method: string;
  url: URL;
  headers: HeaderList;
  body: Uint8Array | undefined;
}

interface SqlCase extends CaseBase {
  family: "sql";
  /** Endpoint ref (`postgres.db`): a sql flow is claimed by its address, not by a name in the text. */
  endpoint: string;
  sql: string;
  database: string;
  user: string;
}

type FixtureCase = HttpCase | SqlCase;

interface Outcome {
  verdict: ExpectedVerdict;
  rule: string | undefined;
  reason: string;
  credential: string | undefined;
  shadow: Record<string, string>;
  limited: boolean;
  overBudget?: boolean;
}

/** A ledger that says every scope has spent the same amount today. */
class SpentAlready extends SpendLedger {
  constructor(
    private readonly usd: number,
    now: () => number,
  ) {
    super(now);
  }
  override spent(_scope: SpendScope, _key: string): number {
    return this.usd;
  }
}

export async function runFixtures(policy: Policy, fixturesPath: string): Promise<FixtureRun> {
  const loaded = await loadCases(fixturesPath, policy.defaults.profile ?? "default", policy);
  if (!loaded.ok) return { exitCode: 2, report: loaded.errors.join("\n") + "\n" };
  if (loaded.cases.some((c) => c.family === "sql")) await loadSqlParser();

  const lines: string[] = [];
  let failed = 0;
  const at = Date.now();
  const limiter = new RateLimiter(() => at);
  for (const c of loaded.cases) {
    const got = evaluateCase(policy, c, limiter);
    const problems = compare(c, got);
    if (problems.length === 0) {
      lines.push(`ok    ${c.name}`);
      continue;
    }
    failed++;
    lines.push(`FAIL  ${c.name}  (${c.file} #${c.index + 1})`);
    lines.push(`      expected: ${describeExpected(c)}`);
    lines.push(`      got:      ${describeOutcome(c, got)}`);
  }
  const passed = loaded.cases.length - failed;
  lines.push(`${passed} passed, ${failed} failed`);
  return { exitCode: failed > 0 ? 1 : 0, report: lines.join("\n") + "\n" };
}

function evaluateCase(policy: Policy, c: FixtureCase, limiter: RateLimiter): Outcome {
  return c.family === "sql" ? evaluateSqlCase(policy, c, limiter) : evaluateHttpCase(policy, c, limiter);
}

function evaluateHttpCase(policy: Policy, c: HttpCase, limiter: RateLimiter): Outcome {
  const endpoint = matchEndpoint(policy, c.url.hostname, c.profile);
  if (!endpoint) {
    const verdict = policy.defaults.unknownHost;
    return { verdict, rule: undefined, reason: `no endpoint claims ${c.url.hostname} (unknown_host ${verdict})`, credential: undefined, shadow: {}, limited: false };
  }
  const limit = policy.defaults.inspectLimitBytes;
  const truncated = c.body !== undefined && c.body.length > limit;
  const body = truncated ? c.body!.subarray(0, limit) : c.body;
  const facts = httpFactsFromRequest(c.method, c.url.host, c.url.pathname + c.url.search, c.headers, body, truncated, c.url.protocol === "http:" ? "http" : "https");
  const spend = new SpentAlready(c.spentUsd, Date.now);
  return outcomeOf(decide(policy, { device: c.device, profile: c.profile, endpoint }, facts, { limiter, spend }));
}

/** Each statement judged as the Postgres endpoint judges it: the first deny (or hold) decides, else the first statement's allow. */
function evaluateSqlCase(policy: Policy, c: SqlCase, limiter: RateLimiter): Outcome {
  const endpoint = policy.endpoints.get(c.endpoint)!;
  if (!visibleEndpoints(policy, c.profile)(endpoint)) {
    const verdict = policy.defaults.unknownHost;
    return { verdict, rule: undefined, reason: `profile ${c.profile} does not see ${c.endpoint} (unknown_host ${verdict})`, credential: undefined, shadow: {}, limited: false };
  }
  const base = { database: c.database, user: c.user };
  const parsed = sqlFacts(c.sql);
  const actions: SqlFacts[] = parsed.ok
    ? parsed.statements.map((facets) => ({ ...base, text: facets.statement, facets }))
    : [{ ...base, text: c.sql, unknownReason: parsed.error }];
  if (actions.length === 0) return { verdict: "allow", rule: undefined, reason: "the text holds no statement (nothing is judged)", credential: undefined, shadow: {}, limited: false };
  let first: Decision | undefined;
  for (const facts of actions) {
    const d = judge(policy, { device: c.device, profile: c.profile, endpoint }, facts, { limiter });
    first ??= d;
    if (d.verdict !== "allow") return outcomeOf(d);
  }
  return outcomeOf(first!);
}

function outcomeOf(d: Decision): Outcome {
  const shadow = Object.fromEntries((d.shadow ?? []).map((s) => [s.rule, s.would]));
  return { verdict: d.verdict, rule: d.rule, reason: d.reason, credential: d.credential, shadow, limited: d.limited !== undefined, overBudget: d.overBudget !== undefined };
}

function compare(c: FixtureCase, got: Outcome): string[] {
  const problems: string[] = [];
  if (got.verdict !== c.expect.verdict) problems.push("verdict");
  if (c.expect.rule !== undefined && (got.rule ?? null) !== c.expect.rule) problems.push("rule");
  if (c.expect.credential !== undefined && (got.credential ?? null) !== c.expect.credential) problems.push("credential");
  if (c.expect.shadow !== undefined && describeShadow(c.expect.shadow) !== describeShadow(got.shadow)) problems.push("shadow");
  if (c.expect.limited !== undefined && c.expect.limited !== got.limited) problems.push("limited");
  if (c.expect.overBudget !== undefined && c.expect.overBudget !== (got.overBudget ?? false)) problems.push("over_budget");
  return problems;
}

function describeShadow(shadow: Record<string, string>): string {
  const entries = Object.entries(shadow).sort(([a], [b]) => a.localeCompare(b));
  return entries.length === 0 ? "none" : entries.map(([rule, would]) => `${rule} would ${would}`).join(", ");
}

function describeExpected(c: FixtureCase): string {
  let s = c.expect.verdict;
  if (c.expect.rule === null) s += ", no rule matched";
  else if (c.expect.rule !== undefined) s += ` by rule "${c.expect.rule}"`;
  if (c.expect.credential !== undefined) s += `, credential ${c.expect.credential ?? "none"}`;
  if (c.expect.limited !== undefined) s += c.expect.limited ? ", over a rate limit" : ", within rate limits";
  if (c.expect.overBudget !== undefined) s += c.expect.overBudget ? ", over a spend budget" : ", within spend budgets";
  if (c.expect.shadow !== undefined) s += `, shadow: ${describeShadow(c.expect.shadow)}`;
  return s;
}

function describeOutcome(c: FixtureCase, o: Outcome): string {
  let s = o.verdict;
  s += o.rule !== undefined ? ` by rule "${o.rule}"` : `, ${o.reason}`;
  s += `, credential ${o.credential ?? "none"}`;
  if (o.limited) s += ", over a rate limit";
  if (o.overBudget) s += ", over a spend budget";
  if (c.expect.shadow !== undefined || Object.keys(o.shadow).length > 0) s += `, shadow: ${describeShadow(o.shadow)}`;
  return s;
}

type Loaded = { ok: true; cases: FixtureCase[] } | { ok: false; errors: string[] };

async function loadCases(path: string, defaultProfile: string, policy: Policy): Promise<Loaded> {
  let files: string[];
  try {
    const s = await stat(path);
    files = s.isDirectory()
      ? (await readdir(path))
          .filter((n) => n.endsWith(".json"))
          .sort()
          .map((n) => nodePath.join(path, n))
      : [path];
  } catch {
    return { ok: false, errors: [`${path}: cannot read fixtures`] };
  }
  if (files.length === 0) return { ok: false, errors: [`${path}: no *.json fixture files`] };

  const cases: FixtureCase[] = [];
  const errors: string[] = [];
  for (const file of files) {
    let json: unknown;
    try {
      json = JSON.parse(await readFile(file, "utf8"));
    } catch (e) {
      errors.push(`${file}: ${e instanceof SyntaxError ? `invalid JSON: ${e.message}` : "cannot read"}`);
      continue;
    }
    if (!Array.isArray(json)) {
      errors.push(`${file}: must hold a JSON array of cases`);
      continue;
    }
    json.forEach((raw, index) => {
      const c = readCase(raw, file, index, defaultProfile, policy);
      if (typeof c === "string") errors.push(`${file}: case #${index + 1}: ${c}`);
      else cases.push(c);
    });
  }
  if (errors.length > 0) return { ok: false, errors };
  if (cases.length === 0) return { ok: false, errors: [`${path}: no fixture cases`] };
  return { ok: true, cases };
}

/** A validated case, or what is wrong with it. */
function readCase(raw: unknown, file: string, index: number, defaultProfile: string, policy: Policy): FixtureCase | string {
  if (!isRecord(raw)) return "must be an object";
  const { device, profile, expect } = raw;
  const spent = raw.spent_usd ?? 0;
  if (typeof spent !== "number" || !Number.isFinite(spent) || spent < 0) return '"spent_usd" must be an amount of zero or more';
  if (device !== undefined && typeof device !== "string") return '"device" must be a string';
  if (profile !== undefined && typeof profile !== "string") return '"profile" must be a string';
  if (!isRecord(expect)) return 'needs an "expect" object';
  const expected = readExpect(expect);
  if (typeof expected === "string") return expected;
  const common = { file, index, device: device ?? "fixture", profile: profile ?? defaultProfile, expect: expected, spentUsd: spent };
  if (raw.sql !== undefined) return readSqlCase(raw, common, policy);
  const { name, request } = raw;
  if (typeof name !== "string" || name === "") return 'needs a "name" string';
  if (!isRecord(request)) return 'needs a "request" object (an http case) or "sql" text (an sql case)';

  const method = request.method ?? "GET";
  if (typeof method !== "string" || !/^[A-Za-z]+$/.test(method)) return 'request.method must be an HTTP method';
  if (typeof request.url !== "string" || !URL.canParse(request.url)) return "request.url must be an absolute URL";
  const url = new URL(request.url);

  const headers: HeaderList = [];
  if (request.headers !== undefined) {
    if (!isRecord(request.headers)) return "request.headers must be an object of strings";
    for (const [k, v] of Object.entries(request.headers)) {
      if (typeof v !== "string") return `request.headers.${k} must be a string`;
      headers.push([k, v]);
    }
  }
  let body: Uint8Array | undefined;
  if (typeof request.body === "string") body = new TextEncoder().encode(request.body);
  else if (request.body !== undefined && request.body !== null) {
    // An object or array is sent as JSON, the way an agent's client would.
    body = new TextEncoder().encode(JSON.stringify(request.body));
    if (!headers.some(([k]) => k.toLowerCase() === "content-type")) headers.push(["content-type", "application/json"]);
  }

  return { ...common, family: "http", name, method: method.toUpperCase(), url, headers, body };
}

function readExpect(expect: Record<string, unknown>): CaseBase["expect"] | string {
  if (typeof expect.verdict !== "string" || !(VERDICTS as readonly string[]).includes(expect.verdict)) {
    return `expect.verdict must be one of: ${VERDICTS.join(", ")}`;
  }
  const rule = expect.rule;
  if (rule !== undefined && rule !== null && typeof rule !== "string") return "expect.rule must be a string or null";
  const credential = expect.credential;
  if (credential !== undefined && credential !== null && typeof credential !== "string") {
    return "expect.credential must be a string or null";
  }
  const shadow = expect.shadow;
  if (shadow !== undefined) {
    const ok = isRecord(shadow) && Object.values(shadow).every((w) => w === "allow" || w === "deny" || w === "approve");
    if (!ok) return 'expect.shadow must map rule names to "allow", "deny" or "approve" (an empty object: no shadow rule matched)';
  }
  const limited = expect.limited;
  if (limited !== undefined && typeof limited !== "boolean") return "expect.limited must be true or false";
  const overBudget = expect.over_budget;
  if (overBudget !== undefined && typeof overBudget !== "boolean") return "expect.over_budget must be true or false";
  return { verdict: expect.verdict as ExpectedVerdict, rule, credential, shadow: shadow as Record<string, string> | undefined, limited, overBudget };
}

/** `{"endpoint": "postgres.db", "sql": "...", "database"?, "user"?, "name"?}`: the endpoint must be one of the sql family. */
function readSqlCase(raw: Record<string, unknown>, common: Omit<CaseBase, "name">, policy: Policy): SqlCase | string {
  const { name, endpoint, sql, database, user } = raw;
  if (raw.request !== undefined) return 'has both "request" and "sql": a case is an http request or an sql text';
  if (typeof sql !== "string") return '"sql" must be the statement text';
  if (name !== undefined && (typeof name !== "string" || name === "")) return '"name" must be a non-empty string';
  if (typeof endpoint !== "string") return 'an sql case needs "endpoint" (e.g. "postgres.db")';
  const ep = policy.endpoints.get(endpoint);
  if (!ep) return `no endpoint ${endpoint} in the config`;
  if (ep.family !== "sql") return `endpoint ${endpoint} is of the ${ep.family} family, not sql`;
  if (database !== undefined && typeof database !== "string") return '"database" must be a string';
  if (user !== undefined && typeof user !== "string") return '"user" must be a string';
  const agentUser = user ?? "fixture";
  return {
    ...common,
    family: "sql",
    name: name ?? `${endpoint}: ${sql.replace(/\s+/g, " ").trim().slice(0, 80)}`,
    endpoint,
    sql,
    // As PostgreSQL does: the database defaults to the user's name.
    database: database ?? agentUser,
    user: agentUser,
  };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
