// The sql family's dialects: which reader gives a statement's facets. The
// family's value (family.ts) is the same for all; only the reader differs:
// PostgreSQL's own parser (libpg-query; `await loadSqlParser()` first) or the
// token-level ClickHouse reader (clickhouse/facets.ts; synchronous).
import { sqlFacts } from "./index.ts";
import { clickhouseFacts } from "./clickhouse/facets.ts";
import type { SqlStatementFacets } from "./family.ts";

export type SqlDialect = "postgres" | "clickhouse";

export type DialectParseResult = { ok: true; statements: SqlStatementFacets[] } | { ok: false; error: string };

/** The facets of each statement `text` runs, read as `dialect`; ok:false leaves them unknown. */
export function parseStatements(dialect: SqlDialect, text: string): DialectParseResult {
  const r = dialect === "postgres" ? sqlFacts(text) : clickhouseFacts(text);
  return r.ok ? { ok: true, statements: r.statements } : { ok: false, error: r.error };
}
