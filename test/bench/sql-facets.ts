// Cost of `sql` facets per statement (not a test; `bun test` does not pick it up).
//   ./node_modules/.bin/bun test/bench/sql-facets.ts [--smoke]
// Cold: a cache miss (libpg-query parse + JSON + walk); warm: a cache hit.
// --smoke (or SQL_FACETS_BENCH_SMOKE=1) runs a few iterations only, so the
// unit suite can check that the benchmark still runs (bench-smoke.test.ts).
import { clearSqlFactsCache, loadSqlParser, sqlFacts } from "../../app/families/sql/index.ts";
import captured from "../unit/sql/fixtures/psql-queries.json";

export const BENCH_STATEMENTS: Readonly<Record<string, string>> = {
  "pgbench -S point select": "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
  "two-table join": "SELECT u.id, lower(u.name), o.total FROM public.users u JOIN app.orders o ON o.user_id = u.id WHERE u.id = $1",
  "pgbench tpcb update": "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
  "psql \\dt": captured.queries.find((q) => q.source === "\\dt")?.query ?? "SELECT 1",
  "data-modifying CTE": "WITH d AS (DELETE FROM t WHERE created < now() - interval '1 day' RETURNING *) INSERT INTO archive SELECT * FROM d",
  "DO block": "DO $$DECLARE n int; BEGIN n := (SELECT count(*) FROM t); IF n > 0 THEN DELETE FROM t; END IF; EXECUTE 'VACUUM t'; END$$",
};

export interface BenchRow {
  name: string;
  coldMicros: number;
  warmMicros: number;
}

function microsPer(iterations: number, fn: () => void): number {
  const t0 = Bun.nanoseconds();
  for (let i = 0; i < iterations; i++) fn();
  return (Bun.nanoseconds() - t0) / 1e3 / iterations;
}

export async function runSqlFacetsBench(smoke: boolean): Promise<BenchRow[]> {
  await loadSqlParser();
  const coldN = smoke ? 5 : 3000;
  const warmN = smoke ? 50 : 300_000;
  const rows: BenchRow[] = [];
  for (const [name, text] of Object.entries(BENCH_STATEMENTS)) {
    const r = sqlFacts(text);
    if (!r.ok) throw new Error(`${name}: ${r.error}`);
    for (let i = 0; i < coldN / 10; i++) (clearSqlFactsCache(), sqlFacts(text)); // warm-up of the JIT
    const coldMicros = microsPer(coldN, () => {
      clearSqlFactsCache();
      sqlFacts(text);
    });
    sqlFacts(text);
    const warmMicros = microsPer(warmN, () => {
      sqlFacts(text);
    });
    rows.push({ name, coldMicros, warmMicros });
  }
  clearSqlFactsCache();
  return rows;
}

if (import.meta.main) {
  const smoke = process.argv.includes("--smoke") || process.env.SQL_FACETS_BENCH_SMOKE === "1";
  const rows = await runSqlFacetsBench(smoke);
  console.log(`${"statement".padEnd(28)} ${"cold µs".padStart(10)} ${"warm µs".padStart(10)}${smoke ? "   (smoke: too few runs to mean anything)" : ""}`);
  for (const r of rows) console.log(`${r.name.padEnd(28)} ${r.coldMicros.toFixed(1).padStart(10)} ${r.warmMicros.toFixed(2).padStart(10)}`);
}
