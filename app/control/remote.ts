// The gateway as the dashboard role sees it: the operator API's
// dependencies (held requests, live events, devices, onboarding, reload,
// metrics), backed by the control socket and the shared state database.
//
//   reads:   held requests and live events from one mirror stream
//            (/api/hub/stream: a snapshot, then changes); devices, pending
//            onboarding and the action log straight from SQLite (WAL)
//   writes:  every change the gateway must act on (decide a hold, enroll,
//            deny, revoke, change a profile, reload) goes over the socket,
//            so the gateway's in-memory holds and WireGuard peers follow
import type { Database } from "bun:sqlite";
import type { DashboardDecision, HubChange, PendingApproval } from "../approvers/hub.ts";
import type { GatewayEvent } from "../events/types.ts";
import { DeviceRegistry, type DeviceInfo } from "../store/devices.ts";
import { pendingRequestOf, type PendingRequest, type PendingRow } from "./onboard/service.ts";
import type { DeviceOps, OnboardingOps, OperatorApiDeps } from "./api/index.ts";
import { ApiError } from "./errors.ts";
import { controlFetch, readSse, ControlUnavailable } from "./client.ts";
import { log } from "../log.ts";

/** How long the mirror waits before reconnecting to a gateway that went away. */
export const MIRROR_RETRY_MS = 1_000;

/** A control-socket call that throws the gateway's own ApiError on failure. */
export async function controlCall(socketPath: string, method: string, route: string, body?: unknown): Promise<Record<string, unknown>> {
  let res: Response;
  try {
    res = await controlFetch(socketPath, route, {
      method,
      ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
    });
  } catch (e) {
    if (e instanceof ControlUnavailable) throw new ApiError(503, "gateway_unavailable", "the gateway is not reachable; try again shortly");
    throw e;
  }
  const out = (await res.json().catch(() => ({}))) as Record<string, unknown> & { error?: { code?: string; message?: string } };
  if (!res.ok) throw new ApiError(res.status, out.error?.code ?? "gateway_error", out.error?.message ?? `the gateway answered HTTP ${res.status}`);
  return out;
}

/** Held requests and live events, mirrored from the gateway; reconnects on its own. */
export class GatewayMirror {
  private holds = new Map<string, PendingApproval>();
  private readonly hubSubscribers = new Set<(c: HubChange) => void>();
  private readonly busSubscribers = new Set<(e: GatewayEvent) => void>();
  private abort = new AbortController();
  private closed = false;
  private connectedOnce: Promise<void>;
  private markConnected!: () => void;
  /** True while the stream is open (the held requests are current). */
  connected = false;

  constructor(private readonly socketPath: string) {
    this.connectedOnce = new Promise((r) => (this.markConnected = r));
    void this.run();
  }

  /** Resolves once the first snapshot arrived. */
  ready(): Promise<void> {
    return this.connectedOnce;
  }

  readonly hub: OperatorApiDeps["hub"] = {
    pending: () => [...this.holds.values()],
    decide: (id: string, d: DashboardDecision) => this.decide(id, d),
    subscribe: (fn: (c: HubChange) => void) => {
      this.hubSubscribers.add(fn);
      return () => void this.hubSubscribers.delete(fn);
    },
  };

  readonly bus: OperatorApiDeps["bus"] = {
    subscribe: (fn: (e: GatewayEvent) => void) => {
      this.busSubscribers.add(fn);
      return () => void this.busSubscribers.delete(fn);
    },
  };

  private async decide(id: string, d: DashboardDecision): Promise<{ ok: true } | { ok: false; reason: string }> {
    const verb = d.decision === "allow" ? "approve" : d.decision === "deny" ? "deny" : undefined;
    if (!verb) return { ok: false, reason: 'decision must be "allow" or "deny"' };
    try {
      await controlCall(this.socketPath, "POST", `/api/approvals/${encodeURIComponent(id)}/${verb}`, { operator: d.operator, reason: d.reason });
      return { ok: true };
    } catch (e) {
      if (e instanceof ApiError) return { ok: false, reason: e.message };
      throw e;
    }
  }

