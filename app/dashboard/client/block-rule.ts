/// <reference lib="dom" />
// "Block requests like this", in the request detail (admins):
//   1. the operator picks a scope (http: this path / its folder / any path
//      on the host, this method or any; sql: this verb on these tables /
//      this verb anywhere / any statement touching these tables; exec: this
//      exact command / the same first words / the command at all; any:
//      this profile only or all);
//   2. POST /api/rules/suggest turns the recorded request into an HCL rule,
//      shown in an editable textarea;
//   3. Validate (POST /api/rules/validate) checks it merged with the running
//      config and shows errors by line, or what the rule would do;
//   4. Copy puts it on the clipboard. Nothing is applied from here: the
//      operator adds it to the config and a reload applies it.
// The draft lives beside the page state so a redraw of the detail keeps it.
import { api } from "./api.ts";
import type { GwEvent } from "./api.ts";
import { clear, h } from "./dom.ts";
import { errorText, flash } from "./state.ts";
import { prefixOf, type ExecScope, type SqlScope } from "../../policy/suggest.ts";
import { sqlView, type SqlView } from "./families.ts";

type PathScope = "exact" | "prefix" | "host";
/** http: path and anyMethod; sql: sql. Sent to /api/rules/suggest as it is. */
type Scope = { path: PathScope; anyMethod: boolean; onlyProfile: boolean } | { sql: SqlScope; onlyProfile: boolean } | { exec: ExecScope; onlyProfile: boolean };
interface RuleError {
  file: string;
  line: number;
  message: string;
}
type Validation =
  | { ok: true; summary: { added: { name: string; verdict: string }[]; warnings: RuleError[]; request?: { verdict: string; rule: string | null } } }
  | { ok: false; errors: RuleError[] };

interface Draft {
  event: GwEvent;
  eventId?: number;
  scope: Scope;
  hcl: string;
  result?: Validation | { failed: string };
}

let draft: Draft | undefined;

/** Whether a recorded action can become a rule at all (rules decide HTTP requests and parsed SQL statements on endpoints). */
export const blockable = (e: GwEvent) =>
  e.endpoint !== undefined &&
  ((e.kind === "http" && e.method !== undefined) || (e.kind === "sql" && sqlView(e)?.parsed === true) || (e.kind === "exec" && execArgv(e).length > 0));

/** A gated command's recorded argv (empty when none was kept). */
function execArgv(e: GwEvent): string[] {
  const argv = (e.action as { argv?: unknown } | undefined)?.argv;
  return Array.isArray(argv) ? argv.filter((a): a is string => typeof a === "string") : [];
}

const blockLabel = (e: GwEvent) => (e.kind === "sql" ? "Block statements like this" : e.kind === "exec" ? "Block commands like this" : "Block requests like this");

const eventKey = (e: GwEvent) => `${e.time} ${e.flowId} ${e.method ?? ""} ${e.path ?? ""}`;

/** Live events arrive without their row id: find it among the stored ones (the sink writes in batches). */
async function storedId(e: GwEvent): Promise<number> {
  if (e.id !== undefined) return e.id;
  for (let attempt = 0; attempt < 10; attempt++) {
    const q = new URLSearchParams({ limit: "200", device: e.device });
    const { events } = await api<{ events: GwEvent[] }>(`/api/events?${q}`);
    const found = events.find((x) => eventKey(x) === eventKey(e));
    if (found?.id !== undefined) {
      e.id = found.id;
      return found.id;
    }
    await new Promise((r) => window.setTimeout(r, 300));
  }
  throw new Error("this request is not in the stored log yet; try again in a moment");
}

/** The "Block requests like this" button, or the open panel when a draft for this event exists. */
export function blockRuleSection(e: GwEvent): HTMLElement | null {
  if (!blockable(e)) return null;
  const box = h("section", { class: "block-rule", id: "block-rule", "aria-label": "Block requests like this" });
  if (draft && eventKey(draft.event) === eventKey(e)) renderPanel(box, draft);
  else {
    draft = undefined;
    clear(
      box,
      h(
        "button",
        {
          class: "deny",
          id: "block-like-this",
          onclick: () => {
            const scope: Scope =
              e.kind === "sql" ? { sql: "verb-tables", onlyProfile: false } : e.kind === "exec" ? { exec: "prefix", onlyProfile: false } : { path: "exact", anyMethod: false, onlyProfile: false };
            draft = { event: e, scope, hcl: "" };
            renderPanel(box, draft);
            void regenerate(box, draft);
          },
        },
        blockLabel(e),
      ),
    );
  }
  return box;
}

