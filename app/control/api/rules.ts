// "Block requests like this" on the operator API (admins only; CSRF like
// every other POST on a session):
//   POST /api/rules/suggest  {eventId, scope}  → {hcl, name, description}
//   POST /api/rules/validate {hcl, eventId?}   → {ok:true, summary} | {ok:false, errors:[{file,line,message}]}
// Validation merges the snippet with the running config's files through the
// real loader; it never applies or writes anything (the operator copies the
// rule into the config and a reload applies it). Each call is audited.
import { ApiError } from "../errors.ts";
import { queryActions, type StoredAction } from "../../store/actions.ts";
import { parseScope, suggestRule } from "../../policy/suggest.ts";
import { checkSnippet, SNIPPET_FILE } from "../../policy/snippet.ts";
import { judgeRecorded } from "../../policy/replay.ts";
import type { Policy } from "../../policy/types.ts";
import { caller, requireRole } from "../auth/auth.ts";
import { audit, sourceOf, type AuthContext } from "../auth/routes.ts";
import { readJson, withErrors } from "../auth/http.ts";
import { ruleJson } from "./admin.ts";
import type { OperatorApiDeps } from "./index.ts";

const MAX_SNIPPET = 32 * 1024;
const MAX_ERRORS = 50;

function eventById(deps: Pick<OperatorApiDeps, "db">, v: unknown): StoredAction {
  const id = typeof v === "number" ? v : typeof v === "string" && /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(id) || id < 1) throw new ApiError(400, "bad_request", "eventId must be the id of a recorded request");
  const [e] = queryActions(deps.db, { beforeId: id + 1, limit: 1 });
  if (!e || e.id !== id) throw new ApiError(404, "no_such_event", `no recorded request #${id} (it may have aged out)`);
  return e;
}

const NOT_DECIDED = { verdict: "not decided by rules", rule: null };

/** What the merged policy would answer for a recorded action (http: method, host and path are all it kept; sql: the statement's facets). */
function wouldDecide(policy: Policy, e: StoredAction) {
  const d = judgeRecorded(policy, e);
  return d ? { verdict: d.verdict, rule: d.rule ?? null } : NOT_DECIDED;
}

export function ruleRoutes(ctx: AuthContext, deps: Pick<OperatorApiDeps, "db" | "policy">) {
  const admin = requireRole(ctx.auth, "admin");
  return withErrors()
    .post(
      "/api/rules/suggest",
      async ({ request }) => {
        const b = await readJson(request, 4096);
        const e = eventById(deps, b.eventId);
        const scope = parseScope(b.scope ?? (e.kind === "sql" ? { sql: "verb-tables" } : e.kind === "exec" ? { exec: "prefix" } : { path: "exact" }));
        if (!scope) throw new ApiError(400, "bad_scope", 'scope is {path: "exact" | "prefix" | "host", anyMethod?: bool, onlyProfile?: bool} for an HTTP request, {sql: "verb-tables" | "verb" | "tables", onlyProfile?: bool} for an SQL statement, {exec: "exact" | "prefix" | "command", onlyProfile?: bool} for a command');
        const s = suggestRule(e, scope, deps.policy().rules);
        if (!s.ok) throw new ApiError(422, "not_blockable", s.error);
        return { hcl: s.hcl, name: s.name, description: s.description };
      },
      { parse: "none", beforeHandle: admin },
    )
    .post(
      "/api/rules/validate",
      async ({ request, server }) => {
        const b = await readJson(request, MAX_SNIPPET + 1024);
        if (typeof b.hcl !== "string" || b.hcl.length > MAX_SNIPPET) {
          throw new ApiError(400, "bad_request", `send {"hcl": "…"} (at most ${MAX_SNIPPET} characters)`);
        }
        const event = b.eventId === undefined || b.eventId === null ? undefined : eventById(deps, b.eventId);
        const files = deps.policy().files ?? [];
        if (files.length === 0) throw new ApiError(409, "no_config_files", "the running policy names no config files to validate against");
        const r = await checkSnippet(files, b.hcl);
        audit(ctx, {
          operator: caller(request).operator,
          action: "rules.validate",
          detail: { ok: r.ok, ...(r.ok ? {} : { errors: r.errors.length }) },
          source: sourceOf(ctx, request, server),
        });
        if (!r.ok) return { ok: false, errors: r.errors.slice(0, MAX_ERRORS).map((x) => ({ file: x.file, line: x.line, message: x.message })) };
        const added = r.policy.rules.filter((x) => x.source.file === SNIPPET_FILE).map(ruleJson);
        return {
          ok: true,
          summary: {
            rules: r.policy.rules.length,
            added,
            warnings: r.warnings.filter((w) => w.file === SNIPPET_FILE).map((w) => ({ file: w.file, line: w.line, message: w.message })),
            ...(event ? { request: { id: event.id, ...wouldDecide(r.policy, event) } } : {}),
          },
        };
      },
      { parse: "none", beforeHandle: admin },
    );
}
