// What a held request is, in words, for every family: one line for lists
// (CLI, dashboard cards, audit) and the parts a chat message or a model
// prompt shows. An http hold is a request line; an sql hold is a statement
// on a database (method is the verb, path/bodyPreview the statement, the
// headers carry database and user: app/endpoints/postgres/serve.ts).
import type { ApprovalRequest } from "./types.ts";

export interface SqlHold {
  database: string;
  user: string;
  /** Lower case, as rules see sql.verb ("sql" when the statement did not parse). */
  verb: string;
  /** The whole statement as held (redacted, cut at a few KiB). */
  statement: string;
  truncated: boolean;
}

/** The sql parts of a hold, or undefined for any other family. */
export function sqlHold(req: Pick<ApprovalRequest, "family" | "method" | "path" | "headers" | "bodyPreview" | "bodyTruncated">): SqlHold | undefined {
  if (req.family !== "sql") return undefined;
  return {
    database: req.headers.database ?? "?",
    user: req.headers.user ?? "?",
    verb: req.method.toLowerCase(),
    statement: req.bodyPreview || req.path,
    truncated: req.bodyTruncated,
  };
}

/** One line: `GET api.github.com/user`, `sql app@db.internal: delete from users`. */
export function requestLine(req: Pick<ApprovalRequest, "family" | "method" | "host" | "path" | "headers" | "bodyPreview" | "bodyTruncated">): string {
  const sql = sqlHold(req);
  if (sql) return `sql ${sql.database}@${req.host}: ${oneLine(req.path)}`;
  return `${req.method} ${req.host}${req.path}`;
}

/** Newlines and runs of spaces folded, so a statement fits a list row. */
export function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}
