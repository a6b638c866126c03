// `make soak` still runs: a few seconds of every phase (a cold burst, keep-alive
// load with a burst under it, samples) through the proxy and through the
// tunnel (a WireGuard device in a namespace of its own), then the events
// counted against what nginx served after a SIGTERM. The soak fails itself on any error or lost event;
// this test asserts it finished and printed what it measures. No timing is judged.
import { expect, test } from "bun:test";
import path from "node:path";

const isRoot = process.getuid?.() === 0;
const skip = !isRoot && process.env.CI !== "true";
const SOAK = path.join(import.meta.dir, "soak.ts");

test.skipIf(skip)(
  "test/bench/soak.ts in smoke mode: bursts and keep-alive load through the proxy and the tunnel with 0 errors, every request recorded once",
  async () => {
    const env: Record<string, string | undefined> = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith("SOAK_") || k.startsWith("CLAWPATROL_")) delete env[k];
    Object.assign(env, { SOAK_CONNECTIONS: "20", SOAK_BURST: "50", SOAK_SECONDS: "4", SOAK_SAMPLE_SECONDS: "1", SOAK_WARMUP_SECONDS: "1" });
    const proc = Bun.spawn([process.execPath, SOAK], { env, stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) console.error(out + err);
    expect(code).toBe(0);
    expect(out).toContain("soak: 0 errors, every request recorded once");

    // Every phase of both ways carried requests, and none failed.
    const phases = out.split("\n").filter((l) => /^(proxy|tunnel) (cold burst|keep-alive|burst c\d+ under load)/.test(l));
    expect(phases.map((l) => l.split(" ")[0])).toEqual(["proxy", "proxy", "proxy", "tunnel", "tunnel", "tunnel"]);
    for (const row of phases) {
      expect(Number(row.match(/\s(\d+)\s+[\d—]+\s/)?.[1])).toBeGreaterThan(0);
      expect(row.trimEnd().endsWith("none")).toBe(true);
    }
    // Samples of RSS and heap (from /metrics), and the slope after warm-up.
    const samples = out.split("\n").filter((l) => /^\s+\d+\s+[\d.]+\s+[\d.]+\s+\d+/.test(l));
    expect(samples.length).toBeGreaterThanOrEqual(6);
    expect(out).toMatch(/^proxy: slope after warm-up \(\d+ samples\): RSS -?[\d.]+ MB\/min, heap -?[\d.]+ MB\/min/m);
    expect(out).toMatch(/^tunnel: slope after warm-up \(\d+ samples\): RSS -?[\d.]+ MB\/min, heap -?[\d.]+ MB\/min/m);
    console.log(out.split("\n").filter((l) => /^(proxy|tunnel) |^(proxy|tunnel): slope|^requests answered/.test(l)).join("\n"));
  },
  180_000,
);
