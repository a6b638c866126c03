// `sql` facets: SQL text -> the facts of each statement it runs, from the
// real PostgreSQL parser (libpg-query, WASM). `await loadSqlParser()` once,
// then `sqlFacts(text)` is synchronous and never throws.
//
// The result, for rules over sql.verb / sql.tables / sql.functions /
// sql.statement (the session adds sql.database and sql.user):
//
// - `ok: true`: one entry per statement the text runs, in order. Each
//   top-level statement first, its `statement` cut from the text by the
//   parser's own range and trimmed. Right after it come the statements it
//   embeds that run (or are prepared) with it, each an entry of its own:
//     * a data-modifying CTE: WITH d AS (DELETE ...) SELECT ... -> select, delete
//     * EXPLAIN ANALYZE <stmt> (plain EXPLAIN does not run it: no entry)
//     * PREPARE name AS <stmt>; DECLARE cursor FOR <query>; COPY (<query>) TO
//     * CREATE TABLE AS / CREATE MATERIALIZED VIEW <query>; SELECT ... INTO t
//       is a "create" (PostgreSQL runs it as CREATE TABLE AS) plus its select
//     * each SQL statement of a DO block (PL/pgSQL), including EXECUTE of a
//       string literal, and COMMIT / ROLLBACK inside it
//   Judge every entry: one denied entry denies the text. A parent's tables
//   and functions include everything embedded in it. An empty text (only
//   spaces, comments or semicolons) has no statements.
// - `ok: false`: the facts are unknown and a rule reading them must fail
//   closed. `error` is the parser's own message for a syntax error, or
//   starts with "cannot judge: " when the text parses but what it runs cannot
//   be known: EXECUTE of a non-literal in a DO block (dynamic SQL), a DO
//   block in a language other than plpgsql, nesting deeper than MAX_DEPTH,
//   a NUL character (the server would stop reading there).
//
// Facts: `tables` as written, schema-qualified where written (PostgreSQL
// folds unquoted names to lower case; the parser already did), CTE names
// excluded; relations named by DROP / COMMENT / SECURITY LABEL (table, view,
// materialized view, sequence, foreign table, index) included. `functions`
// are FuncCall names as written; SQL-syntax forms (EXTRACT, TRIM, AT TIME
// ZONE...) appear under the pg_catalog name the grammar gives them.
//
// Results are cached by text (LRU by count and size; texts over
// MAX_CACHED_TEXT are parsed every time). Results are shared, so frozen.
// A second cache is keyed by the text's literal template (template.ts: numbers
// and plain strings blanked), for texts that differ only in their literals:
// it holds only results that no literal value can change (one select,
// insert, update or delete statement: no DO body, EXPLAIN option, embedded
// statement), and a hit keeps every fact but `statement`, cut from the real text.

import { BoundedLru } from "./cache.ts";
import { extractFacts, SqlUnjudgeable } from "./facets.ts";
import type { SqlStatementFacts } from "./facets.ts";
import { SqlSyntaxError, sqlParserLoaded } from "./parser.ts";
import { literalTemplate } from "./template.ts";

export type { SqlStatementFacts } from "./facets.ts";
export { MAX_DEPTH } from "./facets.ts";
export { loadSqlParser, sqlParserLoaded } from "./parser.ts";

export type SqlParseResult =
  | { ok: true; statements: SqlStatementFacts[] }
  | { ok: false; error: string };

/** Prefix of `error` when the text parsed but cannot be judged. */
export const UNJUDGEABLE_PREFIX = "cannot judge: ";

/** A text longer than this (in UTF-16 units) is parsed but never cached. */
export const MAX_CACHED_TEXT = 64 * 1024;

const cache = new BoundedLru<string, SqlParseResult>({
  maxEntries: 4096,
  maxWeight: 16 * 1024 * 1024,
  maxEntryWeight: 4 * MAX_CACHED_TEXT,
});

/**
 * The facts of every statement `text` runs (see the header). Throws only
 * when called before loadSqlParser() has finished (a wiring mistake).
 */
