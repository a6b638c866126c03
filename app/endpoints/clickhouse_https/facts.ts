// What rules on a clickhouse_https endpoint see: the request as the http
// family has it, and the SQL it runs as the sql family (ClickHouse dialect).
// ClickHouse's HTTP interface runs the `query` parameter followed by the
// body (a newline between them); an INSERT's data after VALUES or FORMAT is
// never read as SQL. The facets are unknown (fail closed) when the SQL cannot
// be known from what was read: a body cut at the inspection limit (unless the
// URL already holds a whole INSERT head), a compressed body (`decompress`),
// or a `query`, `database` or `user` parameter given twice.
// sql.settings: the URL parameters ClickHouse takes as settings, under the
// SETTINGS clause; sql.database: the `database` parameter or
// X-ClickHouse-Database, else "default"; sql.user: the name the agent gave.
import { parseStatements } from "../../families/sql/dialect.ts";
import type { SqlFacts } from "../../families/sql/family.ts";
import type { ClickHouseHttpFacts } from "../../families/clickhouse_http.ts";
import type { HttpFacts } from "../../policy/types.ts";
import { SETTING_WIRE_KINDS } from "../clickhouse_native/wire/settings.ts";

const decoder = new TextDecoder("utf-8", { fatal: false });

export function clickhouseHttpFacts(http: HttpFacts, target: string, body: Uint8Array | undefined, bodyTruncated: boolean): ClickHouseHttpFacts {
  const q = target.indexOf("?");
  const params = new URLSearchParams(q < 0 ? "" : target.slice(q + 1));
  const single = (name: string): string | undefined | null => {
    const all = params.getAll(name);
    return all.length > 1 ? null : all[0];
  };
  const database = single("database");
  const user = single("user");
  const queryParam = single("query");
  const headerUser = http.headers["x-clickhouse-user"];
  const basicUser = basicUserOf(http.headers["authorization"]);
  const base = {
    database: (typeof database === "string" && database !== "" ? database : http.headers["x-clickhouse-database"]) || "default",
    user: (typeof user === "string" ? user : undefined) ?? headerUser ?? basicUser ?? "default",
  };
  const bodyText = body && body.length > 0 ? decoder.decode(body) : "";
  const text = queryParam ? (bodyText ? `${queryParam}\n${bodyText}` : queryParam) : bodyText;
  const unknown = (why: string): SqlFacts => ({ ...base, text, unknownReason: why });
  let sql: SqlFacts;
  if (database === null || user === null || queryParam === null) sql = unknown("a parameter given twice");
  else if (params.has("decompress") && params.get("decompress") !== "0") sql = unknown("a compressed body");
  else {
    // A cut body is only judged when the URL's query is a whole INSERT head (the body is its data).
    const source = bodyTruncated ? (queryParam ?? "") : text;
    const parsed = parseStatements("clickhouse", source);
    if (bodyTruncated && !(parsed.ok && parsed.statements.length === 1 && parsed.statements[0]!.verb === "insert")) {
      sql = unknown("the body was cut at the inspection limit");
    } else if (!parsed.ok) sql = unknown(parsed.error);
    else if (parsed.statements.length === 0) sql = unknown("an empty query");
    else if (parsed.statements.length > 1) sql = unknown("several statements (ClickHouse runs one per request)");
    else {
      const s = parsed.statements[0]!;
      const settings: Record<string, string> = {};
      for (const [k, v] of params) if (SETTING_WIRE_KINDS.has(k)) settings[k] = v;
      sql = { ...base, text, facets: { ...s, settings: { ...settings, ...(s.settings ?? {}) } } };
    }
  }
  return { http, sql };
}

function basicUserOf(authorization: string | undefined): string | undefined {
  const m = /^basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authorization ?? "");
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return colon < 0 ? decoded : decoded.slice(0, colon);
}
