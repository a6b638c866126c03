/// <reference lib="dom" />
// The Approvals page: held requests as cards, patched in place as the live
// stream adds, updates and decides them (a reason being typed survives). A
// held SQL statement shows the statement, its database and user; an HTTP
// request its request line, headers and body.
import { api, roleAtLeast } from "./api.ts";
import type { Approval } from "./api.ts";
import { h } from "./dom.ts";
import { ago, errorText, fact, flash, state } from "./state.ts";
import { sqlHold, type SqlHold } from "../../approvers/describe.ts";

export function approvalsView(): HTMLElement {
  return h(
    "section",
    { class: "approvals" },
    h("h2", {}, "Held requests"),
    h("p", { class: "muted" }, "Requests waiting for an operator. The agent's connection stays open until you decide or the approver's wait runs out."),
    h("div", { id: "approval-list", class: "approval-list" }),
  );
}

export function updateBadge(): void {
  const el = document.getElementById("pending-count");
  if (!el) return;
  const n = state.approvals.size;
  el.textContent = n > 0 ? String(n) : "";
  el.hidden = n === 0;
}

/** Patch the list in place: add new cards, drop decided ones, redraw changed ones. */
export function syncApprovals(redrawAll = false): void {
  const list = document.getElementById("approval-list");
  if (!list) return;
  const cards = new Map<string, Element>();
  for (const el of [...list.children]) {
    const id = (el as HTMLElement).dataset.id;
    if (!id || !state.approvals.has(id) || redrawAll) el.remove();
    else cards.set(id, el);
  }
  const ordered = [...state.approvals.values()].sort((a, b) => Date.parse(a.started) - Date.parse(b.started));
  let prev: Element | null = null;
  for (const a of ordered) {
    let card = cards.get(a.id);
    if (!card) {
      card = approvalCard(a);
      if (prev) prev.after(card);
      else list.prepend(card);
    }
    prev = card;
  }
  document.getElementById("approvals-empty")?.remove();
  if (state.approvals.size === 0) list.append(h("p", { id: "approvals-empty", class: "empty" }, "Nothing is waiting. New held requests appear here as they arrive."));
}

function approvalCard(a: Approval): HTMLElement {
  const canDecide = roleAtLeast(state.me?.role, "approver");
  const why = !canDecide
    ? `Your role (${state.me?.role}) can see held requests but not decide them.`
    : !a.decidable
      ? `Waiting on ${a.awaiting}, not on the dashboard.`
      : undefined;
  const reason = h("input", {
    class: "reason",
    name: "reason",
    placeholder: "Reason (sent to the agent on deny, recorded either way)",
    "aria-label": `Reason for ${a.request}`,
    value: state.reasons.get(a.id) ?? "",
    disabled: why !== undefined,
    maxlength: 2000,
    oninput: (ev) => state.reasons.set(a.id, (ev.target as HTMLInputElement).value),
  });
  const decide = (verb: "approve" | "deny") => async (ev: Event) => {
    ev.preventDefault();
    const card = (ev.target as HTMLElement).closest("article");
    card?.querySelectorAll("button").forEach((b) => (b.disabled = true));
    try {
      await api(`/api/approvals/${encodeURIComponent(a.id)}/${verb}`, { method: "POST", body: { reason: reason.value } });
      flash(`${verb === "approve" ? "Approved" : "Denied"}: ${a.request}`);
      state.approvals.delete(a.id);
      updateBadge();
      syncApprovals();
    } catch (e) {
      flash(`Could not ${verb}: ${errorText(e)}`, "error");
      card?.querySelectorAll("button").forEach((b) => (b.disabled = why !== undefined));
    }
  };
  const headers = Object.entries(a.headers ?? {});
  const started = Date.parse(a.started);
  const deadline = Date.parse(a.deadline);
  const sql = sqlHold({ ...a, headers: a.headers ?? {}, bodyPreview: a.bodyPreview ?? "", bodyTruncated: a.bodyTruncated ?? false });
  return h(
    "article",
    { class: `card approval${sql ? " approval-sql" : ""}`, "data-id": a.id, "aria-label": `Held: ${a.request}` },
    h(
      "header",
      {},
      sql ? h("span", { class: "method" }, "SQL") : h("span", { class: "method" }, a.method),
      sql ? h("code", { class: "reqline" }, `${sql.verb} on ${sql.database} @ ${a.host}`) : h("code", { class: "reqline" }, a.host + a.path),
      h("span", { class: "spacer" }),
      h("span", { class: "muted clock", "data-since": started, "data-deadline": deadline }, clockText(started, deadline)),
    ),
    sql ? statementView(sql) : null,
    h(
      "dl",
      { class: "facts" },
      ...(sql ? [...fact("Database", sql.database), ...fact("User", sql.user), ...fact("Endpoint", a.endpoint ?? "—")] : []),
      ...fact("Device", a.device),
      ...fact("Profile", a.profile),
      ...fact("Rule", a.rule),
      ...fact("Why held", a.reason || "—"),
      ...fact("Chain", `${a.chain.join(" → ")}${(a.required ?? 1) > 1 ? ` (needs ${a.required} operators, ${a.approvedBy?.length ?? 0} so far)` : ""}`),
      ...(a.message ? fact("Message", a.message) : []),
    ),
    !sql && headers.length
      ? h(
          "details",
          { class: "headers" },
          h("summary", {}, `Headers (${headers.length}, secrets redacted)`),
          h("table", { class: "kv" }, h("tbody", {}, ...headers.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, h("code", {}, v)))))),
        )
      : null,
    !sql && a.bodyPreview
      ? h("div", { class: "body-preview" }, h("div", { class: "muted small" }, `Body${a.bodyTruncated ? " (truncated)" : ""}`), h("pre", {}, a.bodyPreview))
      : null,
    h(
      "form",
      // Enter in the reason field decides nothing: only a button press does.
      { class: "decide", onsubmit: (ev) => ev.preventDefault() },
      reason,
      h("button", { type: "button", class: "approve", disabled: why !== undefined, title: why, onclick: decide("approve") }, "Approve"),
      h("button", { type: "button", class: "deny", disabled: why !== undefined, title: why, onclick: decide("deny") }, "Deny"),
    ),
    why ? h("p", { class: "muted small" }, why) : null,
  );
}

/** The held statement, whole as held (redacted, cut at a few KiB). */
function statementView(sql: SqlHold): HTMLElement {
  return h(
    "div",
    { class: "statement-preview" },
    h("div", { class: "muted small" }, `Statement${sql.truncated ? " (truncated)" : ""}`),
    h("pre", { class: "statement" }, sql.statement),
  );
}

function clockText(started: number, deadline: number): string {
  const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
  return `held ${ago(started)} · ${left > 0 ? `times out in ${left}s` : "timing out"}`;
}

window.setInterval(() => {
  for (const el of document.querySelectorAll<HTMLElement>(".clock")) {
    el.textContent = clockText(Number(el.dataset.since), Number(el.dataset.deadline));
  }
}, 1000);
