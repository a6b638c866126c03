/// <reference lib="dom" />
// The Config page: the running config, every file (GET /api/config), in an
// editor with HCL colouring (a textarea over a coloured copy of its text).
//   1. Validate (POST /api/config/validate): the real loader on the server;
//      errors are shown under their file as FILE:LINE and the line is marked
//   2. Review changes: a diff of every edited file against what was loaded
//   3. Apply (POST /api/config/apply, from the review): written, reloaded;
//      a rejected config comes back as errors the same way, nothing changed
// Viewers and approvers read it; only admins (and only where the files are
// writable) get the buttons. Secrets arrive as "<hidden N>": keeping the
// marker keeps the value. Edits live in this module, so a redraw or a visit
// to another page keeps them until applied or discarded.
import { api, ApiFailure } from "./api.ts";
import { clear, h } from "./dom.ts";
import { errorText, flash } from "./state.ts";
import { highlightHcl } from "./hcl-highlight.ts";
import { diffHunks } from "../../control/config/diff.ts";

interface ConfigFile {
  path: string;
  text: string;
}
interface ConfigView {
  root: string;
  version: string;
  files: ConfigFile[];
  writable: boolean;
  canApply: boolean;
}
interface ConfigError {
  file: string;
  line: number;
  message: string;
}
type Outcome =
  | { kind: "valid"; text: string }
  | { kind: "errors"; text: string; errors: ConfigError[] }
  | { kind: "applied"; text: string }
  | { kind: "failed"; text: string };

const draft = {
  loaded: undefined as ConfigView | undefined,
  texts: new Map<string, string>(),
  outcome: undefined as Outcome | undefined,
  reviewing: false,
  busy: false,
};

const edited = (f: ConfigFile) => (draft.texts.get(f.path) ?? f.text) !== f.text;
const currentFiles = (): ConfigFile[] => draft.loaded!.files.map((f) => ({ path: f.path, text: draft.texts.get(f.path) ?? f.text }));
const errorsFor = (path: string): ConfigError[] => (draft.outcome?.kind === "errors" ? draft.outcome.errors.filter((e) => e.file === path) : []);

/** The coloured copy behind the textarea; error lines marked. */
function paint(pre: HTMLElement, text: string, errorLines: Set<number>): void {
  const lines = highlightHcl(text);
  clear(
    pre,
    ...lines.flatMap((pieces, i) => [
      h("span", { class: errorLines.has(i + 1) ? "ln err" : "ln" }, ...pieces.map((p) => (p.cls === "plain" ? p.text : h("span", { class: `t-${p.cls}` }, p.text)))),
      "\n",
    ]),
  );
}

function fileEditor(f: ConfigFile, index: number, readOnly: boolean): HTMLElement {
  const errs = errorsFor(f.path);
  const errorLines = new Set(errs.map((e) => e.line));
  const pre = h("pre", { class: "hl", "aria-hidden": "true" });
  const area = h("textarea", {
    class: "code",
    id: `config-text-${index}`,
    spellcheck: "false",
    wrap: "off",
    autocomplete: "off",
    "aria-label": `Config file ${f.path}`,
    readonly: readOnly,
  });
  area.value = draft.texts.get(f.path) ?? f.text;
  paint(pre, area.value, errorLines);
  const mark = h("span", { class: "edited-mark" }, edited(f) ? "edited" : "");
  area.addEventListener("input", () => {
    draft.texts.set(f.path, area.value);
    paint(pre, area.value, errorLines);
    mark.textContent = edited(f) ? "edited" : "";
    if (draft.reviewing) {
      draft.reviewing = false;
      document.getElementById("config-review-box")?.remove();
    }
  });
  // Tab inserts two spaces instead of leaving the editor.
  area.addEventListener("keydown", (ev) => {
    if (ev.key !== "Tab" || readOnly || ev.shiftKey) return;
    ev.preventDefault();
    area.setRangeText("  ", area.selectionStart, area.selectionEnd, "end");
    area.dispatchEvent(new Event("input"));
  });
  return h(
    "div",
    { class: "config-file", id: `config-file-${index}`, "data-path": f.path },
    h("h3", {}, h("code", {}, f.path), " ", mark),
    h("div", { class: "editor" }, h("div", { class: "editor-grid" }, pre, area)),
    errs.length
      ? h("ul", { class: "config-errors", role: "alert" }, ...errs.map((e) => h("li", { "data-line": e.line }, `${e.file}:${e.line}: ${e.message}`)))
      : null,
  );
}

function diffView(): HTMLElement {
  const parts = draft.loaded!.files.filter(edited).map((f) => {
    const hunks = diffHunks(f.text, draft.texts.get(f.path)!);
    return h(
      "div",
      { class: "config-diff" },
      h("h4", {}, h("code", {}, f.path)),
      h(
        "pre",
        { class: "diff" },
        ...hunks.flatMap((hk) => [
          h("span", { class: "d-hunk" }, `@@ -${hk.oldStart},${hk.oldCount} +${hk.newStart},${hk.newCount} @@`),
          "\n",
          ...hk.lines.flatMap((l) => [h("span", { class: l.op === "+" ? "d-add" : l.op === "-" ? "d-del" : "d-ctx" }, `${l.op}${l.text}`), "\n"]),
        ]),
      ),
    );
  });
  return h(
    "div",
    { class: "panel config-review", id: "config-review-box" },
    h("h3", {}, "Changes to apply"),
    ...(parts.length ? parts : [h("p", { class: "muted" }, "Nothing is edited.")]),
    parts.length
      ? h(
          "div",
          { class: "toolbar" },
          h("button", { class: "primary", id: "config-apply", disabled: draft.busy, onclick: () => void applyEdits() }, "Apply"),
          h("span", { class: "muted small" }, "written atomically, then the gateway reloads; a config it rejects is put back"),
        )
      : null,
  );
}