async function regenerate(box: HTMLElement, d: Draft): Promise<void> {
  d.result = undefined;
  try {
    d.eventId ??= await storedId(d.event);
    const s = await api<{ hcl: string }>("/api/rules/suggest", { method: "POST", body: { eventId: d.eventId, scope: d.scope } });
    d.hcl = s.hcl;
  } catch (e) {
    d.result = { failed: `Could not generate a rule: ${errorText(e)}` };
  }
  if (draft === d && box.isConnected) renderPanel(box, d);
}

async function validate(box: HTMLElement, d: Draft): Promise<void> {
  try {
    d.result = await api<Validation>("/api/rules/validate", { method: "POST", body: { hcl: d.hcl, ...(d.eventId !== undefined ? { eventId: d.eventId } : {}) } });
  } catch (e) {
    d.result = { failed: `Could not validate: ${errorText(e)}` };
  }
  if (draft === d && box.isConnected) renderPanel(box, d);
}

async function copy(text: string, area: HTMLTextAreaElement): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard permission (plain http, some browsers): the selection still works.
    area.select();
    document.execCommand("copy");
  }
  flash("Rule copied. Add it to your config; a reload applies it.");
}

function renderPanel(box: HTMLElement, d: Draft): void {
  const e = d.event;
  const radio = (name: string, value: string, label: string, checked: boolean, onpick: () => void) =>
    h(
      "label",
      { class: "choice" },
      h("input", { type: "radio", name, value, checked, onchange: onpick }),
      " ",
      label,
    );
  const rescope = (patch: Partial<{ path: PathScope; anyMethod: boolean; onlyProfile: boolean; sql: SqlScope; exec: ExecScope }>) => () => {
    d.scope = { ...d.scope, ...patch } as Scope;
    void regenerate(box, d);
  };
  const sql = sqlView(e);
  const scopeChoices =
    sql && "sql" in d.scope
      ? sqlScopeChoices(sql, d.scope.sql, radio, rescope)
      : "exec" in d.scope
        ? execScopeChoices(execArgv(e), d.scope.exec, radio, rescope)
        : httpScopeChoices(e, d.scope, radio, rescope);
  const area = h("textarea", {
    id: "rule-hcl",
    class: "hcl",
    spellcheck: "false",
    rows: Math.min(16, Math.max(8, d.hcl.split("\n").length + 1)),
    "aria-label": "Generated rule (HCL), editable",
    oninput: (ev) => {
      d.hcl = (ev.target as HTMLTextAreaElement).value;
      d.result = undefined;
      document.getElementById("rule-result")?.replaceChildren();
    },
  });
  area.value = d.hcl;
  const gotoLine = (line: number) => {
    const lines = area.value.split("\n");
    const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    area.focus();
    area.setSelectionRange(start, start + (lines[line - 1]?.length ?? 0));
  };
  clear(
    box,
    h("h4", {}, blockLabel(e)),
    ...scopeChoices,
    h(
      "fieldset",
      { class: "scope" },
      h("legend", {}, "Devices"),
      h(
        "label",
        { class: "choice" },
        h("input", { type: "checkbox", id: "rule-only-profile", checked: d.scope.onlyProfile, onchange: (ev) => rescope({ onlyProfile: (ev.target as HTMLInputElement).checked })() }),
        ` only profile ${e.profile} (otherwise every device)`,
      ),
    ),
    area,
    h(
      "div",
      { class: "rule-actions" },
      h("button", { class: "primary", id: "rule-validate", disabled: d.hcl === "", onclick: () => void validate(box, d) }, "Validate"),
      h("button", { id: "rule-copy", disabled: d.hcl === "", onclick: () => void copy(d.hcl, area) }, "Copy"),
      h("span", { class: "spacer" }),
      h("button", { class: "link", onclick: () => ((draft = undefined), box.replaceWith(blockRuleSection(e) ?? h("span"))) }, "Close"),
    ),
    h("div", { id: "rule-result", role: "status" }, resultView(d, gotoLine)),
    h("p", { class: "muted small" }, "Nothing is applied from here: copy the rule into your config; reload applies it."),
  );
}

type Radio = (name: string, value: string, label: string, checked: boolean, onpick: () => void) => HTMLElement;
type Rescope = (patch: Partial<{ path: PathScope; anyMethod: boolean; sql: SqlScope; exec: ExecScope }>) => () => void;

