/// <reference lib="dom" />
// The operator API from the page: JSON in and out, the CSRF header on every
// unsafe request, and a 401 sends the operator back to the login page.

import type { GatewayEvent } from "../../events/types.ts";

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** The whole error body (some carry more than the message, e.g. a list of config errors). */
    readonly body: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

let csrf = "";
let onUnauthorized: () => void = () => {};

export function setCsrf(token: string): void {
  csrf = token;
}

export function whenUnauthorized(fn: () => void): void {
  onUnauthorized = fn;
}

export async function api<T>(path: string, init: { method?: string; body?: unknown; quiet401?: boolean } = {}): Promise<T> {
  const method = init.method ?? "GET";
  const headers: Record<string, string> = { accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") {
    headers["content-type"] = "application/json";
    headers["x-csrf-token"] = csrf;
  }
  const res = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : method !== "GET" ? { body: "{}" } : {}),
  });
  const data = (await res.json().catch(() => ({}))) as { error?: { code?: string; message?: string } };
  if (!res.ok) {
    if (res.status === 401 && !init.quiet401) onUnauthorized();
    throw new ApiFailure(res.status, data.error?.code ?? "http_" + res.status, data.error?.message ?? res.statusText, data as Record<string, unknown>);
  }
  return data as T;
}

// Shapes the API answers with (the fields the dashboard uses).

export type Role = "viewer" | "approver" | "admin";

/** GET /join.json (app/control/downloads.ts joinInfo). */
export interface JoinInfo {
  url: string;
  mode: "none" | "mint_from_ca" | "files";
  /** The lines pin the CA's fingerprint (our CA's certificate, over https). */
  pinned: boolean;
  ca_sha256: string;
  install: string;
  join: string;
}

export interface Me {
  operator: string;
  role: Role;
  csrf?: string;
}

export interface Approval {
  id: string;
  device: string;
  profile: string;
  endpoint?: string;
  rule: string;
  reason: string;
  request: string;
  method: string;
  host: string;
  path: string;
  headers: Record<string, string>;
  bodyPreview?: string;
  bodyTruncated?: boolean;
  message?: string;
  /** The rule family (`http`, `sql`); for sql, method is the verb, path/bodyPreview the statement, headers database and user. */
  family?: string;
  summary?: string;
  chain: string[];
  awaiting?: string;
  decidable: boolean;
  approvedBy?: string[];
  required?: number;
  started: string;
  deadline: string;
}

export type ApprovalChange =
  | { type: "added" | "updated"; approval: Approval }
  | { type: "decided"; id: string; decision: string; reason: string; latencyMs?: number };

/** An event as the API returns it: the gateway's own type, plus the row id for stored ones. */
export type GwEvent = GatewayEvent & { id?: number };

export interface Device {
  name: string;
  kind: string;
  profile: string;
  address: string | null;
  address6: string | null;
  created_at: number | string;
  last_seen: number | string | null;
  revoked: boolean;
}

/** GET /api/spend: the day's LLM spend per device, and the configured budgets. */
export interface SpendDay {
  day: string;
  devices: { device: string; usd: number; requests: number; inputTokens: number; outputTokens: number }[];
  budgets: { owner: string; dailyUsd: number; per: string }[];
}

export interface Onboarding {
  code: string;
  name: string;
  public_key: string;
  requested_profile: string | null;
  source_ip: string | null;
  created_at: number;
  expires_at: number;
}

export interface Profile {
  name: string;
}

export const roleAtLeast = (have: Role | undefined, need: Role): boolean => {
  const order: Role[] = ["viewer", "approver", "admin"];
  return have !== undefined && order.indexOf(have) >= order.indexOf(need);
};
