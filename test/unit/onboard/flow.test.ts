// The onboarding state machine through its HTTP faces, with a fake clock.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { CA_PEM, GATEWAY_PUBLIC_KEY, harness, newKey, settle, type Harness } from "./helpers.ts";
import { hashDeviceToken } from "../../../app/store/devices.ts";
import { USER_CODE_ALPHABET } from "../../../app/control/onboard/index.ts";

let h: Harness;
beforeEach(() => {
  h = harness();
});
afterEach(() => h.close());

async function json(res: Response | Promise<Response>): Promise<any> {
  return (await res).json();
}

async function start(name = "laptop", key = newKey(), extra: Record<string, unknown> = {}, ip?: string) {
  const res = await h.pub("/api/onboard/start", { name, public_key: key, ...extra }, ip);
  expect(res.status).toBe(200);
  return { ...(await res.json()), key } as {
    code: string;
    device_code: string;
    approval_url: string;
    expires_in: number;
    poll_interval: number;
    approve_command: string;
    key: string;
  };
}

/** Polls with a zero wait (answers at once). */
async function pollNow(deviceCode: string): Promise<any> {
  const p = h.pub("/api/onboard/poll", { device_code: deviceCode });
  await h.clock.advance(30_000);
  return json(p);
}

async function approve(code: string, profile = "dev", operator = "cli:root") {
  return h.ctl("POST", `/api/onboard/${code}/approve`, { profile, operator });
}

describe("start", () => {
  test("returns a user code, a device code, the approval URL and timings", async () => {
    const s = await start("laptop", newKey(), { profile: "dev" });
    expect(s.code).toMatch(new RegExp(`^[${USER_CODE_ALPHABET}]{4}-[${USER_CODE_ALPHABET}]{4}$`));
    expect(s.code).not.toMatch(/[0O1I]/);
    expect(s.device_code).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(s.approval_url).toBe(`https://gw.example.test/approve/${s.code}`);
    expect(s.expires_in).toBe(600);
    expect(s.poll_interval).toBe(5);
    expect(s.approve_command).toBe(`clawpatrol-gateway devices approve ${s.code} --profile dev`);
    const pending = await json(h.ctl("GET", "/api/onboard/pending"));
    expect(pending).toEqual({
      pending: [
        {
          code: s.code,
          name: "laptop",
          public_key: s.key,
          requested_profile: "dev",
          source_ip: "192.0.2.1",
          created_at: 1_000_000,
          expires_at: 1_000_000 + 600_000,
        },
      ],
    });
  });

  test("the device code is stored only hashed", async () => {
    const s = await start();
    const row = h.db.query("SELECT * FROM onboarding").get() as Record<string, unknown>;
    expect(JSON.stringify(row)).not.toContain(s.device_code);
  });

  test.each([
    [{ name: "bad name", public_key: newKey() }, "invalid_name"],
    [{ name: "", public_key: newKey() }, "invalid_name"],
    [{ name: "x".repeat(65), public_key: newKey() }, "invalid_name"],
    [{ public_key: newKey() }, "invalid_name"],
    [{ name: 7, public_key: newKey() }, "invalid_name"],
    [{ name: "laptop" }, "invalid_public_key"],
    [{ name: "laptop", public_key: "abc" }, "invalid_public_key"],
    [{ name: "laptop", public_key: Buffer.alloc(31, 1).toString("base64") }, "invalid_public_key"],
    [{ name: "laptop", public_key: Buffer.alloc(33, 1).toString("base64") }, "invalid_public_key"],
    [{ name: "laptop", public_key: Buffer.alloc(32, 0).toString("base64") }, "invalid_public_key"],
    [{ name: "laptop", public_key: Buffer.alloc(32, 1).toString("base64url") }, "invalid_public_key"],
    [{ name: "laptop", public_key: newKey(), profile: "a b" }, "invalid_profile"],
    [[1, 2], "bad_request"],
  ])("invalid input %j → 400 %s in the ApiError shape", async (body, code) => {
    const res = await h.pub("/api/onboard/start", body);
    expect(res.status).toBe(400);
    const b = await res.json();
    expect(b.error.code).toBe(code);
    expect(typeof b.error.message).toBe("string");
    expect(Object.keys(b)).toEqual(["error"]);
  });

  test("malformed JSON → 400 bad_request; an oversized body → 413", async () => {
    let res = await h.pub("/api/onboard/start", "{not json");
    expect(res.status).toBe(400);
    expect((await res.json()).error.code).toBe("bad_request");
    res = await h.pub("/api/onboard/start", { name: "x", public_key: newKey(), pad: "x".repeat(5000) });
    expect(res.status).toBe(413);
    expect((await res.json()).error.code).toBe("body_too_large");
  });

  test("a name or key already enrolled is refused", async () => {
    const s = await start("laptop");
    await approve(s.code);
    let res = await h.pub("/api/onboard/start", { name: "laptop", public_key: newKey() }, "198.51.100.1");
    expect(res.status).toBe(409);
    expect((await res.json()).error.code).toBe("name_taken");
    res = await h.pub("/api/onboard/start", { name: "other", public_key: s.key }, "198.51.100.1");
    expect(res.status).toBe(409);
    expect((await res.json()).error.code).toBe("key_in_use");
  });

  test("starting again with the same key supersedes the earlier request", async () => {
    const key = newKey();
    const a = await start("laptop", key);
    const b = await start("laptop", key);
    const pending = (await json(h.ctl("GET", "/api/onboard/pending"))).pending;
    expect(pending.map((p: any) => p.code)).toEqual([b.code]);
    expect(await pollNow(a.device_code)).toEqual({ status: "expired" });
  });
});

