/// <reference lib="dom" />
// The Requests page: the live request log with filters, and the detail of
// one request (with "Block requests like this" for admins). An sql event is
// shown as a statement on a database (families.ts), an http one as a request.
import { roleAtLeast } from "./api.ts";
import type { Approval, GwEvent } from "./api.ts";
import { h, type Child } from "./dom.ts";
import { fmtMs } from "./analytics.ts";
import { approvalKey, fact, fmtDateTime, fmtTime, hooks, state, verdictTag } from "./state.ts";
import { blockable, blockRuleSection } from "./block-rule.ts";
import { searchText, sqlLine, sqlResult, sqlView, statementLine, type SqlView } from "./families.ts";

export function matches(e: GwEvent): boolean {
  const f = state.filter;
  if (f.device && e.device !== f.device) return false;
  if (f.verdict && e.verdict !== f.verdict) return false;
  if (f.text && !searchText(e).includes(f.text.toLowerCase())) return false;
  return true;
}

export function requestsView(): HTMLElement {
  const devices = [...new Set(state.events.map((e) => e.device))].sort();
  const verdicts = [...new Set(["allow", "deny", ...state.events.map((e) => e.verdict)])].sort();
  const refilter = () => hooks.renderView();
  const select = (id: string, label: string, options: string[], key: "device" | "verdict") =>
    h(
      "label",
      {},
      label,
      " ",
      h(
        "select",
        { id, onchange: (ev) => ((state.filter[key] = (ev.target as HTMLSelectElement).value), refilter()) },
        h("option", { value: "" }, "all"),
        ...options.map((o) => h("option", { value: o, selected: state.filter[key] === o }, o)),
      ),
    );
  const search = h("input", {
    type: "search",
    placeholder: "host, path, statement or rule",
    "aria-label": "Filter by host, path, statement or rule",
    value: state.filter.text,
    onchange: (ev) => ((state.filter.text = (ev.target as HTMLInputElement).value), refilter()),
  });
  const rows = state.events.filter(matches).slice(0, 1000).map(eventRow);
  const table = h(
    "table",
    { class: "grid events" },
    h(
      "thead",
      {},
      h("tr", {}, ...["Time", "Device", "Verdict", "Method", "Host and path / statement", "Status", "Latency", "Rule"].map((c) => h("th", { scope: "col" }, c))),
    ),
    h("tbody", { id: "events-body" }, ...rows),
  );
  return h(
    "section",
    { class: "requests" },
    h("div", { class: "toolbar" }, h("h2", {}, "Requests"), select("filter-device", "Device", devices, "device"), select("filter-verdict", "Verdict", verdicts, "verdict"), search),
    h(
      "div",
      { class: state.selected ? "split" : "" },
      h(
        "div",
        { class: "table-wrap" },
        table,
        rows.length === 0 ? h("p", { id: "events-empty", class: "empty" }, "No requests yet. They appear here live.") : null,
        state.olderCursor !== null
          ? h("button", { class: "more", onclick: () => void hooks.loadEvents(state.olderCursor ?? undefined) }, "Load older")
          : null,
      ),
      state.selected ? eventDetail(state.selected) : null,
    ),
  );
}

export function eventRow(e: GwEvent): HTMLTableRowElement {
  const open = () => {
    state.selected = e;
    hooks.renderView();
    document.getElementById("detail-close")?.focus();
  };
  return h(
    "tr",
    {
      tabindex: 0,
      class: `row v-row-${e.verdict}${state.selected === e ? " selected" : ""}`,
      onclick: open,
      onkeydown: (ev) => {
        if ((ev as KeyboardEvent).key === "Enter") open();
      },
    },
    h("td", { class: "num" }, fmtTime(e.time)),
    h("td", {}, e.device),
    h("td", {}, verdictTag(e.verdict), ...shadowTags(e)),
    ...requestCells(e),
    h("td", { class: "num" }, fmtMs(e.durationMs)),
    h("td", { class: "nowrap" }, e.rule ?? "—"),
  );
}

/** What shadow rules would have decided, beside the real verdict (never applied). */
function shadowTags(e: GwEvent): HTMLElement[] {
  const differing = (e.shadow ?? []).filter((s) => s.would !== e.verdict);
  if (differing.length === 0) return [];
  const title = differing.map((s) => `shadow rule ${s.rule} would ${s.would}`).join("; ");
  return [h("span", { class: "shadow", title }, `would ${differing[0]!.would}`)];
}

