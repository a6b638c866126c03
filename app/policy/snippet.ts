// Checks an HCL snippet against the running config without applying it:
// the config's files are read again, the snippet joins them as one more
// file (so its references resolve against the real endpoints, profiles and
// approvers), and the real parser and builder run over the lot. Nothing is
// written and the running policy is not touched; the built Policy is
// returned only for the caller to inspect.
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { buildPolicy } from "./build.ts";
import { parseHclFile, type HclFile } from "./hcl/parse.ts";
import type { ConfigError, Policy } from "./types.ts";

/** The name the snippet's errors carry. */
export const SNIPPET_FILE = "snippet.hcl";

export type SnippetResult = { ok: true; policy: Policy; warnings: ConfigError[] } | { ok: false; errors: ConfigError[] };

export async function checkSnippet(
  configFiles: readonly string[],
  snippet: string,
  env: Record<string, string | undefined> = process.env,
): Promise<SnippetResult> {
  const errors: ConfigError[] = [];
  const parsed: HclFile[] = [];
  for (const file of configFiles) {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch {
      errors.push({ file, line: 1, message: "cannot read this config file" });
      continue;
    }
    const r = await parseHclFile(file, text);
    if (r.ok) parsed.push(r.hcl);
    else errors.push(...r.errors);
  }
  const own = await parseHclFile(SNIPPET_FILE, snippet);
  if (own.ok) parsed.push(own.hcl);
  else errors.push(...own.errors);
  if (errors.length > 0) return { ok: false, errors };
  // The snippet adds no schema_version of its own; the config's one covers it.
  return buildPolicy(parsed, { env, readFile: readText });
}

function readText(absolutePath: string): { ok: true; text: string } | { ok: false; error: string } {
  try {
    return { ok: true, text: readFileSync(absolutePath, "utf8") };
  } catch {
    return { ok: false, error: "cannot read" };
  }
}