  private apply(name: string, data: unknown): void {
    if (name === "snapshot") {
      const pending = (data as { pending: PendingApproval[] }).pending;
      const before = this.holds;
      this.holds = new Map(pending.map((p) => [p.id, p]));
      this.connected = true;
      this.markConnected();
      // Holds that appeared while the stream was down; decided ones drop out of pending().
      for (const p of pending) if (!before.has(p.id)) this.emitHub({ type: "added", pending: p });
      return;
    }
    if (name === "change") {
      const c = data as HubChange;
      if (c.type === "decided") this.holds.delete(c.id);
      else this.holds.set(c.pending.id, c.pending);
      this.emitHub(c);
      return;
    }
    if (name === "event") for (const fn of this.busSubscribers) fn(data as GatewayEvent);
  }

  private emitHub(c: HubChange): void {
    for (const fn of this.hubSubscribers) fn(c);
  }

  private async run(): Promise<void> {
    let warned = false;
    while (!this.closed) {
      try {
        const res = await controlFetch(this.socketPath, "/api/hub/stream", { signal: this.abort.signal });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        warned = false;
        await readSse(res, (name, data) => this.apply(name, data));
      } catch (e) {
        if (this.closed) return;
        if (!warned) log.warn("dashboard: the gateway's control socket is not answering; retrying", { error: (e as Error).message });
        warned = true;
      }
      this.connected = false;
      if (this.closed) return;
      await Bun.sleep(MIRROR_RETRY_MS);
    }
  }

  close(): void {
    this.closed = true;
    this.abort.abort();
  }
}

/** Devices: listed from the database, changed through the gateway (it removes peers and cuts flows). */
export function remoteDeviceOps(socketPath: string, db: Database): DeviceOps {
  const registry = new DeviceRegistry(db);
  const after = (name: string): DeviceInfo => {
    const d = registry.get(name);
    if (!d) throw new ApiError(404, "no_such_device", `no device named "${name}"`);
    return d;
  };
  return {
    devices: () => registry.list(),
    async revoke(name, operator) {
      await controlCall(socketPath, "POST", `/api/devices/${encodeURIComponent(name)}/revoke`, { operator });
      return after(name);
    },
    async setProfile(name, profile) {
      await controlCall(socketPath, "POST", `/api/devices/${encodeURIComponent(name)}/profile`, { profile });
      return after(name);
    },
  };
}

/** Onboarding: waiting requests read from the database, decisions made by the gateway (it adds the peer). */
export function remoteOnboardingOps(socketPath: string, db: Database, now: () => number): OnboardingOps {
  const registry = new DeviceRegistry(db);
  return {
    pending(): PendingRequest[] {
      const rows = db
        .query("SELECT * FROM onboarding WHERE state = 'pending' AND expires_at > ? ORDER BY created_at, id")
        .all(now()) as PendingRow[];
      return rows.map(pendingRequestOf);
    },
    async approve(code, profile, operator) {
      const out = await controlCall(socketPath, "POST", `/api/onboard/${encodeURIComponent(code)}/approve`, { profile, operator });
      const name = (out.device as { name?: string } | undefined)?.name;
      const d = name ? registry.get(name) : undefined;
      if (!d) throw new ApiError(502, "gateway_error", "the gateway enrolled the device but it is not in the state database");
      return d;
    },
    async deny(code, operator) {
      await controlCall(socketPath, "POST", `/api/onboard/${encodeURIComponent(code)}/deny`, { operator });
    },
  };
}

/** Config reload through the gateway: its errors come back as the list the API shows. */
export function remoteReload(socketPath: string): () => Promise<string[]> {
  return async () => {
    try {
      await controlCall(socketPath, "POST", "/api/reload");
      return [];
    } catch (e) {
      if (e instanceof ApiError && e.code === "config_rejected") return e.message.split("\n");
      throw e;
    }
  };
}

/** The gateway's Prometheus text, refreshed in the background (one scrape behind at most). */
export function remoteMetrics(socketPath: string): { text(): string; close(): void } {
  let last = "";
  let inflight = false;
  const refresh = () => {
    if (inflight) return;
    inflight = true;
    controlFetch(socketPath, "/metrics")
      .then(async (r) => {
        if (r.ok) last = await r.text();
      })
      .catch(() => undefined)
      .finally(() => (inflight = false));
  };
  refresh();
  const timer = setInterval(refresh, 15_000);
  timer.unref?.();
  return {
    text() {
      refresh();
      return last;
    },
    close: () => clearInterval(timer),
  };
}
