// The clickhouse_http family: ClickHouse's HTTP interface, judged as HTTP
// (`http.*`, as the http family) and as the SQL it carries (`sql.*`, as the
// sql family, read by the ClickHouse dialect from the `query` parameter and
// the body). Endpoint type clickhouse_https.
import { createHash } from "node:crypto";
import type { HttpFacts } from "../policy/types.ts";
import { baseEnvironment } from "./cel-base.ts";
import { httpCelValue, httpFamily, readsHttpBody, withHttpVariable } from "./http.ts";
import { SQL_STATEMENT_TYPE, readsParsedSql, sqlCelValue, sqlFamily, type SqlFacts } from "./sql/family.ts";
import type { FamilyDefinition } from "./types.ts";

export interface ClickHouseHttpFacts {
  http: HttpFacts;
  sql: SqlFacts;
}

const environment = withHttpVariable(baseEnvironment()).registerType("SqlStatement", SQL_STATEMENT_TYPE).registerVariable("sql", "SqlStatement");

export const clickhouseHttpFamily: FamilyDefinition<ClickHouseHttpFacts> = {
  name: "clickhouse_http",
  variable: "http",
  environment,
  celValue: (f) => httpCelValue(f.http),
  alsoSees: { variables: ["sql"], values: (f) => ({ sql: sqlCelValue(f.sql) }) },
  // The SQL comes from the body as often as from the URL: parsing it needs the body.
  readsDeferred: (ast) => readsHttpBody(ast) || readsParsedSql(ast),
  summary: (f) => sqlFamily.summary(f.sql),
  action: (f) => ({ ...httpFamily.action(f.http), ...sqlFamily.action(f.sql) }),
  fingerprint: (f) => createHash("sha256").update(`${httpFamily.fingerprint(f.http)}\0${sqlFamily.fingerprint(f.sql)}`).digest("hex"),
};
