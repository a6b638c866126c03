// The sql-facets benchmark still runs (a few iterations; timings not judged).
import { expect, test } from "bun:test";
import { BENCH_STATEMENTS, runSqlFacetsBench } from "../../bench/sql-facets.ts";

test("test/bench/sql-facets.ts runs in smoke mode and measures every statement", async () => {
  const rows = await runSqlFacetsBench(true);
  expect(rows.map((r) => r.name)).toEqual(Object.keys(BENCH_STATEMENTS));
  for (const r of rows) {
    expect(Number.isFinite(r.coldMicros) && r.coldMicros > 0).toBe(true);
    expect(Number.isFinite(r.warmMicros) && r.warmMicros > 0).toBe(true);
  }
});