describe("the happy path", () => {
  test("start → pending → approve → approved once (with a fresh token) → claimed", async () => {
    const s = await start("laptop", newKey(), { profile: "ops" });
    expect(await pollNow(s.device_code)).toEqual({ status: "pending" });

    const res = await approve(s.code, "dev");
    expect(res.status).toBe(200);
    const { device } = await res.json();
    expect(device).toMatchObject({ name: "laptop", kind: "wireguard", profile: "dev", address: "10.77.0.2", revoked: false });
    expect(h.approved).toEqual([{ name: "laptop", profile: "dev", publicKey: s.key, address: "10.77.0.2" }]);
    expect((await json(h.ctl("GET", "/api/onboard/pending"))).pending).toEqual([]);

    const first = await pollNow(s.device_code);
    expect(first).toEqual({
      status: "approved",
      device: { name: "laptop", profile: "dev", address: "10.77.0.2", addresses: ["10.77.0.2/32"] },
      gateway: {
        public_key: GATEWAY_PUBLIC_KEY,
        endpoint: "gw.example.test:51820",
        allowed_ips: ["0.0.0.0/0", "::/0"],
        dns: "10.77.0.1",
        address: "10.77.0.1",
        persistent_keepalive: 25,
      },
      ca_cert: CA_PEM,
      api_token: expect.stringMatching(/^cpa_[A-Za-z0-9_-]{43}$/),
    });
    expect(h.registry.lookupByApiToken(first.api_token)?.name).toBe("laptop");
    expect(h.registry.lookupByPublicKey(s.key)?.name).toBe("laptop");
    expect(h.registry.lookupByAddress("10.77.0.2")?.name).toBe("laptop");

    // A replayed device code never yields a second token.
    for (let i = 0; i < 3; i++) expect(await pollNow(s.device_code)).toEqual({ status: "claimed" });
    expect(h.registry.lookupByApiToken(first.api_token)?.name).toBe("laptop");

    // The log tells the story without the secrets.
    const logText = h.logs.join("\n");
    expect(logText).toContain("device approved");
    expect(logText).toContain("device claimed its configuration");
    expect(logText).not.toContain(first.api_token.slice(4));
    expect(logText).not.toContain(s.device_code);
  });

  test("two polls racing for the claim: exactly one gets the token", async () => {
    const s = await start();
    await approve(s.code);
    const results = await Promise.all([1, 2, 3].map(() => json(h.pub("/api/onboard/poll", { device_code: s.device_code }))));
    expect(results.filter((r) => r.status === "approved")).toHaveLength(1);
    expect(results.filter((r) => r.status === "claimed")).toHaveLength(2);
  });

  test("the API token is stored hashed only: not in any database file", async () => {
    const s = await start();
    await approve(s.code);
    const { api_token } = await pollNow(s.device_code);
    const row = h.db.query("SELECT api_token_hash FROM devices WHERE name = 'laptop'").get() as { api_token_hash: string };
    expect(row.api_token_hash).toBe(hashDeviceToken(api_token));
    h.db.run("PRAGMA wal_checkpoint(PASSIVE)");
    const needles = [api_token, api_token.slice(4), s.device_code];
    for (const f of fs.readdirSync(h.dir).filter((f) => f.startsWith("state.db"))) {
      const bytes = fs.readFileSync(path.join(h.dir, f));
      for (const n of needles) expect(bytes.includes(Buffer.from(n))).toBe(false);
    }
  });

  test("with an IPv6 ULA subnet the device gets a /128 too", async () => {
    h.close();
    h = harness({ subnet6Cidr: "fd77:7a70::/64" });
    const s = await start();
    await approve(s.code);
    const r = await pollNow(s.device_code);
    expect(r.device).toEqual({
      name: "laptop",
      profile: "dev",
      address: "10.77.0.2",
      address6: "fd77:7a70::2",
      addresses: ["10.77.0.2/32", "fd77:7a70::2/128"],
    });
  });

  test("the user code is accepted in any case, without the dash", async () => {
    const s = await start();
    const res = await approve(s.code.replace("-", "").toLowerCase());
    expect(res.status).toBe(200);
  });
});

