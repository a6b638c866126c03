// ClickHouse SQL -> the sql family's facets, at the token level (no
// maintained JavaScript parser of ClickHouse's dialect exists). Exact for
// what it recognises; for anything else the facets are unknown, so a rule
// that reads them fails closed.
//
//  1. lex (tokens.ts) one statement at a time up to a top-level `;`; an
//     INSERT's inline data (after VALUES, or after FORMAT name) is not SQL
//     and is never lexed: it ends the text;
//  2. the statement's head by its verb: the object named after TABLE / VIEW /
//     DATABASE / INTO, IF [NOT] EXISTS, ON CLUSTER, RENAME's pairs, USE's
//     database, SET's settings;
//  3. the rest, at every depth: a table (or a table function) after FROM,
//     JOIN (not ARRAY JOIN), IN (a bare name: `x IN db.t` reads the table),
//     TABLE, INTO, with FROM's comma list; every `name(` as a function;
//     SETTINGS k = v pairs; a top-level FORMAT name.
//
// Facts: `verb` lower case (`with` is a select); `tables` as written, `db.t`
// or `t` (quotes removed; never resolved against the session's database),
// in order of first mention, CTE names (`WITH x AS (...)`) excluded;
// `functions` every name called with parentheses, type and engine names in
// DDL included (over-inclusive, never missing one); `settings` the SETTINGS
// clause (and SET's pairs), values as text; `format` the FORMAT name or "".
// Unknown (ok: false): a lexer error, an unknown verb or object kind, SYSTEM,
// GRANT and the like, a name of three parts or a quoted name with a dot in
// it, a table position holding something else, an unbalanced parenthesis.
import { LexError, tokenize, type Token } from "./tokens.ts";

export interface ClickHouseStatementFacts {
  verb: string;
  tables: string[];
  functions: string[];
  /** This statement's own text (an INSERT's up to its data). */
  statement: string;
  settings: Record<string, string>;
  format: string;
  /** USE's database. */
  database?: string;
}

export type ClickHouseParseResult = { ok: true; statements: ClickHouseStatementFacts[] } | { ok: false; error: string };

class Unknown extends Error {}

/** Words that open a clause, end a table reference, or are never a bare alias. */
const CLAUSE_WORDS = new Set(
  [
    "where", "prewhere", "group", "order", "limit", "offset", "having", "settings", "format", "final", "sample", "array",
    "left", "right", "inner", "full", "cross", "outer", "any", "all", "asof", "semi", "anti", "global", "join", "union",
    "using", "on", "into", "with", "as", "from", "select", "values", "by", "partition", "engine", "to", "and", "or", "not",
    "in", "is", "like", "ilike", "between", "totals", "paste", "window", "qualify", "except", "intersect", "natural",
  ],
);

/** Words after which `(` groups rather than calls. */
const NOT_CALLED = new Set(
  [
    "in", "values", "using", "as", "on", "from", "join", "where", "prewhere", "having", "and", "or", "not", "select", "by",
    "into", "table", "with", "union", "all", "distinct", "limit", "then", "else", "when", "case", "is", "like", "ilike",
    "between", "global", "settings", "exists", "offset", "any", "over", "partition", "order", "view", "function",
  ],
);

function lower(t: Token | undefined): string | undefined {
  return t?.kind === "word" ? t.text.toLowerCase() : undefined;
}

function isPunct(t: Token | undefined, p: string): boolean {
  return t?.kind === "punct" && t.text === p;
}

function isName(t: Token | undefined): t is Token {
  return t !== undefined && (t.kind === "word" || t.kind === "quoted");
}

/** Splits the text into statements' token lists; an INSERT's inline data ends the text. */
function statementsOf(text: string): { tokens: Token[]; end: number }[] {
  const all = tokenizeUntilData(text);
  const out: { tokens: Token[]; end: number }[] = [];
  let cur: Token[] = [];
  let depth = 0;
  for (const t of all.tokens) {
    if (isPunct(t, "(") || isPunct(t, "[")) depth++;
    if (isPunct(t, ")") || isPunct(t, "]")) depth--;
    if (depth < 0) throw new Unknown("an unbalanced parenthesis");
    if (depth === 0 && isPunct(t, ";")) {
      if (cur.length > 0) out.push({ tokens: cur, end: t.start });
      cur = [];
      continue;
    }
    cur.push(t);
  }
  if (depth !== 0) throw new Unknown("an unbalanced parenthesis");
  if (cur.length > 0) out.push({ tokens: cur, end: all.dataStart ?? cur[cur.length - 1]!.end });
  return out;
}

