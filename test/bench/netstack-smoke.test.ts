// `make bench-netstack` still runs: every case (kernel forwarding, TUN + our
// stack, wireguard-go + kernel, our WireGuard + stack) for one second each
// way, and case 6's RSS with 200 flows. Throughput is not judged; every run must carry bytes, and the bench
// must end cleanly and print its ratios. Root only (network namespaces; it
// sets net.ipv4.ip_forward for the run and puts it back).
import { expect, test } from "bun:test";
import path from "node:path";

const isRoot = process.getuid?.() === 0;
const skip = !isRoot && process.env.CI !== "true";
const BENCH = path.join(import.meta.dir, "netstack.ts");

test.skipIf(skip)(
  "test/bench/netstack.ts runs every case for a second (case 6 with 200 flows) and prints its ratios",
  async () => {
    const env: Record<string, string | undefined> = { ...process.env, SECONDS_PER_RUN: "1", FLOWS: "200" };
    delete env.SECONDS;
    const proc = Bun.spawn([process.execPath, BENCH], { env, stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) console.error(out + err);
    expect(code).toBe(0);

    const runs = out.split("\n").filter((l) => /^[1-4] .*, (upload|download)\s/.test(l));
    expect(runs.map((l) => l.slice(0, 2) + l.match(/(upload|download)/)![1])).toEqual(
      ["1 ", "2 ", "3 ", "4 "].flatMap((c) => [`${c}upload`, `${c}download`]),
    );
    for (const l of runs) {
      const [, mbps] = l.match(/([\d.]+) Mbit\/s/)!;
      expect(Number(mbps)).toBeGreaterThan(0);
    }
    const ratios = out.split("\n").filter((l) => l.startsWith("ratio "));
    expect(ratios.length).toBe(2);
    for (const r of ratios) expect(r).toMatch(/upload [\d.]+, download [\d.]+/);
    // every flow reached the stack and was relayed (the client prints ready only after each one's reply)
    expect(out).toMatch(/^6 RSS with +200 flows open \(200 in the stack\) +\d+ MB/m);
    expect(out).not.toMatch(/still closing/);
    console.log(`bench-netstack smoke:\n${ratios.join("\n")}`);
  },
  90_000,
);
