/// <reference lib="dom" />
// What every page of the dashboard shares: the one state object, the
// current page, small formatters, the flash message, and hooks the shell
// (main.ts) fills in so a page can ask for a redraw without importing it.
import { ApiFailure } from "./api.ts";
import type { Approval, GwEvent, Me } from "./api.ts";
import { clear, h, type Child } from "./dom.ts";

export type Page = "approvals" | "requests" | "devices" | "analytics" | "config";
export const PAGES: { id: Page; label: string }[] = [
  { id: "approvals", label: "Approvals" },
  { id: "requests", label: "Requests" },
  { id: "devices", label: "Devices" },
  { id: "analytics", label: "Analytics" },
  { id: "config", label: "Config" },
];
export const MAX_EVENTS = 5000;

export const state = {
  me: undefined as Me | undefined,
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

/** Filled in by main.ts. */
export const hooks = {
  renderView: (): void => {},
  loadEvents: (_before?: number): Promise<void> => Promise.resolve(),
};

export const fmtTime = (iso: string | number) => {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleTimeString([], { hour12: false });
};
export const fmtDateTime = (v: string | number | null) => (v === null ? "never" : new Date(v).toLocaleString([], { hour12: false }));
export const ago = (t: number) => {
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
};
export const verdictTag = (v: string) => h("span", { class: `verdict v-${/^[a-z]+$/.test(v) ? v : "other"}` }, v);
export const approvalKey = (x: { device: string; method?: string; host: string; path?: string }) => `${x.device} ${x.method ?? ""} ${x.host}${x.path ?? ""}`;
export const page = (): Page => {
  const id = location.hash.replace(/^#\/?/, "");
  return PAGES.some((p) => p.id === id) ? (id as Page) : "approvals";
};
export const errorText = (e: unknown) => (e instanceof ApiFailure ? `${e.message} (${e.code})` : e instanceof Error ? e.message : String(e));

/**
 * A short notice in the corner. It belongs to the page it was shown on: it
 * goes after a few seconds or when the operator moves to another page
 * (clearFlash, from the shell's router), whichever comes first.
 */
export function flash(text: string, kind: "ok" | "error" = "ok"): void {
  const el = document.getElementById("flash");
  if (!el) return;
  const note = h("div", { class: `flash flash-${kind}`, role: kind === "error" ? "alert" : "status" }, text);
  clear(el, note);
  // This notice only: a later one has its own timer.
  window.setTimeout(() => note.remove(), 6000);
}

export function clearFlash(): void {
  document.getElementById("flash")?.replaceChildren();
}

export function fact(label: string, value: Child): HTMLElement[] {
  return [h("dt", {}, label), h("dd", {}, value)];
}
