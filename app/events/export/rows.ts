// The ClickHouse row of an event, and the table that holds them.
//
// Plain column types only (no Nullable, no LowCardinality, no DateTime64):
// ClickHouse 18.16 (Debian 12's) has no DateTime64 and LowCardinality was
// experimental, so `ts` is DateTime('UTC') with the milliseconds in `ts_ms`.
// Absent fields are "" or 0. `action` is the family's structured action as a
// JSON string (query it with JSONExtractString and friends on newer servers,
// visitParamExtractString on 18.16).
//
// Delivery is at least once: a batch whose answer was lost is sent again.
// Every row carries `event_id` (a UUID made when the event was spooled) and
// the table is a ReplacingMergeTree ordered by (device, ts, event_id), so
// such a duplicate is merged away in the background and never counted by a
// query with FINAL (or `LIMIT 1 BY event_id`). `batch_id` says which insert
// a row came with (gateway, spool segment and offset), for diagnosis.
import type { GatewayEvent } from "../types.ts";

export interface ExportRow {
  ts: string;
  ts_ms: number;
  gateway: string;
  event_id: string;
  kind: string;
  family: string;
  device: string;
  profile: string;
  flow_id: string;
  endpoint: string;
  host: string;
  port: number;
  method: string;
  path: string;
  status: number;
  verdict: string;
  rule: string;
  reason: string;
  summary: string;
  action: string;
  credential: string;
  approvers: string;
  operator: string;
  approval_ms: number;
  remembered: number;
  bytes_up: number;
  bytes_down: number;
  duration_ms: number;
  detail: string;
}

/** Column definitions, in row order; `batch_id` is added at insert time. */
export const COLUMNS: readonly (readonly [string, string])[] = [
  ["ts", "DateTime('UTC')"],
  ["ts_ms", "UInt64"],
  ["gateway", "String"],
  ["event_id", "String"],
  ["batch_id", "String"],
  ["kind", "String"],
  ["family", "String"],
  ["device", "String"],
  ["profile", "String"],
  ["flow_id", "String"],
  ["endpoint", "String"],
  ["host", "String"],
  ["port", "UInt16"],
  ["method", "String"],
  ["path", "String"],
  ["status", "UInt16"],
  ["verdict", "String"],
  ["rule", "String"],
  ["reason", "String"],
  ["summary", "String"],
  ["action", "String"],
  ["credential", "String"],
  ["approvers", "String"],
  ["operator", "String"],
  ["approval_ms", "UInt64"],
  ["remembered", "UInt8"],
  ["bytes_up", "UInt64"],
  ["bytes_down", "UInt64"],
  ["duration_ms", "UInt64"],
  ["detail", "String"],
];

/** Database and table names are checked identifiers (config.ts), quoted anyway. */
export function quoteIdent(name: string): string {
  return "`" + name.replace(/\\/g, "\\\\").replace(/`/g, "\\`") + "`";
}

export function qualifiedTable(database: string, table: string): string {
  return `${quoteIdent(database)}.${quoteIdent(table)}`;
}

export function createDatabaseSql(database: string): string {
  return `CREATE DATABASE IF NOT EXISTS ${quoteIdent(database)}`;
}

export function createTableSql(database: string, table: string): string {
  const cols = COLUMNS.map(([name, type]) => `  ${name} ${type}`).join(",\n");
  return `CREATE TABLE IF NOT EXISTS ${qualifiedTable(database, table)} (\n${cols}\n) ENGINE = ReplacingMergeTree\nPARTITION BY toYYYYMM(ts)\nORDER BY (device, ts, event_id)`;
}

/** `2026-12-07T17:43:03.120Z` -> `2026-12-07 17:43:03` (DateTime's text form, UTC). */
function dateTimeText(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace("T", " ");
}

function wholeNonNegative(n: number | undefined, max = Number.MAX_SAFE_INTEGER): number {
  if (n === undefined || !Number.isFinite(n) || n <= 0) return 0;
  return Math.min(Math.round(n), max);
}

/** A family's action may hold BigInts (CEL integers); JSON has no such type. */
function bigintAsText(_key: string, v: unknown): unknown {
  return typeof v === "bigint" ? v.toString() : v;
}

/** The row of one (already redacted) event. */
export function eventRow(e: GatewayEvent, gateway: string, eventId: string): ExportRow {
  const parsed = Date.parse(e.time);
  const ms = Number.isFinite(parsed) ? parsed : 0;
  return {
    ts: dateTimeText(ms),
    ts_ms: ms,
    gateway,
    event_id: eventId,
    kind: e.kind,
    family: e.family ?? "",
    device: e.device,
    profile: e.profile,
    flow_id: e.flowId,
    endpoint: e.endpoint ?? "",
    host: e.host,
    port: wholeNonNegative(e.port, 65535),
    method: e.method ?? "",
    path: e.path ?? "",
    status: wholeNonNegative(e.status, 65535),
    verdict: e.verdict,
    rule: e.rule ?? "",
    reason: e.reason,
    summary: e.summary ?? "",
    action: e.action === undefined ? "" : JSON.stringify(e.action, bigintAsText),
    credential: e.credential ?? "",
    approvers: e.approvers ?? "",
    operator: e.operator ?? "",
    approval_ms: wholeNonNegative(e.approvalMs),
    remembered: e.remembered ? 1 : 0,
    bytes_up: wholeNonNegative(e.bytesUp),
    bytes_down: wholeNonNegative(e.bytesDown),
    duration_ms: wholeNonNegative(e.durationMs),
    detail: e.detail ?? "",
  };
}

/**
 * The row that records a gap: `dropped` events that did not fit in the spool
 * (its cap is `capBytes`), so the loss is visible where the events are read.
 */
export function gapRow(gateway: string, eventId: string, nowMs: number, dropped: number, capBytes: number): ExportRow {
  return {
    ...eventRow(
      {
        time: new Date(nowMs).toISOString(),
        kind: "connection",
        flowId: "",
        device: "",
        profile: "",
        host: "",
        port: 0,
        bytesUp: 0,
        bytesDown: 0,
        durationMs: 0,
        verdict: "dropped",
        reason: `${dropped} event${dropped === 1 ? "" : "s"} dropped: the export spool was full (${capBytes} bytes)`,
      },
      gateway,
      eventId,
    ),
    kind: "export_gap",
  };
}
