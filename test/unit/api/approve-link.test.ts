// The approval link `clawpatrol join` prints (approval_url) opens the page
// where waiting devices are approved: the dashboard routes by `#`, so
// /approve/CODE answers a redirect to #/devices.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { publicApp } from "../../../app/control/public.ts";
import { APPROVE_PAGE, dashboardRoutes, type DashboardAssets } from "../../../app/dashboard/routes.ts";
import { PAGES } from "../../../app/dashboard/client/state.ts";
import { harness, newKey, type Harness } from "../onboard/helpers.ts";

let h: Harness;
beforeEach(() => {
  h = harness();
});
afterEach(() => h.close());

const assets: DashboardAssets = { html: "<!doctype html><title>clawpatrol</title>", js: "", css: "" };

test("the printed approval link redirects to the dashboard's Devices page, which lists the waiting code", async () => {
  const started = await h.pub("/api/onboard/start", { name: "laptop-2", public_key: newKey() });
  expect(started.status).toBe(200);
  const { code, approval_url } = (await started.json()) as { code: string; approval_url: string };
  const link = new URL(approval_url);
  expect(link.pathname).toBe(`/approve/${code}`);

  const app = publicApp({ plugins: [dashboardRoutes({ build: async () => assets })], approverRoutes: () => [] });
  const res = await app.handle(new Request(`http://127.0.0.1${link.pathname}`));
  expect(res.status).toBe(303);
  const location = res.headers.get("location")!;
  expect(location).toBe(APPROVE_PAGE);
  // The target is the page shell, routed by its fragment to a page the SPA has.
  const target = new URL(location, "http://127.0.0.1");
  expect((await app.handle(new Request(`http://127.0.0.1${target.pathname}`))).status).toBe(200);
  expect(PAGES.map((p): string => p.id)).toContain(target.hash.replace(/^#\//, ""));
  // ...and that page's data source lists the code waiting for approval.
  const pending = (await (await h.ctl("GET", "/api/onboard/pending")).json()) as { pending: { code: string }[] };
  expect(pending.pending.map((p) => p.code)).toContain(code);
});

test("the code is not echoed into the redirect (any text after /approve/ lands on the same page)", async () => {
  const app = dashboardRoutes({ build: async () => assets });
  const res = await app.handle(new Request("http://127.0.0.1/approve/%3Cscript%3E"));
  expect(res.status).toBe(303);
  expect(res.headers.get("location")).toBe(APPROVE_PAGE);
});
