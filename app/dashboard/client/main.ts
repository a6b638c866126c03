/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
// The dashboard page's shell. One state object (state.ts), one live stream,
// four views, each in its own module:
//   1. boot: GET /api/auth/me → the app, or the login form on 401
//   2. a one-time password (mustChangePassword) → the password form first,
//      nothing else until it is changed (password.ts)
//   3. live: /api/events/stream (SSE) feeds the request log and the
//      held-request queue; on "ready" the queue is re-read whole
//   4. views (#/approvals, #/requests, #/devices, #/analytics, #/config) render from
//      the state; live changes patch the open view in place so a reason
//      being typed is not lost
import { api, ApiFailure, setCsrf, whenUnauthorized } from "./api.ts";
import type { ApprovalChange, GwEvent, Me } from "./api.ts";
import { clear, h } from "./dom.ts";
import { analyticsView } from "./charts.ts";
import { approvalKey, clearFlash, errorText, flash, hooks, MAX_EVENTS, page, PAGES, state } from "./state.ts";
import { loginView, type SignedIn } from "./login.ts";
import { passwordForm } from "./password.ts";
import { approvalsView, syncApprovals, updateBadge } from "./approvals.ts";
import { eventRow, matches, requestsView } from "./requests.ts";
import { devicesView } from "./devices.ts";
import { resetBlockRule } from "./block-rule.ts";
import { configView, resetConfigDraft } from "./config.ts";
import type { Approval } from "./api.ts";

let stream: EventSource | undefined;
const root = document.getElementById("app")!;

// ---- sign-in and the one-time password -------------------------------------

function showLogin(message?: string): void {
  stream?.close();
  stream = undefined;
  state.me = undefined;
  resetBlockRule();
  resetConfigDraft();
  loginView(root, start, message);
}

function start(me: Me & { csrf?: string; mustChangePassword?: boolean }): void {
  state.me = { operator: me.operator, role: me.role };
  if (me.csrf) setCsrf(me.csrf);
  state.approvals.clear();
  state.events = [];
  state.selected = undefined;
  if (me.mustChangePassword === true) {
    // Nothing else until the one-time password is replaced: no stream, no views.
    stream?.close();
    stream = undefined;
    clear(
      root,
      h(
        "div",
        { class: "login-wrap" },
        h(
          "div",
          {},
          passwordForm({
            forced: true,
            onDone: () => {
              start({ ...me, mustChangePassword: false });
              flash("Password changed.");
            },
          }),
          h("p", { class: "center" }, h("button", { class: "link", id: "pw-signout", onclick: () => void signOut() }, "Sign out")),
        ),
      ),
    );
    return;
  }
  renderShell();
  connect();
  void loadEvents();
}

async function signOut(): Promise<void> {
  try {
    await api("/api/auth/logout", { method: "POST" });
  } catch {
    // The session is gone either way.
  }
  showLogin();
}

function openPasswordDialog(): void {
  if (document.getElementById("password-dialog")) return;
  const close = () => document.getElementById("password-dialog")?.remove();
  const dialog = h(
    "div",
    { class: "modal", id: "password-dialog", role: "dialog", "aria-modal": "true", "aria-label": "Change password" },
    passwordForm({
      forced: false,
      onDone: () => {
        close();
        flash("Password changed. Other sessions of this account were signed out.");
      },
      onCancel: close,
    }),
  );
  document.body.append(dialog);
}

// ---- shell and routing -----------------------------------------------------

function renderShell(): void {
  const me = state.me!;
  const nav = h(
    "nav",
    { "aria-label": "Main" },
    ...PAGES.map((p) =>
      h("a", { href: `#/${p.id}`, id: `nav-${p.id}`, "aria-current": page() === p.id ? "page" : undefined }, p.label, p.id === "approvals" ? h("span", { class: "badge", id: "pending-count" }) : null),
    ),
  );
  clear(
    root,
    h(
      "header",
      { class: "top" },
      h("span", { class: "brand" }, "clawpatrol"),
      h("span", { class: "version", id: "version", title: "running version" }),
      nav,
      h("span", { class: "spacer" }),
      h("span", { id: "live", class: "live" }),
      h("span", { class: "who" }, me.operator, " ", h("span", { class: "role" }, me.role)),
      h("button", { class: "link", id: "change-password", onclick: openPasswordDialog }, "Password"),
      h("button", { class: "link", id: "sign-out", onclick: () => void signOut() }, "Sign out"),
    ),
    h("div", { id: "flash", "aria-live": "polite" }),
    h("main", { id: "view" }),
  );
  updateLive();
  updateBadge();
  renderView();
  void showVersion();
}

/** The running version in the header (from the gateway, so it changes after an update). */
async function showVersion(): Promise<void> {
  try {
    const { version } = await api<{ version: string }>("/api/version");
    const el = document.getElementById("version");
    if (el) el.textContent = `v${version}`;
  } catch {
    // The header works without it.
  }
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
      clear(view, analyticsView(state.events, Date.now(), state.approvals.size));
      return;
    case "config":
      clear(view, configView());
      return;
  }
}
hooks.renderView = renderView;

window.addEventListener("hashchange", () => {
  if (!state.me) return;
  // A notice was about the page being left ("Password changed", "Rule copied").
  clearFlash();
  renderView();
});

function updateLive(): void {
  const el = document.getElementById("live");
  if (!el) return;
  el.className = `live live-${state.live}`;
  el.textContent = state.live === "live" ? "● live" : state.live === "connecting" ? "○ connecting" : "○ reconnecting";
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
    if (page() === "analytics") renderView();
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
  // Analytics counts the requests held right now.
  if (page() === "analytics") renderView();
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
hooks.loadEvents = loadEvents;

// ---- boot ------------------------------------------------------------------

whenUnauthorized(() => showLogin("Your session ended. Sign in again."));

async function boot(): Promise<void> {
  try {
    start(await api<SignedIn>("/api/auth/me", { quiet401: true }));
  } catch (e) {
    showLogin(e instanceof ApiFailure && e.status === 401 ? undefined : errorText(e));
  }
}

void boot();
