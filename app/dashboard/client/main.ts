/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
// The dashboard page. One state object, one live stream, four views:
//   1. boot: GET /api/auth/me → the app, or the login form on 401
//   2. live: /api/events/stream (SSE) feeds the request log and the
//      held-request queue; on "ready" the queue is re-read whole
//   3. views (#/approvals, #/requests, #/devices, #/analytics) render from
//      the state; live changes patch the open view in place so a reason
//      being typed is not lost
import { api, ApiFailure, roleAtLeast, setCsrf, whenUnauthorized } from "./api.ts";
import type { Approval, ApprovalChange, Device, GwEvent, Me, Onboarding, Profile } from "./api.ts";
import { clear, h, type Child } from "./dom.ts";
import { analyticsView } from "./charts.ts";
import { fmtMs } from "./analytics.ts";

type Page = "approvals" | "requests" | "devices" | "analytics";
const PAGES: { id: Page; label: string }[] = [
  { id: "approvals", label: "Approvals" },
  { id: "requests", label: "Requests" },
  { id: "devices", label: "Devices" },
  { id: "analytics", label: "Analytics" },
];
const MAX_EVENTS = 5000;

const state = {
  me: undefined as Me | undefined,
  mustChangePassword: false,
  approvals: new Map<string, Approval>(),
  /** Held requests seen this session, by request identity, for the request detail's headers and body. */
  seenApprovals: new Map<string, Approval>(),
  reasons: new Map<string, string>(),
  events: [] as GwEvent[],
  olderCursor: null as number | null,
  selected: undefined as GwEvent | undefined,
  filter: { device: "", verdict: "", text: "" },
  live: "connecting" as "connecting" | "live" | "offline",
};

let stream: EventSource | undefined;
const root = document.getElementById("app")!;

// ---- helpers ---------------------------------------------------------------

const fmtTime = (iso: string | number) => {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleTimeString([], { hour12: false });
};
const fmtDateTime = (v: string | number | null) => (v === null ? "never" : new Date(v).toLocaleString([], { hour12: false }));
const ago = (t: number) => {
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
};
const verdictTag = (v: string) => h("span", { class: `verdict v-${/^[a-z]+$/.test(v) ? v : "other"}` }, v);
const approvalKey = (x: { device: string; method?: string; host: string; path?: string }) => `${x.device} ${x.method ?? ""} ${x.host}${x.path ?? ""}`;
const page = (): Page => {
  const id = location.hash.replace(/^#\/?/, "");
  return PAGES.some((p) => p.id === id) ? (id as Page) : "approvals";
};
const errorText = (e: unknown) => (e instanceof ApiFailure ? `${e.message} (${e.code})` : e instanceof Error ? e.message : String(e));

function flash(text: string, kind: "ok" | "error" = "ok"): void {
  const el = document.getElementById("flash");
  if (!el) return;
  clear(el, h("div", { class: `flash flash-${kind}`, role: kind === "error" ? "alert" : "status" }, text));
  window.setTimeout(() => el.firstElementChild?.remove(), 6000);
}

// ---- login -----------------------------------------------------------------

function showLogin(message?: string): void {
  stream?.close();
  stream = undefined;
  state.me = undefined;
  const err = h("p", { class: "login-error", role: "alert" }, message ?? "");
  const name = h("input", { id: "login-name", name: "name", autocomplete: "username", required: true, autofocus: true });
  const password = h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    {
      class: "login",
      onsubmit: async (ev) => {
        ev.preventDefault();
        submit.disabled = true;
        err.textContent = "";
        try {
          const me = await api<Me & { csrf: string; mustChangePassword?: boolean }>("/api/auth/login", {
            method: "POST",
            body: { name: name.value, password: password.value },
            quiet401: true,
          });
          start(me);
        } catch (e) {
          err.textContent = e instanceof ApiFailure && e.status === 401 ? "Wrong name or password." : errorText(e);
          submit.disabled = false;
          password.select();
        }
      },
    },
    h("h1", {}, "clawpatrol"),
    h("p", { class: "muted" }, "Operator sign-in"),
    h("label", { for: "login-name" }, "Name"),
    name,
    h("label", { for: "login-password" }, "Password"),
    password,
    submit,
    err,
  );
  clear(root, h("div", { class: "login-wrap" }, form));
  name.focus();
}

// ---- shell and routing -----------------------------------------------------

function start(me: Me & { mustChangePassword?: boolean }): void {
  state.me = { operator: me.operator, role: me.role };
  state.mustChangePassword = me.mustChangePassword === true;
  if (me.csrf) setCsrf(me.csrf);
  state.approvals.clear();
  state.events = [];
  state.selected = undefined;
  renderShell();
  connect();
  void loadEvents();
}

