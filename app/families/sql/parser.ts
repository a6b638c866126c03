// The real PostgreSQL parser (libpg-query, PostgreSQL 18's grammar compiled to
// WASM), loaded once and called synchronously. Everything the parser hands
// back is untyped JSON; this module only loads, calls and turns its failures
// into one error class, so facets.ts never sees a library exception.

// Imported on first use, not with this module: libpg-query instantiates its
// WASM (a 128 MiB memory) as it is imported, and JavaScriptCore counts that
// memory as live heap, so a gateway that never parses SQL would pay for it
// in RSS and in a full-collection threshold ~300 MB higher (the soak's
// sawtooth at 500 connections went 310 -> 834 MB between full collections).
type PgQuery = typeof import("libpg-query");
let pg: PgQuery | undefined;

/** A text the parser (SQL or PL/pgSQL) rejected; the message is the server's own. */
export class SqlSyntaxError extends Error {
  override name = "SqlSyntaxError";
}

/** One top-level statement of a parsed text: the node plus its byte range. */
export interface RawStatement {
  /** `{ SelectStmt: {...} }`, `{ DoStmt: {...} }`...: one key, the node kind. */
  stmt: Record<string, unknown>;
  /** Byte offset into the UTF-8 text (libpg-query omits it when 0). */
  stmt_location?: number;
  /** Byte length; omitted (0) for the last statement: it runs to the end. */
  stmt_len?: number;
}

/** One lexical token; start/end are UTF-8 byte offsets into the scanned text. */
export interface SqlToken {
  start: number;
  end: number;
  /** The token's text as written (keywords keep their case). */
  text: string;
  /** NO_KEYWORD for identifiers, literals and punctuation. */
  keywordName: string;
}

let loading: Promise<void> | undefined;
let loaded = false;

/** Load the WASM parser; idempotent, every caller awaits the same load. */
export function loadSqlParser(): Promise<void> {
  loading ??= import("libpg-query").then(async (m) => {
    await m.loadModule();
    pg = m;
    loaded = true;
  });
  return loading;
}

/** Whether loadSqlParser() has finished: the sync calls below need it. */
export function sqlParserLoaded(): boolean {
  return loaded;
}

function requireLoaded(): PgQuery {
  if (!pg) throw new Error("SQL parser not loaded: await loadSqlParser() first");
  return pg;
}

/** Parse SQL text into its top-level statements; throws SqlSyntaxError. */
export function parseStatements(text: string): RawStatement[] {
  const { parseSync } = requireLoaded();
  let tree: { stmts?: RawStatement[] };
  try {
    tree = parseSync(text) as { stmts?: RawStatement[] };
  } catch (e) {
    throw new SqlSyntaxError(messageOf(e));
  }
  return tree.stmts ?? [];
}

/**
 * Parse a PL/pgSQL function body. The parser takes a whole
 * `CREATE FUNCTION ... LANGUAGE plpgsql AS ...` statement, so the body is
 * wrapped in one, dollar-quoted with a tag the body does not contain.
 */
export function parsePlPgSqlBody(body: string): unknown {
  const { parsePlPgSQLSync } = requireLoaded();
  let tag = "clawpatrol_do";
  for (let n = 0; body.includes(`$${tag}$`); n++) tag = `clawpatrol_do${n}`;
  const wrapped = `CREATE FUNCTION pg_temp.clawpatrol_do() RETURNS void LANGUAGE plpgsql AS $${tag}$${body}$${tag}$`;
  try {
    return parsePlPgSQLSync(wrapped);
  } catch (e) {
    throw new SqlSyntaxError(messageOf(e));
  }
}

/** The lexer's tokens (comments included) of a text; throws SqlSyntaxError. */
export function scanTokens(text: string): SqlToken[] {
  const { scanSync } = requireLoaded();
  try {
    return scanSync(text).tokens;
  } catch (e) {
    throw new SqlSyntaxError(messageOf(e));
  }
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
