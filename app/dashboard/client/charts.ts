/// <reference lib="dom" />
// The Analytics page: three small inline-SVG charts drawn by hand over the
// numbers in analytics.ts. Each chart is a fixed viewBox scaled to its box,
// with a <title> on every bar for the exact count.
import { h, s } from "./dom.ts";
import { shadowPanel } from "./shadow.ts";
import type { GwEvent } from "./api.ts";
import { chooseSpan, fmtMs, heldForApproval, latencyHistogram, percentiles, topHosts, verdictsOverTime } from "./analytics.ts";

const VERDICT_ORDER = ["allow", "deny", "relay", "passthrough"];
const COLOUR: Record<string, string> = { allow: "#2f855a", deny: "#c53030", relay: "#718096", passthrough: "#a0aec0" };
const OTHER = "#b7791f";
const colour = (v: string) => COLOUR[v] ?? OTHER;

/** viewBox widths: a chart drawn at about its on-screen size keeps its text at 11–12 px. */
const W = 640;
const W_WIDE = 1280;
const H = 180;
const PAD = { l: 36, r: 8, t: 8, b: 22 };

function niceMax(n: number): number {
  if (n <= 5) return Math.max(1, n);
  const p = 10 ** Math.floor(Math.log10(n));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= n)!;
}

function frame(label: string, max: number, width = W): SVGElement {
  const svg = s("svg", { viewBox: `0 0 ${width} ${H}`, role: "img", "aria-label": label, class: "chart" });
  const y = (v: number) => PAD.t + (H - PAD.t - PAD.b) * (1 - v / max);
  for (const v of [0, max / 2, max].filter(Number.isInteger)) {
    svg.append(
      s("line", { x1: PAD.l, x2: width - PAD.r, y1: y(v), y2: y(v), class: "gridline" }),
      s("text", { x: PAD.l - 4, y: y(v) + 4, "text-anchor": "end", class: "axis" }, v),
    );
  }
  return svg;
}

function verdictChart(events: GwEvent[], now: number): HTMLElement {
  const span = chooseSpan(events, now);
  const buckets = verdictsOverTime(events, now, span, 30);
  const max = niceMax(Math.max(...buckets.map((b) => b.total)));
  const svg = frame("Requests per verdict over time", max, W_WIDE);
  const plotW = W_WIDE - PAD.l - PAD.r;
  const plotH = H - PAD.t - PAD.b;
  const bw = plotW / buckets.length;
  const seen = new Set<string>();
  buckets.forEach((b, i) => {
    let y = PAD.t + plotH;
    const keys = Object.keys(b.counts).sort((x, z) => (VERDICT_ORDER.indexOf(x) + 99) % 99 - (VERDICT_ORDER.indexOf(z) + 99) % 99);
    for (const v of keys) {
      seen.add(v);
      const n = b.counts[v]!;
      const hgt = (n / max) * plotH;
      y -= hgt;
      svg.append(
        s(
          "rect",
          { x: PAD.l + i * bw + 1, y, width: Math.max(1, bw - 2), height: hgt, fill: colour(v) },
          s("title", {}, `${new Date(b.start).toLocaleTimeString([], { hour12: false })}: ${n} ${v}`),
        ),
      );
    }
  });
  const t = (ms: number) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  svg.append(
    s("text", { x: PAD.l, y: H - 6, class: "axis" }, t(now - span)),
    s("text", { x: W_WIDE - PAD.r, y: H - 6, "text-anchor": "end", class: "axis" }, `${t(now)} (now)`),
  );
  const legend = h(
    "div",
    { class: "legend" },
    ...[...seen].map((v) => h("span", {}, s("svg", { width: 10, height: 10, "aria-hidden": "true" }, s("rect", { width: 10, height: 10, fill: colour(v) })), ` ${v}`)),
  );
  const spanText = span < 3_600_000 ? `${span / 60_000} minutes` : span < 86_400_000 ? `${span / 3_600_000} hours` : `${span / 86_400_000} days`;
  return h("figure", { class: "panel wide" }, h("figcaption", {}, `Verdicts over the last ${spanText}`), svg, legend);
}

