// The sql family's parser as the Postgres session uses it: the real
// PostgreSQL parser (libpg-query, WASM, loaded once before the first Postgres
// flow is served: see serve.ts), its facets per statement, cached by text.
import { loadSqlParser, sqlFacts } from "../../families/sql/index.ts";
import type { SqlStatementFacets } from "../../families/sql/family.ts";

export { loadSqlParser };

export function parseSql(text: string): { ok: true; statements: SqlStatementFacets[] } | { ok: false; error: string } {
  const r = sqlFacts(text);
  return r.ok ? { ok: true, statements: r.statements } : { ok: false, error: r.error };
}