describe("long poll", () => {
  test("waits the full poll time, then answers pending", async () => {
    const s = await start();
    let done: unknown;
    const p = json(h.pub("/api/onboard/poll", { device_code: s.device_code })).then((r) => (done = r));
    await h.clock.advance(24_000);
    expect(done).toBeUndefined();
    await h.clock.advance(1_000);
    await p;
    expect(done).toEqual({ status: "pending" });
  });

  test("wakes on approval, not at the timeout", async () => {
    const s = await start();
    let done: any;
    const p = json(h.pub("/api/onboard/poll", { device_code: s.device_code })).then((r) => (done = r));
    await h.clock.advance(300);
    expect(done).toBeUndefined();
    const t0 = h.clock.now();
    await approve(s.code);
    await settle();
    await p;
    expect(done.status).toBe("approved");
    expect(h.clock.now()).toBe(t0); // no time had to pass
  });

  test("wakes on denial", async () => {
    const s = await start();
    let done: any;
    const p = json(h.pub("/api/onboard/poll", { device_code: s.device_code })).then((r) => (done = r));
    await h.clock.advance(10);
    expect((await h.ctl("POST", `/api/onboard/${s.code}/deny`, { operator: "cli:root" })).status).toBe(200);
    await settle();
    await p;
    expect(done).toEqual({ status: "denied" });
  });

  test("sees a decision made by another process (database re-check)", async () => {
    const s = await start();
    let done: any;
    const p = json(h.pub("/api/onboard/poll", { device_code: s.device_code })).then((r) => (done = r));
    await h.clock.advance(10);
    // Deny behind the service's back, as another process would.
    h.db.run("UPDATE onboarding SET state = 'denied'");
    await h.clock.advance(1_000);
    await p;
    expect(done).toEqual({ status: "denied" });
  });

  test("a poll that waits past the code's expiry answers expired", async () => {
    h.close();
    h = harness({ codeTtlMs: 10_000 });
    const s = await start();
    let done: any;
    const p = json(h.pub("/api/onboard/poll", { device_code: s.device_code })).then((r) => (done = r));
    await h.clock.advance(10_000);
    await p;
    expect(done).toEqual({ status: "expired" });
    expect(h.clock.now()).toBe(1_000_000 + 10_000);
  });

  test("no timers are left behind", async () => {
    const s = await start();
    const p = h.pub("/api/onboard/poll", { device_code: s.device_code });
    await h.clock.advance(5);
    await approve(s.code);
    await p;
    expect(h.clock.pendingTimers).toBe(0);
  });

  test("an unknown or malformed device code", async () => {
    let res = await h.pub("/api/onboard/poll", { device_code: "A".repeat(43) });
    expect(res.status).toBe(404);
    expect((await res.json()).error.code).toBe("unknown_device_code");
    res = await h.pub("/api/onboard/poll", { device_code: "short" });
    expect(res.status).toBe(400);
    expect((await res.json()).error.code).toBe("invalid_device_code");
    res = await h.pub("/api/onboard/poll", {});
    expect(res.status).toBe(400);
  });
});