/**
 * Tokens of the whole text, except an INSERT's inline data: lexing stops
 * after an INSERT's `VALUES` or `FORMAT name` at depth 0 (what follows is
 * read by the format, not the SQL parser).
 */
function tokenizeUntilData(text: string): { tokens: Token[]; dataStart?: number } {
  let atStart = true;
  let inInsert = false;
  let depth = 0;
  let afterFormat = false;
  let stopped: number | undefined;
  const tokens = tokenize(text, (t) => {
    const w = lower(t);
    if (atStart) {
      atStart = false;
      inInsert = w === "insert";
      return false;
    }
    if (isPunct(t, "(") || isPunct(t, "[")) depth++;
    else if (isPunct(t, ")") || isPunct(t, "]")) depth--;
    else if (depth === 0 && isPunct(t, ";")) {
      atStart = true;
      afterFormat = false;
      return false;
    }
    if (!inInsert || depth !== 0) return false;
    const stop = w === "values" || (afterFormat && isName(t));
    afterFormat = w === "format";
    // INSERT ... SELECT: SQL to its end.
    if (w === "select" || w === "with") inInsert = false;
    if (stop) stopped = t.end;
    return stop;
  });
  return stopped === undefined ? { tokens } : { tokens, dataStart: stopped };
}

class Facts {
  readonly tables: string[] = [];
  readonly functions: string[] = [];
  readonly settings: Record<string, string> = {};
  format = "";
  database: string | undefined;
  readonly ctes = new Set<string>();
  addTable(name: string): void {
    if (!this.tables.includes(name)) this.tables.push(name);
  }
  addFunction(name: string): void {
    if (!this.functions.includes(name)) this.functions.push(name);
  }
}

/** A name of one or two parts (`t`, `db.t`) at toks[i]; its text and the index after it. */
function readName(toks: Token[], i: number): { name: string; next: number } {
  const a = toks[i];
  if (!isName(a)) throw new Unknown(`a name was expected ${a === undefined ? "at the end" : `at ${JSON.stringify((a as Token).text)}`}`);
  if (a.kind === "word" && CLAUSE_WORDS.has(a.text.toLowerCase()) && !isPunct(toks[i + 1], ".")) throw new Unknown(`"${a.text}" where a name was expected`);
  const part = (t: Token): string => {
    if (t.kind === "quoted" && (t.text.includes(".") || t.text === "")) throw new Unknown("a quoted name with a dot in it");
    return t.text;
  };
  if (isPunct(toks[i + 1], ".")) {
    const b = toks[i + 2];
    if (!isName(b)) throw new Unknown("a name was expected after the dot");
    if (isPunct(toks[i + 3], ".")) throw new Unknown("a name of three parts");
    return { name: `${part(a)}.${part(b)}`, next: i + 3 };
  }
  return { name: part(a), next: i + 1 };
}

function skipIfExists(toks: Token[], i: number): number {
  if (lower(toks[i]) === "if") {
    if (lower(toks[i + 1]) === "exists") return i + 2;
    if (lower(toks[i + 1]) === "not" && lower(toks[i + 2]) === "exists") return i + 3;
    throw new Unknown("IF without [NOT] EXISTS");
  }
  return i;
}

function skipOnCluster(toks: Token[], i: number): number {
  if (lower(toks[i]) === "on" && lower(toks[i + 1]) === "cluster") {
    if (!isName(toks[i + 2]) && toks[i + 2]?.kind !== "string") throw new Unknown("ON CLUSTER without a name");
    return i + 3;
  }
  return i;
}

/** The table (or table function, or subquery) reference at toks[i]; returns the index after its name (a function's `(` is left to the scan). */
function readTableRef(toks: Token[], i: number, f: Facts): number {
  const t = toks[i];
  if (isPunct(t, "(")) return i;
  const { name, next } = readName(toks, i);
  if (isPunct(toks[next], "(")) {
    if (name.includes(".")) throw new Unknown("a qualified table function");
    f.addFunction(name);
    return next;
  }
  if (!f.ctes.has(name)) f.addTable(name);
  return next;
}

