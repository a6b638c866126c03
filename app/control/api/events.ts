// The request log: history with filters and paging, and a live stream of
// events and approval changes as Server-Sent Events. The stream re-checks
// the caller's credential at every heartbeat and ends when it lapsed
// (logout, expiry, removal), so an open tab does not outlive its session.
import { sse } from "elysia";
import { ApiError } from "../errors.ts";
import type { HubChange } from "../../approvers/hub.ts";
import type { GatewayEvent } from "../../events/types.ts";
import { queryActions, MAX_QUERY_LIMIT } from "../../store/actions.ts";
import { requireRole } from "../auth/auth.ts";
import type { AuthContext } from "../auth/routes.ts";
import { withErrors } from "../auth/http.ts";
import { approvalJson } from "./approvals.ts";
import type { OperatorApiDeps } from "./index.ts";

const MAX_QUEUE = 10_000;

type Item = { event: "event"; data: GatewayEvent } | { event: "approval"; data: unknown };

export function changeJson(c: HubChange) {
  if (c.type === "decided") {
    return { type: c.type, id: c.id, decision: c.result.decision, reason: c.result.reason, latencyMs: c.result.latencyMs, approvals: c.result.approvals };
  }
  return { type: c.type, approval: approvalJson(c.pending) };
}

export function eventRoutes(ctx: AuthContext, deps: Pick<OperatorApiDeps, "db" | "bus" | "hub" | "heartbeatMs">) {
  const viewer = requireRole(ctx.auth, "viewer");
  const heartbeatMs = deps.heartbeatMs ?? 15_000;
  return withErrors()
    .get(
      "/api/events",
      ({ query }) => {
        const limit = query.limit === undefined ? 100 : Number(query.limit);
        if (!Number.isInteger(limit) || limit < 1 || limit > MAX_QUERY_LIMIT) {
          throw new ApiError(400, "bad_limit", `limit must be 1..${MAX_QUERY_LIMIT}`);
        }
        const before = query.before === undefined ? undefined : Number(query.before);
        if (before !== undefined && !Number.isInteger(before)) throw new ApiError(400, "bad_request", "before must be an event id");
        const since = query.since === undefined ? undefined : /^\d+$/.test(String(query.since)) ? Number(query.since) : String(query.since);
        const events = queryActions(deps.db, {
          limit,
          ...(query.device ? { device: String(query.device) } : {}),
          ...(query.verdict ? { verdict: String(query.verdict) } : {}),
          ...(since !== undefined ? { since } : {}),
          ...(before !== undefined ? { beforeId: before } : {}),
        });
        const last = events.at(-1);
        return { events, next: events.length === limit && last ? last.id : null };
      },
      { beforeHandle: viewer },
    )
    .get(
      "/api/events/stream",
      async function* ({ request }) {
        const queue: Item[] = [];
        let wake: (() => void) | undefined;
        const push = (item: Item) => {
          if (queue.length < MAX_QUEUE) queue.push(item);
          wake?.();
        };
        const offBus = deps.bus.subscribe((e) => push({ event: "event", data: e }));
        const offHub = deps.hub.subscribe((c) => push({ event: "approval", data: changeJson(c) }));
        try {
          yield sse({ event: "ready", data: {} });
          while (!request.signal.aborted) {
            const next = queue.shift();
            if (next) {
              yield sse(next);
              continue;
            }
            const woken = await new Promise<boolean>((resolve) => {
              const timer = setTimeout(() => resolve(false), heartbeatMs);
              wake = () => {
                clearTimeout(timer);
                resolve(true);
              };
              request.signal.addEventListener("abort", () => wake?.(), { once: true });
            });
            wake = undefined;
            if (!woken && !request.signal.aborted) {
              const who = ctx.auth.identify(request, { touch: false });
              if (!who || who === "bad_token") {
                yield sse({ event: "end", data: { reason: "the session ended" } });
                return;
              }
              yield sse({ event: "ping", data: {} });
            }
          }
        } finally {
          offBus();
          offHub();
        }
      },
      { beforeHandle: viewer },
    );
}