function renderShell(): void {
  const me = state.me!;
  const nav = h(
    "nav",
    { "aria-label": "Main" },
    ...PAGES.map((p) =>
      h("a", { href: `#/${p.id}`, id: `nav-${p.id}`, "aria-current": page() === p.id ? "page" : undefined }, p.label, p.id === "approvals" ? h("span", { class: "badge", id: "pending-count" }) : null),
    ),
  );
  const logout = h(
    "button",
    {
      class: "link",
      onclick: async () => {
        try {
          await api("/api/auth/logout", { method: "POST" });
        } catch {
          // The session is gone either way.
        }
        showLogin();
      },
    },
    "Sign out",
  );
  clear(
    root,
    h(
      "header",
      { class: "top" },
      h("span", { class: "brand" }, "clawpatrol"),
      nav,
      h("span", { class: "spacer" }),
      h("span", { id: "live", class: "live" }),
      h("span", { class: "who" }, me.operator, " ", h("span", { class: "role" }, me.role)),
      logout,
    ),
    state.mustChangePassword ? h("div", { class: "banner" }, "Your password is a one-time password: change it (POST /api/auth/password) before you rely on this account.") : null,
    h("div", { id: "flash", "aria-live": "polite" }),
    h("main", { id: "view" }),
  );
  updateLive();
  updateBadge();
  renderView();
}

function renderView(): void {
  const view = document.getElementById("view");
  if (!view || !state.me) return;
  const p = page();
  for (const x of PAGES) document.getElementById(`nav-${x.id}`)?.toggleAttribute("aria-current", x.id === p);
  document.getElementById(`nav-${p}`)?.setAttribute("aria-current", "page");
  document.title = `${PAGES.find((x) => x.id === p)!.label} · clawpatrol`;
  view.dataset.page = p;
  switch (p) {
    case "approvals":
      clear(view, approvalsView());
      syncApprovals();
      return;
    case "requests":
      clear(view, requestsView());
      return;
    case "devices":
      clear(view, h("p", { class: "muted" }, "Loading devices…"));
      void devicesView().then(
        (el) => view.dataset.page === "devices" && clear(view, el),
        (e: unknown) => view.dataset.page === "devices" && clear(view, h("p", { class: "error" }, `Could not load devices: ${errorText(e)}`)),
      );
      return;
    case "analytics":
      clear(view, analyticsView(state.events, Date.now()));
      return;
  }
}

window.addEventListener("hashchange", () => state.me && renderView());

function updateLive(): void {
  const el = document.getElementById("live");
  if (!el) return;
  el.className = `live live-${state.live}`;
  el.textContent = state.live === "live" ? "● live" : state.live === "connecting" ? "○ connecting" : "○ reconnecting";
}

function updateBadge(): void {
  const el = document.getElementById("pending-count");
  if (!el) return;
  const n = state.approvals.size;
  el.textContent = n > 0 ? String(n) : "";
  el.hidden = n === 0;
}

// ---- the live stream ------------------------------------------------------

function connect(): void {
  stream?.close();
  state.live = "connecting";
  updateLive();
  const es = new EventSource("/api/events/stream");
  stream = es;
  es.addEventListener("ready", () => {
    state.live = "live";
    updateLive();
    void refreshApprovals();
  });
  es.addEventListener("event", (m) => onEvent(JSON.parse((m as MessageEvent<string>).data) as GwEvent));
  es.addEventListener("approval", (m) => onApproval(JSON.parse((m as MessageEvent<string>).data) as ApprovalChange));
  es.addEventListener("end", () => {
    es.close();
    void checkSession();
  });
  es.onerror = () => {
    if (stream !== es) return;
    state.live = "offline";
    updateLive();
    // EventSource retries by itself unless the server refused (401): then it is closed.
    if (es.readyState === EventSource.CLOSED) window.setTimeout(() => void checkSession(), 1000);
  };
}

async function checkSession(): Promise<void> {
  try {
    await api<Me>("/api/auth/me");
    if (state.me) connect();
  } catch {
    // 401 went to the login page; otherwise try again shortly.
    if (state.me) window.setTimeout(() => void checkSession(), 3000);
  }
}

async function refreshApprovals(): Promise<void> {
  try {
    const { approvals } = await api<{ approvals: Approval[] }>("/api/approvals");
    state.approvals = new Map(approvals.map((a) => [a.id, a]));
    for (const a of approvals) state.seenApprovals.set(approvalKey(a), a);
    updateBadge();
    syncApprovals(true);
  } catch (e) {
    if (!(e instanceof ApiFailure && e.status === 401)) flash(`Could not load approvals: ${errorText(e)}`, "error");
  }
}