/** SETTINGS k = v[, k = v]* at toks[i]; returns the index after it. */
function readSettings(toks: Token[], i: number, into: Record<string, string>): number {
  for (;;) {
    const k = toks[i];
    if (k?.kind !== "word" || !isPunct(toks[i + 1], "=")) throw new Unknown("SETTINGS not of the form name = value");
    let j = i + 2;
    let sign = "";
    if (isPunct(toks[j], "-") || isPunct(toks[j], "+")) {
      sign = toks[j]!.text === "-" ? "-" : "";
      j++;
    }
    const v = toks[j];
    if (v === undefined || !(v.kind === "number" || v.kind === "string" || (v.kind === "word" && sign === ""))) {
      throw new Unknown(`SETTINGS ${k.text} has a value this reader does not know`);
    }
    into[k.text] = sign + v.text;
    i = j + 1;
    if (!isPunct(toks[i], ",")) return i;
    i++;
  }
}

/**
 * The generic walk over toks[from..]: tables after FROM / JOIN / IN / TABLE /
 * INTO, FROM's comma list, calls, SETTINGS, FORMAT.
 */
function scan(toks: Token[], from: number, f: Facts): void {
  let depth = 0;
  /** Depth at which a FROM list may continue after `,`; -1: not in one. */
  let fromListDepth = -1;
  let i = from;
  while (i < toks.length) {
    const t = toks[i]!;
    const w = lower(t);
    if (isPunct(t, "(") || isPunct(t, "[")) {
      const prev = toks[i - 1];
      if (isPunct(t, "(") && isName(prev) && i - 1 >= from && !(prev.kind === "word" && NOT_CALLED.has(prev.text.toLowerCase())) && !isPunct(toks[i - 2], ".")) {
        f.addFunction(prev.text);
      }
      depth++;
      i++;
      continue;
    }
    if (isPunct(t, ")") || isPunct(t, "]")) {
      depth--;
      if (fromListDepth > depth) fromListDepth = -1;
      i++;
      continue;
    }
    if (isPunct(t, ",") && fromListDepth === depth) {
      i = readTableRef(toks, i + 1, f);
      continue;
    }
    if (w === undefined) {
      i++;
      continue;
    }
    switch (w) {
      case "from": {
        // EXTRACT(x FROM d), TRIM(BOTH x FROM s), SUBSTRING(s FROM 1): FROM inside a call is no table clause.
        if (insideCall(toks, from, i)) {
          i++;
          continue;
        }
        i = readTableRef(toks, i + 1, f);
        fromListDepth = depth;
        continue;
      }
      case "join":
        if (lower(toks[i - 1]) === "array") {
          i++;
          continue;
        }
        i = readTableRef(toks, i + 1, f);
        fromListDepth = -1;
        continue;
      case "in":
        // A bare name after IN is a table (or a set) the server reads.
        if (isName(toks[i + 1]) && !isPunct(toks[i + 2], "(") && !(lower(toks[i + 1]) !== undefined && NOT_CALLED.has(lower(toks[i + 1])!))) {
          i = readTableRef(toks, i + 1, f);
          continue;
        }
        i++;
        continue;
      case "table":
        i = readTableRef(toks, skipIfExists(toks, i + 1), f);
        continue;
      case "into":
        if (lower(toks[i + 1]) === "outfile") {
          i += 2;
          continue;
        }
        i = readTableRef(toks, skipTableWord(toks, i + 1), f);
        continue;
      case "settings":
        i = readSettings(toks, i + 1, f.settings);
        fromListDepth = -1;
        continue;
      case "format":
        if (depth === 0) {
          const n = toks[i + 1];
          if (!isName(n)) throw new Unknown("FORMAT without a name");
          f.format = n.text;
          fromListDepth = -1;
          i += 2;
          continue;
        }
        i++;
        continue;
      default:
        // Clause words end a FROM list; aliases and FINAL do not.
        if (fromListDepth === depth && CLAUSE_WORDS.has(w) && w !== "as" && w !== "final") fromListDepth = -1;
        i++;
    }
  }
  if (depth !== 0) throw new Unknown("an unbalanced parenthesis");
}

function skipTableWord(toks: Token[], i: number): number {
  if (lower(toks[i]) === "function") throw new Unknown("INSERT INTO FUNCTION");
  return lower(toks[i]) === "table" ? i + 1 : i;
}

