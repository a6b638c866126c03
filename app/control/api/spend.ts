// LLM spend (viewers): the day's spend per device from the state database
// (the gateway process counts it; app/store/spend.ts), and the budgets the
// running config sets, for the dashboard's Devices page.
import { ApiError } from "../errors.ts";
import { spendByDevice } from "../../store/spend.ts";
import { utcDay } from "../../spend/ledger.ts";
import { requireRole } from "../auth/auth.ts";
import type { AuthContext } from "../auth/routes.ts";
import { withErrors } from "../auth/http.ts";
import type { OperatorApiDeps } from "./index.ts";

export function spendRoutes(ctx: AuthContext, deps: Pick<OperatorApiDeps, "policy" | "db">) {
  const viewer = requireRole(ctx.auth, "viewer");
  return withErrors().get(
    "/api/spend",
    ({ query }) => {
      const day = query.day ?? utcDay(Date.now());
      if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) throw new ApiError(400, "bad_request", "day must be a UTC date like 2026-12-07");
      const policy = deps.policy();
      const budgets = [
        ...[...policy.profiles.values()].filter((p) => p.budget).map((p) => ({ owner: `profile "${p.name}"`, dailyUsd: p.budget!.dailyUsd, per: p.budget!.per })),
        ...[...(policy.credentials?.values() ?? [])].filter((c) => c.budget).map((c) => ({ owner: c.ref, dailyUsd: c.budget!.dailyUsd, per: c.budget!.per })),
      ];
      return { day, devices: spendByDevice(deps.db, day), budgets };
    },
    { beforeHandle: viewer },
  );
}