function latencyChart(events: GwEvent[]): HTMLElement {
  const bins = latencyHistogram(events);
  const max = niceMax(Math.max(...bins.map((b) => b.count)));
  const svg = frame("Latency distribution", max);
  const plotW = W - PAD.l - PAD.r;
  const plotH = H - PAD.t - PAD.b;
  const bw = plotW / bins.length;
  bins.forEach((b, i) => {
    const hgt = (b.count / max) * plotH;
    if (b.count > 0) {
      svg.append(s("rect", { x: PAD.l + i * bw + 2, y: PAD.t + plotH - hgt, width: bw - 4, height: hgt, class: "bar" }, s("title", {}, `${b.label}: ${b.count}`)));
    }
    svg.append(s("text", { x: PAD.l + i * bw + bw / 2, y: H - 6, "text-anchor": "middle", class: "axis" }, b.label));
  });
  const p = percentiles(events);
  return h(
    "figure",
    { class: "panel" },
    h("figcaption", {}, "Latency", p ? h("span", { class: "muted" }, ` · p50 ${fmtMs(p.p50)} · p95 ${fmtMs(p.p95)} · p99 ${fmtMs(p.p99)}`) : null),
    svg,
  );
}

function hostsChart(events: GwEvent[]): HTMLElement {
  const top = topHosts(events, 10);
  const rowH = 20;
  const labelW = 220;
  const barW = W - labelW - 130;
  const height = Math.max(1, top.length) * rowH + 4;
  const max = Math.max(1, ...top.map((x) => x.count));
  const svg = s("svg", { viewBox: `0 0 ${W} ${height}`, role: "img", "aria-label": "Top hosts by requests", class: "chart" });
  top.forEach((x, i) => {
    const y = i * rowH + 2;
    const full = (barW * x.count) / max;
    const denied = (barW * x.denied) / max;
    svg.append(
      s("text", { x: labelW - 6, y: y + 14, "text-anchor": "end", class: "label" }, x.host.length > 34 ? `…${x.host.slice(-33)}` : x.host),
      s("rect", { x: labelW, y: y + 3, width: full, height: rowH - 6, class: "bar" }, s("title", {}, `${x.host}: ${x.count} requests, ${x.denied} denied`)),
      s("rect", { x: labelW, y: y + 3, width: denied, height: rowH - 6, fill: colour("deny") }),
      s("text", { x: labelW + full + 6, y: y + 14, class: "axis" }, x.denied ? `${x.count} (${x.denied} denied)` : x.count),
    );
  });
  return h("figure", { class: "panel" }, h("figcaption", {}, "Top hosts"), top.length ? svg : h("p", { class: "empty" }, "No traffic yet."));
}

/** `waitingNow`: requests held at this moment (they have no event until decided). */
export function analyticsView(events: GwEvent[], now: number, waitingNow = 0): HTMLElement {
  const http = events.filter((e) => e.kind === "http" || e.method !== undefined);
  const denied = events.filter((e) => e.verdict === "deny").length;
  const held = heldForApproval(events, waitingNow);
  const stat = (label: string, value: string | number, id?: string) =>
    h("div", { class: "stat", id }, h("div", { class: "stat-value" }, value), h("div", { class: "muted small" }, label));
  return h(
    "section",
    { class: "analytics" },
    h("div", { class: "toolbar" }, h("h2", {}, "Analytics"), h("span", { class: "muted small" }, `over the ${events.length} most recent requests and connections`)),
    h("div", { class: "stats" }, stat("events", events.length), stat("HTTP requests", http.length), stat("denied", denied), stat(held.waiting ? `held for approval (${held.waiting} waiting now)` : "held for approval", held.total, "stat-held")),
    h("div", { class: "panels" }, verdictChart(events, now), latencyChart(events), hostsChart(events), shadowPanel()),
  );
}
