// sqlFacts: SQL text -> verb, tables, functions and text of each statement it
// runs, through the real PostgreSQL parser. Table-driven: [text, entries].
import { beforeAll, describe, expect, test } from "bun:test";
import { loadSqlParser, MAX_DEPTH, sqlFacts, UNJUDGEABLE_PREFIX } from "../../../app/families/sql/index.ts";
import type { SqlParseResult } from "../../../app/families/sql/index.ts";

beforeAll(async () => {
  await loadSqlParser();
});

/** [verb, tables, functions] of one entry. */
type Brief = [string, string[], string[]];

function briefs(r: SqlParseResult): Brief[] {
  if (!r.ok) throw new Error(`expected ok, got: ${r.error}`);
  return r.statements.map((s) => [s.verb, [...s.tables], [...s.functions]]);
}

function texts(r: SqlParseResult): string[] {
  if (!r.ok) throw new Error(`expected ok, got: ${r.error}`);
  return r.statements.map((s) => s.statement);
}

describe("verb of every statement kind", () => {
  test.each([
    ["SELECT 1", "select"],
    ["VALUES (1), (2)", "select"],
    ["TABLE users", "select"],
    ["SELECT 1 UNION SELECT 2", "select"],
    ["INSERT INTO t VALUES (1)", "insert"],
    ["UPDATE t SET a = 1", "update"],
    ["DELETE FROM t", "delete"],
    ["MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", "merge"],
    ["CREATE TABLE t (a int)", "create"],
    ["CREATE TEMP TABLE t (a int)", "create"],
    ["CREATE INDEX i ON t (a)", "create"],
    ["CREATE VIEW v AS SELECT * FROM t", "create"],
    ["CREATE MATERIALIZED VIEW mv AS SELECT * FROM t", "create"],
    ["CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "create"],
    ["CREATE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'", "create"],
    ["CREATE SCHEMA s", "create"],
    ["CREATE SEQUENCE s", "create"],
    ["CREATE EXTENSION pgcrypto", "create"],
    ["CREATE ROLE r LOGIN", "create"],
    ["CREATE USER u", "create"],
    ["CREATE DATABASE d", "create"],
    ["CREATE TYPE ty AS (a int)", "create"],
    ["CREATE TYPE e AS ENUM ('a')", "create"],
    ["CREATE DOMAIN d AS int", "create"],
    ["CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", "create"],
    ["CREATE POLICY p ON t USING (true)", "create"],
    ["CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING", "create"],
    ["CREATE TABLE n AS SELECT 1", "create"],
    ["SELECT 1 INTO n", "create"],
    ["CREATE AGGREGATE a (int) (sfunc = int4pl, stype = int)", "create"],
    ["CREATE PUBLICATION p FOR ALL TABLES", "create"],
    ["IMPORT FOREIGN SCHEMA r FROM SERVER s INTO l", "import"],
    ["DROP TABLE t", "drop"],
    ["DROP INDEX i", "drop"],
    ["DROP FUNCTION f()", "drop"],
    ["DROP DATABASE d", "drop"],
    ["DROP ROLE r", "drop"],
    ["DROP OWNED BY r", "drop"],
    ["REASSIGN OWNED BY a TO b", "reassign"],
    ["ALTER TABLE t ADD COLUMN b int", "alter"],
    ["ALTER TABLE t RENAME TO u", "alter"],
    ["ALTER TABLE t SET SCHEMA s", "alter"],
    ["ALTER TABLE t OWNER TO r", "alter"],
    ["ALTER ROLE r PASSWORD 'x'", "alter"],
    ["ALTER USER u SET search_path = s", "alter"],
    ["ALTER SYSTEM SET work_mem = '1MB'", "alter"],
    ["ALTER DATABASE d SET x = 1", "alter"],
    ["ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO r", "alter"],
    ["ALTER FUNCTION f() OWNER TO r", "alter"],
    ["ALTER SEQUENCE s RESTART", "alter"],
    ["ALTER TYPE e ADD VALUE 'b'", "alter"],
    ["TRUNCATE t", "truncate"],
    ["GRANT SELECT ON t TO r", "grant"],
    ["GRANT r TO u", "grant"],
    ["REVOKE SELECT ON t FROM r", "revoke"],
    ["REVOKE r FROM u", "revoke"],
    ["COPY t FROM STDIN", "copy"],
    ["COPY t TO STDOUT", "copy"],
    ["CALL p()", "call"],
    ["DO $$BEGIN END$$", "do"],
    ["SET search_path = s", "set"],
    ["SET LOCAL x = 1", "set"],
    ["SET x TO DEFAULT", "set"],
    ["SET TIME ZONE 'UTC'", "set"],
    ["SET CONSTRAINTS ALL DEFERRED", "set"],
    ["SET SESSION AUTHORIZATION r", "set"],
    ["SET ROLE r", "set"],
    ["RESET x", "reset"],
    ["RESET ALL", "reset"],
    ["SHOW x", "show"],
    ["SHOW ALL", "show"],
    ["BEGIN", "begin"],
    ["BEGIN ISOLATION LEVEL SERIALIZABLE", "begin"],
    ["START TRANSACTION", "begin"],
    ["COMMIT", "commit"],
    ["END", "commit"],
    ["COMMIT PREPARED 'x'", "commit"],
    ["ROLLBACK", "rollback"],
    ["ABORT", "rollback"],
    ["ROLLBACK TO SAVEPOINT s", "rollback"],
    ["ROLLBACK PREPARED 'x'", "rollback"],
    ["SAVEPOINT s", "savepoint"],
    ["RELEASE SAVEPOINT s", "release"],
    ["PREPARE TRANSACTION 'x'", "prepare"],
    ["EXECUTE p(1)", "execute"],
    ["DEALLOCATE p", "deallocate"],
    ["DEALLOCATE ALL", "deallocate"],
    ["EXPLAIN SELECT 1", "explain"],
    ["ANALYZE t", "analyze"],
    ["VACUUM t", "vacuum"],
    ["VACUUM ANALYZE t", "vacuum"],
    ["LISTEN c", "listen"],
    ["NOTIFY c, 'x'", "notify"],
    ["UNLISTEN *", "unlisten"],
    ["LOCK TABLE t IN ACCESS EXCLUSIVE MODE", "lock"],
    ["DECLARE c CURSOR FOR SELECT 1", "declare"],
    ["FETCH 10 FROM c", "fetch"],
    ["MOVE 10 IN c", "move"],
    ["CLOSE c", "close"],
    ["CLOSE ALL", "close"],
    ["DISCARD ALL", "discard"],
    ["COMMENT ON TABLE t IS 'x'", "comment"],
    ["SECURITY LABEL ON TABLE t IS 'x'", "label"],
    ["REFRESH MATERIALIZED VIEW mv", "refresh"],
    ["REINDEX TABLE t", "reindex"],
    ["CLUSTER t USING i", "cluster"],
    ["CHECKPOINT", "checkpoint"],
    ["LOAD 'auto_explain'", "load"],
  ])("%s -> %s", (text, verb) => {
    const r = sqlFacts(text);
    if (!r.ok) throw new Error(r.error);
    expect(r.statements[0]?.verb).toBe(verb);
  });
});

describe("tables and functions", () => {
  test.each<[string, Brief[]]>([
    ["SELECT a FROM users", [["select", ["users"], []]]],
    ["SELECT a FROM public.users u", [["select", ["public.users"], []]]],
    ["SELECT * FROM mydb.public.users", [["select", ["mydb.public.users"], []]]],
    ['SELECT * FROM "Public"."Users", USERS', [["select", ["Public.Users", "users"], []]]],
    ["SELECT * FROM a JOIN b USING (id) LEFT JOIN s.c ON c.id = a.id", [["select", ["a", "b", "s.c"], []]]],
    ["SELECT * FROM a, a, b", [["select", ["a", "b"], []]]],
    ["SELECT (SELECT max(x) FROM b) FROM a WHERE EXISTS (SELECT 1 FROM c WHERE c.id IN (SELECT id FROM d))", [["select", ["b", "a", "c", "d"], ["max"]]]],
    ["SELECT * FROM (SELECT * FROM inner_t) sub", [["select", ["inner_t"], []]]],
    ["SELECT * FROM a, LATERAL (SELECT * FROM b WHERE b.x = a.x) l", [["select", ["a", "b"], []]]],
    ["SELECT 1 UNION SELECT x FROM a EXCEPT SELECT y FROM b", [["select", ["a", "b"], []]]],
    ["SELECT lower(name), pg_catalog.pg_get_userbyid(owner), count(*) FROM t", [["select", ["t"], ["lower", "pg_catalog.pg_get_userbyid", "count"]]]],
    ["SELECT nextval('s'), pg_sleep(1), lower(lower(x))", [["select", [], ["nextval", "pg_sleep", "lower"]]]],
    ["SELECT * FROM generate_series(1, 10) g, pg_catalog.pg_ls_dir('.')", [["select", [], ["generate_series", "pg_catalog.pg_ls_dir"]]]],
    ["SELECT count(*) FILTER (WHERE f(x)) OVER (PARTITION BY g(y)) FROM t", [["select", ["t"], ["count", "f", "g"]]]],
    ["SELECT * FROM t WHERE t.a = ANY(ARRAY(SELECT b FROM u))", [["select", ["t", "u"], []]]],
    ["SELECT * FROM t FOR UPDATE", [["select", ["t"], []]]],
    ["INSERT INTO s.t (a) VALUES (now())", [["insert", ["s.t"], ["now"]]]],
    ["INSERT INTO t SELECT * FROM u ON CONFLICT (id) DO UPDATE SET a = excluded.a RETURNING id", [["insert", ["t", "u"], []]]],
    ["UPDATE t SET a = u.a FROM u WHERE t.id = u.id", [["update", ["t", "u"], []]]],
    ["DELETE FROM t USING u WHERE t.id = u.id AND u.x IN (SELECT x FROM v)", [["delete", ["t", "u", "v"], []]]],
    ["MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id)", [["merge", ["t", "s"], []]]],
    ["TRUNCATE a, s.b RESTART IDENTITY", [["truncate", ["a", "s.b"], []]]],
    ["LOCK TABLE a, b IN SHARE MODE", [["lock", ["a", "b"], []]]],
    ["COPY s.t (a, b) FROM STDIN WITH (FORMAT csv)", [["copy", ["s.t"], []]]],
    ["DROP TABLE a, s.b CASCADE", [["drop", ["a", "s.b"], []]]],
    ["DROP VIEW IF EXISTS v", [["drop", ["v"], []]]],
    ["DROP INDEX s.i", [["drop", ["s.i"], []]]],
    ["DROP FUNCTION f(int)", [["drop", [], []]]],
    ["DROP TRIGGER tr ON s.t", [["drop", ["s.t"], []]]],
    ["DROP POLICY p ON t", [["drop", ["t"], []]]],
    ["COMMENT ON CONSTRAINT c ON t IS 'x'", [["comment", ["t"], []]]],
    ["CREATE TABLE t (LIKE s INCLUDING ALL)", [["create", ["t", "s"], []]]],
    ["ALTER TABLE t ATTACH PARTITION p FOR VALUES IN (1)", [["alter", ["t", "p"], []]]],
    ["DROP SCHEMA s", [["drop", [], []]]],
    ["ALTER TABLE s.t ADD COLUMN b int REFERENCES u(id)", [["alter", ["s.t", "u"], []]]],
    ["ALTER TABLE t RENAME COLUMN a TO b", [["alter", ["t"], []]]],
    ["CREATE TABLE s.t (id int PRIMARY KEY, u int REFERENCES users(id))", [["create", ["s.t", "users"], []]]],
    ["CREATE TABLE c () INHERITS (p)", [["create", ["c", "p"], []]]],
    ["CREATE INDEX i ON s.t USING btree (lower(a))", [["create", ["s.t"], ["lower"]]]],
    ["CREATE VIEW v AS SELECT * FROM a JOIN b ON a.id = b.id", [["create", ["v", "a", "b"], []]]],
    ["CREATE TYPE ty AS (a int)", [["create", [], []]]],
    ["GRANT SELECT, INSERT ON s.t, u TO r", [["grant", ["s.t", "u"], []]]],
    ["GRANT USAGE ON SCHEMA s TO r", [["grant", [], []]]],
    ["COMMENT ON TABLE s.t IS 'x'", [["comment", ["s.t"], []]]],
    ["COMMENT ON COLUMN s.t.c IS 'x'", [["comment", ["s.t"], []]]],
    ["VACUUM (VERBOSE) a, s.b", [["vacuum", ["a", "s.b"], []]]],
    ["ANALYZE a", [["analyze", ["a"], []]]],
    ["REFRESH MATERIALIZED VIEW CONCURRENTLY s.mv", [["refresh", ["s.mv"], []]]],
    ["REINDEX TABLE t", [["reindex", ["t"], []]]],
    ["CLUSTER t USING i", [["cluster", ["t"], []]]],
    ["CALL s.p(lower('x'))", [["call", [], ["s.p", "lower"]]]],
    ["EXPLAIN SELECT * FROM t WHERE f(a)", [["explain", ["t"], ["f"]]]],
    ["EXPLAIN (ANALYZE false) DELETE FROM t", [["explain", ["t"], []]]],
  ])("%s", (text, expected) => {
    expect(briefs(sqlFacts(text))).toEqual(expected);
  });
});

describe("CTEs", () => {
  test.each<[string, Brief[]]>([
    ["WITH x AS (SELECT * FROM t) SELECT * FROM x", [["select", ["t"], []]]],
    ["WITH x AS (SELECT * FROM t), y AS (SELECT * FROM x JOIN u USING (id)) SELECT * FROM y, s.x", [["select", ["t", "u", "s.x"], []]]],
    // A non-recursive CTE does not see itself: `t` inside is the real table.
    ["WITH t AS (SELECT * FROM t) SELECT * FROM t", [["select", ["t"], []]]],
    ["WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r", [["select", [], []]]],
    // A CTE's scope ends with its query: the outer `x` is a table again.
    ["SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) a, x", [["select", ["x"], []]]],
    ["(WITH x AS (SELECT 1) SELECT * FROM x) UNION SELECT * FROM x", [["select", ["x"], []]]],
    // The target of a write is a table even when a CTE has its name.
    ["WITH t AS (SELECT 1 AS a) INSERT INTO t SELECT a FROM t", [["insert", ["t"], []]]],
    [
      "WITH d AS (DELETE FROM t WHERE a < now() RETURNING *) SELECT count(*) FROM d",
      [
        ["select", ["t"], ["now", "count"]],
        ["delete", ["t"], ["now"]],
      ],
    ],
    [
      "WITH u AS (UPDATE a SET x = 1 RETURNING id), i AS (INSERT INTO log SELECT id FROM u RETURNING 1) SELECT * FROM b",
      [
        ["select", ["a", "log", "b"], []],
        ["update", ["a"], []],
        ["insert", ["log"], []],
      ],
    ],
    [
      "SELECT * FROM t WHERE id IN (WITH d AS (DELETE FROM u RETURNING id) SELECT id FROM d)",
      [
        ["select", ["t", "u"], []],
        ["delete", ["u"], []],
      ],
    ],
    [
      "WITH d AS (DELETE FROM t RETURNING *) INSERT INTO archive SELECT * FROM d",
      [
        ["insert", ["t", "archive"], []],
        ["delete", ["t"], []],
      ],
    ],
  ])("%s", (text, expected) => {
    expect(briefs(sqlFacts(text))).toEqual(expected);
  });

  test("many data-modifying CTEs: one entry each, with its own text", () => {
    const n = 2000;
    const ctes = Array.from({ length: n }, (_, i) => `d${i} AS (DELETE FROM t${i} RETURNING 1)`);
    const r = sqlFacts(`WITH ${ctes.join(", ")} SELECT 1`);
    expect(texts(r).length).toBe(n + 1);
    expect(texts(r)[n]).toBe(`DELETE FROM t${n - 1} RETURNING 1`);
    expect(briefs(r)[0]?.[1].length).toBe(n);
  });

  test("a data-modifying CTE's entry carries its own text", () => {
    const r = sqlFacts("WITH d AS NOT MATERIALIZED (\n  DELETE FROM t RETURNING *\n) SELECT * FROM d");
    expect(texts(r)).toEqual(["WITH d AS NOT MATERIALIZED (\n  DELETE FROM t RETURNING *\n) SELECT * FROM d", "DELETE FROM t RETURNING *"]);
    const cols = sqlFacts("WITH d (a, b) AS (DELETE FROM t RETURNING a, b) SELECT 1");
    expect(texts(cols)[1]).toBe("DELETE FROM t RETURNING a, b");
  });
});

describe("statements embedded in others", () => {
  test.each<[string, Brief[], string[]]>([
    [
      "EXPLAIN ANALYZE DELETE FROM t",
      [
        ["explain", ["t"], []],
        ["delete", ["t"], []],
      ],
      ["EXPLAIN ANALYZE DELETE FROM t", "DELETE FROM t"],
    ],
    [
      "EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1",
      [
        ["explain", ["t"], []],
        ["update", ["t"], []],
      ],
      ["EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1", "UPDATE t SET a = 1"],
    ],
    [
      "EXPLAIN ANALYZE VERBOSE WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d",
      [
        ["explain", ["t"], []],
        ["select", ["t"], []],
        ["delete", ["t"], []],
      ],
      ["EXPLAIN ANALYZE VERBOSE WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d", "WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d", "DELETE FROM t RETURNING 1"],
    ],
    [
      "PREPARE q (int) AS DELETE FROM t WHERE id = $1",
      [
        ["prepare", ["t"], []],
        ["delete", ["t"], []],
      ],
      ["PREPARE q (int) AS DELETE FROM t WHERE id = $1", "DELETE FROM t WHERE id = $1"],
    ],
    [
      "CREATE TABLE n AS SELECT * FROM s WITH NO DATA",
      [
        ["create", ["n", "s"], []],
        ["select", ["s"], []],
      ],
      ["CREATE TABLE n AS SELECT * FROM s WITH NO DATA", "SELECT * FROM s"],
    ],
    [
      "CREATE MATERIALIZED VIEW mv (a) WITH (fillfactor = 70) AS SELECT a FROM s",
      [
        ["create", ["mv", "s"], []],
        ["select", ["s"], []],
      ],
      ["CREATE MATERIALIZED VIEW mv (a) WITH (fillfactor = 70) AS SELECT a FROM s", "SELECT a FROM s"],
    ],
    [
      "SELECT a, lower(b) INTO TEMP n FROM s",
      [
        ["create", ["n", "s"], ["lower"]],
        ["select", ["s"], ["lower"]],
      ],
      ["SELECT a, lower(b) INTO TEMP n FROM s", "SELECT a, lower(b) INTO TEMP n FROM s"],
    ],
    [
      "COPY (DELETE FROM t RETURNING *) TO STDOUT",
      [
        ["copy", ["t"], []],
        ["delete", ["t"], []],
      ],
      ["COPY (DELETE FROM t RETURNING *) TO STDOUT", "DELETE FROM t RETURNING *"],
    ],
    [
      "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t",
      [
        ["declare", ["t"], []],
        ["select", ["t"], []],
      ],
      ["DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t", "SELECT * FROM t"],
    ],
  ])("%s", (text, expected, statementTexts) => {
    const r = sqlFacts(text);
    expect(briefs(r)).toEqual(expected);
    expect(texts(r)).toEqual(statementTexts);
  });
});

describe("DO blocks", () => {
  test("no SQL inside: only the do entry", () => {
    expect(briefs(sqlFacts("DO $$BEGIN RAISE NOTICE 'hi'; END$$"))).toEqual([["do", [], []]]);
  });

  test("reads only: select entries, tables and functions also the DO's", () => {
    const r = sqlFacts(`DO $body$
DECLARE n int := (SELECT count(*) FROM a); r record;
BEGIN
  FOR r IN SELECT * FROM s.b LOOP
    PERFORM pg_sleep(0);
  END LOOP;
  IF (SELECT max(x) FROM c) > n THEN RAISE NOTICE '%', n; END IF;
END $body$`);
    expect(briefs(r)).toEqual([
      ["do", ["a", "s.b", "c"], ["count", "pg_sleep", "max"]],
      ["select", ["s.b"], []],
      ["select", [], ["pg_sleep"]],
    ]);
    expect(texts(r).slice(1)).toEqual(["SELECT * FROM s.b", "SELECT pg_sleep(0)"]);
  });

  test("writes inside count, each with its own text", () => {
    const r = sqlFacts(`DO LANGUAGE plpgsql $$
DECLARE x int;
BEGIN
  INSERT INTO log VALUES (1);
  UPDATE s.t SET a = 2 WHERE id = 1;
  WITH d AS (DELETE FROM q RETURNING 1) SELECT 1 INTO STRICT x;
  EXECUTE 'DROP TABLE victim';
  EXECUTE $x$TRUNCATE other$x$ USING 1;
  COMMIT;
END $$`);
    expect(briefs(r)).toEqual([
      ["do", ["log", "s.t", "q", "victim", "other"], []],
      ["insert", ["log"], []],
      ["update", ["s.t"], []],
      ["select", ["q"], []],
      ["delete", ["q"], []],
      ["drop", ["victim"], []],
      ["truncate", ["other"], []],
      ["commit", [], []],
    ]);
    expect(texts(r).slice(1)).toEqual([
      "INSERT INTO log VALUES (1)",
      "UPDATE s.t SET a = 2 WHERE id = 1",
      "WITH d AS (DELETE FROM q RETURNING 1) SELECT 1",
      "DELETE FROM q RETURNING 1",
      "DROP TABLE victim",
      "TRUNCATE other",
      "COMMIT",
    ]);
  });

  test("an assignment's subquery lends its tables", () => {
    expect(briefs(sqlFacts("DO $$DECLARE x int; BEGIN x := (SELECT count(*) FROM t); x = f(x); END$$"))).toEqual([["do", ["t"], ["count", "f"]]]);
  });

  test("a DO inside EXECUTE inside DO is followed", () => {
    const r = sqlFacts(`DO $a$BEGIN EXECUTE 'DO $b$BEGIN DELETE FROM deep; END$b$'; END$a$`);
    expect(briefs(r).map((b) => b[0])).toEqual(["do", "do", "delete"]);
    expect(briefs(r)[0]?.[1]).toEqual(["deep"]);
  });

  test.each([
    ["EXECUTE of a variable", "DO $$DECLARE q text := 'DELETE FROM t'; BEGIN EXECUTE q; END$$"],
    ["EXECUTE of format()", "DO $$BEGIN EXECUTE format('DROP TABLE %I', 't'); END$$"],
    ["EXECUTE of a concatenation", "DO $$BEGIN EXECUTE 'DROP TABLE ' || 't'; END$$"],
    ["FOR ... IN EXECUTE", "DO $$DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT ' || '1' LOOP END LOOP; END$$"],
    ["OPEN ... FOR EXECUTE", "DO $$DECLARE c refcursor; BEGIN OPEN c FOR EXECUTE f(); END$$"],
  ])("dynamic SQL that is not a literal fails closed: %s", (_, text) => {
    const r = sqlFacts(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toStartWith(UNJUDGEABLE_PREFIX);
  });

  test("a DO block in another language fails closed", () => {
    const r = sqlFacts("DO LANGUAGE plpython3u $$plpy.execute('DROP TABLE t')$$");
    expect(r).toEqual({ ok: false, error: `${UNJUDGEABLE_PREFIX}DO block in language plpython3u cannot be judged` });
  });

  test("a body the PL/pgSQL parser rejects is a parse error", () => {
    const r = sqlFacts("DO $$BEGIN DELETE FROM; END$$");
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).not.toStartWith(UNJUDGEABLE_PREFIX);
  });

  test("embedded statements nested deeper than MAX_DEPTH fail closed", () => {
    let text = "DELETE FROM t";
    for (let i = 0; i < MAX_DEPTH + 1; i++) text = `WITH d${i} AS (${text} RETURNING 1) DELETE FROM u${i}`;
    const r = sqlFacts(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toStartWith(UNJUDGEABLE_PREFIX);
  });

  test("nesting deeper than MAX_DEPTH fails closed", () => {
    let text = "DELETE FROM t";
    for (let i = 0; i < 12; i++) text = `DO $d${i}$BEGIN EXECUTE ${quote(text)}; END$d${i}$`;
    const r = sqlFacts(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toContain("deeper");
  });
});

function quote(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

describe("texts of several statements", () => {
  test("each statement's own text, trimmed, comments between them dropped", () => {
    const r = sqlFacts("  SELECT 1;\n-- next\nDELETE FROM t ;  /* c */ UPDATE u SET a = 'x;y'  ");
    expect(briefs(r)).toEqual([
      ["select", [], []],
      ["delete", ["t"], []],
      ["update", ["u"], []],
    ]);
    expect(texts(r)).toEqual(["SELECT 1", "DELETE FROM t", "UPDATE u SET a = 'x;y'"]);
  });

  test("byte offsets of the parser map back to characters (non-ASCII text)", () => {
    const r = sqlFacts("SELECT 'é—😀' AS ü; DELETE FROM \"tåble\" WHERE x = 'ß'");
    expect(texts(r)).toEqual(["SELECT 'é—😀' AS ü", "DELETE FROM \"tåble\" WHERE x = 'ß'"]);
    expect(briefs(r)[1]).toEqual(["delete", ["tåble"], []]);
  });

  test("dollar quotes and quoted identifiers hide semicolons and keywords", () => {
    const r = sqlFacts(`SELECT $$a; DELETE FROM t$$, $tag$ ; $$ $tag$ FROM "x;y"; SELECT 'DROP TABLE z'`);
    expect(briefs(r)).toEqual([
      ["select", ["x;y"], []],
      ["select", [], []],
    ]);
  });

  test("an embedded statement's text comes from its own statement, not the first", () => {
    const r = sqlFacts("SELECT 1; EXPLAIN ANALYZE DELETE FROM t; PREPARE p AS INSERT INTO t VALUES (1)");
    expect(texts(r)).toEqual(["SELECT 1", "EXPLAIN ANALYZE DELETE FROM t", "DELETE FROM t", "PREPARE p AS INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (1)"]);
  });
});

describe("empty texts and errors", () => {
  test.each(["", "   ", ";", ";;", "-- only a comment", "/* block */", "/* a */ ; -- b\n"])("%j: ok, no statements", (text) => {
    expect(sqlFacts(text)).toEqual({ ok: true, statements: [] });
  });

  test.each([
    ["SELECT * FRM t", 'syntax error at or near "FRM"'],
    ["SELECT * FROM", "syntax error at end of input"],
    ["SELECT 1; DELETE", "syntax error at end of input"],
    ["SELECT 'unterminated", "unterminated quoted string at or near \"'unterminated\""],
    ["SELECT $$x", 'unterminated dollar-quoted string at or near "$$x"'],
  ])("%s: the parser's own message", (text, message) => {
    expect(sqlFacts(text)).toEqual({ ok: false, error: message });
  });

  test("a NUL character fails closed (the server would read only up to it)", () => {
    const r = sqlFacts("SELECT 1\0; DROP TABLE t");
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toStartWith(UNJUDGEABLE_PREFIX);
  });
});
