// The running config as the dashboard edits it: every file of the config
// path (one file, or a directory's *.hcl), shown with secrets hidden
// (secrets.ts), checked with the real loader, and applied:
//   1. the edit is made against a version (a hash of the files on disk);
//      another change in between is a conflict, not a silent overwrite
//   2. hidden markers are put back and the whole config is loaded as it
//      would be after the write (FILE:LINE errors, nothing written)
//   3. each changed file is written atomically (a temporary file in the
//      same directory, fsync, rename, fsync of the directory)
//   4. the gateway reloads; if it rejects the config, the previous texts
//      are written back and it reloads again, so disk and the running
//      policy stay the last good config
// One apply at a time. Only the config's existing files can be edited.
import { accessSync, closeSync, constants, fsyncSync, openSync, realpathSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createHash, randomBytes } from "node:crypto";
import * as nodePath from "node:path";
import { configFiles, loadPolicyTexts } from "../../policy/load.ts";
import type { ConfigError } from "../../policy/types.ts";
import { maskSecrets, scrubHidden, unmaskSecrets } from "./secrets.ts";
import { unifiedDiff } from "./diff.ts";

export interface ConfigFile {
  path: string;
  text: string;
}

export interface ConfigView {
  /** The config path the gateway was started with. */
  root: string;
  version: string;
  /** Secrets shown as `"<hidden N>"`. */
  files: ConfigFile[];
  /** False when the files cannot be written here (a read-only /etc, permissions). */
  writable: boolean;
}

export interface CheckSummary {
  endpoints: number;
  credentials: number;
  profiles: number;
  rules: number;
}

export type CheckResult = { ok: true; summary: CheckSummary; warnings: ConfigError[] } | { ok: false; errors: ConfigError[] };

export type ApplyResult =
  | { ok: true; version: string; changed: string[]; diff: string; summary: CheckSummary | null }
  | { ok: false; stage: "conflict"; version: string }
  | { ok: false; stage: "validate" | "reload" | "write"; errors: ConfigError[] };

export interface ConfigEditorOptions {
  configPath: string;
  env?: Record<string, string | undefined>;
  /** Make the gateway re-read the config; its errors as `FILE:LINE: message` lines (none: applied). */
  reload(): Promise<string[]>;
}

interface OnDisk {
  version: string;
  files: { path: string; text: string; hidden: string[]; shown: string }[];
}

/** `FILE:LINE: message` back into its parts (a line without them is a line-1 error of the root). */
function parseErrorLine(s: string, root: string): ConfigError {
  const m = /^(.+?):(\d+): ([\s\S]*)$/.exec(s);
  return m ? { file: m[1]!, line: Number(m[2]), message: m[3]! } : { file: root, line: 1, message: s };
}

