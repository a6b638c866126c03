// The operators' web dashboard: a single-page app bundled in memory with
// Bun's own bundler when the gateway starts, served at `/` on the dashboard
// listener next to the operator API (everything under `/api` stays the API).
//
//   GET /, /index.html   the page shell
//   GET /app.js          client/main.ts and its imports, one minified bundle
//   GET /app.css         client/app.css
//   GET /approve/CODE    the link `clawpatrol join` prints: to #/devices, where
//                        waiting devices are approved (the page routes by `#`)
//
// The page loads nothing from elsewhere; the Content-Security-Policy says so.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Elysia } from "elysia";
import { log } from "../log.ts";

const CLIENT_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), "client");

export interface DashboardAssets {
  html: string;
  js: string;
  css: string;
}

const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>clawpatrol</title>
<link rel="stylesheet" href="/app.css">
<script type="module" src="/app.js"></script>
</head>
<body>
<div id="app"><noscript>The clawpatrol dashboard needs JavaScript.</noscript></div>
</body>
</html>
`;

/** Where waiting devices are approved in the dashboard. */
export const APPROVE_PAGE = "/#/devices";

const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cache-control": "no-cache",
};

/** Bundle the client (in memory; nothing is written to disk). */
export async function buildDashboard(): Promise<DashboardAssets> {
  const out = await Bun.build({
    entrypoints: [path.join(CLIENT_DIR, "main.ts")],
    target: "browser",
    format: "esm",
    minify: true,
  });
  if (!out.success || !out.outputs[0]) {
    throw new Error(`dashboard bundle failed: ${out.logs.map((l) => String(l)).join("\n")}`);
  }
  const js = await out.outputs[0].text();
  const css = await Bun.file(path.join(CLIENT_DIR, "app.css")).text();
  return { html: INDEX_HTML, js, css };
}

/**
 * The dashboard's routes. The bundle starts building at once and is awaited
 * per request; a failed build is logged and tried again by the next request.
 */
export function dashboardRoutes(opts: { build?: () => Promise<DashboardAssets> } = {}) {
  const build = opts.build ?? buildDashboard;
  const start = () => {
    const p = build();
    p.catch((e: unknown) => log.error("dashboard unavailable", { error: e instanceof Error ? e.message : String(e) }));
    return p;
  };
  let assets = start();
  const serve = (pick: (a: DashboardAssets) => string, type: string) => async () => {
    try {
      const body = pick(await assets);
      return new Response(body, { headers: { "content-type": type, ...SECURITY_HEADERS } });
    } catch {
      assets = start();
      return new Response("the dashboard failed to build; see the gateway log\n", {
        status: 500,
        headers: { "content-type": "text/plain; charset=utf-8", ...SECURITY_HEADERS },
      });
    }
  };
  const page = serve((a) => a.html, "text/html; charset=utf-8");
  return new Elysia()
    .get("/", page)
    .get("/index.html", page)
    .get("/app.js", serve((a) => a.js, "text/javascript; charset=utf-8"))
    .get("/app.css", serve((a) => a.css, "text/css; charset=utf-8"))
    // The code is not echoed back: the Devices page lists every waiting one.
    .get("/approve/:code", () => new Response(null, { status: 303, headers: { location: APPROVE_PAGE, ...SECURITY_HEADERS } }));
}