function outcomeView(): HTMLElement | null {
  const o = draft.outcome;
  if (!o) return null;
  const cls = o.kind === "valid" || o.kind === "applied" ? "config-ok" : "config-bad";
  return h("p", { class: cls, id: "config-outcome", role: o.kind === "errors" || o.kind === "failed" ? "alert" : "status" }, o.text);
}

function render(box: HTMLElement): void {
  const v = draft.loaded!;
  const readOnly = !v.canApply;
  const anyEdited = v.files.some(edited);
  clear(
    box,
    h(
      "div",
      { class: "toolbar" },
      h("h2", {}, "Config"),
      h("span", { class: "muted small" }, v.root),
      readOnly
        ? null
        : h(
            "span",
            { class: "actions" },
            h("button", { id: "config-validate", disabled: draft.busy, onclick: () => void validate() }, "Validate"),
            h("button", { id: "config-review", disabled: draft.busy || !anyEdited, onclick: () => review() }, "Review changes"),
            h("button", { class: "link", id: "config-discard", disabled: draft.busy || !anyEdited, onclick: () => void discard() }, "Discard edits"),
          ),
    ),
    readOnly
      ? h(
          "p",
          { class: "muted", id: "config-readonly" },
          v.writable ? "Read-only: only admins change the config." : "Read-only: the config files cannot be written on this machine.",
        )
      : null,
    outcomeView(),
    ...v.files.map((f, i) => fileEditor(f, i, readOnly)),
    draft.reviewing ? diffView() : null,
  );
}

const host = () => document.getElementById("config-page");
const rerender = () => {
  const box = host();
  if (box && draft.loaded) render(box);
};

async function load(keepEdits: boolean): Promise<void> {
  const v = await api<ConfigView>("/api/config");
  draft.loaded = v;
  if (!keepEdits) draft.texts = new Map();
  // Edits of files that are no longer there are dropped.
  for (const p of [...draft.texts.keys()]) if (!v.files.some((f) => f.path === p)) draft.texts.delete(p);
}

async function validate(): Promise<void> {
  draft.busy = true;
  rerender();
  try {
    const r = await api<{ ok: true; summary: { rules: number; endpoints: number; profiles: number }; warnings: ConfigError[] } | { ok: false; errors: ConfigError[] }>(
      "/api/config/validate",
      { method: "POST", body: { files: currentFiles() } },
    );
    draft.outcome = r.ok
      ? { kind: "valid", text: `Valid: ${r.summary.endpoints} endpoints, ${r.summary.profiles} profiles, ${r.summary.rules} rules${r.warnings.length ? `; ${r.warnings.length} warnings` : ""}.` }
      : { kind: "errors", text: `${r.errors.length} error${r.errors.length === 1 ? "" : "s"}; see below.`, errors: r.errors };
  } catch (e) {
    draft.outcome = { kind: "failed", text: `Could not validate: ${errorText(e)}` };
  } finally {
    draft.busy = false;
    rerender();
  }
}

function review(): void {
  draft.reviewing = true;
  rerender();
  document.getElementById("config-review-box")?.scrollIntoView({ block: "nearest" });
}

/** Drop the edits and read the files again (they may have changed meanwhile). */
async function discard(): Promise<void> {
  draft.texts = new Map();
  draft.outcome = undefined;
  draft.reviewing = false;
  try {
    await load(false);
  } catch (e) {
    flash(`Could not load the config: ${errorText(e)}`, "error");
  }
  rerender();
}

async function applyEdits(): Promise<void> {
  draft.busy = true;
  rerender();
  try {
    const r = await api<{ ok: true; changed: string[] }>("/api/config/apply", {
      method: "POST",
      body: { version: draft.loaded!.version, files: currentFiles() },
    });
    await load(false);
    draft.reviewing = false;
    draft.outcome = { kind: "applied", text: `Applied: ${r.changed.join(", ") || "nothing changed"}; the gateway reloaded.` };
    flash("Config applied.");
  } catch (e) {
    if (e instanceof ApiFailure && e.code === "config_rejected" && Array.isArray(e.body.errors)) {
      draft.reviewing = false;
      draft.outcome = { kind: "errors", text: `Not applied: ${e.message}.`, errors: e.body.errors as ConfigError[] };
    } else if (e instanceof ApiFailure && e.code === "config_changed") {
      draft.outcome = { kind: "failed", text: "Not applied: the config changed since this page loaded it. Discard your edits to see the new version, then edit again." };
    } else {
      draft.outcome = { kind: "failed", text: `Not applied: ${errorText(e)}` };
    }
  } finally {
    draft.busy = false;
    rerender();
  }
}

export function configView(): HTMLElement {
  const box = h("section", { class: "config", id: "config-page" }, h("p", { class: "muted" }, "Loading the config…"));
  // Keep the edits in hand; read the files again only when nothing is edited.
  const editing = draft.loaded !== undefined && draft.loaded.files.some(edited);
  (editing ? Promise.resolve() : load(false)).then(
    () => render(box),
    (e: unknown) => clear(box, h("p", { class: "error" }, `Could not load the config: ${errorText(e)}`)),
  );
  return box;
}

/** On sign-out: nothing of one operator's draft is left for the next. */
export function resetConfigDraft(): void {
  draft.loaded = undefined;
  draft.texts = new Map();
  draft.outcome = undefined;
  draft.reviewing = false;
}
