// The sql family: what CEL conditions see as `sql.*` for one SQL statement
// (endpoint types postgres and clickhouse_*). The parsed facets (verb,
// tables, functions, statement; settings and format for ClickHouse) come
// from the endpoint's dialect (dialect.ts); when it rejected the text they
// are unknown, and a condition that reads one fails closed. `database` and `user` come from the session and are always known.
import { createHash } from "node:crypto";
import { astReadsFields, baseEnvironment } from "../cel-base.ts";
import type { FamilyDefinition } from "../types.ts";

/** The facets of one statement, as the parser found them. */
export interface SqlStatementFacets {
  /** Lower case: select, insert, update, delete, create, drop, … */
  verb: string;
  /** Relations read or written, as written (schema-qualified where they are). */
  tables: string[];
  functions: string[];
  /** This statement's own text. */
  statement: string;
  /** ClickHouse: the query's settings (its SETTINGS clause, SET's pairs, the native Query packet's); absent: none. */
  settings?: Readonly<Record<string, string>>;
  /** ClickHouse: the FORMAT name; absent or "": none. */
  format?: string;
}

export interface SqlFacts {
  database: string;
  /** The user the agent named at startup (never the credential's real user). */
  user: string;
  /** The statement as the agent sent it: what the summary shows when it could not be parsed. */
  text: string;
  /** Undefined when the parser rejected the text or the handler did not parse it. */
  facets?: SqlStatementFacets;
  /** Why the facets are unknown, for the log. */
  unknownReason?: string;
}

/** Thrown when a condition reads a facet the parser could not give. */
export class SqlFacetsUnknownError extends Error {
  constructor(reason: string | undefined) {
    super(`the statement's SQL facets are unknown${reason ? ` (${reason})` : ""}`);
  }
}

export class SqlValue {
  readonly #facets: SqlStatementFacets | undefined;
  readonly #why: string | undefined;
  constructor(
    readonly database: string,
    readonly user: string,
    facets: SqlStatementFacets | undefined,
    why: string | undefined,
  ) {
    this.#facets = facets;
    this.#why = why;
  }
  #known(): SqlStatementFacets {
    if (!this.#facets) throw new SqlFacetsUnknownError(this.#why);
    return this.#facets;
  }
  get verb(): string {
    return this.#known().verb;
  }
  get tables(): string[] {
    return this.#known().tables;
  }
  get functions(): string[] {
    return this.#known().functions;
  }
  get statement(): string {
    return this.#known().statement;
  }
  get settings(): Readonly<Record<string, string>> {
    return this.#known().settings ?? NO_SETTINGS;
  }
  get format(): string {
    return this.#known().format ?? "";
  }
}

const NO_SETTINGS: Readonly<Record<string, string>> = Object.freeze({});

/** The fields only a parse can give. */
const PARSED_FIELDS = new Set(["verb", "tables", "functions", "statement", "settings", "format"]);

/** The CEL type of `sql` (families that add it beside their own variable register it too). */
export const SQL_STATEMENT_TYPE = {
  ctor: SqlValue,
  fields: {
    verb: "string",
    tables: "list<string>",
    functions: "list<string>",
    statement: "string",
    settings: "map<string, string>",
    format: "string",
    database: "string",
    user: "string",
  },
};

const environment = baseEnvironment().registerType("SqlStatement", SQL_STATEMENT_TYPE).registerVariable("sql", "SqlStatement");

/** Statements in summaries and approval prompts are cut to this many characters. */
const SUMMARY_CHARS = 200;

export function sqlCelValue(f: SqlFacts): SqlValue {
  return new SqlValue(f.database, f.user, f.facets, f.unknownReason);
}

/** Whether a condition reads a facet only a parse gives. */
export const readsParsedSql = (ast: Parameters<typeof astReadsFields>[0]): boolean => astReadsFields(ast, "sql", PARSED_FIELDS);

export const sqlFamily: FamilyDefinition<SqlFacts> = {
  name: "sql",
  variable: "sql",
  environment,
  celValue: sqlCelValue,
  readsDeferred: readsParsedSql,
  summary: (f) => {
    const verb = f.facets?.verb ?? "unparsed";
    const tables = f.facets && f.facets.tables.length > 0 ? ` ${f.facets.tables.join(", ")}` : "";
    return `${verb}${tables}`;
  },
  action: (f) => ({
    database: f.database,
    user: f.user,
    verb: f.facets?.verb ?? null,
    tables: f.facets?.tables ?? null,
    functions: f.facets?.functions ?? null,
    ...(f.facets?.settings && Object.keys(f.facets.settings).length > 0 ? { settings: f.facets.settings } : {}),
    statement: cut(f.facets?.statement ?? f.text, 4096),
  }),
  fingerprint: (f) => createHash("sha256").update(`sql\0${f.database}\0${f.facets?.statement ?? f.text}`).digest("hex"),
};

export function cut(text: string, max = SUMMARY_CHARS): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