function writeAtomically(target: string, text: string): void {
  // A config file that is a symlink (into a checkout, a mounted volume) is
  // replaced where it points, and stays a symlink.
  let path = target;
  try {
    path = realpathSync(target);
  } catch {
    // does not exist yet: written where named
  }
  const dir = nodePath.dirname(path);
  let mode = 0o640;
  try {
    mode = statSync(path).mode & 0o777;
  } catch {
    // a new file keeps the default
  }
  const tmp = nodePath.join(dir, `.${nodePath.basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  const fd = openSync(tmp, "wx", mode);
  try {
    const bytes = Buffer.from(text, "utf8");
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  try {
    const dfd = openSync(dir, "r");
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is done.
  }
}

const fsMessage = (e: unknown): string => {
  const code = e && typeof e === "object" && "code" in e ? String(e.code) : "";
  const known: Record<string, string> = { EROFS: "the file system is read-only", EACCES: "permission denied", EPERM: "permission denied" };
  return known[code] ?? (code || (e instanceof Error ? e.message : String(e)));
};

export class ConfigEditor {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: ConfigEditorOptions) {}

  private async onDisk(): Promise<OnDisk> {
    const listed = await configFiles(this.opts.configPath);
    if (!listed.ok) throw new Error(`${listed.error.file}: ${listed.error.message}`);
    const files = [];
    const hash = createHash("sha256");
    for (const path of listed.files) {
      const text = await readFile(path, "utf8");
      hash.update(`${path}\0${text.length}\0${text}\0`);
      const m = maskSecrets(text);
      files.push({ path, text, hidden: m.hidden, shown: m.text });
    }
    return { version: hash.digest("hex").slice(0, 32), files };
  }

  private writable(files: readonly { path: string }[]): boolean {
    try {
      for (const f of files) {
        const real = realpathSync(f.path);
        accessSync(real, constants.W_OK);
        accessSync(nodePath.dirname(real), constants.W_OK);
      }
      return true;
    } catch {
      return false;
    }
  }

  async view(): Promise<ConfigView> {
    const d = await this.onDisk();
    return { root: this.opts.configPath, version: d.version, files: d.files.map((f) => ({ path: f.path, text: f.shown })), writable: this.writable(d.files) };
  }

  /**
   * The edit made whole: every file of the config, edited ones with their
   * secrets put back; or the errors (an unknown file, a stray marker).
   */
  private resolve(d: OnDisk, edits: readonly ConfigFile[]): { ok: true; texts: ConfigFile[] } | { ok: false; errors: ConfigError[] } {
    const byPath = new Map(d.files.map((f) => [f.path, f]));
    const errors: ConfigError[] = [];
    const edited = new Map<string, string>();
    for (const e of edits) {
      const f = byPath.get(e.path);
      if (!f) {
        errors.push({ file: e.path, line: 1, message: "not one of the config's files (the editor changes existing files only)" });
        continue;
      }
      const u = unmaskSecrets(e.text, f.hidden);
      if (u.ok) edited.set(e.path, u.text);
      else errors.push({ file: e.path, line: u.line, message: u.message });
    }
    if (errors.length > 0) return { ok: false, errors };
    return { ok: true, texts: d.files.map((f) => ({ path: f.path, text: edited.get(f.path) ?? f.text })) };
  }

  private async check(d: OnDisk, texts: readonly ConfigFile[]): Promise<CheckResult> {
    const r = await loadPolicyTexts(
      texts.map((t) => ({ file: t.path, text: t.text })),
      { env: this.opts.env ?? process.env },
    );
    const hidden = d.files.flatMap((f) => f.hidden);
    const clean = (e: ConfigError): ConfigError => ({ file: e.file, line: e.line, message: scrubHidden(e.message, hidden) });
    if (!r.ok) return { ok: false, errors: r.errors.map(clean) };
    const p = r.policy;
    return {
      ok: true,
      summary: { endpoints: p.endpoints.size, credentials: p.credentials.size, profiles: p.profiles.size, rules: p.rules.length },
      warnings: r.warnings.map(clean),
    };
  }

  /** Load the edited config as it would be after applying; nothing is written. */
  async validate(edits: readonly ConfigFile[]): Promise<CheckResult> {
    const d = await this.onDisk();
    const r = this.resolve(d, edits);
    if (!r.ok) return r;
    return this.check(d, r.texts);
  }

  apply(edits: readonly ConfigFile[], baseVersion: string): Promise<ApplyResult> {
    const run = this.queue.then(() => this.applyNow(edits, baseVersion));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async applyNow(edits: readonly ConfigFile[], baseVersion: string): Promise<ApplyResult> {
    const d = await this.onDisk();
    if (d.version !== baseVersion) return { ok: false, stage: "conflict", version: d.version };
    const r = this.resolve(d, edits);
    if (!r.ok) return { ok: false, stage: "validate", errors: r.errors };
    const before = new Map(d.files.map((f) => [f.path, f]));
    const changed = r.texts.filter((t) => before.get(t.path)!.text !== t.text);
    if (changed.length === 0) return { ok: true, version: d.version, changed: [], diff: "", summary: null };
    const checked = await this.check(d, r.texts);
    if (!checked.ok) return { ok: false, stage: "validate", errors: checked.errors };

    const written: string[] = [];
    const restore = () => {
      for (const path of written) writeAtomically(path, before.get(path)!.text);
    };
    try {
      for (const t of changed) {
        writeAtomically(t.path, t.text);
        written.push(t.path);
      }
    } catch (e) {
      try {
        restore();
      } catch {
        // the first error is the one to report
      }
      return { ok: false, stage: "write", errors: [{ file: changed[written.length]?.path ?? this.opts.configPath, line: 1, message: `cannot write: ${fsMessage(e)}` }] };
    }
    let reloadErrors: string[];
    try {
      reloadErrors = await this.opts.reload();
    } catch (e) {
      // The gateway did not answer (stopped, restarting): put the files back, so
      // it does not meet an edit nobody saw applied when it comes back.
      restore();
      const why = e instanceof Error ? e.message : String(e);
      return { ok: false, stage: "reload", errors: [{ file: this.opts.configPath, line: 1, message: `the gateway could not reload (${why}); nothing changed` }] };
    }
    if (reloadErrors.length > 0) {
      restore();
      await this.opts.reload().catch(() => undefined);
      const hidden = d.files.flatMap((f) => f.hidden);
      return {
        ok: false,
        stage: "reload",
        errors: reloadErrors.map((s) => parseErrorLine(scrubHidden(s, hidden), this.opts.configPath)),
      };
    }
    // The audit's diff is of the shown texts: it never carries a hidden value.
    const diff = changed
      .map((t) => {
        const old = before.get(t.path)!;
        const now = maskSecrets(t.text).text;
        return unifiedDiff(t.path, old.shown, now);
      })
      .join("");
    const after = await this.onDisk();
    return { ok: true, version: after.version, changed: changed.map((t) => t.path), diff, summary: checked.summary };
  }
}
