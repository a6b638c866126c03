// The WireGuard endpoint an approved device is told. Configured `endpoint`
// first, then `public_url`'s host; when that host is unspecified (the
// appliance listens on [::] and no public_url was given), the host the
// device itself reached the public API at.
import { afterEach, describe, expect, test } from "bun:test";
import { harness, newKey, type Harness } from "./helpers.ts";
import { onboardPublicRoutes } from "../../../app/control/onboard/index.ts";
import type { OnboardSettings } from "../../../app/control/onboard/index.ts";

let h: Harness | undefined;
afterEach(() => {
  h?.close();
  h = undefined;
});

/** Starts and approves one device; returns its device code. */
async function approvedDevice(settings: Partial<OnboardSettings>): Promise<string> {
  h = harness(settings);
  const res = await h.pub("/api/onboard/start", { name: `laptop-${Math.random().toString(36).slice(2, 8)}`, public_key: newKey() });
  expect(res.status).toBe(200);
  const s = (await res.json()) as { code: string; device_code: string };
  expect((await h.ctl("POST", `/api/onboard/${s.code}/approve`, { profile: "dev", operator: "cli:root" })).status).toBe(200);
  return s.device_code;
}

async function endpointSeen(settings: Partial<OnboardSettings>, requestHost: string | undefined): Promise<string> {
  const deviceCode = await approvedDevice(settings);
  const r = await h!.service.poll({ device_code: deviceCode }, { waitMs: 0, requestHost });
  expect(r.status).toBe("approved");
  return (r as { gateway: { endpoint: string } }).gateway.endpoint;
}

describe("the endpoint an approved device is told", () => {
  const UNSPECIFIED = { publicUrl: "https://[::]:443" };

  test("public_url on [::]: the host the device reached us at, with the WireGuard port", async () => {
    expect(await endpointSeen(UNSPECIFIED, "203.0.113.9")).toBe("203.0.113.9:51820");
    expect(await endpointSeen(UNSPECIFIED, "203.0.113.9:443")).toBe("203.0.113.9:51820");
    expect(await endpointSeen({ publicUrl: "https://0.0.0.0:8443" }, "gw.lan:8443")).toBe("gw.lan:51820");
    expect(await endpointSeen({ ...UNSPECIFIED, listenPort: 4500 }, "[2001:db8::5]:443")).toBe("[2001:db8::5]:4500");
  });

  test("a Host that is not a plain host, or is itself unspecified, is not used", async () => {
    expect(await endpointSeen(UNSPECIFIED, "evil/path")).toBe("[::]:51820");
    expect(await endpointSeen(UNSPECIFIED, "user@host")).toBe("[::]:51820");
    expect(await endpointSeen(UNSPECIFIED, "[::]:443")).toBe("[::]:51820");
    expect(await endpointSeen(UNSPECIFIED, undefined)).toBe("[::]:51820");
  });

  test("a configured endpoint, or public_url with a real host, wins over the request's host", async () => {
    expect(await endpointSeen({ ...UNSPECIFIED, endpoint: "wg.example.test:51820" }, "203.0.113.9")).toBe("wg.example.test:51820");
    expect(await endpointSeen({ publicUrl: "https://gw.example.test" }, "203.0.113.9")).toBe("gw.example.test:51820");
  });

  test("the poll route passes the Host the device used", async () => {
    const deviceCode = await approvedDevice(UNSPECIFIED);
    const routes = onboardPublicRoutes(h!.service);
    const res = await routes.handle(
      new Request("https://198.51.100.20:443/api/onboard/poll", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ device_code: deviceCode }),
      }),
    );
    expect(res.status).toBe(200);
    expect(((await res.json()) as { gateway: { endpoint: string } }).gateway.endpoint).toBe("198.51.100.20:51820");
  });
});

describe("the approval URL a device is shown", () => {
  test("public_url on [::]: the host the device reached, with public_url's scheme and port", async () => {
    h = harness({ publicUrl: "https://[::]:443" });
    const s = h.service.start({ name: "laptop", public_key: newKey() }, "192.0.2.1", "203.0.113.9");
    expect(s.approval_url).toBe(`https://203.0.113.9/approve/${s.code}`);
    const t = h.service.start({ name: "laptop2", public_key: newKey() }, "192.0.2.1", "evil/path");
    expect(t.approval_url).toBe(`https://[::]:443/approve/${t.code}`);
  });

  test("public_url with a real host is kept", async () => {
    h = harness({ publicUrl: "https://gw.example.test" });
    const s = h.service.start({ name: "laptop", public_key: newKey() }, "192.0.2.1", "203.0.113.9");
    expect(s.approval_url).toBe(`https://gw.example.test/approve/${s.code}`);
  });
});
