// The audit trail: one row per operator action (login, logout, approve,
// deny, device changes, reload, accounts and tokens), from the API and the
// CLI alike. `operator` is the account name, or `cli:<user>` for the CLI;
// `detail` is a small JSON object (never a password or a token). Rows come
// back newest first; `beforeId` pages further back.
import type { Database } from "bun:sqlite";

export interface AuditEntry {
  time: number;
  operator: string;
  action: string;
  target?: string;
  detail?: Record<string, unknown>;
  /** Where it came from: the client's address, or "cli". */
  source?: string;
}

export interface StoredAudit {
  id: number;
  /** ISO-8601 */
  time: string;
  operator: string;
  action: string;
  target: string | null;
  detail: Record<string, unknown> | null;
  source: string | null;
}

export interface AuditQuery {
  operator?: string;
  /** Exact action, or a prefix ending in "." (e.g. `approval.`). */
  action?: string;
  since?: string | number;
  limit: number;
  beforeId?: number;
}

export const MAX_AUDIT_LIMIT = 1000;

export function writeAudit(db: Database, e: AuditEntry): void {
  db.query("INSERT INTO audit (time, operator, action, target, detail, source) VALUES (?, ?, ?, ?, ?, ?)").run(
    e.time,
    e.operator,
    e.action,
    e.target ?? null,
    e.detail === undefined ? null : JSON.stringify(e.detail),
    e.source ?? null,
  );
}

export function queryAudit(db: Database, q: AuditQuery): StoredAudit[] {
  const where: string[] = [];
  const params: (string | number)[] = [];
  if (q.operator !== undefined) {
    where.push("operator = ?");
    params.push(q.operator);
  }
  if (q.action !== undefined) {
    if (q.action.endsWith(".")) {
      where.push("substr(action, 1, ?) = ?");
      params.push(q.action.length, q.action);
    } else {
      where.push("action = ?");
      params.push(q.action);
    }
  }
  if (q.since !== undefined) {
    const since = typeof q.since === "number" ? q.since : /^\d+$/.test(q.since) ? Number(q.since) : Date.parse(q.since);
    if (!Number.isFinite(since)) throw new RangeError(`invalid since: ${JSON.stringify(q.since)}`);
    where.push("time >= ?");
    params.push(since);
  }
  if (q.beforeId !== undefined) {
    where.push("id < ?");
    params.push(q.beforeId);
  }
  params.push(Math.max(0, Math.min(MAX_AUDIT_LIMIT, Math.floor(q.limit))));
  const rows = db
    .query(`SELECT * FROM audit${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ?`)
    .all(...params) as { id: number; time: number; operator: string; action: string; target: string | null; detail: string | null; source: string | null }[];
  return rows.map((r) => ({
    id: r.id,
    time: new Date(r.time).toISOString(),
    operator: r.operator,
    action: r.action,
    target: r.target,
    detail: r.detail === null ? null : (safeParse(r.detail) as Record<string, unknown> | null),
    source: r.source,
  }));
}

function safeParse(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return { text: s };
  }
}
