// Shared test helpers: load a policy from HCL text via a temp file.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatConfigError, loadPolicy } from "../../../app/policy/load.ts";
import type { Policy } from "../../../app/policy/types.ts";

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "clawpatrol-policy-"));
}

export async function policyFrom(hcl: string): Promise<Policy> {
  const dir = tempDir();
  const file = join(dir, "gateway.hcl");
  writeFileSync(file, hcl);
  const result = await loadPolicy(file, { env: {} });
  if (!result.ok) throw new Error(result.errors.map(formatConfigError).join("\n"));
  return result.policy;
}
