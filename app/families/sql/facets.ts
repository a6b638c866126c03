// Parse tree -> the facts rules read, for every statement a text runs.
//
//   1. parse the text (parser.ts); each top-level statement gets an entry,
//      its `statement` cut from the text by the parser's byte range
//   2. walk the statement's tree: every RangeVar is a table (unless it names
//      a CTE in scope), every FuncCall a function, DROP/COMMENT name lists of
//      relations are tables
//   3. a statement embedded in another that runs (or is prepared) with it
//      gets an entry of its own right after its parent: a data-modifying CTE,
//      EXPLAIN ANALYZE's statement, PREPARE's, CREATE TABLE AS / SELECT INTO /
//      CREATE MATERIALIZED VIEW's query, DECLARE's, COPY (query)'s, and each
//      SQL statement of a DO body (PL/pgSQL, parsed by its own parser;
//      EXECUTE of a string literal is parsed as SQL). The parent's tables and
//      functions include everything embedded in it.
//   4. what cannot be judged (dynamic SQL that is not a literal, a DO block in
//      another language, nesting deeper than MAX_DEPTH) throws SqlUnjudgeable.
//
// Byte offsets: the parser counts UTF-8 bytes; TextCutter maps them back.

import type { SqlToken } from "./parser.ts";
import { parsePlPgSqlBody, parseStatements, scanTokens } from "./parser.ts";
import { verbOf } from "./verbs.ts";

/** The facts of one statement. */
export interface SqlStatementFacts {
  /** Lower case, from the statement kind: "select", "delete", "create"... (verbs.ts). */
  verb: string;
  /** Relations read or written, as written (`public.users`, `users`), first appearance first. */
  tables: string[];
  /** Functions called, as written (`lower`, `pg_catalog.pg_get_userbyid`), first appearance first. */
  functions: string[];
  /** This statement's own text, trimmed. */
  statement: string;
}

/** A statement whose effect cannot be known from its text; the result must fail closed. */
export class SqlUnjudgeable extends Error {
  override name = "SqlUnjudgeable";
}

/** DO inside EXECUTE inside DO ...: deeper than this is refused rather than followed. */
export const MAX_DEPTH = 8;

/** The facts of every statement `text` runs; throws SqlSyntaxError or SqlUnjudgeable. */
export function extractFacts(text: string): SqlStatementFacts[] {
  return factsOfText(text, 0);
}

// ---------------------------------------------------------------- texts

const UTF8_ENCODER = new TextEncoder();
const UTF8_DECODER = new TextDecoder();

/** Cuts a text by UTF-8 byte offsets; scans it for tokens only when asked. */
class TextCutter {
  private readonly bytes: Uint8Array | undefined;
  private tokenCache: SqlToken[] | undefined;

  constructor(readonly text: string) {
    this.bytes = /[^\x00-\x7f]/.test(text) ? UTF8_ENCODER.encode(text) : undefined;
  }

  get byteLength(): number {
    return this.bytes?.length ?? this.text.length;
  }

  cut(start: number, end: number): string {
    if (this.bytes === undefined) return this.text.slice(start, end);
    return UTF8_DECODER.decode(this.bytes.subarray(start, end));
  }

  /** The tokens, comments left out (nothing here reads them), in text order. */
  tokens(): SqlToken[] {
    this.tokenCache ??= scanTokens(this.text).filter((t) => !isComment(t));
    return this.tokenCache;
  }

  /** The tokens that start inside `span`, found by binary search (no copy). */
  window(span: Span): TokenWindow {
    const all = this.tokens();
    return new TokenWindow(all, firstStartingAt(all, span.start), firstStartingAt(all, span.end));
  }
}

/** A run of tokens, indexed from 0; out of range reads undefined. */
class TokenWindow {
  constructor(
    private readonly all: readonly SqlToken[],
    private readonly from: number,
    private readonly to: number,
  ) {}

  get length(): number {
    return this.to - this.from;
  }

  at(i: number): SqlToken | undefined {
    return i < 0 || i >= this.length ? undefined : this.all[this.from + i];
  }

