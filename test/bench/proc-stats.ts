// What the benches read about the processes they start: a log's tail, a
// process's CPU time and the machine's (from /proc), and the first line a
// server prints when it is ready.
import { readFileSync } from "node:fs";

/** Linux's USER_HZ: /proc times are in these ticks. */
const CLK_TCK = 100;

export function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/** utime and stime of a process, in seconds. */
export function cpuSeconds(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces) start at field 3.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: Number(f[11]) / CLK_TCK, system: Number(f[12]) / CLK_TCK };
}

/** Machine-wide CPU jiffies: total and stolen by the hypervisor. */
export function machineCpu(): { total: number; steal: number } {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  return { total: f.slice(0, 8).reduce((a, b) => a + b, 0), steal: f[7] ?? 0 };
}

/**
 * The first line a process prints on stdout (its "ready" line), then the
 * rest drained in the background so it never blocks on a full pipe.
 * An error past the deadline, or when it exits first.
 */
export async function firstLine(stdout: ReadableStream<Uint8Array>, timeoutMs: number): Promise<{ line: string } | { error: "timeout" | "exited" }> {
  const reader = stdout.getReader();
  let text = "";
  const deadline = Date.now() + timeoutMs;
  while (!text.includes("\n")) {
    const r = await Promise.race([reader.read(), Bun.sleep(Math.max(0, deadline - Date.now())).then(() => "timeout" as const)]);
    if (r === "timeout") return { error: "timeout" };
    if (r.done) return { error: "exited" };
    text += new TextDecoder().decode(r.value);
  }
  void (async () => {
    while (!(await reader.read().catch(() => ({ done: true }))).done);
  })();
  return { line: text.split("\n")[0]! };
}
