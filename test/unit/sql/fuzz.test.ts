// Property tests: whatever the text, sqlFacts returns ok:true with
// well-formed entries or ok:false with a message; it never throws.
import { beforeAll, expect, test } from "bun:test";
import fc from "fast-check";
import { loadSqlParser, sqlFacts } from "../../../app/families/sql/index.ts";
import type { SqlParseResult } from "../../../app/families/sql/index.ts";

const RUNS = 400;

beforeAll(async () => {
  await loadSqlParser();
});

const VALID = [
  "SELECT a, lower(b) FROM public.users u JOIN orders o ON o.uid = u.id WHERE u.id = $1",
  "WITH d AS (DELETE FROM t RETURNING *) INSERT INTO archive SELECT * FROM d",
  "DO $$DECLARE x int; BEGIN x := (SELECT count(*) FROM t); EXECUTE 'DROP TABLE z'; END$$",
  "EXPLAIN ANALYZE UPDATE t SET a = 'é' WHERE b = $tag$;$tag$",
  "PREPARE p (int) AS SELECT * FROM t WHERE id = $1; EXECUTE p(1); DEALLOCATE p",
  "CREATE TABLE n AS SELECT * FROM s WITH NO DATA; COPY (SELECT 1) TO STDOUT",
  "BEGIN; LOCK TABLE a IN SHARE MODE; SAVEPOINT s; ROLLBACK TO s; COMMIT",
];

/** Words and punctuation that make mutations reach deep into the grammar. */
const PIECES = ["SELECT", "FROM", "WITH", "AS", "(", ")", ";", "$$", "$a$", "'", '"', "--", "/*", "*/", "DO", "EXECUTE", "DELETE", "INTO", "E'\\'", "\n", "é", "😀", "\u0000", "::", "[", "]"];

function wellFormed(r: SqlParseResult): void {
  if (!r.ok) {
    expect(typeof r.error).toBe("string");
    expect(r.error.length).toBeGreaterThan(0);
    return;
  }
  for (const s of r.statements) {
    expect(s.verb).toMatch(/^[a-z]+$/);
    expect(typeof s.statement).toBe("string");
    for (const name of [...s.tables, ...s.functions]) expect(typeof name).toBe("string");
  }
}

test("random strings never throw", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 200 }), (text) => {
      wellFormed(sqlFacts(text));
    }),
    { numRuns: RUNS },
  );
});

test("random sequences of SQL pieces never throw", () => {
  fc.assert(
    fc.property(fc.array(fc.oneof(fc.constantFrom(...PIECES), fc.string({ maxLength: 4 })), { maxLength: 40 }), (pieces) => {
      wellFormed(sqlFacts(pieces.join(" ")));
    }),
    { numRuns: RUNS },
  );
});

test("mutated valid SQL never throws", () => {
  const mutation = fc.record({
    base: fc.constantFrom(...VALID),
    at: fc.nat(),
    cut: fc.nat({ max: 20 }),
    insert: fc.oneof(fc.constantFrom(...PIECES), fc.string({ maxLength: 6 })),
  });
  fc.assert(
    fc.property(mutation, ({ base, at, cut, insert }) => {
      const i = at % (base.length + 1);
      wellFormed(sqlFacts(base.slice(0, i) + insert + base.slice(i + cut)));
    }),
    { numRuns: RUNS * 2 },
  );
});

test("deep nesting fails closed instead of throwing", () => {
  for (const depth of [100, 1000, 10000]) {
    wellFormed(sqlFacts(`SELECT ${"(".repeat(depth)}1${")".repeat(depth)}`));
    wellFormed(sqlFacts(`${"SELECT * FROM (".repeat(depth)}SELECT 1${") s".repeat(depth)}`));
  }
});
