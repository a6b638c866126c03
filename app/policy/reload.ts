// Hot reload: watch the config, reload after edits settle, hand over a new
// Policy or the errors. On errors the caller keeps serving the last good
// policy; nothing here holds or swaps state.
import { watch, type FSWatcher } from "node:fs";
import { stat } from "node:fs/promises";
import * as nodePath from "node:path";
import { loadPolicy, type LoadOptions } from "./load.ts";
import type { ConfigError, Policy } from "./types.ts";

export interface WatchHandlers {
  onPolicy(policy: Policy, warnings: ConfigError[]): void;
  onErrors(errors: ConfigError[]): void;
}

export interface WatchOptions extends LoadOptions {
  /** Quiet time after the last change before reloading (ms). */
  debounceMs?: number;
}

export interface PolicyWatch {
  /** Resolves once the watches are in place (edits before that may be missed). */
  ready: Promise<void>;
  close(): void;
}

const DEFAULT_DEBOUNCE_MS = 100;

export function watchPolicy(path: string, handlers: WatchHandlers, opts: WatchOptions = {}): PolicyWatch {
  const debounceMs = opts.debounceMs ?? DEFAULT_DEBOUNCE_MS;
  const watchers: FSWatcher[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  let loading = false;
  let again = false;
  let closed = false;

  const reload = async (): Promise<void> => {
    if (loading) {
      again = true; // one more pass after the current load, to see the latest text
      return;
    }
    loading = true;
    try {
      do {
        again = false;
        const result = await loadPolicy(path, opts);
        if (closed) return;
        if (result.ok) handlers.onPolicy(result.policy, result.warnings);
        else handlers.onErrors(result.errors);
      } while (again && !closed);
    } finally {
      loading = false;
    }
  };

  const schedule = (): void => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      void reload();
    }, debounceMs);
  };

  const start = async (): Promise<void> => {
    let isDirectory = false;
    try {
      isDirectory = (await stat(path)).isDirectory();
    } catch {
      // Missing now; watch its directory so its creation is seen.
    }
    if (closed) return;
    // Editors often write a new file and rename it over the old one, which a
    // watch on the file itself misses: watch the directory and filter names.
    const dir = isDirectory ? path : nodePath.dirname(path);
    const base = nodePath.basename(path);
    const relevant = (name: string | null): boolean =>
      name === null || (isDirectory ? name.endsWith(".hcl") : nodePath.basename(name) === base);
    try {
      watchers.push(watch(dir, (_event, name) => relevant(name) && schedule()));
    } catch (e) {
      handlers.onErrors([{ file: path, line: 1, message: `cannot watch: ${e instanceof Error ? e.message : String(e)}` }]);
    }
    if (!isDirectory) {
      try {
        watchers.push(watch(path, () => schedule()));
      } catch {
        // The directory watch still sees the file appear.
      }
    }
    // A watched file that is replaced or removed reports an error; the directory watch covers it.
    for (const w of watchers) w.on("error", () => {});
  };
  const ready = start();

  return {
    ready,
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