/** exec: which commands the rule catches (a command without arguments: the command itself). */
function execScopeChoices(argv: string[], picked: ExecScope, radio: Radio, rescope: Rescope): HTMLElement[] {
  const words = (n: number) => argv.slice(0, n).join(" ");
  return [
    h(
      "fieldset",
      { class: "scope" },
      h("legend", {}, "Commands"),
      radio("rule-exec", "exact", `exactly ${argv.join(" ")}`, picked === "exact", rescope({ exec: "exact" })),
      argv.length > 1 ? radio("rule-exec", "prefix", `${words(2)} …`, picked === "prefix", rescope({ exec: "prefix" })) : null,
      radio("rule-exec", "command", `any ${argv[0] ?? ""} command`, picked === "command" || (picked === "prefix" && argv.length < 2), rescope({ exec: "command" })),
    ),
  ];
}

function httpScopeChoices(e: GwEvent, scope: Scope, radio: Radio, rescope: Rescope): HTMLElement[] {
  const s = "path" in scope ? scope : { path: "exact" as const, anyMethod: false };
  const path = (e.path ?? "/").replace(/[?#].*$/, "") || "/";
  const prefix = prefixOf(path);
  const folder = prefix === "" ? undefined : prefix === path.replace(/\/+$/, "") ? `${prefix} and ${prefix}/…` : `${prefix}/…`;
  return [
    h(
      "fieldset",
      { class: "scope" },
      h("legend", {}, "Path"),
      radio("rule-path", "exact", `exactly ${path}`, s.path === "exact", rescope({ path: "exact" })),
      folder ? radio("rule-path", "prefix", `under ${folder}`, s.path === "prefix", rescope({ path: "prefix" })) : null,
      radio("rule-path", "host", `any path on ${e.host}`, s.path === "host", rescope({ path: "host" })),
    ),
    h(
      "fieldset",
      { class: "scope" },
      h("legend", {}, "Method"),
      radio("rule-method", "same", `only ${e.method ?? ""}`, !s.anyMethod, rescope({ anyMethod: false })),
      radio("rule-method", "any", "any method", s.anyMethod, rescope({ anyMethod: true })),
    ),
  ];
}

/** sql: which statements the rule catches (a statement without tables can only be caught by its verb). */
function sqlScopeChoices(sql: SqlView, picked: SqlScope, radio: Radio, rescope: Rescope): HTMLElement[] {
  const tables = sql.tables.join(", ");
  return [
    h(
      "fieldset",
      { class: "scope" },
      h("legend", {}, "Statements"),
      sql.tables.length ? radio("rule-sql", "verb-tables", `${sql.verb} on ${tables}`, picked === "verb-tables", rescope({ sql: "verb-tables" })) : null,
      radio("rule-sql", "verb", `any ${sql.verb}`, picked === "verb" || (picked === "verb-tables" && !sql.tables.length), rescope({ sql: "verb" })),
      sql.tables.length ? radio("rule-sql", "tables", `any statement touching ${tables}`, picked === "tables", rescope({ sql: "tables" })) : null,
    ),
  ];
}

function resultView(d: Draft, gotoLine: (line: number) => void): HTMLElement | null {
  const r = d.result;
  if (!r) return null;
  if ("failed" in r) return h("p", { class: "error" }, r.failed);
  if (!r.ok) {
    return h(
      "div",
      { class: "rule-errors" },
      h("p", { class: "error" }, `Not valid: ${r.errors.length} problem${r.errors.length === 1 ? "" : "s"}`),
      h(
        "ul",
        {},
        ...r.errors.map((x) =>
          h(
            "li",
            {},
            x.file === "snippet.hcl"
              ? h("button", { class: "link lineref", onclick: () => gotoLine(x.line) }, `line ${x.line}`)
              : h("code", {}, `${x.file}:${x.line}`),
            ": ",
            x.message,
          ),
        ),
      ),
    );
  }
  const s = r.summary;
  const req = s.request;
  return h(
    "div",
    { class: "rule-ok" },
    h("p", {}, `✓ Valid with the running config: adds ${s.added.map((a) => `${a.name} (${a.verdict})`).join(", ") || "no rule"}.`),
    req ? h("p", { class: "small" }, `This request would now be: ${req.verdict}${req.rule ? ` by rule ${req.rule}` : ""}.`) : null,
    ...s.warnings.map((w) => h("p", { class: "muted small" }, `line ${w.line}: ${w.message}`)),
  );
}

/** Forget the draft when the operator signs out. */
export function resetBlockRule(): void {
  draft = undefined;
}
