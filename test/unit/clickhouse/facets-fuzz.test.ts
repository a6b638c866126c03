// Property tests of the ClickHouse extractor: whatever the text it never
// throws; what it reports is well-formed; for texts built from a small
// grammar it names exactly the tables the grammar put there; and a table
// spliced into a recognised FROM list is never missed (no false certainty).
import { expect, test } from "bun:test";
import fc from "fast-check";
import { clickhouseFacts, type ClickHouseParseResult } from "../../../app/families/sql/clickhouse/facets.ts";

const RUNS = 400;

const VALID = [
  "SELECT a, count() FROM db.t AS x ANY LEFT JOIN u USING id WHERE id IN (SELECT id FROM v) SETTINGS max_threads = 2 FORMAT JSON",
  "INSERT INTO db.t (a, b) VALUES (1, 'x;y')",
  "CREATE TABLE IF NOT EXISTS t (a UInt8) ENGINE = MergeTree() ORDER BY a",
  "ALTER TABLE t DELETE WHERE x IN db.gone",
  "RENAME TABLE a TO b; USE analytics; SET readonly = 1",
];

const PIECES = ["SELECT", "FROM", "JOIN", "ARRAY", "IN", "TABLE", "INTO", "VALUES", "FORMAT", "SETTINGS", "(", ")", ",", ";", ".", "'", '"', "`", "--", "/*", "*/", "\\", "\n", "=", "é", "\u0000", "db", "t"];

function wellFormed(r: ClickHouseParseResult): void {
  if (!r.ok) {
    expect(r.error).toStartWith("cannot judge: ");
    return;
  }
  for (const s of r.statements) {
    expect(s.verb).toMatch(/^[a-z]+$/);
    expect(typeof s.statement).toBe("string");
    for (const name of [...s.tables, ...s.functions]) expect(name.length).toBeGreaterThan(0);
    for (const [k, v] of Object.entries(s.settings)) expect(typeof k === "string" && typeof v === "string").toBe(true);
  }
}

test("random strings never throw", () => {
  fc.assert(fc.property(fc.string({ maxLength: 200 }), (s) => wellFormed(clickhouseFacts(s))), { numRuns: RUNS });
});

test("valid statements cut and spliced with SQL pieces never throw", () => {
  fc.assert(
    fc.property(fc.constantFrom(...VALID), fc.nat(), fc.array(fc.constantFrom(...PIECES), { maxLength: 8 }), (text, at, pieces) => {
      const cut = at % (text.length + 1);
      wellFormed(clickhouseFacts(text.slice(0, cut) + pieces.join(" ") + text.slice(cut)));
    }),
    { numRuns: RUNS },
  );
});

const ident = fc.stringMatching(/^[a-z][a-z0-9_]{0,6}$/).filter((s) => !["select", "from", "join", "in", "as", "on", "using", "where", "limit", "final", "sample", "array", "any", "all", "left", "inner", "global", "format", "settings", "union", "with", "into", "table", "values", "and", "or", "not", "by", "to", "is", "like", "over", "order", "group", "having", "prewhere", "offset", "full", "right", "cross", "outer", "asof", "semi", "anti", "partition", "engine", "totals", "paste", "window", "qualify", "except", "intersect", "natural", "ilike", "between", "exists", "view", "function", "then", "else", "when", "case", "distinct"].includes(s));
const table = fc.tuple(fc.option(ident, { nil: undefined }), ident).map(([db, t]) => (db ? `${db}.${t}` : t));

/** A SELECT built from a small grammar, and the tables it reads. */
const select: fc.Arbitrary<{ text: string; tables: string[] }> = fc.letrec<{ q: { text: string; tables: string[] } }>((tie) => ({
  q: fc
    .tuple(
      fc.array(table, { minLength: 1, maxLength: 3 }),
      fc.option(fc.tuple(fc.constantFrom("JOIN", "ANY LEFT JOIN", "GLOBAL INNER JOIN", "ARRAY JOIN"), table), { nil: undefined }),
      fc.option(fc.oneof({ depthSize: "small" }, tie("q"), table.map((t) => ({ text: t, tables: [t] }))), { nil: undefined }),
    )
    .map(([from, join, inner]) => {
      const tables = [...from];
      let text = `SELECT a, f(b) FROM ${from.join(", ")}`;
      if (join) {
        text += ` ${join[0]} ${join[1]}`;
        if (join[0] !== "ARRAY JOIN") tables.push(join[1]);
      }
      if (inner) {
        const isTable = !inner.text.startsWith("SELECT");
        text += isTable ? ` WHERE x IN ${inner.text}` : ` WHERE x IN (${inner.text})`;
        tables.push(...inner.tables);
      }
      return { text, tables };
    }),
})).q;

test("generated SELECTs: exactly the tables they read", () => {
  fc.assert(
    fc.property(select, ({ text, tables }) => {
      const r = clickhouseFacts(text);
      if (!r.ok) throw new Error(`${text}: ${r.error}`);
      expect(new Set(r.statements[0]!.tables)).toEqual(new Set(tables));
    }),
    { numRuns: RUNS },
  );
});

test("a table named anywhere a FROM can name it is never missed", () => {
  fc.assert(
    fc.property(select, fc.array(fc.constantFrom(...PIECES), { maxLength: 4 }), ({ text }, noise) => {
      const r = clickhouseFacts(`${text} ${noise.join(" ")} UNION ALL SELECT 1 FROM secret.vault`);
      if (r.ok) expect(r.statements.some((s) => s.tables.includes("secret.vault") || /--|\/\*|'|"|`|VALUES|FORMAT/.test(noise.join(" ")))).toBe(true);
    }),
    { numRuns: RUNS },
  );
});
