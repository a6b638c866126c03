// The `actions` table: one row per GatewayEvent. Time is stored as ms since
// the epoch (so retention and `since` filters are numeric comparisons on an
// index) and handed back as ISO-8601. Rows are returned newest first by id,
// the order they were recorded; `beforeId` pages further back.
import type { Database } from "bun:sqlite";
import type { GatewayEvent } from "../events/types.ts";

export interface StoredAction extends GatewayEvent {
  id: number;
}

export interface ActionQuery {
  device?: string;
  verdict?: string;
  /** Only rows at or after this time (ISO-8601 or ms since epoch). */
  since?: string | number;
  /** At most this many rows (capped at MAX_QUERY_LIMIT). */
  limit: number;
  /** Only rows older than this id: pass the last id of the previous page. */
  beforeId?: number;
}

export const MAX_QUERY_LIMIT = 1000;

const INSERT_SQL = `INSERT INTO actions (time, kind, flow_id, device, profile, endpoint, host, port, method, path,
  status, bytes_up, bytes_down, duration_ms, rule, verdict, reason, credential, detail,
  approvers, operator, approval_ms, remembered, family, summary, action, shadow, usage)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

/** Insert events in one transaction. `now` supplies the time for an event whose time does not parse. */
export function insertActions(db: Database, events: readonly GatewayEvent[], now: () => number = Date.now): void {
  if (events.length === 0) return;
  const stmt = db.query(INSERT_SQL);
  db.transaction(() => {
    for (const e of events) {
      const t = Date.parse(e.time);
      stmt.run(
        Number.isFinite(t) ? t : now(),
        e.kind,
        e.flowId,
        e.device,
        e.profile,
        e.endpoint ?? null,
        e.host,
        e.port,
        e.method ?? null,
        e.path ?? null,
        e.status ?? null,
        e.bytesUp,
        e.bytesDown,
        Math.round(e.durationMs),
        e.rule ?? null,
        e.verdict,
        e.reason,
        e.credential ?? null,
        e.detail ?? null,
        e.approvers ?? null,
        e.operator ?? null,
        e.approvalMs === undefined ? null : Math.round(e.approvalMs),
        e.remembered ? 1 : null,
        e.family ?? null,
        e.summary ?? null,
        e.action === undefined ? null : JSON.stringify(e.action),
        e.shadow === undefined ? null : JSON.stringify(e.shadow),
        e.usage === undefined ? null : JSON.stringify(e.usage),
      );
    }
  })();
}

/** Delete rows recorded before `cutoffMs`; returns how many went. */
export function pruneActions(db: Database, cutoffMs: number): number {
  return db.query("DELETE FROM actions WHERE time < ?").run(cutoffMs).changes;
}

interface ActionRow {
  id: number;
  time: number;
  kind: string;
  flow_id: string;
  device: string;
  profile: string;
  endpoint: string | null;
  host: string;
  port: number;
  method: string | null;
  path: string | null;
  status: number | null;
  bytes_up: number;
  bytes_down: number;
  duration_ms: number;
  rule: string | null;
  verdict: string;
  reason: string;
  credential: string | null;
  detail: string | null;
  approvers: string | null;
  operator: string | null;
  approval_ms: number | null;
  remembered: number | null;
  family: string | null;
  summary: string | null;
  action: string | null;
  shadow: string | null;
  usage: string | null;
}

export function queryActions(db: Database, q: ActionQuery): StoredAction[] {
  const where: string[] = [];
  const params: (string | number)[] = [];
  if (q.device !== undefined) {
    where.push("device = ?");
    params.push(q.device);
  }
  if (q.verdict !== undefined) {
    where.push("verdict = ?");
    params.push(q.verdict);
  }
  if (q.since !== undefined) {
    const since = typeof q.since === "number" ? q.since : Date.parse(q.since);
    if (!Number.isFinite(since)) throw new RangeError(`invalid since: ${JSON.stringify(q.since)}`);
    where.push("time >= ?");
    params.push(since);
  }
  if (q.beforeId !== undefined) {
    where.push("id < ?");
    params.push(q.beforeId);
  }
  const limit = Math.max(0, Math.min(MAX_QUERY_LIMIT, Math.floor(q.limit)));
  params.push(limit);
  const sql =
    "SELECT * FROM actions" +
    (where.length ? ` WHERE ${where.join(" AND ")}` : "") +
    " ORDER BY id DESC LIMIT ?";
  const rows = db.query(sql).all(...params) as ActionRow[];
  return rows.map(fromRow);
}

function fromRow(r: ActionRow): StoredAction {
  const e: StoredAction = {
    id: r.id,
    time: new Date(r.time).toISOString(),
    kind: r.kind as GatewayEvent["kind"],
    flowId: r.flow_id,
    device: r.device,
    profile: r.profile,
    host: r.host,
    port: r.port,
    bytesUp: r.bytes_up,
    bytesDown: r.bytes_down,
    durationMs: r.duration_ms,
    verdict: r.verdict,
    reason: r.reason,
  };
  if (r.endpoint !== null) e.endpoint = r.endpoint;
  if (r.method !== null) e.method = r.method;
  if (r.path !== null) e.path = r.path;
  if (r.status !== null) e.status = r.status;
  if (r.rule !== null) e.rule = r.rule;
  if (r.credential !== null) e.credential = r.credential;
  if (r.detail !== null) e.detail = r.detail;
  if (r.approvers !== null) e.approvers = r.approvers;
  if (r.operator !== null) e.operator = r.operator;
  if (r.approval_ms !== null) e.approvalMs = r.approval_ms;
  if (r.remembered) e.remembered = true;
  if (r.family !== null) e.family = r.family as NonNullable<GatewayEvent["family"]>;
  if (r.summary !== null) e.summary = r.summary;
  if (r.action !== null) e.action = parseAction(r.action);
  if (r.shadow) e.shadow = parseShadow(r.shadow);
  if (r.usage) e.usage = parseUsage(r.usage);
  return e;
}

function parseUsage(text: string): GatewayEvent["usage"] {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as GatewayEvent["usage"]) : undefined;
  } catch {
    return undefined;
  }
}

function parseShadow(text: string): NonNullable<GatewayEvent["shadow"]> {
  try {
    const v: unknown = JSON.parse(text);
    if (!Array.isArray(v)) return [];
    return v.filter((x): x is { rule: string; would: string } => typeof x?.rule === "string" && typeof x?.would === "string");
  } catch {
    return [];
  }
}

function parseAction(text: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** Per shadow rule: how many recorded actions it would have denied or held (and allowed), with the newest examples. */
export interface ShadowRuleSummary {
  rule: string;
  would: Record<string, number>;
  examples: { id: number; time: string; device: string; verdict: string; would: string; what: string }[];
}

/** What shadow rules would have done since `sinceMs` (at most `maxRows` recorded actions, newest first). */
export function shadowSummary(db: Database, sinceMs: number, maxRows = 50_000, examplesPerRule = 5): ShadowRuleSummary[] {
  const rows = db
    .query("SELECT id, time, device, method, host, path, summary, verdict, shadow FROM actions WHERE shadow IS NOT NULL AND time >= ? ORDER BY id DESC LIMIT ?")
    .all(sinceMs, maxRows) as { id: number; time: number; device: string; method: string | null; host: string; path: string | null; summary: string | null; verdict: string; shadow: string }[];
  const byRule = new Map<string, ShadowRuleSummary>();
  for (const r of rows) {
    for (const s of parseShadow(r.shadow)) {
      let entry = byRule.get(s.rule);
      if (!entry) byRule.set(s.rule, (entry = { rule: s.rule, would: {}, examples: [] }));
      entry.would[s.would] = (entry.would[s.would] ?? 0) + 1;
      // Examples are the actions where the shadow rule would have changed the outcome.
      if (s.would !== r.verdict && entry.examples.length < examplesPerRule) {
        const what = r.summary ?? `${r.method ?? ""} ${r.host}${r.path ?? ""}`.trim();
        entry.examples.push({ id: r.id, time: new Date(r.time).toISOString(), device: r.device, verdict: r.verdict, would: s.would, what });
      }
    }
  }
  return [...byRule.values()].sort((a, b) => a.rule.localeCompare(b.rule));
}
