// Held requests: the dashboard approver's queue. Who decides is the caller
// (session or token), never a field of the body.
import { ApiError } from "../errors.ts";
import type { PendingApproval } from "../../approvers/hub.ts";
import { caller, requireRole } from "../auth/auth.ts";
import { audit, sourceOf, type AuthContext } from "../auth/routes.ts";
import { readJson, withErrors } from "../auth/http.ts";
import type { OperatorApiDeps } from "./index.ts";
import { requestLine } from "../../approvers/describe.ts";

const MAX_REASON = 2000;

/** JSON form of a held request (headers and body preview are already redacted). */
export function approvalJson(p: PendingApproval) {
  const r = p.request;
  return {
    id: p.id,
    device: r.device,
    profile: r.profile,
    endpoint: r.endpoint,
    rule: r.rule,
    reason: r.reason,
    request: requestLine(r),
    family: r.family ?? "http",
    ...(r.summary ? { summary: r.summary } : {}),
    method: r.method,
    host: r.host,
    path: r.path,
    headers: r.headers,
    bodyPreview: r.bodyPreview,
    bodyTruncated: r.bodyTruncated,
    message: p.message,
    chain: p.chain,
    awaiting: p.awaiting,
    decidable: p.decidable,
    approvedBy: p.approvedBy,
    required: p.required,
    async: p.async,
    started: new Date(p.started).toISOString(),
    deadline: new Date(p.deadline).toISOString(),
  };
}

export function approvalRoutes(ctx: AuthContext, deps: Pick<OperatorApiDeps, "hub">) {
  const decide = (decision: "allow" | "deny", verb: "approve" | "deny") =>
    async ({ request, params, server }: { request: Request; params: { id: string }; server: unknown }) => {
      const who = caller(request);
      const b = await readJson(request);
      const given = typeof b.reason === "string" ? b.reason.trim().slice(0, MAX_REASON) : "";
      const reason = given || (decision === "allow" ? `approved by ${who.operator}` : `denied by ${who.operator}`);
      const r = await deps.hub.decide(params.id, { decision, reason, operator: who.operator, approver: "dashboard" });
      const source = sourceOf(ctx, request, server);
      if (!r.ok) {
        audit(ctx, { operator: who.operator, action: `approval.${verb}.refused`, target: params.id, detail: { reason, refused: r.reason }, source });
        throw new ApiError(409, "not_decidable", r.reason);
      }
      audit(ctx, { operator: who.operator, action: `approval.${verb}`, target: params.id, detail: { reason, via: who.via }, source });
      return { ok: true, id: params.id, decision, operator: who.operator };
    };
  const approver = requireRole(ctx.auth, "approver");
  return withErrors()
    .get("/api/approvals", () => ({ approvals: deps.hub.pending().map(approvalJson) }), {
      beforeHandle: requireRole(ctx.auth, "viewer"),
    })
    .post("/api/approvals/:id/approve", decide("allow", "approve"), { parse: "none", beforeHandle: approver })
    .post("/api/approvals/:id/deny", decide("deny", "deny"), { parse: "none", beforeHandle: approver });
}