describe("deny and expiry", () => {
  test("deny: the device hears denied; the code cannot be approved after", async () => {
    const s = await start();
    await h.clock.advance(5_000);
    expect(await json(h.ctl("POST", `/api/onboard/${s.code}/deny`, { operator: "cli:alice" }))).toEqual({ ok: true });
    const decidedAt = h.clock.now();
    expect(await pollNow(s.device_code)).toEqual({ status: "denied" });
    const res = await approve(s.code);
    expect(res.status).toBe(409);
    expect((await res.json()).error.code).toBe("already_decided");
    expect(h.registry.list()).toEqual([]);
    const row = h.db.query("SELECT state, decided_by, decided_at FROM onboarding").get();
    expect(row).toEqual({ state: "denied", decided_by: "cli:alice", decided_at: decidedAt });
  });

  test("an unapproved code expires after 10 minutes", async () => {
    const s = await start();
    await h.clock.advance(599_999);
    expect((await json(h.ctl("GET", "/api/onboard/pending"))).pending).toHaveLength(1);
    await h.clock.advance(1);
    expect((await json(h.ctl("GET", "/api/onboard/pending"))).pending).toEqual([]);
    const res = await approve(s.code);
    expect(res.status).toBe(410);
    expect((await res.json()).error.code).toBe("code_expired");
    expect(await pollNow(s.device_code)).toEqual({ status: "expired" });
  });

  test("an approved code never claimed expires and its device is revoked (peer removed)", async () => {
    const s = await start();
    await h.clock.advance(300_000);
    await approve(s.code);
    // Approval gives a fresh TTL for the claim.
    await h.clock.advance(599_999);
    expect(h.service.sweep()).toEqual([]);
    await h.clock.advance(1);
    expect(h.service.sweep()).toEqual(["laptop"]);
    expect(h.revoked.map((d) => d.name)).toEqual(["laptop"]);
    expect(h.registry.get("laptop")?.revokedAt).toBe(h.clock.now());
    expect(await pollNow(s.device_code)).toEqual({ status: "expired" });
  });

  test("a device revoked between approval and claim gets no token", async () => {
    const s = await start();
    await approve(s.code);
    expect((await h.ctl("POST", "/api/devices/laptop/revoke", { operator: "cli:root" })).status).toBe(200);
    expect(await pollNow(s.device_code)).toEqual({ status: "denied" });
  });

  test("operator errors: unknown code, malformed code, unknown or missing profile", async () => {
    const s = await start();
    let res = await approve("ABCD-EFGH");
    expect([res.status, (await res.json()).error.code]).toEqual([404, "unknown_code"]);
    res = await approve("0000-0000");
    expect([res.status, (await res.json()).error.code]).toEqual([400, "invalid_code"]);
    res = await approve(s.code, "nope");
    expect(res.status).toBe(400);
    const b = await res.json();
    expect(b.error.code).toBe("unknown_profile");
    expect(b.error.message).toContain("dev, ops");
    res = await h.ctl("POST", `/api/onboard/${s.code}/approve`, { operator: "x" });
    expect([res.status, (await res.json()).error.code]).toEqual([400, "profile_required"]);
    expect(h.approved).toEqual([]);
  });

  test("a failing peer hook undoes the approval", async () => {
    h.close();
    h = harness({}, { failPeer: true });
    const s = await start();
    const res = await approve(s.code);
    expect(res.status).toBe(500);
    expect((await res.json()).error.code).toBe("peer_setup_failed");
    expect(h.registry.get("laptop")?.revokedAt).toBeDefined();
    expect(await pollNow(s.device_code)).toEqual({ status: "denied" });
  });
});