function onApproval(c: ApprovalChange): void {
  if (c.type === "decided") {
    state.approvals.delete(c.id);
    state.reasons.delete(c.id);
  } else {
    state.approvals.set(c.approval.id, c.approval);
    state.seenApprovals.set(approvalKey(c.approval), c.approval);
  }
  updateBadge();
  syncApprovals(c.type === "updated");
}

function onEvent(e: GwEvent): void {
  state.events.unshift(e);
  if (state.events.length > MAX_EVENTS) state.events.length = MAX_EVENTS;
  const p = page();
  if (p === "requests") {
    const body = document.getElementById("events-body");
    if (body && matches(e)) {
      body.prepend(eventRow(e));
      document.getElementById("events-empty")?.remove();
    }
  } else if (p === "analytics") {
    scheduleAnalytics();
  }
}

let analyticsTimer: number | undefined;
function scheduleAnalytics(): void {
  if (analyticsTimer !== undefined) return;
  analyticsTimer = window.setTimeout(() => {
    analyticsTimer = undefined;
    if (page() === "analytics") renderView();
  }, 2000);
}

async function loadEvents(before?: number): Promise<void> {
  try {
    const q = new URLSearchParams({ limit: "1000" });
    if (before !== undefined) q.set("before", String(before));
    const { events, next } = await api<{ events: GwEvent[]; next: number | null }>(`/api/events?${q}`);
    if (before === undefined) {
      // Live events may have arrived meanwhile; keep them (they have no id yet).
      const key = (e: GwEvent) => `${e.time} ${e.flowId} ${e.method ?? ""} ${e.path ?? ""}`;
      const stored = new Set(events.map(key));
      const live = state.events.filter((e) => e.id === undefined && !stored.has(key(e)));
      state.events = [...live, ...events];
    } else {
      state.events.push(...events);
    }
    state.olderCursor = next;
    if (page() === "requests" || page() === "analytics") renderView();
  } catch (e) {
    if (!(e instanceof ApiFailure && e.status === 401)) flash(`Could not load requests: ${errorText(e)}`, "error");
  }
}

// ---- Approvals ------------------------------------------------------------

function approvalsView(): HTMLElement {
  return h(
    "section",
    { class: "approvals" },
    h("h2", {}, "Held requests"),
    h("p", { class: "muted" }, "Requests waiting for an operator. The agent's connection stays open until you decide or the approver's wait runs out."),
    h("div", { id: "approval-list", class: "approval-list" }),
  );
}

/** Patch the list in place: add new cards, drop decided ones, redraw changed ones. */
function syncApprovals(redrawAll = false): void {
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
  return h(
    "article",
    { class: "card approval", "data-id": a.id, "aria-label": `Held: ${a.request}` },
    h(
      "header",
      {},
      h("span", { class: "method" }, a.method),
      h("code", { class: "reqline" }, a.host + a.path),
      h("span", { class: "spacer" }),
      h("span", { class: "muted clock", "data-since": started, "data-deadline": deadline }, clockText(started, deadline)),
    ),
    h(
      "dl",
      { class: "facts" },
      ...fact("Device", a.device),
      ...fact("Profile", a.profile),
      ...fact("Rule", a.rule),
      ...fact("Why held", a.reason || "—"),
      ...fact("Chain", `${a.chain.join(" → ")}${(a.required ?? 1) > 1 ? ` (needs ${a.required} operators, ${a.approvedBy?.length ?? 0} so far)` : ""}`),
      ...(a.message ? fact("Message", a.message) : []),
    ),
    headers.length
      ? h(
          "details",
          { class: "headers" },
          h("summary", {}, `Headers (${headers.length}, secrets redacted)`),
          h("table", { class: "kv" }, h("tbody", {}, ...headers.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, h("code", {}, v)))))),
        )
      : null,
    a.bodyPreview
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

function clockText(started: number, deadline: number): string {
  const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
  return `held ${ago(started)} · ${left > 0 ? `times out in ${left}s` : "timing out"}`;
}

window.setInterval(() => {
  for (const el of document.querySelectorAll<HTMLElement>(".clock")) {
    el.textContent = clockText(Number(el.dataset.since), Number(el.dataset.deadline));
  }
}, 1000);

function fact(label: string, value: Child): HTMLElement[] {
  return [h("dt", {}, label), h("dd", {}, value)];
}

