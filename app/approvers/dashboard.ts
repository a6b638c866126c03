// The built-in `dashboard` approver (needs no block): asking it makes the
// held request decidable on the dashboard, the API and the CLI; the answer
// arrives through hub.decide(id, ...). Who may decide (roles) is the API's
// check, not this one's.
import type { ApprovalHub } from "./hub.ts";
import type { ApprovalRequest, ApproverContext, ApproverPlugin, ApproverVerdict } from "./types.ts";

export const DASHBOARD_REF = "dashboard";

export class DashboardApprover implements ApproverPlugin {
  readonly ref = DASHBOARD_REF;
  readonly type = "dashboard" as const;

  constructor(private readonly hub: ApprovalHub) {}

  ask(req: ApprovalRequest, ctx: ApproverContext): Promise<ApproverVerdict> {
    return this.hub.waitForDashboard(req.id, ctx.signal);
  }
}
