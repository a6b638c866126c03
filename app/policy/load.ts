// Config path -> Policy. The path is one HCL file or a directory whose
// `*.hcl` files are merged in name order. File names in errors are shown
// as the caller gave them (a directory's files as `DIR/NAME.hcl`).
import { readFileSync } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import * as nodePath from "node:path";
import { buildPolicy } from "./build.ts";
import { parseHclFile, type HclFile } from "./hcl/parse.ts";
import type { ConfigError, Policy } from "./types.ts";

export type LoadResult = { ok: true; policy: Policy; warnings: ConfigError[] } | { ok: false; errors: ConfigError[] };

export interface LoadOptions {
  /** Environment for overrides (CLAWPATROL_STATE_DIR); defaults to process.env. */
  env?: Record<string, string | undefined>;
}

export function formatConfigError(e: ConfigError): string {
  return `${e.file}:${e.line}: ${e.message}`;
}

export async function loadPolicy(path: string, opts: LoadOptions = {}): Promise<LoadResult> {
  const listed = await configFiles(path);
  if (!listed.ok) return { ok: false, errors: [listed.error] };

  const texts: { file: string; text: string }[] = [];
  const errors: ConfigError[] = [];
  for (const file of listed.files) {
    try {
      texts.push({ file, text: await readFile(file, "utf8") });
    } catch (e) {
      errors.push({ file, line: 1, message: `cannot read: ${errorCode(e)}` });
    }
  }
  if (errors.length > 0) return { ok: false, errors };
  return loadPolicyTexts(texts, opts);
}

/**
 * The same loader over texts already in hand (the dashboard's config editor
 * checks an edit before writing it). File names should be the files' real
 * paths: relative paths inside them (ca_cert, secret_file) resolve from there.
 */
export async function loadPolicyTexts(files: readonly { file: string; text: string }[], opts: LoadOptions = {}): Promise<LoadResult> {
  const parsed: HclFile[] = [];
  const errors: ConfigError[] = [];
  for (const { file, text } of files) {
    const result = await parseHclFile(file, text);
    if (result.ok) parsed.push(result.hcl);
    else errors.push(...result.errors);
  }
  // Semantic checks on a partial config would report references into the
  // broken file as unknown; syntax errors alone are the useful answer.
  if (errors.length > 0) return { ok: false, errors };

  return buildPolicy(parsed, { env: opts.env ?? process.env, readFile: readTextFile });
}

type Listed = { ok: true; files: string[] } | { ok: false; error: ConfigError };

/** The files a config path names: the file itself, or a directory's `*.hcl` in name order. */
export async function configFiles(path: string): Promise<Listed> {
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(path)).isDirectory();
  } catch (e) {
    return { ok: false, error: { file: path, line: 1, message: `cannot read: ${errorCode(e)}` } };
  }
  if (!isDirectory) return { ok: true, files: [path] };
  const names = (await readdir(path)).filter((n) => n.endsWith(".hcl")).sort();
  if (names.length === 0) return { ok: false, error: { file: path, line: 1, message: "no *.hcl files in this directory" } };
  return { ok: true, files: names.map((n) => nodePath.join(path, n)) };
}

function readTextFile(absolutePath: string): { ok: true; text: string } | { ok: false; error: string } {
  try {
    return { ok: true, text: readFileSync(absolutePath, "utf8") };
  } catch (e) {
    return { ok: false, error: errorCode(e) };
  }
}

/** A short, path-free description of a file-system error. */
function errorCode(e: unknown): string {
  if (e && typeof e === "object" && "code" in e && typeof e.code === "string") {
    const known: Record<string, string> = {
      ENOENT: "no such file",
      EACCES: "permission denied",
      EISDIR: "is a directory",
    };
    return known[e.code] ?? e.code;
  }
  return e instanceof Error ? e.message : String(e);
}