// ---- Requests --------------------------------------------------------------

function matches(e: GwEvent): boolean {
  const f = state.filter;
  if (f.device && e.device !== f.device) return false;
  if (f.verdict && e.verdict !== f.verdict) return false;
  if (f.text && !`${e.host}${e.path ?? ""} ${e.rule ?? ""}`.toLowerCase().includes(f.text.toLowerCase())) return false;
  return true;
}

function requestsView(): HTMLElement {
  const devices = [...new Set(state.events.map((e) => e.device))].sort();
  const verdicts = [...new Set(["allow", "deny", ...state.events.map((e) => e.verdict)])].sort();
  const refilter = () => renderView();
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
    placeholder: "host, path or rule",
    "aria-label": "Filter by host, path or rule",
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
      h("tr", {}, ...["Time", "Device", "Verdict", "Method", "Host and path", "Status", "Latency", "Rule"].map((c) => h("th", { scope: "col" }, c))),
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
          ? h("button", { class: "more", onclick: () => void loadEvents(state.olderCursor ?? undefined) }, "Load older")
          : null,
      ),
      state.selected ? eventDetail(state.selected) : null,
    ),
  );
}

function eventRow(e: GwEvent): HTMLTableRowElement {
  const open = () => {
    state.selected = e;
    renderView();
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
    h("td", {}, verdictTag(e.verdict)),
    h("td", {}, e.method ?? e.kind),
    h("td", { class: "path" }, h("code", {}, `${e.host}${e.port !== 443 && e.port ? `:${e.port}` : ""}${e.path ?? ""}`)),
    h("td", { class: "num" }, e.status ?? "—"),
    h("td", { class: "num" }, fmtMs(e.durationMs)),
    h("td", { class: "nowrap" }, e.rule ?? "—"),
  );
}

function eventDetail(e: GwEvent): HTMLElement {
  const held = state.seenApprovals.get(approvalKey(e));
  const rows: [string, Child][] = [
    ["Time", fmtDateTime(e.time)],
    ["Verdict", verdictTag(e.verdict)],
    ["Reason", e.reason || "—"],
    ["Device", `${e.device} (profile ${e.profile})`],
    ["Request", h("code", {}, `${e.method ?? e.kind} ${e.host}:${e.port}${e.path ?? ""}`)],
    ["Endpoint", e.endpoint ?? "—"],
    ["Rule", e.rule ?? "—"],
    ["Status", e.status ?? "—"],
    ["Latency", fmtMs(e.durationMs)],
    ["Bytes", `${e.bytesUp} up · ${e.bytesDown} down`],
    ["Credential", e.credential ?? "—"],
  ];
  if (e.approvers) rows.push(["Approvers", e.approvers], ["Decided by", e.operator ?? "—"], ["Held for", e.approvalMs !== undefined ? fmtMs(e.approvalMs) : "—"]);
  if (e.remembered) rows.push(["Remembered", "covered by an earlier approval"]);
  if (e.detail) rows.push(["Detail", h("pre", {}, e.detail)]);
  rows.push(["Flow", h("code", {}, e.flowId)]);
  return h(
    "aside",
    { class: "detail", "aria-label": "Request detail" },
    h(
      "header",
      {},
      h("h3", {}, "Request detail"),
      h("span", { class: "spacer" }),
      h("button", { id: "detail-close", class: "link", onclick: () => ((state.selected = undefined), renderView()) }, "Close"),
    ),
    h("dl", { class: "facts" }, ...rows.flatMap(([k, v]) => fact(k, v))),
    held
      ? h(
          "div",
          {},
          h("h4", {}, "As held for approval (secrets redacted)"),
          h("table", { class: "kv" }, h("tbody", {}, ...Object.entries(held.headers ?? {}).map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, h("code", {}, v)))))),
          held.bodyPreview ? h("pre", {}, held.bodyPreview) : null,
        )
      : h("p", { class: "muted small" }, "Headers and bodies are kept only for held requests seen in this session."),
  );
}

// ---- Devices ---------------------------------------------------------------

