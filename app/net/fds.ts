// The process's file descriptors: how many are open and how many may be.
// When a dial fails because none are left, the error the runtime reports
// may not say so (an ECONNREFUSED was seen); the relay asks here and the
// log and /metrics name the real cause.
import { readdirSync, readFileSync } from "node:fs";

/** Open descriptors of this process (Linux /proc); undefined where it cannot be read. */
export function openFdCount(): number | undefined {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return undefined;
  }
}

/** The soft RLIMIT_NOFILE, from /proc/self/limits ("Max open files  S  H  files"). */
export function fdLimit(limitsText?: string): number | undefined {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync("/proc/self/limits", "utf8");
    } catch {
      return undefined;
    }
  }
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(text);
  if (!m) return undefined;
  return m[1] === "unlimited" ? Infinity : Number(m[1]);
}

/** Descriptors the process still has room for before a dial can fail. */
const MARGIN = 8;

export const fdStats = { exhausted: 0 };

/**
 * Whether a dial error is the process running out of descriptors: EMFILE or
 * ENFILE as such, or any error while (nearly) every descriptor is in use.
 * Counted in fdStats for /metrics.
 */
export function isFdExhaustion(code: string | undefined, open = openFdCount(), limit = fdLimit()): boolean {
  const exhausted = code === "EMFILE" || code === "ENFILE" || (open !== undefined && limit !== undefined && open >= limit - MARGIN);
  if (exhausted) fdStats.exhausted++;
  return exhausted;
}

/** Prometheus lines for the process's descriptors. */
export function fdMetrics(): string[] {
  const open = openFdCount();
  const limit = fdLimit();
  const out = [
    "# HELP clawpatrol_fd_exhausted_total Dials that failed because the process had no file descriptor left.",
    "# TYPE clawpatrol_fd_exhausted_total counter",
    `clawpatrol_fd_exhausted_total ${fdStats.exhausted}`,
  ];
  if (open !== undefined) out.push("# HELP clawpatrol_open_fds Open file descriptors.", "# TYPE clawpatrol_open_fds gauge", `clawpatrol_open_fds ${open}`);
  if (limit !== undefined && Number.isFinite(limit)) out.push("# HELP clawpatrol_max_fds The process's descriptor limit.", "# TYPE clawpatrol_max_fds gauge", `clawpatrol_max_fds ${limit}`);
  return out;
}
