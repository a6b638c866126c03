// Configuration and oversight: the loaded profiles and rules (viewers),
// reload, the audit trail and the operator list (admins).
import { ApiError } from "../errors.ts";
import { queryAudit, MAX_AUDIT_LIMIT } from "../../store/audit.ts";
import { shadowSummary } from "../../store/actions.ts";
import { parseDuration } from "../../approvers/config.ts";
import type { Profile, Rule, SourceRef } from "../../policy/types.ts";
import { caller, requireRole } from "../auth/auth.ts";
import { audit, sourceOf, type AuthContext } from "../auth/routes.ts";
import { withErrors } from "../auth/http.ts";
import type { OperatorApiDeps } from "./index.ts";

const where = (s: SourceRef) => `${s.file}:${s.line}`;

export function profileJson(p: Profile) {
  return { name: p.name, credentials: p.credentials, endpoints: p.endpoints ?? null, source: where(p.source) };
}

export function ruleJson(r: Rule) {
  return {
    name: r.name,
    endpoints: r.endpoints,
    family: r.family,
    priority: r.priority,
    disabled: r.disabled,
    profiles: r.profiles ?? null,
    condition: r.condition ?? null,
    verdict: r.verdict ?? (r.approve ? "approve" : null),
    approve: r.approve ?? null,
    reason: r.reason ?? null,
    credential: r.credential ?? null,
    rememberMs: r.rememberMs ?? null,
    mode: r.mode ?? "enforce",
    rate: r.rate ? { rate: r.rate.text, burst: r.rate.burst, per: r.rate.per, overLimit: r.overLimit && "approve" in r.overLimit ? r.overLimit.approve : "deny" } : null,
    source: where(r.source),
  };
}

export function adminRoutes(ctx: AuthContext, deps: Pick<OperatorApiDeps, "policy" | "reload" | "db">) {
  const viewer = requireRole(ctx.auth, "viewer");
  const admin = requireRole(ctx.auth, "admin");
  return withErrors()
    .get("/api/profiles", () => ({ profiles: [...deps.policy().profiles.values()].map(profileJson) }), { beforeHandle: viewer })
    .get("/api/rules", () => ({ rules: deps.policy().rules.map(ruleJson) }), { beforeHandle: viewer })
    // What shadow rules would have done over the last day (or ?since=DURATION), with examples.
    .get(
      "/api/rules/shadow",
      ({ query }) => {
        const back = query.since === undefined ? 86_400_000 : parseDuration(query.since);
        if (back === undefined) throw new ApiError(400, "bad_request", 'since must be a duration like "24h"');
        const shadowRules = deps.policy().rules.filter((r) => r.mode === "shadow").map((r) => r.name);
        return { since: new Date(Date.now() - back).toISOString(), shadowRules, rules: shadowSummary(deps.db, Date.now() - back) };
      },
      { beforeHandle: viewer },
    )
    .post(
      "/api/reload",
      async ({ request, server }) => {
        const who = caller(request);
        const errors = await deps.reload();
        audit(ctx, {
          operator: who.operator,
          action: "config.reload",
          detail: errors.length ? { ok: false, errors: errors.slice(0, 20) } : { ok: true },
          source: sourceOf(ctx, request, server),
        });
        if (errors.length > 0) throw new ApiError(422, "config_rejected", errors.join("\n"));
        return { ok: true };
      },
      { parse: "none", beforeHandle: admin },
    )
    .get(
      "/api/audit",
      ({ query }) => {
        const limit = query.limit === undefined ? 100 : Number(query.limit);
        if (!Number.isInteger(limit) || limit < 1 || limit > MAX_AUDIT_LIMIT) {
          throw new ApiError(400, "bad_limit", `limit must be 1..${MAX_AUDIT_LIMIT}`);
        }
        const before = query.before === undefined ? undefined : Number(query.before);
        if (before !== undefined && !Number.isInteger(before)) throw new ApiError(400, "bad_request", "before must be an audit id");
        const entries = queryAudit(ctx.db, {
          limit,
          ...(query.operator ? { operator: String(query.operator) } : {}),
          ...(query.action ? { action: String(query.action) } : {}),
          ...(query.since ? { since: String(query.since) } : {}),
          ...(before !== undefined ? { beforeId: before } : {}),
        });
        const last = entries.at(-1);
        return { audit: entries, next: entries.length === limit && last ? last.id : null };
      },
      { beforeHandle: admin },
    )
    .get(
      "/api/operators",
      () => ({
        operators: ctx.store.list().map((o) => ({
          name: o.name,
          role: o.role,
          disabled: o.disabled,
          createdAt: new Date(o.createdAt).toISOString(),
          tokens: ctx.store.listTokens(o.name).map((t) => ({ name: t.name, role: t.role })),
        })),
      }),
      { beforeHandle: admin },
    );
}
