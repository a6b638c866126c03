// The control socket: HTTP over a Unix socket in the state or runtime
// directory, for the operator CLI on the same machine and the dashboard
// role (which mirrors the held requests and events from /api/hub/stream and
// forwards decisions, device changes and public device/approver requests).
// Whoever can open the socket (mode 0600) administers the gateway; the
// caller names itself (e.g. `cli:root`) for the audit trail.
import { chmodSync, existsSync, mkdirSync, rmSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { Elysia, sse, type AnyElysia } from "elysia";
import type { Database } from "bun:sqlite";
import type { EventBus } from "../events/bus.ts";
import type { GatewayEvent } from "../events/types.ts";
import { queryActions, MAX_QUERY_LIMIT } from "../store/actions.ts";
import { ApiError, errorBody } from "./errors.ts";
import type { ApprovalHub } from "../approvers/hub.ts";
import { log } from "../log.ts";
import type { HubChange } from "../approvers/hub.ts";
import type { DeviceOps } from "./api/index.ts";
import { deviceJson } from "./onboard/routes.ts";
import { CLIENT_HOST_HEADER, CLIENT_IP_HEADER, type ApproverCallback } from "./public.ts";
import { requestLine } from "../approvers/describe.ts";

export interface ControlDeps {
  db: Database;
  bus: EventBus;
  reload(): Promise<string[]>;
  startedAt: number;
  /** Held requests (the dashboard approver's queue). */
  approvals?: ApprovalHub;
  /** More route groups (onboarding and devices). */
  plugins?: AnyElysia[];
  /** Prometheus text for GET /metrics. */
  metrics?: () => string;
  /** Chat approvers' callbacks, forwarded here by the dashboard role. */
  approverCallback?: ApproverCallback;
  /** Keep-alive interval of the dashboard's mirror stream (default 15 s). */
  heartbeatMs?: number;
}

/** The client address a forwarded public request came from (the control socket is trusted: only the dashboard role and root reach it). */
export function forwardedClientIp(request: Request): string {
  return request.headers.get(CLIENT_IP_HEADER) ?? "control-socket";
}

/** The host a forwarded public request addressed (set only by forwardToControl). */
export function forwardedClientHost(request: Request): string | undefined {
  return request.headers.get(CLIENT_HOST_HEADER) ?? undefined;
}

/** Device revoke/profile over the control socket when no WireGuard onboarding provides them. */
export function deviceControlRoutes(ops: DeviceOps) {
  const body = async (request: Request): Promise<Record<string, unknown>> => {
    const b = (await request.json().catch(() => ({}))) as unknown;
    return b && typeof b === "object" ? (b as Record<string, unknown>) : {};
  };
  return new Elysia({ name: "device-control" })
    .get("/api/devices", () => ({ devices: ops.devices().map(deviceJson) }))
    .post(
      "/api/devices/:name/revoke",
      async ({ params, request }) => ({ device: deviceJson(await ops.revoke(params.name, String((await body(request)).operator ?? ""))) }),
      { parse: "none" },
    )
    .post(
      "/api/devices/:name/profile",
      async ({ params, request }) => ({ device: deviceJson(await ops.setProfile(params.name, (await body(request)).profile)) }),
      { parse: "none" },
    );
}

export function controlApp(deps: ControlDeps) {
  let app = new Elysia();
  for (const p of deps.plugins ?? []) app = app.use(p) as unknown as typeof app;
  return app
    .onError(({ error, set }) => {
      if (error instanceof ApiError) {
        set.status = error.status;
        return errorBody(error);
      }
      if (error instanceof RangeError) {
        set.status = 400;
        return errorBody(new ApiError(400, "bad_request", error.message));
      }
      return undefined;
    })
    .get("/health", () => ({ ok: true, uptimeMs: Date.now() - deps.startedAt }))
    .get("/metrics", () => new Response(deps.metrics?.() ?? "", { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } }))
    .get("/api/events", ({ query }) => {
      const limit = query.limit === undefined ? 100 : Number(query.limit);
      if (!Number.isFinite(limit) || limit < 1 || limit > MAX_QUERY_LIMIT) {
        throw new ApiError(400, "bad_limit", `limit must be 1..${MAX_QUERY_LIMIT}`);
      }
      const before = query.before === undefined ? undefined : Number(query.before);
      return {
        events: queryActions(deps.db, {
          limit,
          ...(query.device ? { device: String(query.device) } : {}),
          ...(query.verdict ? { verdict: String(query.verdict) } : {}),
          ...(query.since ? { since: String(query.since) } : {}),
          ...(before !== undefined && Number.isFinite(before) ? { beforeId: before } : {}),
        }),
      };
    })
    .get("/api/events/stream", async function* ({ request }) {
      // Live events as Server-Sent Events, already redacted by the bus.
      const queue: GatewayEvent[] = [];
      let wake: (() => void) | undefined;
      const unsubscribe = deps.bus.subscribe((e) => {
        if (queue.length < 10_000) queue.push(e);
        wake?.();
      });
      try {
        yield sse({ event: "ready", data: {} });
        while (!request.signal.aborted) {
          const next = queue.shift();
          if (next) {
            yield sse({ event: "event", data: next });
            continue;
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
            const timer = setTimeout(resolve, 15_000);
            request.signal.addEventListener("abort", () => {
              clearTimeout(timer);
              resolve();
            });
          });
          wake = undefined;
        }
      } finally {
        unsubscribe();
      }
    })
    .get("/api/approvals", () => {
      const hub = requireHub(deps);
      return {
        approvals: hub.pending().map((p) => ({
          id: p.id,
          device: p.request.device,
          rule: p.request.rule,
          reason: p.request.reason,
          request: requestLine(p.request),
          family: p.request.family ?? "http",
          awaiting: p.awaiting,
          decidable: p.decidable,
          approvedBy: p.approvedBy,
          required: p.required,
          started: new Date(p.started).toISOString(),
          deadline: new Date(p.deadline).toISOString(),
        })),
      };
    })
    .post("/api/approvals/:id/:decision", ({ params, body }) => {
      const hub = requireHub(deps);
      const decision = params.decision === "approve" ? "allow" : params.decision === "deny" ? "deny" : undefined;
      if (!decision) throw new ApiError(404, "not_found", "POST /api/approvals/ID/approve or /deny");
      const b = (body ?? {}) as { reason?: unknown; operator?: unknown };
      const operator = typeof b.operator === "string" && b.operator ? b.operator : undefined;
      if (!operator) throw new ApiError(400, "operator_required", "say who decides: {\"operator\": \"cli:NAME\"}");
      const reason = typeof b.reason === "string" ? b.reason : decision === "allow" ? `approved by ${operator}` : `denied by ${operator}`;
      const r = hub.decide(params.id, { decision, reason, operator, approver: "dashboard" });
      if (!r.ok) throw new ApiError(409, "not_decidable", r.reason);
      log.info("operator action", { action: `approval.${params.decision}`, operator, approval: params.id, reason });
      return { ok: true };
    })
    .get("/api/hub/stream", async function* ({ request }) {
      // The dashboard role's mirror: every held request now, then their
      // changes and the live events, in order, on one stream.
      const hub = requireHub(deps);
      type Item = { event: "change"; data: HubChange } | { event: "event"; data: GatewayEvent };
      const queue: Item[] = [];
      let wake: (() => void) | undefined;
      const push = (item: Item) => {
        if (queue.length < 10_000) queue.push(item);
        wake?.();
      };
      const offHub = hub.subscribe((c) => push({ event: "change", data: c }));
      const offBus = deps.bus.subscribe((e) => push({ event: "event", data: e }));
      try {
        yield sse({ event: "snapshot", data: { pending: hub.pending() } });
        while (!request.signal.aborted) {
          const next = queue.shift();
          if (next) {
            yield sse(next);
            continue;
          }
          const woken = await new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(false), deps.heartbeatMs ?? 15_000);
            wake = () => {
              clearTimeout(timer);
              resolve(true);
            };
            request.signal.addEventListener("abort", () => wake?.(), { once: true });
          });
          wake = undefined;
          if (!woken && !request.signal.aborted) yield sse({ event: "ping", data: {} });
        }
      } finally {
        offHub();
        offBus();
      }
    })
    .post("/api/approvers/*", ({ request }) => approverCallback(deps)(request), { parse: "none" })
    .get("/api/approvers/*", ({ request }) => approverCallback(deps)(request))
    .post("/api/reload", async () => {
      const errors = await deps.reload();
      if (errors.length > 0) throw new ApiError(422, "config_rejected", errors.join("\n"));
      return { ok: true };
    });
}

function approverCallback(deps: ControlDeps): ApproverCallback {
  if (!deps.approverCallback) throw new ApiError(404, "not_found", "no such approver callback");
  return deps.approverCallback;
}

function requireHub(deps: ControlDeps): ApprovalHub {
  if (!deps.approvals) throw new ApiError(503, "approvals_unavailable", "approvals are not running");
  return deps.approvals;
}

export interface ControlServer {
  socketPath: string;
  close(): Promise<void>;
}

export async function startControlServer(socketPath: string, deps: ControlDeps): Promise<ControlServer> {
  mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o700 });
  if (existsSync(socketPath)) {
    if (await socketAnswers(socketPath)) {
      throw new Error(`another gateway is running (its control socket ${socketPath} answers)`);
    }
    rmSync(socketPath, { force: true });
  }
  const app = controlApp(deps);
  app.listen({ unix: socketPath });
  chmodSync(socketPath, 0o600);
  return {
    socketPath,
    async close() {
      // Abruptly: open event streams (SSE) would otherwise hold the stop forever.
      await app.stop(true);
      rmSync(socketPath, { force: true });
    },
  };
}

function socketAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socketPath);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}
