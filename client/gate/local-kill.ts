// `clawpatrol kill`: the kill switch on the device, for this user's runs.
// Each run's inner stage is pid 1 of the run's PID namespace: SIGKILL to it
// makes the kernel kill every process of the run (the agent, its gated
// commands, anything they detached). The outer stage then sees the inner
// stage gone, ends the run's tunnel peer, and exits 137.
import { readFileSync } from "node:fs";
import type { RunRecord } from "../run.ts";

function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined;
  }
}

/** Kills each run's inner stage (checked to be that run's: its grandparent is the run); returns the pids of the runs ended. */
export function killLocalRuns(runs: RunRecord[]): number[] {
  const ended: number[] = [];
  for (const r of runs) {
    const inner = r.inner_pid;
    if (inner === undefined) continue;
    // inner's parent is `unshare`, whose parent is the run: never a recycled pid.
    const unshare = parentOf(inner);
    if (unshare === undefined || parentOf(unshare) !== r.pid) continue;
    try {
      process.kill(inner, "SIGKILL");
      ended.push(r.pid);
    } catch {
      /* already gone */
    }
  }
  return ended;
}
