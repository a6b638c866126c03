// `make bench-postgres` still runs: its smoke mode (scale 1, -t 20, 2 clients)
// against PostgreSQL, pgbouncer, pgbouncer behind socat and the gateway behind
// socat. Timings are not judged; every path must run every transaction, and
// the gateway must have judged and recorded the statements.
import { expect, test } from "bun:test";
import { report, runPostgresBench, settingsFromEnv } from "./postgres.ts";

const isRoot = process.getuid?.() === 0;
const skip = !isRoot && process.env.CI !== "true";

test.skipIf(skip)(
  "test/bench/postgres.ts runs in smoke mode through every path",
  async () => {
    const s = settingsFromEnv(true);
    const r = await runPostgresBench({ ...s, modes: ["simple", "prepared"], paths: ["direct", "pgbouncer", "pgbouncer+socat", "clawpatrol+socat"], keep: false });
    expect(r.rows.map((x) => `${x.mode} ${x.path}`)).toEqual([
      "simple direct",
      "simple pgbouncer",
      "simple pgbouncer+socat",
      "simple clawpatrol+socat",
      "prepared direct",
      "prepared pgbouncer",
      "prepared pgbouncer+socat",
      "prepared clawpatrol+socat",
    ]);
    for (const row of r.rows) {
      expect({ path: row.path, mode: row.mode, transactions: row.transactions, failed: row.failed }).toEqual({ path: row.path, mode: row.mode, transactions: 2 * 20, failed: 0 });
      expect(row.tps).toBeGreaterThan(0);
    }
    const gw = r.rows.find((x) => x.path === "clawpatrol+socat" && x.mode === "simple")!;
    expect(gw.cpuUsPerStatement).toBeGreaterThanOrEqual(0);
    // One event per statement: at least the 80 measured ones.
    expect(r.gatewayEvents).toBeGreaterThanOrEqual(80);
    expect(report(r).some((l) => l.includes("clawpatrol/pgbouncer"))).toBe(true);
  },
  120_000,
);
