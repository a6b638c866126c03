// Devices and their onboarding. Reading is for viewers; changing who may
// reach the network (enroll, revoke, change profile) is for admins, audited.
import { ApiError } from "../errors.ts";
import { deviceJson } from "../onboard/routes.ts";
import { caller, requireRole } from "../auth/auth.ts";
import { audit, sourceOf, type AuthContext } from "../auth/routes.ts";
import { readJson, withErrors } from "../auth/http.ts";
import type { OnboardingOps, OperatorApiDeps } from "./index.ts";

export function deviceRoutes(ctx: AuthContext, deps: Pick<OperatorApiDeps, "devices" | "onboarding">) {
  const viewer = requireRole(ctx.auth, "viewer");
  const admin = requireRole(ctx.auth, "admin");
  const onboarding = (): OnboardingOps => {
    if (!deps.onboarding) throw new ApiError(404, "onboarding_off", "device onboarding is not enabled (no gateway { wireguard } block)");
    return deps.onboarding;
  };
  return withErrors()
    .get("/api/devices", () => ({ devices: deps.devices.devices().map(deviceJson) }), { beforeHandle: viewer })
    .post(
      "/api/devices/:name/revoke",
      async ({ request, params, server }) => {
        const who = caller(request);
        const device = await deps.devices.revoke(params.name, who.operator);
        audit(ctx, { operator: who.operator, action: "device.revoke", target: params.name, source: sourceOf(ctx, request, server) });
        return { device: deviceJson(device) };
      },
      { parse: "none", beforeHandle: admin },
    )
    .post(
      "/api/devices/:name/profile",
      async ({ request, params, server }) => {
        const who = caller(request);
        const b = await readJson(request);
        const device = await deps.devices.setProfile(params.name, b.profile);
        audit(ctx, { operator: who.operator, action: "device.profile", target: params.name, detail: { profile: device.profile }, source: sourceOf(ctx, request, server) });
        return { device: deviceJson(device) };
      },
      { parse: "none", beforeHandle: admin },
    )
    .get("/api/onboarding", () => ({ pending: onboarding().pending() }), { beforeHandle: viewer })
    .post(
      "/api/onboarding/:code/approve",
      async ({ request, params, server }) => {
        const who = caller(request);
        const ops = onboarding();
        const b = await readJson(request);
        const profile = typeof b.profile === "string" ? b.profile : undefined;
        const device = await ops.approve(params.code, profile, who.operator);
        audit(ctx, {
          operator: who.operator,
          action: "device.enroll",
          target: device.name,
          detail: { code: params.code, profile: device.profile },
          source: sourceOf(ctx, request, server),
        });
        return { device: deviceJson(device) };
      },
      { parse: "none", beforeHandle: admin },
    )
    .post(
      "/api/onboarding/:code/deny",
      async ({ request, params, server }) => {
        const who = caller(request);
        await onboarding().deny(params.code, who.operator);
        audit(ctx, { operator: who.operator, action: "device.deny", target: params.code, source: sourceOf(ctx, request, server) });
        return { ok: true };
      },
      { parse: "none", beforeHandle: admin },
    );
}
