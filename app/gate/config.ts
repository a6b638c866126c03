// The command gate's settings in HCL: per rule (`timeout`, `env_scrub`,
// `allowed_paths` on a rule of an exec endpoint) and in `defaults`
// (`exec_timeout`, `env_scrub`, `allowed_paths`); `gate = [...]` on a profile;
// `sandbox = "none" | "ghost"` and `workspace` on a rule.
import { readDuration } from "../approvers/config.ts";
import { gateNameProblem, isScrubPattern, type ExecRuleSettings } from "../families/exec.ts";
import type { BlockReader } from "../policy/hcl/reader.ts";

export const EXEC_RULE_ATTRIBUTES = ["timeout", "env_scrub", "allowed_paths", "sandbox", "workspace"] as const;
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
  const sandbox = r.has("sandbox") ? r.oneOf("sandbox", ["none", "ghost"] as const) : undefined;
  if (sandbox !== undefined) out.sandbox = sandbox;
  const w = r.string("workspace");
  if (w !== undefined) {
    if (!w.startsWith("/")) r.error(r.line("workspace"), "workspace must be an absolute path");
    else if (out.sandbox !== "ghost") r.error(r.line("workspace"), 'workspace applies only with sandbox = "ghost"');
    else out.workspace = w.length > 1 && w.endsWith("/") ? w.slice(0, -1) : w;
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
