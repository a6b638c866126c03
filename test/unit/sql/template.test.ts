// Literal templates (template.ts) and the cache keyed by them (index.ts): texts
// that differ only in numbers and plain strings share facts without a parse,
// but only where no literal value can change the facts, and `statement` is
// always the real text.
import { beforeAll, expect, test } from "bun:test";
import { clearSqlFactsCache, loadSqlParser, sqlFacts, sqlFactsCacheStats, type SqlParseResult } from "../../../app/families/sql/index.ts";
import { literalTemplate } from "../../../app/families/sql/template.ts";

beforeAll(async () => {
  await loadSqlParser();
});

test("numbers become 0 and plain strings '', everything else is kept as written", () => {
  expect(literalTemplate("SELECT abalance FROM pgbench_accounts WHERE aid = 42;")).toBe("SELECT abalance FROM pgbench_accounts WHERE aid = 0;");
  expect(literalTemplate("select * from t1 where a = 'it''s' and b in (1.5, -2, 3.) limit 10")).toBe("select * from t1 where a = '' and b in (0, -0, 0) limit 0");
  expect(literalTemplate(`select "x""1" , "2" from "t 3" where c = $12`)).toBe(`select "x""1" , "2" from "t 3" where c = $12`);
  expect(literalTemplate("select 'é' ,\n\t'a'\n'b'")).toBe("select '' ,\n\t''\n''");
  expect(literalTemplate("insert into t values (1)")).toBe("insert into t values (0)");
});

test("whatever the scan cannot vouch for gives no template", () => {
  for (const text of [
    "select 1 -- comment",
    "select /* c */ 1",
    "select E'a\\nb'",
    "select 'a\\'",
    "select B'101', 1",
    "select X'1F'",
    "select N'x'",
    "select U&'d\\0061t'",
    "select $$body$$",
    "select $tag$x$tag$",
    "select a$b from t",
    "select 1e5",
    "select 0x1F",
    "select 1_000",
    "select .5",
    "select t.1",
    "select 1.2.3",
    "select 'unclosed",
    'select "unclosed',
    "select 1\0",
    "select 1\x01",
  ]) {
    expect({ text, template: literalTemplate(text) }).toEqual({ text, template: undefined });
  }
});

/** The facts of `text` from a parse of its own (cache cleared first). */
function parsedAlone(text: string): SqlParseResult {
  clearSqlFactsCache();
  return sqlFacts(text);
}

test("a text that differs only in literals takes the facts of the template, with its own statement", () => {
  clearSqlFactsCache();
  sqlFacts("SELECT abalance FROM pgbench_accounts WHERE aid = 1;");
  const second = sqlFacts("SELECT abalance FROM pgbench_accounts WHERE aid = 987654;");
  expect(sqlFactsCacheStats().templateHits).toBe(1);
  expect(second).toEqual({ ok: true, statements: [{ verb: "select", tables: ["pgbench_accounts"], functions: [], statement: "SELECT abalance FROM pgbench_accounts WHERE aid = 987654" }] });
  expect(Object.isFrozen(second)).toBe(true);
  if (!second.ok) throw new Error(second.error);
  expect(Object.isFrozen(second.statements[0])).toBe(true);
  // Not kept under its own text: every text of a template would push real entries out.
  expect(sqlFactsCacheStats().entries).toBe(1);
});

test("a template hit gives exactly what a parse of the text itself gives", () => {
  const families = [
    ["SELECT abalance FROM pgbench_accounts WHERE aid = 1;", "SELECT abalance FROM pgbench_accounts WHERE aid = 22;"],
    ["  update public.users set name = 'ada' where id = 1  ", "  update public.users set name = 'grace''s' where id = 2000  "],
    ["insert into t (a, b) values (1, 'x') returning lower(b)", "insert into t (a, b) values (2.5, '') returning lower(b)"],
    ["delete from s.t where a > 3;", "delete from s.t where a > 4;"],
    ["select count(*) from t where d > now() - interval '1 day' limit 5", "select count(*) from t where d > now() - interval '7 days' limit 50"],
    ["select * from t where a = $1 and b = 'x'", "select * from t where a = $1 and b = 'yy'"],
  ];
  for (const [first, second] of families) {
    const expected = parsedAlone(second!);
    clearSqlFactsCache();
    sqlFacts(first!);
    const before = sqlFactsCacheStats().templateHits;
    expect({ text: second, facts: sqlFacts(second!) }).toEqual({ text: second, facts: expected });
    expect({ text: second, hit: sqlFactsCacheStats().templateHits }).toEqual({ text: second, hit: before + 1 });
  }
});

test("results a literal can change never come from a template", () => {
  const pairs = [
    // EXPLAIN (ANALYZE <value>) runs its statement or not.
    ["explain (analyze 0) delete from t", "explain (analyze 1) delete from t"],
    ["explain (analyze 'off') delete from t", "explain (analyze 'on') delete from t"],
    // A DO body is a string the facets parse.
    ["do 'begin perform 1; end'", "do 'begin delete from t; end'"],
    // Several statements, or one with embedded ones (SELECT INTO is create + select).
    ["select 1; delete from t where a = 1", "select 2; delete from t where a = 2"],
    ["select 1 into t2 from t", "select 2 into t2 from t"],
  ];
  for (const [first, second] of pairs) {
    const expected = parsedAlone(second!);
    clearSqlFactsCache();
    sqlFacts(first!);
    expect({ text: second, facts: sqlFacts(second!) }).toEqual({ text: second, facts: expected });
    expect(sqlFactsCacheStats().templateHits).toBe(0);
  }
  const analyzed = parsedAlone("explain (analyze 1) delete from t");
  expect(analyzed.ok && analyzed.statements.map((s) => s.verb)).toEqual(["explain", "delete"]);
});
