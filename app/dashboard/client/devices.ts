/// <reference lib="dom" />
// The Devices page: enrolled devices (revoke, change profile) and devices
// waiting to join (approve with a profile, deny), and how a device joins: the
// CA fingerprint it pins and the lines to run on it. Admins act; others read.
// The kill switch (the command gate's): "Kill" ends a device's runs at once
// and denies its commands until "Release"; "Stop every device" does it for all.
import { api, ApiFailure, roleAtLeast } from "./api.ts";
import type { Device, JoinInfo, Onboarding, Profile, SpendDay } from "./api.ts";
import { h } from "./dom.ts";
import { errorText, flash, fmtDateTime, fmtTime, hooks, state, verdictTag } from "./state.ts";

export async function devicesView(): Promise<HTMLElement> {
  const admin = roleAtLeast(state.me?.role, "admin");
  const [devices, profiles, onboarding, joinInfo, spend, engaged] = await Promise.all([
    api<{ devices: Device[] }>("/api/devices").then((r) => r.devices),
    api<{ profiles: Profile[] }>("/api/profiles").then((r) => r.profiles.map((p) => p.name)),
    api<{ pending: Onboarding[] }>("/api/onboarding").then(
      (r) => r.pending,
      (e: unknown) => (e instanceof ApiFailure && e.code === "onboarding_off" ? null : Promise.reject(e)),
    ),
    // Public (the same lines a device can read); absent on a gateway without a CA to show.
    api<JoinInfo>("/join.json").catch(() => null),
    api<SpendDay>("/api/spend").catch(() => null),
    api<{ engaged: KillEngagement[] }>("/api/kill").then(
      (r) => r.engaged,
      (e: unknown) => (e instanceof ApiFailure && e.code === "kill_switch_off" ? null : Promise.reject(e)),
    ),
  ]);
  const spentBy = new Map((spend?.devices ?? []).map((d) => [d.device, d.usd]));
  const stopped = new Map((engaged ?? []).map((k) => [k.scope, k]));
  const everyDevice = stopped.get("*");
  /** A button that asks once more before it acts. */
  const twice = (label: string, confirm: string, cls: string, run: () => void) => {
    let ready = false;
    const b = h("button", { class: cls }, label);
    b.addEventListener("click", () => {
      if (!ready) {
        ready = true;
        b.textContent = confirm;
        return;
      }
      run();
    });
    return b;
  };
  const kill = (device: string | undefined, label: string) =>
    act(label, () => api("/api/kill", { method: "POST", body: device ? { device } : {} }));
  const release = (device: string | undefined, label: string) =>
    act(label, () => api("/api/kill/release", { method: "POST", body: device ? { device } : {} }));
  const act = (label: string, fn: () => Promise<unknown>) => async () => {
    try {
      await fn();
      flash(label);
      hooks.renderView();
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
      h("td", { class: "num" }, spentBy.has(d.name) ? usd(spentBy.get(d.name)!) : "—"),
      h("td", {}, d.revoked ? verdictTag("revoked") : stopped.has(d.name) || everyDevice ? h("span", { title: killTitle(stopped.get(d.name) ?? everyDevice!) }, verdictTag("stopped")) : "active"),
      admin && !d.revoked
        ? h(
            "td",
            { class: "actions" },
            sel,
            h("button", { class: "small", onclick: act(`Profile of ${d.name} changed`, () => api(`/api/devices/${encodeURIComponent(d.name)}/profile`, { method: "POST", body: { profile: sel.value } })) }, "Set profile"),
            revoke,
            engaged === null
              ? null
              : stopped.has(d.name)
                ? h("button", { class: "small", onclick: release(d.name, `Kill switch off for ${d.name}`) }, "Release")
                : twice("Kill", "Confirm kill", "deny small", () => void kill(d.name, `Kill switch on for ${d.name}: its runs end now`)()),
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
    h("div", { class: "toolbar" }, h("h2", {}, "Devices"), h("span", { class: "spacer" }), h("button", { class: "small", onclick: () => hooks.renderView() }, "Refresh")),
    admin ? null : h("p", { class: "muted small" }, "Only admins change devices."),
    engaged === null ? null : killBanner(admin, everyDevice, twice, kill, release),
    h(
      "table",
      { class: "grid" },
      h("thead", {}, h("tr", {}, ...["Name", "Kind", "Profile", "Address", "Last seen", "LLM today", "Status", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, ...deviceRows),
    ),
    devices.length === 0 ? h("p", { class: "empty" }, "No devices yet.") : null,
    spend ? spendSection(spend) : null,
    h("h3", {}, "Waiting to join"),
    pendingSection,
    joinInfo ? joinSection(joinInfo) : null,
  );
}

/** What LLM calls cost today (UTC) per device, by the config's prices, and the budgets that cap it. */
function spendSection(s: SpendDay): HTMLElement {
  const budgets = s.budgets.map((b) => `${b.owner}: ${usd(b.dailyUsd)} a day per ${b.per}`);
  return h(
    "div",
    { class: "spend" },
    h("h3", {}, `LLM spend on ${s.day} (UTC)`),
    s.devices.length === 0
      ? h("p", { class: "empty" }, "No LLM calls recorded today.")
      : h(
          "table",
          { class: "grid" },
          h("thead", {}, h("tr", {}, ...["Device", "Calls", "Input tokens", "Output tokens", "Cost"].map((c) => h("th", { scope: "col" }, c)))),
          h(
            "tbody",
            {},
            ...s.devices.map((d) =>
              h("tr", {}, h("td", {}, d.device), h("td", { class: "num" }, String(d.requests)), h("td", { class: "num" }, String(d.inputTokens)), h("td", { class: "num" }, String(d.outputTokens)), h("td", { class: "num" }, usd(d.usd))),
            ),
          ),
        ),
    h("p", { class: "muted small" }, budgets.length > 0 ? `Budgets: ${budgets.join("; ")}.` : "No spend budget is configured."),
  );
}

function usd(n: number): string {
  return `$${n.toFixed(n < 1 ? 4 : 2)}`;
}

/** What an operator copies to a device: the fingerprint to compare, the install line, the join line. */
function joinSection(j: JoinInfo): HTMLElement {
  const pinned = j.pinned;
  return h(
    "div",
    { class: "join-info" },
    h("h3", {}, "Join a device"),
    h("p", {}, "CA SHA-256 fingerprint: ", h("code", { class: "fingerprint" }, j.ca_sha256)),
    h(
      "p",
      { class: "muted small" },
      pinned
        ? "This page is served with a certificate from the gateway's own CA; the lines below check that CA against the fingerprint before trusting anything. Compare it with the one printed at first boot or by clawpatrol-gateway ca show."
        : "Devices trust the gateway's CA (this fingerprint) for the traffic it intercepts.",
    ),
    h("p", {}, "1. Install the client:"),
    h("pre", { class: "join-install" }, h("code", {}, j.install)),
    h("p", {}, "2. Join (an admin then approves the code here):"),
    h("pre", { class: "join-command" }, h("code", {}, j.join)),
  );
}

interface KillEngagement {
  scope: string;
  operator: string;
  reason: string;
  since: string;
}

const killTitle = (k: KillEngagement) => `kill switch by ${k.operator} since ${fmtDateTime(Date.parse(k.since))}${k.reason ? `: ${k.reason}` : ""}`;

/** The kill switch for every device: on (who, since, release) or off (stop all, asked twice). */
function killBanner(
  admin: boolean,
  all: KillEngagement | undefined,
  twice: (label: string, confirm: string, cls: string, run: () => void) => HTMLElement,
  kill: (device: string | undefined, label: string) => () => Promise<void>,
  release: (device: string | undefined, label: string) => () => Promise<void>,
): HTMLElement {
  if (all) {
    return h(
      "p",
      { class: "error", id: "kill-all-on" },
      `Kill switch on for every device (${killTitle(all)}). `,
      admin ? h("button", { class: "small", id: "kill-all-release", onclick: release(undefined, "Kill switch off for every device") }, "Release") : null,
    );
  }
  return h(
    "p",
    { class: "muted small" },
    "Kill switch: ends a device's runs at once (gated commands and the agent killed) and denies its commands until released. ",
    admin ? twice("Stop every device", "Confirm: stop every device", "deny small", () => void kill(undefined, "Kill switch on for every device")()) : null,
  );
}
