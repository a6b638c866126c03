// The ClickHouse SQL extractor, table-driven: what it recognises exactly,
// and what it must leave unknown (so rules reading the facets fail closed).
import { describe, expect, test } from "bun:test";
import { clickhouseFacts } from "../../../app/families/sql/clickhouse/facets.ts";

interface Want {
  verb: string;
  tables?: string[];
  functions?: string[];
  settings?: Record<string, string>;
  format?: string;
  database?: string;
  statement?: string;
}

const KNOWN: [string, Want][] = [
  ["SELECT 1", { verb: "select", tables: [], functions: [] }],
  ["select count() from analytics.events where day = today()", { verb: "select", tables: ["analytics.events"], functions: ["count", "today"] }],
  ["SELECT * FROM `my db`.`t` AS x", { verb: "select", tables: ["my db.t"] }],
  ['SELECT * FROM "T1" FINAL SAMPLE 0.1', { verb: "select", tables: ["T1"] }],
  ["SELECT a FROM t1 ANY LEFT JOIN db.t2 USING id", { verb: "select", tables: ["t1", "db.t2"] }],
  ["SELECT a FROM t1 GLOBAL ALL INNER JOIN (SELECT b FROM t3) s ON s.b = t1.a", { verb: "select", tables: ["t1", "t3"] }],
  ["SELECT a FROM t ARRAY JOIN arr AS x", { verb: "select", tables: ["t"] }],
  ["SELECT a FROM t LEFT ARRAY JOIN arr", { verb: "select", tables: ["t"] }],
  ["SELECT * FROM a, b AS bb, c", { verb: "select", tables: ["a", "b", "c"] }],
  ["SELECT x, y FROM a LIMIT 1, 2", { verb: "select", tables: ["a"] }],
  ["SELECT (SELECT max(x) FROM m), y FROM n", { verb: "select", tables: ["m", "n"], functions: ["max"] }],
  ["SELECT * FROM t WHERE id IN db.allowed", { verb: "select", tables: ["t", "db.allowed"] }],
  ["SELECT * FROM t WHERE id GLOBAL NOT IN (SELECT id FROM u)", { verb: "select", tables: ["t", "u"] }],
  ["SELECT * FROM t WHERE id IN tuple(1, 2)", { verb: "select", tables: ["t"], functions: ["tuple"] }],
  ["SELECT extract(DAY FROM d), trim(BOTH ' ' FROM s) FROM t", { verb: "select", tables: ["t"], functions: ["extract", "trim"] }],
  ["SELECT * FROM numbers(10)", { verb: "select", tables: [], functions: ["numbers"] }],
  ["SELECT * FROM remote('10.0.0.1', db, t)", { verb: "select", tables: [], functions: ["remote"] }],
  ["SELECT 1 SETTINGS max_threads = 8, readonly = 1, log_comment = 'x', a = -1", { verb: "select", settings: { max_threads: "8", readonly: "1", log_comment: "x", a: "-1" } }],
  ["SELECT * FROM t FORMAT JSONEachRow", { verb: "select", tables: ["t"], format: "JSONEachRow" }],
  ["SELECT a FROM t UNION ALL SELECT b FROM u", { verb: "select", tables: ["t", "u"] }],
  ["WITH 1 AS x SELECT x FROM t", { verb: "select", tables: ["t"] }],
  ["WITH c AS (SELECT 1 FROM base) SELECT * FROM c", { verb: "select", tables: ["base"] }],
  ["SELECT * FROM t INTO OUTFILE 'out.tsv'", { verb: "select", tables: ["t"] }],
  ["select 1; ", { verb: "select", statement: "select 1" }],
  ["-- a comment\nSELECT /* inline */ 1 FROM t", { verb: "select", tables: ["t"] }],
  ["SELECT 'it''s', 'a\\'b;c' FROM t", { verb: "select", tables: ["t"] }],
  ["INSERT INTO db.t VALUES (1, 'a;b'); DROP TABLE x", { verb: "insert", tables: ["db.t"], statement: "INSERT INTO db.t VALUES" }],
  ["INSERT INTO t (a, b) FORMAT CSV\n1,\"x\n", { verb: "insert", tables: ["t"], format: "CSV", statement: "INSERT INTO t (a, b) FORMAT CSV" }],
  ["INSERT INTO TABLE t FORMAT TabSeparated\n1\t\u00e9$`'", { verb: "insert", tables: ["t"], format: "TabSeparated" }],
  ["INSERT INTO t SELECT * FROM s WHERE x IN (SELECT y FROM z)", { verb: "insert", tables: ["t", "s", "z"] }],
  ["INSERT INTO t (a) SETTINGS async_insert = 1 VALUES", { verb: "insert", tables: ["t"], settings: { async_insert: "1" } }],
  ["CREATE TABLE IF NOT EXISTS db.t ON CLUSTER c (a UInt8, s Nullable(String)) ENGINE = MergeTree() ORDER BY a SETTINGS index_granularity = 8192",
    { verb: "create", tables: ["db.t"], functions: ["Nullable", "MergeTree"], settings: { index_granularity: "8192" } }],
  ["CREATE TABLE t2 AS db.t1 ENGINE = Memory", { verb: "create", tables: ["t2", "db.t1"] }],
  ["CREATE TABLE t3 ENGINE = Memory AS SELECT * FROM src", { verb: "create", tables: ["t3", "src"] }],
  ["CREATE MATERIALIZED VIEW mv TO dst AS SELECT a FROM src", { verb: "create", tables: ["mv", "dst", "src"] }],
  ["CREATE DATABASE IF NOT EXISTS analytics", { verb: "create", tables: [] }],
  ["CREATE TEMPORARY TABLE tmp (a UInt8)", { verb: "create", tables: ["tmp"], functions: [] }],
  ["DROP TABLE IF EXISTS analytics.events", { verb: "drop", tables: ["analytics.events"] }],
  ["drop database analytics", { verb: "drop", tables: [] }],
  ["DETACH TABLE t", { verb: "detach", tables: ["t"] }],
  ["TRUNCATE TABLE IF EXISTS db.t", { verb: "truncate", tables: ["db.t"] }],
  ["ALTER TABLE t DELETE WHERE id IN (SELECT id FROM gone)", { verb: "alter", tables: ["t", "gone"] }],
  ["ALTER TABLE t ATTACH PARTITION 201901 FROM other", { verb: "alter", tables: ["t", "other"] }],
  ["RENAME TABLE a TO b, db.c TO db.d", { verb: "rename", tables: ["a", "b", "db.c", "db.d"] }],
  ["OPTIMIZE TABLE t FINAL", { verb: "optimize", tables: ["t"] }],
  ["DESCRIBE TABLE db.t", { verb: "describe", tables: ["db.t"] }],
  ["DESC t", { verb: "describe", tables: ["t"] }],
  ["EXISTS TABLE db.t", { verb: "exists", tables: ["db.t"] }],
  ["SHOW CREATE TABLE db.t", { verb: "show", tables: ["db.t"] }],
  ["SHOW TABLES FROM analytics LIKE '%e%'", { verb: "show", tables: [] }],
  ["SHOW DATABASES FORMAT TSV", { verb: "show", tables: [], format: "TSV" }],
  ["USE analytics", { verb: "use", tables: [], database: "analytics" }],
  ["use `my-db`", { verb: "use", database: "my-db" }],
  ["SET max_threads = 4, send_logs_level = 'trace'", { verb: "set", settings: { max_threads: "4", send_logs_level: "trace" } }],
  ["KILL QUERY WHERE query_id = 'x'", { verb: "kill", tables: [] }],
];