  /** Index of the token starting exactly at `byte`, or -1. */
  indexStartingAt(byte: number): number {
    const i = firstStartingAt(this.all, byte) - this.from;
    return this.at(i)?.start === byte ? i : -1;
  }
}

/** Index of the first token whose start is >= byte. */
function firstStartingAt(tokens: readonly SqlToken[], byte: number): number {
  let lo = 0;
  let hi = tokens.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((tokens[mid]?.start ?? Infinity) < byte) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A byte range [start, end) of the parsed text. */
interface Span {
  start: number;
  end: number;
}

function factsOfText(text: string, depth: number): SqlStatementFacts[] {
  if (depth > MAX_DEPTH) throw new SqlUnjudgeable(`SQL nested deeper than ${MAX_DEPTH} levels (DO, EXECUTE, embedded statements)`);
  if (text.trim() === "") return [];
  const cutter = new TextCutter(text);
  const out: SqlStatementFacts[] = [];
  for (const raw of parseStatements(text)) {
    const start = raw.stmt_location ?? 0;
    const end = raw.stmt_len ? start + raw.stmt_len : cutter.byteLength;
    const { kind, body } = unwrap(raw.stmt);
    out.push(...factsOfStatement(kind, body, { cutter, depth, span: { start, end } }, EMPTY_SCOPE));
  }
  return out;
}

interface StatementContext {
  cutter: TextCutter;
  depth: number;
  /** Where this statement's text lies in cutter.text. */
  span: Span;
}

/** The statement's own entry followed by the entries of what it embeds. */
function factsOfStatement(
  kind: string,
  body: Record<string, unknown>,
  ctx: StatementContext,
  scope: CteScope,
): SqlStatementFacts[] {
  const walker = new Walker(ctx);
  const entry: SqlStatementFacts = {
    verb: verbOf(kind, body),
    tables: [],
    functions: [],
    statement: ctx.cutter.cut(ctx.span.start, ctx.span.end).trim(),
  };
  if (kind === "SelectStmt" && body.intoClause !== undefined) {
    // SELECT ... INTO t: a create (verbs.ts) whose query is a select of its own.
    const { intoClause, ...query } = body;
    walker.node("IntoClause", intoClause, scope);
    walker.embed("SelectStmt", query, ctx.span, scope);
  } else {
    walker.node(kind, body, scope);
  }
  entry.tables = [...walker.tables];
  entry.functions = [...walker.functions];
  return [entry, ...walker.embedded];
}

// ---------------------------------------------------------------- the walk

/**
 * CTE names visible at a point of the tree, one link per enclosing WITH.
 * `names` maps each name of a WITH to its position; a non-recursive CTE
 * sees only the names before its own (`visibleBelow`), the query all.
 */
interface CteScope {
  names: ReadonlyMap<string, number>;
  visibleBelow: number;
  outer: CteScope | undefined;
}

const EMPTY_SCOPE: CteScope = { names: new Map(), visibleBelow: 0, outer: undefined };

function inScope(scope: CteScope, name: string): boolean {
  for (let s: CteScope | undefined = scope; s; s = s.outer) {
    const position = s.names.get(name);
    if (position !== undefined && position < s.visibleBelow) return true;
  }
  return false;
}

const DML_KINDS = new Set(["InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"]);

/** ObjectTypes whose DROP / COMMENT names are relations. */
const RELATION_OBJECT_TYPES = new Set([
  "OBJECT_TABLE",
  "OBJECT_VIEW",
  "OBJECT_MATVIEW",
  "OBJECT_SEQUENCE",
  "OBJECT_FOREIGN_TABLE",
  "OBJECT_INDEX",
]);

/** ObjectTypes named `relation.name` (COMMENT ON COLUMN t.c, DROP TRIGGER tr ON t): the relation counts. */
const OBJECT_ON_A_RELATION_TYPES = new Set(["OBJECT_COLUMN", "OBJECT_TRIGGER", "OBJECT_RULE", "OBJECT_POLICY", "OBJECT_TABCONSTRAINT"]);

/** Collects the tables and functions of one statement and the entries it embeds. */
class Walker {
  readonly tables = new Set<string>();
  readonly functions = new Set<string>();
  readonly embedded: SqlStatementFacts[] = [];

  constructor(private readonly ctx: StatementContext) {}

  /** Walk any JSON value of the tree. */
  value(v: unknown, scope: CteScope): void {
    if (Array.isArray(v)) {
      for (const item of v) this.value(item, scope);
    } else if (isObject(v)) {
      this.object(v, scope);
    }
  }

  /** A node's fields, or a wrapper `{ Kind: {...} }`, or a bare struct. */
  private object(o: Record<string, unknown>, scope: CteScope): void {
    if (isBareRangeVar(o)) {
      this.rangeVar(o, scope);
      return;
    }
    if (o.withClause !== undefined) scope = this.withClause(o.withClause, scope);
    for (const key in o) {
      if (key === "withClause" || key === "typevar") continue; // typevar: CREATE TYPE's name, not a relation
      const v = o[key];
      if (isNodeName(key) && isObject(v)) this.node(key, v, scope);
      else this.value(v, scope);
    }
  }

  /** A node of a known kind. */
  node(kind: string, body: unknown, scope: CteScope): void {
    if (!isObject(body)) return;
    switch (kind) {
      case "RangeVar":
        this.rangeVar(body, scope);
        return;
      case "FuncCall":
        this.addFunction(body.funcname);
        this.object(body, scope);
        return;
      case "CallStmt":
        // funccall is a bare FuncCall.
        if (isObject(body.funccall)) this.node("FuncCall", body.funccall, scope);
        return;
      case "InsertStmt":
      case "UpdateStmt":
      case "DeleteStmt":
      case "MergeStmt": {
        const inner = body.withClause !== undefined ? this.withClause(body.withClause, scope) : scope;
        // The target is always a real table, never a CTE of the same name.
        if (isObject(body.relation)) this.addTable(body.relation);
        this.object(withoutKey(withoutKey(body, "withClause"), "relation"), inner);
        return;
      }
      case "ExplainStmt":
        if (explainAnalyzes(body)) this.embedStatement(body.query, this.locateExplained(), scope);
        else this.value(body.query, scope);
        this.value(withoutKey(body, "query"), scope);
        return;
      case "PrepareStmt":
        this.embedStatement(body.query, this.locateAfterKeyword("as"), scope);
        this.value(withoutKey(body, "query"), scope);
        return;
      case "DeclareCursorStmt":
        this.embedStatement(body.query, this.locateAfterKeyword("for"), scope);
        return;
      case "CreateTableAsStmt":
        this.value(body.into, scope);
        this.embedStatement(body.query, this.locateCreateTableAsQuery(), scope);
        return;
      case "CopyStmt":
        if (body.query !== undefined) this.embedStatement(body.query, this.locateParenthesized(), scope);
        this.value(withoutKey(body, "query"), scope);
        return;
      case "DoStmt":
        this.doBlock(body);
        return;
      case "DropStmt":
        if (RELATION_OBJECT_TYPES.has(String(body.removeType))) {
          for (const name of asArray(body.objects)) this.addNameList(name, false);
        } else if (OBJECT_ON_A_RELATION_TYPES.has(String(body.removeType))) {
          for (const name of asArray(body.objects)) this.addNameList(name, true);
        }
        this.object(withoutKey(body, "objects"), scope);
        return;
      case "CommentStmt":
      case "SecLabelStmt":
        if (RELATION_OBJECT_TYPES.has(String(body.objtype))) this.addNameList(body.object, false);
        else if (OBJECT_ON_A_RELATION_TYPES.has(String(body.objtype))) this.addNameList(body.object, true);
        this.object(withoutKey(body, "object"), scope);
        return;
    }
    this.object(body, scope);
  }

  /** Push a WITH clause's CTE names; data-modifying CTE bodies get entries of their own. */
  private withClause(w: unknown, outer: CteScope): CteScope {
    if (!isObject(w)) return outer;
    const ctes = asArray(w.ctes)
      .map((c) => (isObject(c) && isObject(c.CommonTableExpr) ? c.CommonTableExpr : undefined))
      .filter((c) => c !== undefined);
    const names = new Map<string, number>();
    for (const [position, cte] of ctes.entries()) if (!names.has(String(cte.ctename))) names.set(String(cte.ctename), position);
    // A recursive WITH sees all its names everywhere; otherwise a CTE sees those before it.
    const recursive = w.recursive === true;
    for (const [position, cte] of ctes.entries()) {
      const seen: CteScope = { names, visibleBelow: recursive ? Infinity : position, outer };
      const { kind } = isObject(cte.ctequery) ? unwrap(cte.ctequery) : { kind: "" };
      if (DML_KINDS.has(kind)) this.embedStatement(cte.ctequery, this.locateCteBody(cte), seen);
      else this.value(cte.ctequery, seen);
      this.value(withoutKey(cte, "ctequery"), seen);
    }
    return { names, visibleBelow: Infinity, outer };
  }

  /** An embedded statement: an entry of its own, its facts also this statement's. */
  private embedStatement(node: unknown, span: Span | undefined, scope: CteScope): void {
    if (!isObject(node)) return;
    const { kind, body } = unwrap(node);
    this.embed(kind, body, span ?? this.ctx.span, scope);
  }

  embed(kind: string, body: Record<string, unknown>, span: Span, scope: CteScope): void {
    const depth = this.ctx.depth + 1;
    if (depth > MAX_DEPTH) throw new SqlUnjudgeable(`statements nested deeper than ${MAX_DEPTH} levels`);
    const entries = factsOfStatement(kind, body, { ...this.ctx, span, depth }, scope);
    this.absorb(entries, true);
  }

  /** Take the tables and functions of `entries`, and keep the entries (or all but the first). */
  private absorb(entries: SqlStatementFacts[], keepFirst: boolean): void {
    for (const e of entries) {
      for (const t of e.tables) this.tables.add(t);
      for (const f of e.functions) this.functions.add(f);
    }
    this.embedded.push(...(keepFirst ? entries : entries.slice(1)));
  }

  private rangeVar(rv: Record<string, unknown>, scope: CteScope): void {
    if (rv.schemaname === undefined && rv.catalogname === undefined && inScope(scope, String(rv.relname))) return;
    this.addTable(rv);
    this.value(rv.alias, scope);
  }

  private addTable(rv: Record<string, unknown>): void {
    const parts = [rv.catalogname, rv.schemaname, rv.relname].filter((p) => typeof p === "string");
    if (parts.length > 0) this.tables.add(parts.join("."));
  }

  private addFunction(funcname: unknown): void {
    const parts = asArray(funcname).map(stringOf).filter((p) => p !== undefined);
    if (parts.length > 0) this.functions.add(parts.join("."));
  }

  /** `{ List: { items: [String...] } }`: a qualified name; for an object on a relation, the last part is dropped. */
  private addNameList(list: unknown, onRelation: boolean): void {
    if (!isObject(list) || !isObject(list.List)) return;
    const parts = asArray(list.List.items).map(stringOf).filter((p) => p !== undefined);
    if (onRelation) parts.pop();
    if (parts.length > 0) this.tables.add(parts.join("."));
  }

  // ------------------------------------------------------------ DO blocks

  private doBlock(body: Record<string, unknown>): void {
    let language = "plpgsql";
    let code: string | undefined;
    for (const arg of asArray(body.args)) {
      const def = isObject(arg) && isObject(arg.DefElem) ? arg.DefElem : undefined;
      if (def?.defname === "language") language = stringOf(def.arg) ?? language;
      if (def?.defname === "as") code = stringOf(def.arg);
    }
    if (language !== "plpgsql") throw new SqlUnjudgeable(`DO block in language ${language} cannot be judged`);
    if (code === undefined) return;
    this.plpgsql(parsePlPgSqlBody(code), undefined);
  }

  /**
   * Walk a PL/pgSQL tree. Every PLpgSQL_expr is SQL: a whole statement
   * (parseMode 0) gets entries; an expression (2) or assignment (3..5) only
   * lends its tables and functions. `dynamic` marks the expression of an
   * EXECUTE: its value is SQL text, judged only when it is a literal.
   */
  private plpgsql(v: unknown, dynamic: "dynamic" | undefined): void {
    if (Array.isArray(v)) {
      for (const item of v) this.plpgsql(item, undefined);
      return;
    }
    if (!isObject(v)) return;
    for (const key of bodiesLast(v)) {
      const child = v[key];
      if (key === "PLpgSQL_expr" && isObject(child)) {
        this.plpgsqlExpr(child, dynamic);
      } else if (key in TRANSACTION_CONTROL) {
        const verb = TRANSACTION_CONTROL[key] ?? "commit";
        this.embedded.push({ verb, tables: [], functions: [], statement: verb.toUpperCase() });
      } else if (isObject(child) && Object.hasOwn(DYNAMIC_SQL_FIELDS, key)) {
        const fields = DYNAMIC_SQL_FIELDS[key] ?? [];
        for (const f in child) this.plpgsql(child[f], fields.includes(f) ? "dynamic" : undefined);
      } else {
        this.plpgsql(child, undefined);
      }
    }
  }

  private plpgsqlExpr(expr: Record<string, unknown>, dynamic: "dynamic" | undefined): void {
    const query = typeof expr.query === "string" ? expr.query : "";
    const mode = typeof expr.parseMode === "number" ? expr.parseMode : 0;
    const depth = this.ctx.depth + 1;
    if (dynamic) {
      const literal = stringLiteral(query);
      if (literal === undefined) {
        throw new SqlUnjudgeable("DO block runs dynamic SQL (EXECUTE of a value that is not a string literal)");
      }
      this.absorb(factsOfText(literal, depth), true);
    } else if (mode === RAW_PARSE_DEFAULT) {
      this.absorb(factsOfText(query, depth), true);
    } else {
      const expression = mode === RAW_PARSE_PLPGSQL_EXPR ? query : assignedExpression(query);
      if (expression === undefined) throw new SqlUnjudgeable(`PL/pgSQL assignment not understood: ${query}`);
      this.absorb(expressionFacts(expression, depth), false);
    }
  }

  // ------------------------------------------------------------ locating embedded text

  private tokens(): TokenWindow {
    return this.ctx.cutter.window(this.ctx.span);
  }

  /** EXPLAIN [(options)] [ANALYZE] [VERBOSE] <statement>. */
  private locateExplained(): Span | undefined {
    const tokens = this.tokens();
    let i = 1;
    if (tokens.at(i)?.text === "(") i = skipParens(tokens, i);
    while (EXPLAIN_WORDS.has(lower(tokens.at(i)))) i++;
    return this.rest(tokens, i);
  }

  /** PREPARE name [(types)] AS <statement>; DECLARE name ... FOR <query>. */
  private locateAfterKeyword(keyword: string): Span | undefined {
    const tokens = this.tokens();
    const i = indexAtDepth0(tokens, (t) => lower(t) === keyword && t.keywordName !== "NO_KEYWORD");
    return i < 0 ? undefined : this.rest(tokens, i + 1);
  }

  /** CREATE ... AS <query> [WITH [NO] DATA]. */
  private locateCreateTableAsQuery(): Span | undefined {
    const tokens = this.tokens();
    const i = indexAtDepth0(tokens, (t) => lower(t) === "as" && t.keywordName !== "NO_KEYWORD");
    if (i < 0) return undefined;
    let last = tokens.length;
    if (lower(tokens.at(last - 1)) === "data") {
      last--;
      if (lower(tokens.at(last - 1)) === "no") last--;
      if (lower(tokens.at(last - 1)) === "with") last--;
    }
    const first = tokens.at(i + 1);
    const end = tokens.at(last - 1);
    return first && end && last > i + 1 ? { start: first.start, end: end.end } : undefined;
  }

  /** COPY ( <query> ) TO ...: the query is the first parenthesised group. */
  private locateParenthesized(): Span | undefined {
    const tokens = this.tokens();
    for (let i = 0; i < tokens.length; i++) if (tokens.at(i)?.text === "(") return innerOfParens(tokens, i);
    return undefined;
  }

  /** name [(columns)] AS [NOT] [MATERIALIZED] ( <statement> ) */
  private locateCteBody(cte: Record<string, unknown>): Span | undefined {
    if (typeof cte.location !== "number") return undefined;
    const tokens = this.tokens();
    let i = tokens.indexStartingAt(cte.location) + 1;
    if (i <= 0) return undefined;
    if (tokens.at(i)?.text === "(") i = skipParens(tokens, i);
    if (lower(tokens.at(i)) !== "as") return undefined;
    i++;
    while (lower(tokens.at(i)) === "not" || lower(tokens.at(i)) === "materialized") i++;
    return tokens.at(i)?.text === "(" ? innerOfParens(tokens, i) : undefined;
  }

  private rest(tokens: TokenWindow, from: number): Span | undefined {
    const first = tokens.at(from);
    return first ? { start: first.start, end: this.ctx.span.end } : undefined;
  }
}

// ---------------------------------------------------------------- PL/pgSQL helpers

/** RawParseMode (parser/parser.h). */
const RAW_PARSE_DEFAULT = 0;
const RAW_PARSE_PLPGSQL_EXPR = 2;

/** PL/pgSQL statements whose named expression is SQL text computed at run time. */
const DYNAMIC_SQL_FIELDS: Readonly<Record<string, readonly string[]>> = {
  PLpgSQL_stmt_dynexecute: ["query"], // EXECUTE expr
  PLpgSQL_stmt_dynfors: ["query"], // FOR r IN EXECUTE expr
  PLpgSQL_stmt_open: ["dynquery"], // OPEN c FOR EXECUTE expr
  PLpgSQL_stmt_return_query: ["dynquery"], // RETURN QUERY EXECUTE expr
};

/** PL/pgSQL statement lists that run after the statement's own expressions (FOR's query before its body). */
const NESTED_BODIES = new Set(["body", "then_body", "elsif_list", "else_body", "exceptions", "action"]);

function bodiesLast(o: Record<string, unknown>): string[] {
  const keys = Object.keys(o);
  return [...keys.filter((k) => !NESTED_BODIES.has(k)), ...keys.filter((k) => NESTED_BODIES.has(k))];
}

/** COMMIT / ROLLBACK inside a DO block (PostgreSQL 11+): PL/pgSQL statements, not SQL. */
const TRANSACTION_CONTROL: Readonly<Record<string, string>> = Object.assign(Object.create(null) as Record<string, string>, {
  PLpgSQL_stmt_commit: "commit",
  PLpgSQL_stmt_rollback: "rollback",
});

/** Tables and functions of an expression, as `SELECT <expr>`; its first entry is not a statement. */
function expressionFacts(expression: string, depth: number): SqlStatementFacts[] {
  const entries = factsOfText(`SELECT ${expression}`, depth);
  if (entries.length === 0) throw new SqlUnjudgeable(`PL/pgSQL expression not understood: ${expression}`);
  return entries;
}

/** The value of an expression that is one string literal ('...', E'...', $$...$$), else undefined. */
function stringLiteral(expression: string): string | undefined {
  const stmts = parseStatements(`SELECT ${expression}`);
  if (stmts.length !== 1) return undefined;
  const select = stmts[0]?.stmt.SelectStmt;
  if (!isObject(select) || Object.keys(select).some((k) => !SELECT_LITERAL_KEYS.has(k))) return undefined;
  const targets = asArray(select.targetList);
  const target = targets.length === 1 && isObject(targets[0]) ? targets[0].ResTarget : undefined;
  if (!isObject(target) || !isObject(target.val) || !isObject(target.val.A_Const)) return undefined;
  return stringOf(target.val.A_Const.sval);
}

const SELECT_LITERAL_KEYS = new Set(["targetList", "limitOption", "op"]);

/** `target := expr` (or `target = expr`): the expression after the first assignment operator. */
function assignedExpression(query: string): string | undefined {
  const cutter = new TextCutter(query);
  const tokens = cutter.window({ start: 0, end: cutter.byteLength });
  const i = indexAtDepth0(tokens, (t) => t.text === ":=" || t.text === "=");
  const first = tokens.at(i + 1);
  return i < 0 || !first ? undefined : cutter.cut(first.start, cutter.byteLength);
}

// ---------------------------------------------------------------- token helpers

const EXPLAIN_WORDS = new Set(["analyze", "analyse", "verbose"]);

function lower(t: SqlToken | undefined): string {
  return t ? t.text.toLowerCase() : "";
}

function isComment(t: SqlToken): boolean {
  return t.text.startsWith("--") || t.text.startsWith("/*");
}

/** Index just past the parenthesis group opening at `open`. */
function skipParens(tokens: TokenWindow, open: number): number {
  let depth = 0;
  for (let i = open; i < tokens.length; i++) {
    const text = tokens.at(i)?.text;
    if (text === "(" || text === "[") depth++;
    else if (text === ")" || text === "]") depth--;
    if (depth === 0) return i + 1;
  }
  return tokens.length;
}

function innerOfParens(tokens: TokenWindow, open: number): Span | undefined {
  const close = skipParens(tokens, open) - 1;
  const first = tokens.at(open + 1);
  const last = tokens.at(close - 1);
  if (tokens.at(close)?.text !== ")" || !first || !last || close <= open + 1) return undefined;
  return { start: first.start, end: last.end };
}

function indexAtDepth0(tokens: TokenWindow, match: (t: SqlToken) => boolean): number {
  let depth = 0;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens.at(i);
    if (!t) break;
    if (t.text === "(" || t.text === "[") depth++;
    else if (t.text === ")" || t.text === "]") depth--;
    else if (depth === 0 && match(t)) return i;
  }
  return -1;
}