export function sqlFacts(text: string): SqlParseResult {
  if (!sqlParserLoaded()) throw new Error("sqlFacts before loadSqlParser() finished");
  const hit = cache.get(text);
  if (hit !== undefined) return hit;
  const template = text.length <= MAX_CACHED_TEXT ? literalTemplate(text) : undefined;
  if (template !== undefined) {
    const shape = templates.get(template);
    const statement = shape && statementOf(text, shape.cut);
    if (shape && statement !== undefined) {
      templateHits++;
      // The shape's lists are the cached result's, frozen already; the fresh
      // one-statement list is this caller's alone, so it stays as made:
      // freezing a new array costs about 1 µs, per statement.
      return Object.freeze({ ok: true, statements: [Object.freeze({ ...shape.facts, statement })] });
    }
  }
  const { result, cacheable } = compute(text);
  freeze(result);
  if (cacheable && text.length <= MAX_CACHED_TEXT) cache.set(text, result, weightOf(text, result));
  if (template !== undefined) {
    const shape = literalFreeShape(text, result);
    if (shape) templates.set(template, shape, 64 + template.length * 2 + weightOf("", result));
  }
  return result;
}

/** Drop every cached result (tests and benchmarks). */
export function clearSqlFactsCache(): void {
  cache.clear();
  templates.clear();
  templateHits = 0;
}

/** Entries and weight of the cache (for the dashboard and the benchmark); templates and hits on them. */
export function sqlFactsCacheStats(): { entries: number; weight: number; templates: number; templateHits: number } {
  return { entries: cache.size, weight: cache.totalWeight, templates: templates.size, templateHits };
}

// ------------------------------------------------------------ templates

/** Statement kinds whose facts come from the tree's shape, never from a literal's value. */
const TEMPLATE_VERBS = new Set(["select", "insert", "update", "delete"]);

/** How a statement's text comes from the whole text: trimmed, and without its final semicolon or not. */
type StatementCut = "trim" | "trim-semicolon";

interface TemplateShape {
  facts: Omit<SqlStatementFacts, "statement">;
  cut: StatementCut;
}

const templates = new BoundedLru<string, TemplateShape>({ maxEntries: 1024, maxWeight: 4 * 1024 * 1024, maxEntryWeight: 4 * MAX_CACHED_TEXT });
let templateHits = 0;

function statementOf(text: string, cut: StatementCut): string | undefined {
  const trimmed = text.trim();
  if (cut === "trim") return trimmed;
  return trimmed.endsWith(";") ? trimmed.slice(0, -1).trimEnd() : undefined;
}

/** The result's facts, when literals cannot have made them, and how its statement text was cut. */
function literalFreeShape(text: string, result: SqlParseResult): TemplateShape | undefined {
  if (!result.ok || result.statements.length !== 1) return undefined;
  const only = result.statements[0]!;
  if (!TEMPLATE_VERBS.has(only.verb)) return undefined;
  const cut: StatementCut | undefined = statementOf(text, "trim") === only.statement ? "trim" : statementOf(text, "trim-semicolon") === only.statement ? "trim-semicolon" : undefined;
  if (cut === undefined) return undefined;
  return { facts: { verb: only.verb, tables: only.tables, functions: only.functions }, cut };
}

/** The result, and whether it depends on the text alone (so may be cached). */
function compute(text: string): { result: SqlParseResult; cacheable: boolean } {
  if (text.includes("\0")) {
    return { result: { ok: false, error: `${UNJUDGEABLE_PREFIX}the text contains a NUL character` }, cacheable: true };
  }
  try {
    return { result: { ok: true, statements: extractFacts(text) }, cacheable: true };
  } catch (e) {
    if (e instanceof SqlSyntaxError) return { result: { ok: false, error: e.message }, cacheable: true };
    if (e instanceof SqlUnjudgeable) return { result: { ok: false, error: UNJUDGEABLE_PREFIX + e.message }, cacheable: true };
    // A tree too deep for the walk (RangeError: depends on the stack left) or a
    // parser failure: unknown, so closed, and tried again next time.
    const why = e instanceof Error ? e.message : String(e);
    return { result: { ok: false, error: `${UNJUDGEABLE_PREFIX}${why}` }, cacheable: false };
  }
}

/** Roughly the bytes an entry holds: its key, and each statement's text and names. */
function weightOf(text: string, result: SqlParseResult): number {
  let weight = 64 + text.length * 2;
  if (!result.ok) return weight + result.error.length * 2;
  for (const s of result.statements) {
    weight += 64 + s.statement.length * 2;
    for (const name of s.tables) weight += 16 + name.length * 2;
    for (const name of s.functions) weight += 16 + name.length * 2;
  }
  return weight;
}

function freeze(result: SqlParseResult): void {
  if (result.ok) {
    for (const s of result.statements) {
      Object.freeze(s.tables);
      Object.freeze(s.functions);
      Object.freeze(s);
    }
    Object.freeze(result.statements);
  }
  Object.freeze(result);
}