/** Whether toks[at] sits directly inside a call's parentheses (not a subquery's). */
function insideCall(toks: Token[], from: number, at: number): boolean {
  let depth = 0;
  for (let j = at - 1; j >= from; j--) {
    const t = toks[j]!;
    if (isPunct(t, ")") || isPunct(t, "]")) depth++;
    else if (isPunct(t, "(") || isPunct(t, "[")) {
      if (depth === 0) {
        const prev = toks[j - 1];
        return j - 1 >= from && isName(prev) && !(prev.kind === "word" && NOT_CALLED.has(prev.text.toLowerCase()));
      }
      depth--;
    }
  }
  return false;
}

/** `WITH name AS (` items of a leading WITH clause: names the statement may read as tables. */
function collectCtes(toks: Token[], f: Facts): void {
  let depth = 0;
  for (let i = 1; i < toks.length; i++) {
    const t = toks[i]!;
    if (isPunct(t, "(")) depth++;
    else if (isPunct(t, ")")) depth--;
    else if (depth === 0 && lower(t) === "select") return;
    else if (depth === 0 && isName(t) && lower(toks[i + 1]) === "as" && isPunct(toks[i + 2], "(")) f.ctes.add(t.text);
  }
}

/** Object kinds after CREATE / DROP / DETACH / ATTACH / EXISTS / SHOW CREATE that name a table-like thing. */
function readObjectKind(toks: Token[], i: number): { kind: "table" | "database"; next: number } {
  if (lower(toks[i]) === "temporary") i++;
  const w = lower(toks[i]);
  if (w === "table" || w === "view" || w === "dictionary") return { kind: "table", next: i + 1 };
  if (w === "materialized" && lower(toks[i + 1]) === "view") return { kind: "table", next: i + 2 };
  if (w === "database") return { kind: "database", next: i + 1 };
  throw new Unknown(`an object kind this reader does not know: ${toks[i]?.text ?? "(end)"}`);
}

