// `make bench-ssh` still runs: its smoke mode (2 MB scp, 3 execs) directly
// and through the gateway to a real sshd. Timings are not judged; both paths
// must copy every byte and run every exec, the gateway must have logged in
// with the real key (the bench checks `id -un`), denied by its rule, and
// recorded the requests.
import { expect, test } from "bun:test";
import { report, runSshBench, settingsFromEnv } from "./ssh.ts";

const isRoot = process.getuid?.() === 0;
const skip = !isRoot && process.env.CI !== "true";

test.skipIf(skip)(
  "test/bench/ssh.ts runs in smoke mode, directly and through the gateway",
  async () => {
    const r = await runSshBench(settingsFromEnv(true));
    expect(r.rows.map((x) => x.path)).toEqual(["direct", "clawpatrol"]);
    for (const row of r.rows) {
      expect(row.scpMBps).toBeGreaterThan(0);
      expect(row.execsPerSecond).toBeGreaterThan(0);
      expect(row.cipher).not.toBe("?");
    }
    // Through the gateway: per exec at least the session and the exec judged, and the channel's close.
    expect(r.gatewayEvents).toBeGreaterThanOrEqual(3 * 3);
    expect(r.rows[1]!.gatewayCpu!.scp).toBeGreaterThanOrEqual(0);
    expect(report(r).some((l) => l.startsWith("ratio clawpatrol/direct: scp throughput"))).toBe(true);
  },
  180_000,
);