/** Method, what was asked, and its result: an HTTP request line, or a statement on a database. */
function requestCells(e: GwEvent): HTMLTableCellElement[] {
  const sql = sqlView(e);
  if (sql) {
    return [
      h("td", { class: "nowrap" }, h("span", { class: "family" }, "sql"), " ", sql.verb),
      h(
        "td",
        { class: "path sql", title: e.summary ?? sqlLine(sql) },
        h("span", { class: "sql-where" }, `${e.endpoint ?? e.host} · ${sql.database}`),
        " ",
        h("code", {}, statementLine(sql.statement)),
      ),
      h("td", { class: `num${sql.sqlstate ? " sqlstate" : ""}` }, sqlResult(sql)),
    ];
  }
  // A Kubernetes request: its verb (from the k8s facets) beside the request line; the summary on hover.
  const k8sVerb = e.family === "k8s" && typeof e.action?.verb === "string" ? e.action.verb : undefined;
  return [
    h("td", { class: "nowrap" }, ...(k8sVerb !== undefined ? [h("span", { class: "family" }, "k8s"), " ", k8sVerb] : [e.method ?? e.kind])),
    h("td", { class: "path", ...(e.summary && k8sVerb !== undefined ? { title: e.summary } : {}) }, h("code", {}, `${e.host}${e.port !== 443 && e.port ? `:${e.port}` : ""}${e.path ?? ""}`)),
    h("td", { class: "num" }, e.status ?? "—"),
  ];
}

function sqlFactRows(e: GwEvent, sql: SqlView): [string, Child][] {
  return [
    ["Family", "sql"],
    ["Summary", e.summary ?? sqlLine(sql)],
    ["Statement", h("pre", { class: "statement" }, sql.statement || "—")],
    ["Database", `${sql.database} (as ${sql.user}) on ${e.host}:${e.port}`],
    ["Verb", sql.parsed ? sql.verb : "unknown: the parser rejected the statement"],
    ["Tables", sql.tables.length ? sql.tables.join(", ") : "—"],
    ...(sql.functions.length ? ([["Functions", sql.functions.join(", ")]] as [string, Child][]) : []),
    ["Rows", sql.rows ?? "—"],
    ["SQLSTATE", sql.sqlstate ?? "—"],
  ];
}

function eventDetail(e: GwEvent): HTMLElement {
  const held = state.seenApprovals.get(approvalKey(e));
  const sql = sqlView(e);
  const rows: [string, Child][] = [
    ["Time", fmtDateTime(e.time)],
    ["Verdict", verdictTag(e.verdict)],
    ["Reason", e.reason || "—"],
    ["Device", `${e.device} (profile ${e.profile})`],
    ...(sql ? sqlFactRows(e, sql) : ([["Request", h("code", {}, `${e.method ?? e.kind} ${e.host}:${e.port}${e.path ?? ""}`)]] as [string, Child][])),
    ...(e.family === "k8s" && e.summary ? ([["Kubernetes", h("code", {}, e.summary)]] as [string, Child][]) : []),
    ["Endpoint", e.endpoint ?? "—"],
    ["Rule", e.rule ?? "—"],
    ...(sql ? [] : ([["Status", e.status ?? "—"]] as [string, Child][])),
    ["Latency", fmtMs(e.durationMs)],
    ...(sql ? [] : ([["Bytes", `${e.bytesUp} up · ${e.bytesDown} down`]] as [string, Child][])),
    ["Credential", e.credential ?? "—"],
  ];
  if (e.approvers) rows.push(["Approvers", e.approvers], ["Decided by", e.operator ?? "—"], ["Held for", e.approvalMs !== undefined ? fmtMs(e.approvalMs) : "—"]);
  if (e.remembered) rows.push(["Remembered", "covered by an earlier approval"]);
  if (e.shadow?.length) {
    rows.push(["Shadow rules", h("ul", { class: "shadow-list" }, ...e.shadow.map((s) => h("li", {}, `${s.rule} would ${s.would}`)))]);
  }
  if (e.detail) rows.push(["Detail", h("pre", {}, e.detail)]);
  rows.push(["Flow", h("code", {}, e.flowId)]);
  const admin = roleAtLeast(state.me?.role, "admin");
  return h(
    "aside",
    { class: "detail", "aria-label": "Request detail" },
    h(
      "header",
      {},
      h("h3", {}, "Request detail"),
      h("span", { class: "spacer" }),
      h("button", { id: "detail-close", class: "link", onclick: () => ((state.selected = undefined), hooks.renderView()) }, "Close"),
    ),
    h("dl", { class: "facts" }, ...rows.flatMap(([k, v]) => fact(k, v))),
    admin
      ? blockRuleSection(e)
      : blockable(e)
        ? h("p", { class: "muted small" }, "Admins can turn a request into a rule that blocks requests like it.")
        : null,
    heldView(held, sql !== undefined),
  );
}

/** The request as it was held, when this session saw the hold: a statement, or headers and body. */
function heldView(held: Approval | undefined, sql: boolean): HTMLElement | null {
  if (held && sql) return h("div", {}, h("h4", {}, "As held for approval (secrets redacted)"), h("pre", { class: "statement" }, held.bodyPreview || held.path));
  if (held) {
    return h(
      "div",
      {},
      h("h4", {}, "As held for approval (secrets redacted)"),
      h("table", { class: "kv" }, h("tbody", {}, ...Object.entries(held.headers ?? {}).map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, h("code", {}, v)))))),
      held.bodyPreview ? h("pre", {}, held.bodyPreview) : null,
    );
  }
  return sql ? null : h("p", { class: "muted small" }, "Headers and bodies are kept only for held requests seen in this session.");
}
