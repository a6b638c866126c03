// The lead's mounting path: the operator API as one plugin of the public app.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { publicApp } from "../../../app/control/public.ts";
import { errorOf, harness, type Harness } from "./harness.ts";
import { operatorApi } from "../../../app/control/api/index.ts";
import { setLogWriter } from "../../../app/log.ts";

let h: Harness;
beforeEach(() => {
  setLogWriter(() => {});
  h = harness();
});
afterEach(() => h.close());

test("mounted on publicApp: public routes stay public, operator routes need auth and keep the error shape", async () => {
  const deps = {
    db: h.db,
    hub: h.hub,
    bus: h.bus,
    devices: { devices: () => [], revoke: async () => { throw new Error("unused"); }, setProfile: async () => { throw new Error("unused"); } },
    policy: () => ({ profiles: new Map(), rules: [] }),
    reload: async () => [],
    now: h.clock.now,
    hashing: { memoryCost: 64, timeCost: 1 },
  };
  const app = publicApp({ plugins: [operatorApi(deps)], approverRoutes: () => [] });
  const get = (path: string, init: RequestInit = {}) => app.handle(new Request(`http://localhost${path}`, init));
  expect(await (await get("/health")).json()).toEqual({ ok: true });
  expect(await errorOf(await get("/api/approvals"))).toMatchObject({ status: 401, code: "unauthenticated" });
  const pw = await h.addOperator("ann", "approver");
  const login = await get("/api/auth/login", { method: "POST", body: JSON.stringify({ name: "ann", password: pw }) });
  expect(login.status).toBe(200);
  const { csrf } = (await login.json()) as { csrf: string };
  const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
  expect((await get("/api/approvals", { headers: { cookie } })).status).toBe(200);
  const noCsrf = await get("/api/auth/logout", { method: "POST", headers: { cookie } });
  expect(await errorOf(noCsrf)).toMatchObject({ status: 403, code: "csrf_failed" });
  expect((await get("/api/auth/logout", { method: "POST", headers: { cookie, "x-csrf-token": csrf } })).status).toBe(200);
  // No client address outside a real server: audited as "unknown".
  expect(h.auditRows("login")[0]!.source).toBe("unknown");
});
