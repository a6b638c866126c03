// HTTP faces of onboarding, as two Elysia plugins:
//  - onboardPublicRoutes: `POST /api/onboard/start`, `POST /api/onboard/poll`
//    on the public API, without auth (the device has no credential yet);
//  - onboardControlRoutes: the operator's routes on the control socket
//    (pending, approve, deny) and the device registry (list, revoke, profile).
// Errors leave as `{ error: { code, message } }` with the ApiError's status.
import { Elysia } from "elysia";
import { ApiError, errorBody } from "../errors.ts";
import type { DeviceInfo } from "../../store/devices.ts";
import { OnboardService, RateLimited } from "./service.ts";

/** Bodies of the public routes are tiny; anything bigger is refused before parsing. */
export const MAX_PUBLIC_BODY = 4096;

export interface PublicRouteOptions {
  /**
   * The source address a request is rate-limited by. Default: the peer
   * address of the connection (Elysia's `server.requestIP`). Behind a
   * reverse proxy, pass one that reads its header.
   */
  clientIp?(request: Request, server: { requestIP(r: Request): { address: string } | null } | null): string;
  /** The host the device addressed (default: the request URL's, i.e. its Host header). */
  requestHost?(request: Request): string | undefined;
}

function handleErrors(app: Elysia) {
  return app.onError(({ error, code, set }) => {
    if (error instanceof RateLimited) {
      set.status = error.status;
      set.headers["retry-after"] = String(error.retryAfterS);
      return errorBody(error);
    }
    if (error instanceof ApiError) {
      set.status = error.status;
      return errorBody(error);
    }
    if (code === "PARSE" || code === "VALIDATION") {
      set.status = 400;
      return errorBody(new ApiError(400, "bad_request", "the body must be a JSON object"));
    }
    if (code === "NOT_FOUND") return undefined;
    return undefined;
  });
}

async function readJson(request: Request, limit: number): Promise<unknown> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > limit) throw new ApiError(413, "body_too_large", `the body is limited to ${limit} bytes`);
  const buf = await request.arrayBuffer();
  if (buf.byteLength > limit) throw new ApiError(413, "body_too_large", `the body is limited to ${limit} bytes`);
  if (buf.byteLength === 0) return undefined;
  try {
    return JSON.parse(new TextDecoder().decode(buf));
  } catch {
    throw new ApiError(400, "bad_request", "the body must be a JSON object");
  }
}

/** The device's routes; mount on the public API. */
export function onboardPublicRoutes(service: OnboardService, opts: PublicRouteOptions = {}) {
  const clientIp =
    opts.clientIp ?? ((request: Request, server) => server?.requestIP(request)?.address ?? "unknown");
  const requestHost = opts.requestHost ?? ((request: Request) => new URL(request.url).host);
  return handleErrors(new Elysia({ name: "onboard-public" }))
    .post(
      "/api/onboard/start",
      async ({ request, server }) => {
        const ip = clientIp(request, server as Parameters<typeof clientIp>[1]);
        return service.start(await readJson(request, MAX_PUBLIC_BODY), ip, requestHost(request));
      },
      { parse: "none" },
    )
    .post(
      "/api/onboard/poll",
      async ({ request }) =>
        service.poll(await readJson(request, MAX_PUBLIC_BODY), { signal: request.signal, requestHost: requestHost(request) }),
      { parse: "none" },
    );
}

/** JSON form of a device for the control API (and the dashboard). */
export function deviceJson(d: DeviceInfo) {
  return {
    name: d.name,
    kind: d.kind,
    profile: d.profile,
    address: d.address ?? null,
    address6: d.address6 ?? null,
    public_key: d.publicKey ?? null,
    created_at: d.createdAt,
    last_seen: d.lastSeen ?? null,
    revoked: d.revokedAt !== undefined,
    revoked_at: d.revokedAt ?? null,
  };
}

/** The operator's routes; mount on the control socket. */
export function onboardControlRoutes(service: OnboardService) {
  return handleErrors(new Elysia({ name: "onboard-control" }))
    .get("/api/onboard/pending", () => ({ pending: service.pending() }))
    .post(
      "/api/onboard/:code/approve",
      async ({ params, request }) => {
        const b = (await readJson(request, 65536)) as { profile?: unknown; operator?: unknown } | undefined;
        const profile = typeof b?.profile === "string" ? b.profile : undefined;
        const device = await service.approve(params.code, profile, String(b?.operator ?? ""));
        return { device: deviceJson(device) };
      },
      { parse: "none" },
    )
    .post(
      "/api/onboard/:code/deny",
      async ({ params, request }) => {
        const b = (await readJson(request, 65536)) as { operator?: unknown } | undefined;
        service.deny(params.code, String(b?.operator ?? ""));
        return { ok: true };
      },
      { parse: "none" },
    )
    .get("/api/devices", () => ({ devices: service.devices().map(deviceJson) }))
    .post(
      "/api/devices/:name/revoke",
      async ({ params, request }) => {
        const b = (await readJson(request, 65536)) as { operator?: unknown } | undefined;
        return { device: deviceJson(await service.revoke(params.name, String(b?.operator ?? ""))) };
      },
      { parse: "none" },
    )
    .post(
      "/api/devices/:name/profile",
      async ({ params, request }) => {
        const b = (await readJson(request, 65536)) as { profile?: unknown } | undefined;
        return { device: deviceJson(await service.setProfile(params.name, b?.profile)) };
      },
      { parse: "none" },
    );
}
