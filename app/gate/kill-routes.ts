// The kill switch's HTTP faces:
//  - killOperatorRoutes (the operator API: a session or an API token, CSRF,
//    audited; the dashboard's button and `devices kill` through it):
//      viewer  GET    /api/kill                    engagements now
//      admin   POST   /api/kill                    {device?: NAME, reason?}; no device: every device
//      admin   POST   /api/kill/release            {device?: NAME}
//  - killControlRoutes (the control socket: the CLI on the gateway host and
//    the dashboard role, which forwards here): the same under /api/gate/kill,
//    the operator named in the body.
// The switch itself is the gateway's (GateService); KillOps reaches it in
// process or over the control socket.
import { Elysia } from "elysia";
import { ApiError } from "../control/errors.ts";
import { caller, requireRole } from "../control/auth/auth.ts";
import { audit, sourceOf, type AuthContext } from "../control/auth/routes.ts";
import { readJson, withErrors } from "../control/auth/http.ts";
import { controlCall } from "../control/remote.ts";
import { ALL_DEVICES, type Engagement } from "./kill.ts";
import type { GateService } from "./service.ts";

const MAX_REASON = 500;

export interface KillOps {
  list(): Engagement[] | Promise<Engagement[]>;
  engage(scope: string, operator: string, reason: string): Engagement | Promise<Engagement>;
  release(scope: string, operator: string): boolean | Promise<boolean>;
}

export function localKillOps(gate: GateService): KillOps {
  return {
    list: () => gate.kill.list(),
    engage: (scope, operator, reason) => gate.engageKill(scope, operator, reason),
    release: (scope, operator) => gate.releaseKill(scope, operator),
  };
}

export function remoteKillOps(socketPath: string): KillOps {
  return {
    async list() {
      return (((await controlCall(socketPath, "GET", "/api/gate/kill")).engaged ?? []) as WireEngagement[]).map(fromWire);
    },
    async engage(scope, operator, reason) {
      return fromWire((await controlCall(socketPath, "POST", "/api/gate/kill", { scope, operator, reason })).engagement as WireEngagement);
    },
    async release(scope, operator) {
      return (await controlCall(socketPath, "POST", "/api/gate/kill/release", { scope, operator })).released === true;
    },
  };
}

type WireEngagement = Omit<Engagement, "since"> & { since: string };
const fromWire = (e: WireEngagement): Engagement => ({ ...e, since: Date.parse(e.since) });

/** `device` from a body: a device name, or absent/"*" for every device. */
function scopeOf(v: unknown): string {
  if (v === undefined || v === null || v === ALL_DEVICES) return ALL_DEVICES;
  if (typeof v !== "string" || !/^[A-Za-z0-9_.-]{1,64}$/.test(v)) throw new ApiError(400, "bad_device", "device must be a device name (or absent for every device)");
  return v;
}

const engagementJson = (e: Engagement) => ({ scope: e.scope, operator: e.operator, reason: e.reason, since: new Date(e.since).toISOString() });

export function killOperatorRoutes(ctx: AuthContext, deps: { kill?: KillOps }) {
  const ops = (): KillOps => {
    if (!deps.kill) throw new ApiError(404, "kill_switch_off", "the kill switch is not available here");
    return deps.kill;
  };
  return withErrors()
    .get("/api/kill", async () => ({ engaged: (await ops().list()).map(engagementJson) }), { beforeHandle: requireRole(ctx.auth, "viewer") })
    .post(
      "/api/kill",
      async ({ request, server }) => {
        const who = caller(request);
        const b = await readJson(request);
        const scope = scopeOf(b.device);
        const reason = typeof b.reason === "string" ? b.reason.trim().slice(0, MAX_REASON) : "";
        const e = await ops().engage(scope, who.operator, reason);
        audit(ctx, { operator: who.operator, action: "kill.engage", target: scope, detail: { reason }, source: sourceOf(ctx, request, server) });
        return { engagement: engagementJson(e) };
      },
      { parse: "none", beforeHandle: requireRole(ctx.auth, "admin") },
    )
    .post(
      "/api/kill/release",
      async ({ request, server }) => {
        const who = caller(request);
        const scope = scopeOf((await readJson(request)).device);
        const released = await ops().release(scope, who.operator);
        audit(ctx, { operator: who.operator, action: "kill.release", target: scope, source: sourceOf(ctx, request, server) });
        if (!released) throw new ApiError(404, "not_engaged", `the kill switch is not on for ${scope === ALL_DEVICES ? "every device" : scope}`);
        return { released: true };
      },
      { parse: "none", beforeHandle: requireRole(ctx.auth, "admin") },
    );
}

export function killControlRoutes(gate: GateService) {
  const body = async (request: Request): Promise<Record<string, unknown>> => {
    const b = (await request.json().catch(() => ({}))) as unknown;
    return b && typeof b === "object" ? (b as Record<string, unknown>) : {};
  };
  const operatorOf = (b: Record<string, unknown>): string => {
    if (typeof b.operator !== "string" || !b.operator) throw new ApiError(400, "operator_required", 'say who acts: {"operator": "cli:NAME"}');
    return b.operator.slice(0, 200);
  };
  return new Elysia({ name: "gate-kill-control" })
    .get("/api/gate/kill", () => ({ engaged: gate.kill.list().map(engagementJson) }))
    .post(
      "/api/gate/kill",
      async ({ request }) => {
        const b = await body(request);
        const reason = typeof b.reason === "string" ? b.reason.trim().slice(0, MAX_REASON) : "";
        return { engagement: engagementJson(gate.engageKill(scopeOf(b.scope), operatorOf(b), reason)) };
      },
      { parse: "none" },
    )
    .post(
      "/api/gate/kill/release",
      async ({ request }) => {
        const b = await body(request);
        const scope = scopeOf(b.scope);
        if (!gate.releaseKill(scope, operatorOf(b))) throw new ApiError(404, "not_engaged", `the kill switch is not on for ${scope === ALL_DEVICES ? "every device" : scope}`);
        return { released: true };
      },
      { parse: "none" },
    );
}