function statementFacts(toks: Token[], text: string): ClickHouseStatementFacts {
  const f = new Facts();
  const head = lower(toks[0]);
  let verb = head;
  let rest = 1;
  switch (head) {
    case "select":
      break;
    case "with":
      verb = "select";
      collectCtes(toks, f);
      break;
    case "insert": {
      if (lower(toks[1]) !== "into") throw new Unknown("INSERT without INTO");
      const { name, next: after } = readName(toks, skipTableWord(toks, 2));
      f.addTable(name);
      if (isPunct(toks[after], "(")) {
        // The column list: names only.
        let j = after + 1;
        while (j < toks.length && !isPunct(toks[j], ")")) j++;
        rest = j + 1;
      } else rest = after;
      break;
    }
    case "create": {
      let i = 1;
      if (lower(toks[i]) === "or" && lower(toks[i + 1]) === "replace") i += 2;
      const kind = readObjectKind(toks, i);
      i = skipIfExists(toks, kind.next);
      const { name, next } = readName(toks, i);
      if (kind.kind === "table") f.addTable(name);
      i = skipOnCluster(toks, next);
      if (lower(toks[i]) === "to") i = readTableRef(toks, i + 1, f);
      if (lower(toks[i]) === "as" && isName(toks[i + 1]) && lower(toks[i + 1]) !== "select" && lower(toks[i + 1]) !== "with") {
        i = readTableRef(toks, i + 1, f);
      }
      rest = i;
      break;
    }
    case "drop":
    case "detach":
    case "attach": {
      const kind = readObjectKind(toks, 1);
      const { name, next } = readName(toks, skipIfExists(toks, kind.next));
      if (kind.kind === "table") f.addTable(name);
      rest = skipOnCluster(toks, next);
      break;
    }
    case "truncate": {
      let i = 1;
      if (lower(toks[i]) === "temporary") i++;
      if (lower(toks[i]) === "table") i++;
      const { name, next } = readName(toks, skipIfExists(toks, i));
      f.addTable(name);
      rest = skipOnCluster(toks, next);
      break;
    }
    case "alter":
    case "optimize":
    case "check": {
      if (lower(toks[1]) !== "table") throw new Unknown(`${head.toUpperCase()} of something other than a table`);
      const { name, next } = readName(toks, 2);
      f.addTable(name);
      rest = skipOnCluster(toks, next);
      break;
    }
    case "rename": {
      if (lower(toks[1]) !== "table") throw new Unknown("RENAME of something other than a table");
      let i = 2;
      for (;;) {
        const a = readName(toks, i);
        if (lower(toks[a.next]) !== "to") throw new Unknown("RENAME without TO");
        const b = readName(toks, a.next + 1);
        f.addTable(a.name);
        f.addTable(b.name);
        i = b.next;
        if (!isPunct(toks[i], ",")) break;
        i++;
      }
      rest = skipOnCluster(toks, i);
      break;
    }
    case "describe":
    case "desc": {
      verb = "describe";
      const i = lower(toks[1]) === "table" ? 2 : 1;
      rest = readTableRef(toks, i, f);
      break;
    }
    case "exists": {
      let i = 1;
      if (lower(toks[i]) === "temporary") i++;
      const w = lower(toks[i]);
      let kind: "table" | "database" = "table";
      if (w === "table" || w === "dictionary") i++;
      else if (w === "database") {
        kind = "database";
        i++;
      }
      const { name, next } = readName(toks, i);
      if (kind === "table") f.addTable(name);
      rest = next;
      break;
    }
    case "show": {
      const w = lower(toks[1]);
      if (w === "create") {
        const kind = lower(toks[2]) === "temporary" || lower(toks[2]) === "table" || lower(toks[2]) === "view" || lower(toks[2]) === "dictionary" || lower(toks[2]) === "database" || lower(toks[2]) === "materialized"
          ? readObjectKind(toks, 2)
          : { kind: "table" as const, next: 2 };
        const { name, next } = readName(toks, kind.next);
        if (kind.kind === "table") f.addTable(name);
        rest = next;
      } else if (w === "tables" || w === "dictionaries" || w === "databases" || w === "processlist") {
        let i = 2;
        // SHOW TABLES FROM db names a database, not a table.
        if ((w === "tables" || w === "dictionaries") && (lower(toks[i]) === "from" || lower(toks[i]) === "in")) i = readName(toks, i + 1).next;
        if (lower(toks[i]) === "like" || lower(toks[i]) === "ilike") {
          if (toks[i + 1]?.kind !== "string") throw new Unknown("LIKE without a pattern");
          i += 2;
        }
        rest = i;
      } else throw new Unknown(`SHOW ${toks[1]?.text ?? ""} is not known to this reader`);
      break;
    }
    case "use": {
      const d = toks[1];
      if (!isName(d) || toks.length !== 2) throw new Unknown("USE takes one database name");
      f.database = d.text;
      rest = 2;
      break;
    }
    case "set": {
      rest = readSettings(toks, 1, f.settings);
      if (rest !== toks.length) throw new Unknown("SET followed by more than settings");
      break;
    }
    case "kill": {
      const w = lower(toks[1]);
      if (w !== "query" && w !== "mutation") throw new Unknown("KILL of something other than a query or mutation");
      rest = 2;
      break;
    }
    case "delete": {
      if (lower(toks[1]) !== "from") throw new Unknown("DELETE without FROM");
      rest = 1;
      break;
    }
    default:
      throw new Unknown(toks[0] ? `a statement this reader does not know (${toks[0].text})` : "an empty statement");
  }
  scan(toks, rest, f);
  const out: ClickHouseStatementFacts = {
    verb: verb!,
    tables: f.tables,
    functions: f.functions,
    statement: text,
    settings: f.settings,
    format: f.format,
  };
  if (f.database !== undefined) out.database = f.database;
  return out;
}

/** The facts of each statement in `text` (see the header); never throws. */
export function clickhouseFacts(text: string): ClickHouseParseResult {
  if (text.includes("\0")) return { ok: false, error: "cannot judge: the text contains a NUL character" };
  try {
    const statements = statementsOf(text).map((s) => statementFacts(s.tokens, text.slice(s.tokens[0]!.start, s.end).trim()));
    return { ok: true, statements };
  } catch (e) {
    if (e instanceof Unknown || e instanceof LexError) return { ok: false, error: `cannot judge: ${e.message}` };
    // A bug here must not let a statement through unjudged.
    return { ok: false, error: `cannot judge: ${e instanceof Error ? e.message : String(e)}` };
  }
}
