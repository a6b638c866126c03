/// <reference lib="dom" />
// The Analytics page's "Shadow rules" panel: what each rule in shadow mode
// would have denied or held over the last day, with examples, so an operator
// can decide to enforce it. Fetched at most every 30 s (the page re-renders
// on every new event).
import { api } from "./api.ts";
import { h } from "./dom.ts";
import { fmtTime } from "./state.ts";

interface ShadowData {
  shadowRules: string[];
  rules: { rule: string; would: Record<string, number>; examples: { id: number; time: string; device: string; verdict: string; would: string; what: string }[] }[];
}

const REFRESH_MS = 30_000;
let cached: { at: number; data: ShadowData } | undefined;
let inflight = false;

export function shadowPanel(): HTMLElement {
  if (!inflight && (!cached || Date.now() - cached.at > REFRESH_MS)) {
    inflight = true;
    api<ShadowData>("/api/rules/shadow").then(
      (data) => {
        cached = { at: Date.now(), data };
        inflight = false;
        document.getElementById("shadow-panel")?.replaceWith(shadowPanel());
      },
      () => {
        inflight = false;
      },
    );
  }
  return h("figure", { class: "panel wide", id: "shadow-panel" }, h("figcaption", {}, "Shadow rules, last 24 hours"), body(cached?.data));
}

function body(data: ShadowData | undefined): HTMLElement {
  if (!data) return h("p", { class: "muted" }, "Loading…");
  const names = [...new Set([...data.shadowRules, ...data.rules.map((r) => r.rule)])].sort();
  if (names.length === 0) return h("p", { class: "muted" }, 'No shadow rules. A rule with mode = "shadow" is judged and recorded here, never applied.');
  const byName = new Map(data.rules.map((r) => [r.rule, r]));
  return h(
    "table",
    { class: "grid shadow-rules" },
    h("thead", {}, h("tr", {}, ...["Rule", "Would deny", "Would hold", "Would allow", "Examples where it would change the outcome"].map((c) => h("th", { scope: "col" }, c)))),
    h(
      "tbody",
      {},
      ...names.map((name) => {
        const r = byName.get(name);
        const n = (k: string) => String(r?.would[k] ?? 0);
        return h(
          "tr",
          {},
          h("td", { class: "nowrap" }, name, data.shadowRules.includes(name) ? "" : " (no longer shadow)"),
          h("td", { class: "num" }, n("deny")),
          h("td", { class: "num" }, n("approve")),
          h("td", { class: "num" }, n("allow")),
          h("td", {}, r?.examples.length ? h("ul", { class: "shadow-list" }, ...r.examples.map((x) => h("li", {}, `${fmtTime(x.time)} ${x.device}: ${x.what} (${x.verdict}, would ${x.would})`))) : "—"),
        );
      }),
    ),
  );
}
