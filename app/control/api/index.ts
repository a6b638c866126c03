// The authenticated operator API: one Elysia plugin for the dashboard role's
// listener (`gateway { dashboard_listen }`), next to the public routes.
// Every route here needs a session or an API token with the role named
// beside it (admin ⊃ approver ⊃ viewer), unsafe methods on a session carry
// the CSRF token, and every operator action lands in the audit table.
//
//   account   /api/auth/*                        (see ../auth/routes.ts)
//   viewer    GET  /api/approvals                 held requests
//   approver  POST /api/approvals/:id/approve     {reason?}; the operator is the caller
//   approver  POST /api/approvals/:id/deny        {reason?}
//   viewer    GET  /api/events                    ?device&verdict&since&limit&before
//   viewer    GET  /api/events/stream             SSE: ready, event, approval, ping
//   viewer    GET  /api/devices
//   admin     POST /api/devices/:name/revoke
//   admin     POST /api/devices/:name/profile     {profile}
//   viewer    GET  /api/onboarding                devices waiting (when onboarding runs)
//   admin     POST /api/onboarding/:code/approve  {profile}
//   admin     POST /api/onboarding/:code/deny
//   viewer    GET  /api/profiles, GET /api/rules, GET /api/rules/shadow (?since=24h: what shadow rules would have done)
//   admin     POST /api/rules/suggest            {eventId, scope} → a deny rule like that request (see rules.ts)
//   admin     POST /api/rules/validate           {hcl} checked with the running config; nothing applied
//   viewer    GET  /api/spend                    ?day=YYYY-MM-DD: LLM spend per device (UTC day), and the budgets
//   admin     POST /api/reload
//   admin     GET  /api/audit                     ?operator&action&since&limit&before
//   admin     GET  /api/operators
//   viewer    GET  /api/version                  {version, bun}: the running gateway's
//   viewer    GET  /api/config; admin POST /api/config/validate, /api/config/apply (see config.ts)
//   viewer    GET  /api/kill; admin POST /api/kill {device?, reason?}, POST /api/kill/release (app/gate/kill-routes.ts)
import type { Database } from "bun:sqlite";
import type { ApprovalHub } from "../../approvers/hub.ts";
import type { EventBus } from "../../events/bus.ts";
import type { DeviceInfo } from "../../store/devices.ts";
import type { PendingRequest } from "../onboard/service.ts";
import type { Policy } from "../../policy/types.ts";
import { OperatorStore, type PasswordHashing } from "../../store/operators.ts";
import { OperatorAuth, requireRole, type AuthOptions } from "../auth/auth.ts";
import { authRoutes, type AuthContext, type LoginLimits } from "../auth/routes.ts";
import { peerAddress, withErrors, type ClientIp } from "../auth/http.ts";
import { approvalRoutes } from "./approvals.ts";
import { eventRoutes } from "./events.ts";
import { deviceRoutes } from "./devices.ts";
import { adminRoutes } from "./admin.ts";
import { ruleRoutes } from "./rules.ts";
import { spendRoutes } from "./spend.ts";
import { configRoutes, type ConfigEditorOps } from "./config.ts";
import { appVersion } from "../../version.ts";
import { killOperatorRoutes, type KillOps } from "../../gate/kill-routes.ts";

/** The device registry as the API uses it (OnboardService has this shape). */
export interface DeviceOps {
  devices(): DeviceInfo[];
  revoke(name: string, operator: string): Promise<DeviceInfo>;
  /** Throws ApiError 400 `unknown_profile` / 404 `no_such_device`. */
  setProfile(name: string, profile: unknown): Promise<DeviceInfo>;
}

/** Device onboarding (WireGuard); OnboardService has this shape. */
export interface OnboardingOps {
  pending(): PendingRequest[];
  approve(code: string, profile: string | undefined, operator: string): Promise<DeviceInfo>;
  deny(code: string, operator: string): void | Promise<void>;
}

export interface OperatorApiDeps {
  /** The state database: operators, sessions, tokens, audit, and the action log. */
  db: Database;
  /** The gateway's holds; decide may be remote (the dashboard role asks over the control socket). */
  hub: Pick<ApprovalHub, "pending" | "subscribe"> & {
    decide(...args: Parameters<ApprovalHub["decide"]>): ReturnType<ApprovalHub["decide"]> | Promise<ReturnType<ApprovalHub["decide"]>>;
  };
  bus: Pick<EventBus, "subscribe">;
  devices: DeviceOps;
  /** Absent when WireGuard onboarding is off: its routes answer 404 `onboarding_off`. */
  onboarding?: OnboardingOps;
  /** The current policy (read per request: it reloads); `files` lets /api/rules/validate re-read the config. */
  policy(): Pick<Policy, "profiles" | "rules"> & Partial<Pick<Policy, "files" | "credentials">>;
  /** Re-read the config; returns its errors (none = applied). */
  reload(): Promise<string[]>;
  /** The dashboard's config editor (absent: its routes answer 404). */
  config?: ConfigEditorOps;
  now: () => number;
  /** Client address for login rate limits and the audit trail; default: the connection's peer. */
  clientIp?: ClientIp;
  auth?: AuthOptions;
  loginLimits?: LoginLimits;
  /** argon2id cost (tests pass a tiny one). */
  hashing?: PasswordHashing;
  /** SSE keep-alive and session re-check interval (default 15 s). */
  heartbeatMs?: number;
  /** Prometheus text for GET /metrics (viewer: scrape with an API token). */
  metrics?: () => string;
  /** The command gate's kill switch (absent: its routes answer 404). */
  kill?: KillOps;
}

export function operatorApi(deps: OperatorApiDeps) {
  const store = new OperatorStore(deps.db, { now: deps.now, ...(deps.hashing ? { hashing: deps.hashing } : {}) });
  store.warm();
  const ctx: AuthContext = {
    db: deps.db,
    store,
    auth: new OperatorAuth(store, deps.now, deps.auth),
    now: deps.now,
    clientIp: deps.clientIp ?? peerAddress,
  };
  return withErrors()
    .use(authRoutes(ctx, deps.loginLimits))
    .use(approvalRoutes(ctx, deps))
    .use(eventRoutes(ctx, deps))
    .use(deviceRoutes(ctx, deps))
    .use(adminRoutes(ctx, deps))
    .use(ruleRoutes(ctx, deps))
    .use(spendRoutes(ctx, deps))
    .use(configRoutes(ctx, deps))
    .get("/api/version", () => ({ version: appVersion(), bun: Bun.version }), { beforeHandle: requireRole(ctx.auth, "viewer") })
    .use(killOperatorRoutes(ctx, deps))
    .get(
      "/metrics",
      () => new Response(deps.metrics ? deps.metrics() : "", { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } }),
      { beforeHandle: requireRole(ctx.auth, "viewer") },
    );
}

export { OperatorAuth, requireRole, caller, type Caller } from "../auth/auth.ts";
