// One compact human line per event, for a terminal or the journal:
//
//   10:31:02 allow laptop GET api.github.com/repos/x 200 12ms rule=read-only cred=github_token.gh
//   10:31:03 deny laptop DELETE api.github.com/repos/x 403 3ms rule=no-deletes "no deletes"
//   10:31:09 relay laptop 10.0.0.5:22 ↑1.2kB ↓3.4kB 2.1s
//
// Agent-controlled text (paths, hosts) has control characters escaped so an
// agent cannot paint or rearrange the operator's terminal.
import type { EventSink, GatewayEvent } from "../types.ts";

export interface StderrSinkOptions {
  /** Render times in UTC instead of the local zone. */
  utc?: boolean;
}

const MAX_PATH = 160;

export class StderrSink implements EventSink {
  constructor(
    private readonly out: (s: string) => void = (s) => {
      process.stderr.write(s);
    },
    private readonly opts: StderrSinkOptions = {},
  ) {}

  write(event: GatewayEvent): void {
    this.out(formatEventLine(event, this.opts) + "\n");
  }
}

export function formatEventLine(e: GatewayEvent, opts: StderrSinkOptions = {}): string {
  const parts = [clock(e.time, opts.utc ?? false), clean(e.verdict), clean(e.device)];
  if (e.kind === "http") {
    if (e.method) parts.push(clean(e.method));
    const host = e.port === 443 ? e.host : `${e.host}:${e.port}`;
    parts.push(clean(shorten(host + (e.path ?? ""), MAX_PATH)));
    if (e.status !== undefined) parts.push(String(e.status));
    parts.push(duration(e.durationMs));
  } else if (e.kind === "sql") {
    // endpoint db=DATABASE verb tables,… rows=N sqlstate=S duration; the statement ends the line.
    const a = e.action ?? {};
    parts.push(clean(`${e.endpoint ?? hostPort(e.host, e.port)}`));
    if (typeof a.database === "string") parts.push(`db=${clean(a.database)}`);
    parts.push(clean(typeof a.verb === "string" ? a.verb : "unparsed"));
    const tables = Array.isArray(a.tables) ? a.tables.filter((t): t is string => typeof t === "string") : [];
    if (tables.length > 0) parts.push(clean(shorten(tables.join(","), MAX_PATH)));
    if (typeof a.rows === "number") parts.push(`rows=${a.rows}`);
    if (typeof a.sqlstate === "string") parts.push(`sqlstate=${clean(a.sqlstate)}`);
    parts.push(duration(e.durationMs));
  } else {
    parts.push(clean(`${hostPort(e.host, e.port)}`));
    parts.push(`↑${bytes(e.bytesUp)}`, `↓${bytes(e.bytesDown)}`, duration(e.durationMs));
  }
  if (e.rule) parts.push(`rule=${clean(e.rule)}`);
  if (e.credential) parts.push(`cred=${clean(e.credential)}`);
  if (e.usage) {
    const u = e.usage;
    const cost = u.usd === undefined ? "" : ` $${u.usd.toFixed(4)}${u.unpriced ? "?" : ""}`;
    parts.push(`llm=${clean(shorten(u.model, 60))} tokens=${u.inputTokens + u.cacheReadTokens + u.cacheWriteTokens}/${u.outputTokens}${cost}`);
  }
  // The reason says why something was refused; on an allow it is noise.
  if (e.verdict !== "allow" && e.verdict !== "relay" && e.verdict !== "passthrough" && e.reason) {
    parts.push(JSON.stringify(e.reason));
  }
  if (e.detail) parts.push(`detail=${JSON.stringify(e.detail)}`);
  if (e.kind === "sql") {
    const statement = typeof e.action?.statement === "string" ? e.action.statement : (e.path ?? "");
    parts.push(`sql=${quoted(shorten(statement.replace(/\s+/g, " ").trim(), MAX_PATH))}`);
  }
  return parts.join(" ");
}

function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

function clock(iso: string, utc: boolean): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return clean(iso);
  const [h, m, s] = utc
    ? [d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()]
    : [d.getHours(), d.getMinutes(), d.getSeconds()];
  return [h, m, s].map((n) => String(n).padStart(2, "0")).join(":");
}

export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return `${m}m${String(Math.floor(s - m * 60)).padStart(2, "0")}s`;
}

export function bytes(n: number): string {
  if (n < 1000) return `${n}B`;
  for (const [unit, size] of [
    ["kB", 1e3],
    ["MB", 1e6],
    ["GB", 1e9],
  ] as const) {
    if (n < size * 1000 || unit === "GB") return `${(n / size).toFixed(1)}${unit}`;
  }
  return `${n}B`;
}

function shorten(s: string, max: number): string {
  return s.length > max ? s.slice(0, max - 1) + "…" : s;
}

/** A JSON string with bidi overrides escaped too (JSON.stringify leaves them). */
function quoted(s: string): string {
  return JSON.stringify(s).replace(/[\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

// Control characters, whitespace and bidi overrides: escaped, so a field
// stays one token and cannot reorder or recolour the line.
function clean(s: string): string {
  return s.replace(/[\x00-\x1f\x7f-\x9f\s\u202a-\u202e\u2066-\u2069]/g, (c) =>
    c === " " ? "%20" : "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
  );
}
