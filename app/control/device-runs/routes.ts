// HTTP faces of per-run peers, as two Elysia plugins:
//  - deviceRunPublicRoutes (public API; the device's API token as a Bearer):
//      POST   /api/device/runs       {public_key}  -> 201 {run, idle_timeout, handshake_grace}
//      GET    /api/device/runs       this device's live runs
//      DELETE /api/device/runs/:id   the run ends; its peer goes at once
//  - deviceRunControlRoutes (control socket, the operator):
//      GET    /api/runs              every live run peer
//      GET    /api/devices/:name/runs
// Errors leave as `{ error: { code, message } }` with the ApiError's status.
import { Elysia } from "elysia";
import { ApiError, errorBody } from "../errors.ts";
import { validWireguardPublicKey } from "../onboard/codes.ts";
import type { DeviceInfo, DeviceRegistry } from "../../store/devices.ts";
import type { RunPeer } from "../../store/run-peers.ts";
import type { DeviceRuns, RunStatus } from "./service.ts";
import { DEFAULT_RUN_BOUNDS } from "./liveness.ts";

const MAX_BODY = 4096;

function handleErrors(app: Elysia) {
  return app.onError(({ error, code, set }) => {
    if (error instanceof ApiError) {
      set.status = error.status;
      if (error.status === 401) set.headers["www-authenticate"] = "Bearer";
      return errorBody(error);
    }
    if (code === "PARSE" || code === "VALIDATION") {
      set.status = 400;
      return errorBody(new ApiError(400, "bad_request", "the body must be a JSON object"));
    }
    return undefined;
  });
}

async function readJson(request: Request): Promise<Record<string, unknown>> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > MAX_BODY) throw new ApiError(413, "body_too_large", `the body is limited to ${MAX_BODY} bytes`);
  const buf = await request.arrayBuffer();
  if (buf.byteLength > MAX_BODY) throw new ApiError(413, "body_too_large", `the body is limited to ${MAX_BODY} bytes`);
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(buf));
  } catch {
    throw new ApiError(400, "bad_request", "the body must be a JSON object");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ApiError(400, "bad_request", "the body must be a JSON object");
  return v as Record<string, unknown>;
}

/** The active WireGuard device whose API token the request carries; 401 otherwise (no detail: fail closed). */
function authenticate(request: Request, registry: DeviceRegistry): DeviceInfo {
  const m = /^Bearer\s+(\S+)$/i.exec(request.headers.get("authorization") ?? "");
  const device = m ? registry.lookupByApiToken(m[1]!) : undefined;
  if (!device || device.kind !== "wireguard") {
    throw new ApiError(401, "unauthorized", "a valid device API token is required (revoked devices have none); run clawpatrol join again");
  }
  return device;
}

export function runJson(p: RunPeer | RunStatus) {
  const addresses = [`${p.address}/32`];
  if (p.address6) addresses.push(`${p.address6}/128`);
  const out: Record<string, unknown> = {
    id: p.id,
    device: p.device,
    profile: p.profile,
    public_key: p.publicKey,
    address: p.address,
    address6: p.address6 ?? null,
    addresses,
    started_at: p.startedAt,
  };
  if ("rxBytes" in p) {
    out.last_handshake = p.lastHandshake ?? null;
    out.rx_bytes = p.rxBytes;
    out.tx_bytes = p.txBytes;
  }
  return out;
}

export function deviceRunPublicRoutes(runs: DeviceRuns, registry: DeviceRegistry) {
  return handleErrors(new Elysia({ name: "device-runs-public" }))
    .post(
      "/api/device/runs",
      async ({ request, set }) => {
        const device = authenticate(request, registry);
        const b = await readJson(request);
        if (!validWireguardPublicKey(b.public_key)) {
          throw new ApiError(400, "invalid_public_key", "public_key: a WireGuard public key (32 bytes, base64)");
        }
        const peer = await runs.register(device.name, b.public_key);
        registry.markSeen(device.name);
        set.status = 201;
        return {
          run: runJson(peer),
          idle_timeout: DEFAULT_RUN_BOUNDS.idleMs / 1000,
          handshake_grace: DEFAULT_RUN_BOUNDS.handshakeGraceMs / 1000,
        };
      },
      { parse: "none" },
    )
    .get("/api/device/runs", ({ request }) => {
      const device = authenticate(request, registry);
      return { runs: runs.list(device.name).map(runJson) };
    })
    .delete("/api/device/runs/:id", ({ request, params }) => {
      const device = authenticate(request, registry);
      if (!runs.end(device.name, params.id)) throw new ApiError(404, "no_such_run", "this device has no live run with that id");
      return { ok: true };
    });
}

export function deviceRunControlRoutes(runs: DeviceRuns) {
  return handleErrors(new Elysia({ name: "device-runs-control" }))
    .get("/api/runs", () => ({ runs: runs.list().map(runJson) }))
    .get("/api/devices/:name/runs", ({ params }) => ({ runs: runs.list(params.name).map(runJson) }));
}