// ---------------------------------------------------------------- JSON helpers

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function asArray(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** Node kinds are capitalised (`RangeVar`, `A_Expr`); fields are not. */
function isNodeName(key: string): boolean {
  const c = key.charCodeAt(0);
  return c >= 65 && c <= 90;
}

/** A RangeVar in a field typed RangeVar (`relation`, `rel`, `view`...): stored without its wrapper. */
function isBareRangeVar(o: Record<string, unknown>): boolean {
  if (typeof o.relname !== "string") return false;
  for (const key in o) if (!RANGE_VAR_FIELDS.has(key)) return false;
  return true;
}

const RANGE_VAR_FIELDS = new Set(["catalogname", "schemaname", "relname", "inh", "relpersistence", "alias", "location"]);

/** `{ Kind: body }` -> kind and body. */
function unwrap(node: Record<string, unknown>): { kind: string; body: Record<string, unknown> } {
  for (const kind in node) {
    const body = node[kind];
    return { kind, body: isObject(body) ? body : {} };
  }
  return { kind: "", body: {} };
}

/** `{ String: { sval } }` -> sval. */
function stringOf(v: unknown): string | undefined {
  if (!isObject(v)) return undefined;
  const s = v.String;
  if (isObject(s)) return typeof s.sval === "string" ? s.sval : "";
  return typeof v.sval === "string" ? v.sval : undefined;
}

function withoutKey(o: Record<string, unknown>, key: string): Record<string, unknown> {
  const { [key]: _dropped, ...rest } = o;
  return rest;
}

function explainAnalyzes(body: Record<string, unknown>): boolean {
  return asArray(body.options).some((o) => {
    const def = isObject(o) && isObject(o.DefElem) ? o.DefElem : undefined;
    if (def?.defname !== "analyze") return false;
    // EXPLAIN (ANALYZE false) does not run the statement; any other value (or none) does.
    const arg = isObject(def.arg) ? def.arg : undefined;
    const value = stringOf(arg)?.toLowerCase() ?? (isObject(arg?.Boolean) ? String(arg.Boolean.boolval === true) : undefined);
    return !(value === "false" || value === "off" || value === "0" || value === "no");
  });
}