async function devicesView(): Promise<HTMLElement> {
  const admin = roleAtLeast(state.me?.role, "admin");
  const [devices, profiles, onboarding] = await Promise.all([
    api<{ devices: Device[] }>("/api/devices").then((r) => r.devices),
    api<{ profiles: Profile[] }>("/api/profiles").then((r) => r.profiles.map((p) => p.name)),
    api<{ pending: Onboarding[] }>("/api/onboarding").then(
      (r) => r.pending,
      (e: unknown) => (e instanceof ApiFailure && e.code === "onboarding_off" ? null : Promise.reject(e)),
    ),
  ]);
  const act = (label: string, fn: () => Promise<unknown>) => async () => {
    try {
      await fn();
      flash(label);
      renderView();
    } catch (e) {
      flash(errorText(e), "error");
    }
  };
  const profileSelect = (current: string | null, label: string) =>
    h("select", { "aria-label": label }, ...profiles.map((p) => h("option", { value: p, selected: p === current }, p)));

  const deviceRows = devices.map((d) => {
    const sel = profileSelect(d.profile, `Profile for ${d.name}`);
    let armed = false;
    const revoke = h("button", { class: "deny small" }, "Revoke");
    revoke.addEventListener("click", () => {
      if (!armed) {
        armed = true;
        revoke.textContent = "Confirm revoke";
        return;
      }
      void act(`Revoked ${d.name}`, () => api(`/api/devices/${encodeURIComponent(d.name)}/revoke`, { method: "POST" }))();
    });
    return h(
      "tr",
      { class: d.revoked ? "revoked" : "" },
      h("td", {}, d.name),
      h("td", {}, d.kind),
      h("td", {}, d.profile),
      h("td", {}, h("code", {}, [d.address, d.address6].filter(Boolean).join(" ") || "—")),
      h("td", { class: "num" }, fmtDateTime(d.last_seen)),
      h("td", {}, d.revoked ? verdictTag("revoked") : "active"),
      admin && !d.revoked
        ? h(
            "td",
            { class: "actions" },
            sel,
            h("button", { class: "small", onclick: act(`Profile of ${d.name} changed`, () => api(`/api/devices/${encodeURIComponent(d.name)}/profile`, { method: "POST", body: { profile: sel.value } })) }, "Set profile"),
            revoke,
          )
        : h("td", {}, ""),
    );
  });

  const pendingSection =
    onboarding === null
      ? h("p", { class: "muted" }, "Device onboarding is off (no gateway { wireguard } block).")
      : onboarding.length === 0
        ? h("p", { class: "empty" }, "No devices are waiting to join.")
        : h(
            "table",
            { class: "grid" },
            h("thead", {}, h("tr", {}, ...["Code", "Name", "Requested profile", "From", "Expires", ""].map((c) => h("th", { scope: "col" }, c)))),
            h(
              "tbody",
              {},
              ...onboarding.map((o) => {
                const sel = profileSelect(o.requested_profile ?? profiles[0] ?? null, `Profile for ${o.name}`);
                return h(
                  "tr",
                  {},
                  h("td", {}, h("code", {}, o.code)),
                  h("td", {}, o.name),
                  h("td", {}, o.requested_profile ?? "—"),
                  h("td", {}, o.source_ip ?? "—"),
                  h("td", { class: "num" }, fmtTime(o.expires_at)),
                  admin
                    ? h(
                        "td",
                        { class: "actions" },
                        sel,
                        h("button", { class: "approve small", onclick: act(`Enrolled ${o.name}`, () => api(`/api/onboarding/${encodeURIComponent(o.code)}/approve`, { method: "POST", body: { profile: sel.value } })) }, "Approve"),
                        h("button", { class: "deny small", onclick: act(`Refused ${o.name}`, () => api(`/api/onboarding/${encodeURIComponent(o.code)}/deny`, { method: "POST" })) }, "Deny"),
                      )
                    : h("td", { class: "muted small" }, "admins decide"),
                );
              }),
            ),
          );

  return h(
    "section",
    { class: "devices" },
    h("div", { class: "toolbar" }, h("h2", {}, "Devices"), h("span", { class: "spacer" }), h("button", { class: "small", onclick: () => renderView() }, "Refresh")),
    admin ? null : h("p", { class: "muted small" }, "Only admins change devices."),
    h(
      "table",
      { class: "grid" },
      h("thead", {}, h("tr", {}, ...["Name", "Kind", "Profile", "Address", "Last seen", "Status", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, ...deviceRows),
    ),
    devices.length === 0 ? h("p", { class: "empty" }, "No devices yet.") : null,
    h("h3", {}, "Waiting to join"),
    pendingSection,
  );
}

// ---- boot ------------------------------------------------------------------

whenUnauthorized(() => showLogin("Your session ended. Sign in again."));

async function boot(): Promise<void> {
  try {
    start(await api<Me & { mustChangePassword?: boolean }>("/api/auth/me", { quiet401: true }));
  } catch (e) {
    showLogin(e instanceof ApiFailure && e.status === 401 ? undefined : errorText(e));
  }
}

void boot();
