// `make bench-https` still runs: a one-second smoke of every path (direct,
// through the gateway, through mitmproxy; closed loop and fixed rate; then
// HTTP/2 with h2load, the gateway toward an HTTP/1.1 and an h2 upstream).
// Timings are not judged; the bench itself fails when a path does not do
// what it claims (no interception, no injection, a non-200 answer), and
// this test asserts it finished, measured every row and printed its ratios.
import { expect, test } from "bun:test";
import path from "node:path";

const isRoot = process.getuid?.() === 0;
const skip = !isRoot && process.env.CI !== "true";
const BENCH = path.join(import.meta.dir, "https.ts");

test.skipIf(skip)(
  "test/bench/https.ts runs in smoke mode through every path and prints its ratios",
  async () => {
    const env: Record<string, string | undefined> = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith("BENCH_") || k.startsWith("CLAWPATROL_")) delete env[k];
    Object.assign(env, { BENCH_SECONDS: "1", BENCH_WARMUP_SECONDS: "1", BENCH_CONCURRENCY: "4", BENCH_FIXED_RATE: "100", BENCH_H2: "2x4" });
    const proc = Bun.spawn([process.execPath, BENCH], { env, stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) console.error(out + err);
    expect(code).toBe(0);
    expect(out).toContain("checked: direct 200; clawpatrol intercepts");

    // Every row measured something: req/s and CPU per request are numbers, requests > 0.
    const rows = out.split("\n").filter((l) => /^(direct|clawpatrol|mitmdump) .*\s(c4|100\/s)\s/.test(l));
    expect(rows.map((l) => `${l.split(" ")[0]} ${l.match(/\s(c4|100\/s)\s/)![1]}`)).toEqual([
      "direct c4",
      "clawpatrol c4",
      "mitmdump c4",
      "direct 100/s",
      "clawpatrol 100/s",
    ]);
    for (const row of rows) {
      const [rps, , , cpu, requests] = row.trim().split(/\s+/).slice(-6);
      expect(Number(rps)).toBeGreaterThan(0);
      expect(Number.isFinite(Number(cpu))).toBe(true);
      expect(Number(requests)).toBeGreaterThan(0);
    }

    const ratios = out.split("\n").filter((l) => /^\s+(c4|100\/s)\s+/.test(l));
    expect(ratios.length).toBe(2);
    expect(ratios[0]).toContain("clawpatrol/mitmproxy req/s");
    expect(ratios[0]).toContain("CPU/req clawpatrol/mitmproxy");
    expect(ratios[1]).toContain("clawpatrol p99 added over direct");
    console.log(`bench-https smoke:\n${ratios.join("\n")}`);
    // HTTP/2: every path measured, over h2, and the ratios printed beside HTTP/1.1's.
    const h2Rows = out.split("\n").filter((l) => /^(direct h2|clawpatrol h2|mitmdump h2) .*\s2x4\s/.test(l));
    expect(h2Rows.length).toBe(4);
    for (const row of h2Rows) {
      const [rps, , , requests] = row.trim().split(/\s+/).slice(-4);
      expect(Number(rps)).toBeGreaterThan(0);
      expect(Number(requests)).toBeGreaterThan(0);
    }
    const h2Ratios = out.split("\n").filter((l) => /^\s+2x4 to /.test(l));
    expect(h2Ratios.length).toBe(2);
    for (const l of h2Ratios) {
      expect(l).toContain("clawpatrol/mitmproxy req/s");
      expect(l).toContain("clawpatrol h2/clawpatrol HTTP/1.1 c4 req/s");
    }
    console.log(`bench-https h2 smoke:\n${h2Ratios.join("\n")}`);
    // The gateway recorded the requests it carried (one event each).
    expect(Number(out.match(/clawpatrol had written (\d+) events/)?.[1])).toBeGreaterThan(0);
  },
  120_000,
);
