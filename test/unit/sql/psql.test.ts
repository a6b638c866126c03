// The catalog queries psql 15 sends for \d, \dt, \d NAME, \l, \du ... and for
// tab completion (captured from a real server: fixtures/capture-psql-queries.py).
// They must parse and come out as reads of pg_catalog, so a policy that denies
// writes lets psql's meta-commands through.
import { beforeAll, expect, test } from "bun:test";
import { loadSqlParser, sqlFacts } from "../../../app/families/sql/index.ts";
import captured from "./fixtures/psql-queries.json";

beforeAll(async () => {
  await loadSqlParser();
});

const queries: { source: string; query: string }[] = captured.queries;

test("the fixture covers the meta-commands and tab completion", () => {
  const sources = new Set(queries.map((q) => q.source));
  for (const cmd of ["\\d", "\\dt", "\\d users", "\\l", "\\du"]) expect(sources).toContain(cmd);
  expect(queries.filter((q) => q.source.startsWith("tab: ")).length).toBeGreaterThanOrEqual(5);
});

test.each(queries.map((q, i) => [`${q.source} #${i}`, q.query] as const))("%s: a select of catalog tables", (_, query) => {
  const r = sqlFacts(query);
  if (!r.ok) throw new Error(r.error);
  expect(r.statements.length).toBeGreaterThanOrEqual(1);
  for (const s of r.statements) {
    expect(s.verb).toBe("select");
    for (const t of s.tables) expect(t).toMatch(/^(pg_catalog\.|information_schema\.)?pg_|^information_schema\./);
  }
});

test("\\dt reads pg_catalog.pg_class and calls pg_catalog.pg_get_userbyid", () => {
  const dt = queries.find((q) => q.source === "\\dt");
  const r = sqlFacts(dt?.query ?? "");
  if (!r.ok) throw new Error(r.error);
  expect(r.statements[0]?.tables).toEqual(["pg_catalog.pg_class", "pg_catalog.pg_namespace", "pg_catalog.pg_am"]);
  expect(r.statements[0]?.functions).toContain("pg_catalog.pg_get_userbyid");
});