describe("rate limit", () => {
  test("start: 5 at once per source IP, then 429 with Retry-After; refills with time", async () => {
    for (let i = 0; i < 5; i++) await start(`d${i}`, newKey(), {}, "203.0.113.9");
    let res = await h.pub("/api/onboard/start", { name: "d5", public_key: newKey() }, "203.0.113.9");
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBe("12");
    expect((await res.json()).error.code).toBe("rate_limited");
    // Another source is not affected.
    await start("other", newKey(), {}, "203.0.113.10");
    // Invalid requests cost a token too.
    res = await h.pub("/api/onboard/start", { name: "bad name" }, "203.0.113.9");
    expect(res.status).toBe(429);
    await h.clock.advance(12_000);
    await start("d5", newKey(), {}, "203.0.113.9");
    res = await h.pub("/api/onboard/start", { name: "d6", public_key: newKey() }, "203.0.113.9");
    expect(res.status).toBe(429);
  });

  test("a cap on requests waiting for an operator → 503 with Retry-After", async () => {
    h.close();
    h = harness({ maxPending: 2 });
    await start("a", newKey(), {}, "192.0.2.1");
    await start("b", newKey(), {}, "192.0.2.2");
    const res = await h.pub("/api/onboard/start", { name: "c", public_key: newKey() }, "192.0.2.3");
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("60");
    expect((await res.json()).error.code).toBe("onboarding_busy");
  });
});

describe("device routes", () => {
  test("list shows both kinds; revoke calls the hook for WireGuard devices; profile changes", async () => {
    h.registry.add("ci", "ops");
    const s = await start("laptop");
    await approve(s.code);
    await h.clock.advance(1000);
    h.registry.markSeen("laptop");
    const { devices } = await json(h.ctl("GET", "/api/devices"));
    expect(devices).toEqual([
      {
        name: "ci",
        kind: "proxy",
        profile: "ops",
        address: null,
        address6: null,
        public_key: null,
        created_at: 1_000_000,
        last_seen: null,
        revoked: false,
        revoked_at: null,
      },
      {
        name: "laptop",
        kind: "wireguard",
        profile: "dev",
        address: "10.77.0.2",
        address6: null,
        public_key: s.key,
        created_at: 1_000_000,
        last_seen: 1_001_000,
        revoked: false,
        revoked_at: null,
      },
    ]);

    let res = await h.ctl("POST", "/api/devices/laptop/profile", { profile: "ops" });
    expect((await res.json()).device.profile).toBe("ops");
    expect(h.profileChanged.map((d) => d.profile)).toEqual(["ops"]);
    res = await h.ctl("POST", "/api/devices/laptop/profile", { profile: "nope" });
    expect([res.status, (await res.json()).error.code]).toEqual([400, "unknown_profile"]);

    res = await h.ctl("POST", "/api/devices/laptop/revoke", { operator: "cli:root" });
    expect((await res.json()).device).toMatchObject({ name: "laptop", revoked: true, address: "10.77.0.2" });
    expect(h.revoked).toEqual([{ name: "laptop", profile: "ops", publicKey: s.key, address: "10.77.0.2" }]);
    expect(h.registry.lookupByPublicKey(s.key)).toBeUndefined();
    res = await h.ctl("POST", "/api/devices/laptop/revoke", {});
    expect([res.status, (await res.json()).error.code]).toEqual([404, "no_such_device"]);

    // Proxy devices revoke without a peer hook.
    res = await h.ctl("POST", "/api/devices/ci/revoke");
    expect(res.status).toBe(200);
    expect(h.revoked).toHaveLength(1);
  });

  test("a revoked device keeps its address; re-enrolling the same name and key gets a new one", async () => {
    const key = newKey();
    const a = await start("laptop", key);
    await approve(a.code);
    await h.ctl("POST", "/api/devices/laptop/revoke", {});
    const b = await start("laptop2", key);
    await approve(b.code);
    expect(h.registry.get("laptop2")?.address).toBe("10.77.0.3");
    expect(h.registry.get("laptop")?.address).toBe("10.77.0.2");
    expect(h.registry.get("laptop")?.publicKey).toBeUndefined(); // gave the key up
    // Same name again: the revoked row is replaced and its address released.
    await h.ctl("POST", "/api/devices/laptop2/revoke", {});
    const c = await start("laptop", newKey());
    await approve(c.code);
    expect(h.registry.get("laptop")?.address).toBe("10.77.0.4");
  });
});