const UNKNOWN: string[] = [
  "",
  "   ;  ",
  "SYSTEM DROP DNS CACHE",
  "GRANT SELECT ON db.* TO u",
  "EXPLAIN SELECT 1",
  "SELECT * FROM a.b.c",
  "SELECT * FROM `a.b`",
  "SELECT * FROM 'x'",
  "SELECT * FROM",
  "SELECT (1",
  "SELECT 1)",
  "SELECT 'unterminated",
  "SELECT /* unterminated",
  "SELECT /* /* nested */ */ 1",
  "SELECT $$x$$",
  "SELECT 1 # comment",
  "SELECT 1 SETTINGS max_threads",
  "SELECT 1 SETTINGS a = (1)",
  "SELECT \u00e9 FROM t",
  "SELECT 'a\\x41'",
  "INSERT INTO FUNCTION remote('h', db.t) VALUES",
  "CREATE USER u",
  "ALTER USER u",
  "USE a b",
  "SELECT 1\0",
  "SHOW GRANTS",
  "SELECT 1abc",
];

describe("recognised statements", () => {
  for (const [text, want] of KNOWN) {
    test(JSON.stringify(text), () => {
      const r = clickhouseFacts(text);
      if (!r.ok) throw new Error(r.error);
      const s = r.statements[0]!;
      expect(s.verb).toBe(want.verb);
      if (want.tables) expect(s.tables).toEqual(want.tables);
      if (want.functions) expect(s.functions).toEqual(want.functions);
      expect(s.settings).toEqual(want.settings ?? {});
      expect(s.format).toBe(want.format ?? "");
      expect(s.database).toBe(want.database);
      if (want.statement) expect(s.statement).toBe(want.statement);
    });
  }
});

describe("left unknown", () => {
  for (const text of UNKNOWN) {
    test(JSON.stringify(text), () => {
      const r = clickhouseFacts(text);
      // An empty text has no statement: nothing to judge, so it is not ok:true with entries either.
      if (r.ok) expect(r.statements).toEqual([]);
      else expect(r.error).toStartWith("cannot judge: ");
    });
  }
});

test("several statements are each judged", () => {
  const r = clickhouseFacts("SELECT 1 FROM a; DROP TABLE b;");
  expect(r.ok && r.statements.map((s) => [s.verb, s.tables, s.statement])).toEqual([
    ["select", ["a"], "SELECT 1 FROM a"],
    ["drop", ["b"], "DROP TABLE b"],
  ]);
});
