// The command gate's settings in HCL: per rule (`timeout`, `env_scrub`,
// `allowed_paths` on a rule of an exec endpoint) and in `defaults`
// (`exec_timeout`, `env_scrub`, `allowed_paths`); `gate = [...]` on a profile.
import { readDuration } from "../approvers/config.ts";
import { gateNameProblem, isScrubPattern, type ExecRuleSettings } from "../families/exec.ts";
import type { BlockReader } from "../policy/hcl/reader.ts";

export const EXEC_RULE_ATTRIBUTES = ["timeout", "env_scrub", "allowed_paths"] as const;
export const EXEC_DEFAULT_ATTRIBUTES = ["exec_timeout", "env_scrub", "allowed_paths"] as const;

/** Reads the exec settings of a rule or of `defaults`; undefined when none is set. */
export function readExecSettings(r: BlockReader, timeoutAttr: "timeout" | "exec_timeout"): ExecRuleSettings | undefined {
  const out: ExecRuleSettings = {};
  const timeoutMs = readDuration(r, timeoutAttr, 1000);
  if (timeoutMs !== undefined) out.timeoutMs = timeoutMs;
  const scrub = r.list("env_scrub");
  if (scrub !== undefined) {
    const bad = scrub.filter((p) => !isScrubPattern(p));
    if (bad.length > 0) r.error(r.line("env_scrub"), `env_scrub: not a variable name (or NAME*): ${bad.map((b) => JSON.stringify(b)).join(", ")}`);
    else out.envScrub = scrub;
  }
  const allowed = r.list("allowed_paths");
  if (allowed !== undefined) {
    const bad = allowed.filter((p) => !p.startsWith("/"));
    if (bad.length > 0) r.error(r.line("allowed_paths"), `allowed_paths must be absolute: ${bad.map((b) => JSON.stringify(b)).join(", ")}`);
    else out.allowedPaths = allowed.map((p) => (p.length > 1 && p.endsWith("/") ? p.slice(0, -1) : p));
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** A profile's `gate` list, checked. */
export function readGateList(r: BlockReader): string[] | undefined {
  const names = r.list("gate");
  if (names === undefined) return undefined;
  for (const n of names) {
    const problem = gateNameProblem(n);
    if (problem) r.error(r.line("gate"), `gate: ${problem}`);
  }
  return [...new Set(names)];
}
