// What the dashboard shows of an action of each rule family, without the
// DOM (tested beside it). An http event is a method and a URL; an sql event
// is a statement on a database: its verb, tables, rows or SQLSTATE, read
// from the structured action the Postgres endpoint records
// (app/families/sql/family.ts `action`, plus rows and sqlstate).
import type { GatewayEvent } from "../../events/types.ts";

export interface SqlView {
  database: string;
  user: string;
  /** Lower case; "unparsed" when the parser rejected the statement. */
  verb: string;
  parsed: boolean;
  tables: string[];
  functions: string[];
  statement: string;
  rows?: number;
  sqlstate?: string;
}

type EventFields = Pick<GatewayEvent, "kind" | "family" | "action" | "path" | "method">;

export const isSql = (e: EventFields): boolean => e.kind === "sql" || e.family === "sql";

/** The sql parts of an event (undefined for any other family); fields the action lacks fall back to what is known. */
export function sqlView(e: EventFields): SqlView | undefined {
  if (!isSql(e)) return undefined;
  const a = e.action ?? {};
  const str = (v: unknown) => (typeof v === "string" ? v : undefined);
  const list = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);
  const verb = str(a.verb);
  const view: SqlView = {
    database: str(a.database) ?? "?",
    user: str(a.user) ?? "?",
    verb: verb ?? "unparsed",
    parsed: verb !== undefined,
    tables: list(a.tables),
    functions: list(a.functions),
    statement: str(a.statement) ?? e.path ?? "",
  };
  if (typeof a.rows === "number") view.rows = a.rows;
  const state = str(a.sqlstate);
  if (state) view.sqlstate = state;
  return view;
}

/** The feed's "Status" cell for a statement: its SQLSTATE when it failed, else the rows it touched. */
export function sqlResult(v: SqlView): string {
  if (v.sqlstate) return v.sqlstate;
  if (v.rows !== undefined) return `${v.rows} row${v.rows === 1 ? "" : "s"}`;
  return "—";
}

/** One line for the feed: `app: delete public.users`. */
export function sqlLine(v: SqlView): string {
  return `${v.database}: ${v.verb}${v.tables.length ? ` ${v.tables.join(", ")}` : ""}`;
}

/** Newlines and runs of spaces folded, cut for a table cell. */
export function statementLine(text: string, max = 160): string {
  const one = text.replace(/\s+/g, " ").trim();
  return one.length <= max ? one : `${one.slice(0, max - 1)}…`;
}

/** Text the feed's search box matches: host, path, rule, and for sql the summary, database and statement. */
export function searchText(e: EventFields & Pick<GatewayEvent, "host" | "rule" | "summary" | "endpoint">): string {
  const v = sqlView(e);
  const sql = v ? ` ${e.endpoint ?? ""} ${e.summary ?? ""} ${v.database} ${v.statement}` : "";
  return `${e.host}${e.path ?? ""} ${e.rule ?? ""}${sql}`.toLowerCase();
}
