import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { errorOf, harness, type Harness } from "./harness.ts";
import { sampleEvent } from "../events/fixtures.ts";
import { insertActions } from "../../../app/store/actions.ts";
import { persistSpend } from "../../../app/store/spend.ts";
import { setLogWriter } from "../../../app/log.ts";

let h: Harness;
beforeEach(() => {
  setLogWriter(() => {});
  h = harness();
});
afterEach(() => h.close());

/** Every route the plugin serves, with its params filled in. */
function routes(): { method: string; path: string }[] {
  return h.app.routes.map((r) => ({ method: r.method, path: r.path.replace(/:[a-z]+/g, "x") }));
}

describe("every route needs a credential", () => {
  test("the plugin serves the documented routes", () => {
    const got = routes().map((r) => `${r.method} ${r.path}`).sort();
    expect(got).toEqual(
      [
        "POST /api/auth/login",
        "POST /api/auth/logout",
        "GET /api/auth/me",
        "POST /api/auth/password",
        "GET /api/auth/tokens",
        "POST /api/auth/tokens",
        "DELETE /api/auth/tokens/x",
        "GET /api/approvals",
        "POST /api/approvals/x/approve",
        "POST /api/approvals/x/deny",
        "GET /api/events",
        "GET /api/events/stream",
        "GET /api/kill",
        "GET /api/devices",
        "POST /api/devices/x/revoke",
        "POST /api/kill",
        "POST /api/kill/release",
        "POST /api/devices/x/profile",
        "GET /api/onboarding",
        "POST /api/onboarding/x/approve",
        "POST /api/onboarding/x/deny",
        "GET /api/profiles",
        "GET /api/rules",
        "GET /api/rules/shadow",
        "POST /api/rules/suggest",
        "POST /api/rules/validate",
        "POST /api/reload",
        "GET /api/spend",
        "GET /api/audit",
        "GET /api/operators",
        "GET /api/config",
        "GET /api/version",
        "POST /api/config/validate",
        "POST /api/config/apply",
        "GET /metrics",
      ].sort(),
    );
  });

  test("each route but login answers 401 in the error shape without auth, with a bad token, with a bogus cookie", async () => {
    let checked = 0;
    for (const r of routes()) {
      if (r.path === "/api/auth/login") continue;
      for (const headers of <Record<string, string>[]>[{}, { authorization: "Bearer cpo_nope" }, { authorization: "Basic YTpi" }, { cookie: "clawpatrol_session=forged" }]) {
        const res = await h.call(r.method, r.path, { headers, body: r.method === "GET" ? undefined : { reason: "x" } });
        expect({ route: `${r.method} ${r.path}`, status: res.status }).toEqual({ route: `${r.method} ${r.path}`, status: 401 });
        expect((await errorOf(res)).code).toBe("unauthenticated");
        checked++;
      }
    }
    expect(checked).toBe((routes().length - 1) * 4);
    expect(h.reloads()).toBe(0);
  });

  test("a session cookie under the Secure name is not read from another host's plain-name cookie", async () => {
    const s = await h.as("admin", "root");
    // Over https the plain-name cookie (settable by a sibling subdomain) is ignored.
    const res = await h.call("GET", "/api/auth/me", { base: "https://gw.example.com", headers: { cookie: s.cookie } });
    expect(res.status).toBe(401);
  });
});

describe("roles", () => {
  test("a viewer reads but cannot approve, deny, reload, change devices or read the audit", async () => {
    const viewer = await h.as("viewer", "vera");
    const { id } = await h.hold();
    expect((await h.call("GET", "/api/approvals", { session: viewer })).status).toBe(200);
    for (const [method, path] of [
      ["POST", `/api/approvals/${id}/approve`],
      ["POST", `/api/approvals/${id}/deny`],
      ["POST", "/api/reload"],
      ["POST", "/api/devices/laptop/revoke"],
      ["GET", "/api/audit"],
      ["GET", "/api/operators"],
    ] as const) {
      const res = await h.call(method, path, { session: viewer, body: {} });
      const e = await errorOf(res);
      expect({ path, status: e.status, code: e.code }).toEqual({ path, status: 403, code: "forbidden" });
    }
    expect(h.hub.pending().map((p) => p.id)).toEqual([id]);
    expect(h.reloads()).toBe(0);
  });

  test("an approver approves; the operator is the session's, whatever the body says", async () => {
    const ann = await h.as("approver", "ann");
    const { id, done } = await h.hold();
    const [listed] = ((await (await h.call("GET", "/api/approvals", { session: ann })).json()) as { approvals: { id: string; decidable: boolean }[] }).approvals;
    expect(listed).toMatchObject({ id, decidable: true });
    const res = await h.call("POST", `/api/approvals/${id}/approve`, { session: ann, body: { reason: "ok to merge", operator: "mallory" } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, id, decision: "allow", operator: "ann" });
    const result = await done;
    expect(result.decision).toBe("allow");
    expect(result.approvals).toEqual([{ decision: "allow", reason: "ok to merge", approver: "dashboard", operator: "ann" }]);
    const [row] = h.auditRows("approval.approve");
    expect(row).toMatchObject({ operator: "ann", action: "approval.approve", target: id, detail: { reason: "ok to merge", via: "session" } });
  });

  test("a held SQL statement is listed as the statement on its database, with its family and summary", async () => {
    const viewer = await h.as("viewer", "vera");
    const statement = "DELETE FROM public.users\nWHERE id = 7";
    const { id } = await h.hold({
      endpoint: "postgres.db", method: "DELETE", host: "db.internal", path: statement, bodyPreview: statement,
      headers: { database: "app", user: "agent" }, family: "sql", summary: "delete public.users",
    });
    const { approvals } = (await (await h.call("GET", "/api/approvals", { session: viewer })).json()) as { approvals: Record<string, unknown>[] };
    expect(approvals.find((a) => a.id === id)).toMatchObject({
      request: "sql app@db.internal: DELETE FROM public.users WHERE id = 7",
      family: "sql",
      summary: "delete public.users",
      headers: { database: "app", user: "agent" },
      bodyPreview: statement,
    });
    const { id: httpId } = await h.hold();
    const again = (await (await h.call("GET", "/api/approvals", { session: viewer })).json()) as { approvals: Record<string, unknown>[] };
    const http = again.approvals.find((a) => a.id === httpId);
    expect(http).toMatchObject({ request: "PUT api.github.com/repos/o/r/pulls/1/merge", family: "http" });
  });

  test("an approver denies with a reason; deciding twice is a 409", async () => {
    const ann = await h.as("approver", "ann");
    const { id, done } = await h.hold();
    expect((await h.call("POST", `/api/approvals/${id}/deny`, { session: ann, body: { reason: "not today" } })).status).toBe(200);
    const result = await done;
    expect(result.decision).toBe("deny");
    expect(result.reason).toContain("not today");
    const again = await h.call("POST", `/api/approvals/${id}/approve`, { session: ann, body: {} });
    expect(await errorOf(again)).toMatchObject({ status: 409, code: "not_decidable" });
    expect(h.auditRows("approval.").map((r) => r.action)).toEqual(["approval.approve.refused", "approval.deny"]);
  });

  test("an admin is also an approver and a viewer", async () => {
    const root = await h.as("admin", "root");
    const { id, done } = await h.hold();
    expect((await h.call("POST", `/api/approvals/${id}/approve`, { session: root })).status).toBe(200);
    expect((await done).approvals[0]!.operator).toBe("root");
    expect((await h.call("GET", "/api/events", { session: root })).status).toBe(200);
  });
});

describe("CSRF", () => {
  test("missing or wrong X-CSRF-Token is 403; the right one passes", async () => {
    const ann = await h.as("approver", "ann");
    const { id, done } = await h.hold();
    const missing = await h.call("POST", `/api/approvals/${id}/approve`, { session: ann, csrf: null });
    expect(await errorOf(missing)).toMatchObject({ status: 403, code: "csrf_failed" });
    const wrong = await h.call("POST", `/api/approvals/${id}/approve`, { session: ann, csrf: ann.csrf.slice(0, -1) + (ann.csrf.endsWith("A") ? "B" : "A") });
    expect(await errorOf(wrong)).toMatchObject({ status: 403, code: "csrf_failed" });
    // Another session's token does not fit this session.
    const other = await h.as("approver", "bob");
    const crossed = await h.call("POST", `/api/approvals/${id}/approve`, { session: ann, csrf: other.csrf });
    expect(crossed.status).toBe(403);
    expect(h.hub.pending()).toHaveLength(1);
    const right = await h.call("POST", `/api/approvals/${id}/approve`, { session: ann });
    expect(right.status).toBe(200);
    expect((await done).decision).toBe("allow");
  });

  test("a cross-site Origin or Sec-Fetch-Site is refused even with the token", async () => {
    const root = await h.as("admin", "root");
    for (const headers of <Record<string, string>[]>[{ origin: "https://evil.example" }, { origin: "null" }, { "sec-fetch-site": "cross-site" }, { "sec-fetch-site": "same-site" }]) {
      const res = await h.call("POST", "/api/reload", { session: root, headers });
      expect(await errorOf(res)).toMatchObject({ status: 403, code: "bad_origin" });
    }
    expect(h.reloads()).toBe(0);
    const ok = await h.call("POST", "/api/reload", { session: root, headers: { origin: "http://localhost", "sec-fetch-site": "same-origin" } });
    expect(ok.status).toBe(200);
    expect(h.reloads()).toBe(1);
  });

  test("GETs need no CSRF token", async () => {
    const v = await h.as("viewer", "vera");
    expect((await h.call("GET", "/api/devices", { session: v, csrf: null })).status).toBe(200);
  });

  test("an API token works without CSRF, with its own role", async () => {
    await h.addOperator("ann", "approver");
    const { token } = h.store.createToken("ann", "ci", "approver");
    const { id, done } = await h.hold();
    const res = await h.call("POST", `/api/approvals/${id}/approve`, { token, body: { reason: "from ci" }, headers: { origin: "https://evil.example" } });
    expect(res.status).toBe(200);
    expect((await done).approvals[0]!.operator).toBe("ann");
    expect(h.auditRows("approval.approve")[0]!.detail).toMatchObject({ via: "token" });
    // A viewer token of an approver cannot approve.
    const { token: ro } = h.store.createToken("ann", "ro", "viewer");
    const second = await h.hold();
    expect((await h.call("POST", `/api/approvals/${second.id}/approve`, { token: ro })).status).toBe(403);
    expect((await h.call("GET", "/api/approvals", { token: ro })).status).toBe(200);
  });

  test("a token cannot create tokens or change the password", async () => {
    await h.addOperator("root", "admin");
    const { token } = h.store.createToken("root", "ci", "admin");
    expect(await errorOf(await h.call("POST", "/api/auth/tokens", { token, body: { name: "more" } }))).toMatchObject({ status: 403, code: "session_required" });
    expect((await h.call("POST", "/api/auth/password", { token, body: { current: "x", new: "y".repeat(20) } })).status).toBe(403);
  });
});

describe("events", () => {
  test("history filters and pages", async () => {
    const v = await h.as("viewer", "vera");
    insertActions(h.db, [
      sampleEvent({ device: "laptop", verdict: "allow" }),
      sampleEvent({ device: "laptop", verdict: "deny" }),
      sampleEvent({ device: "ci", verdict: "deny" }),
    ]);
    const get = async (q: string) => (await (await h.call("GET", `/api/events${q}`, { session: v })).json()) as { events: { id: number; device: string; verdict: string }[]; next: number | null };
    expect((await get("")).events.map((e) => e.id)).toEqual([3, 2, 1]);
    expect((await get("?device=laptop&verdict=deny")).events.map((e) => e.id)).toEqual([2]);
    const page1 = await get("?limit=2");
    expect(page1.events.map((e) => e.id)).toEqual([3, 2]);
    expect(page1.next).toBe(2);
    expect((await get(`?limit=2&before=${page1.next}`)).events.map((e) => e.id)).toEqual([1]);
    expect((await h.call("GET", "/api/events?limit=0", { session: v })).status).toBe(400);
    expect((await h.call("GET", "/api/events?since=yesterday", { session: v })).status).toBe(400);
  });

  test("the stream sends live events and approval changes as SSE", async () => {
    const v = await h.as("viewer", "vera");
    const abort = new AbortController();
    const res = await h.call("GET", "/api/events/stream", { session: v, signal: abort.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const reader = res.body!.getReader();
    let text = "";
    const until = async (needle: string) => {
      while (!text.includes(needle)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended before ${needle}: ${text}`);
        text += typeof value === "string" ? value : new TextDecoder().decode(value);
      }
    };
    await until("event: ready");
    h.bus.publish(sampleEvent({ host: "live.example" }));
    await until("live.example");
    const { id } = await h.hold();
    await until(`"type":"added"`);
    expect(text).toContain(id);
    abort.abort();
    await reader.cancel().catch(() => {});
  });
});

describe("devices, policy, reload, audit", () => {
  test("viewers list devices; admins revoke and change profiles, audited", async () => {
    h.registry.add("laptop", "dev");
    const v = await h.as("viewer", "vera");
    const root = await h.as("admin", "root");
    const list = (await (await h.call("GET", "/api/devices", { session: v })).json()) as { devices: { name: string }[] };
    expect(list.devices.map((d) => d.name)).toEqual(["laptop"]);
    expect((await h.call("POST", "/api/devices/laptop/profile", { session: root, body: { profile: "dev" } })).status).toBe(200);
    expect((await h.call("POST", "/api/devices/laptop/profile", { session: root, body: { profile: "nope" } })).status).toBe(400);
    const revoked = await h.call("POST", "/api/devices/laptop/revoke", { session: root });
    expect(((await revoked.json()) as { device: { revoked: boolean } }).device.revoked).toBe(true);
    expect((await h.call("POST", "/api/devices/laptop/revoke", { session: root })).status).toBe(404);
    expect(h.auditRows("device.").map((r) => [r.action, r.target, r.operator])).toEqual([
      ["device.revoke", "laptop", "root"],
      ["device.profile", "laptop", "root"],
    ]);
    // No onboarding configured: its routes say so.
    expect(await errorOf(await h.call("GET", "/api/onboarding", { session: v }))).toMatchObject({ status: 404, code: "onboarding_off" });
  });

  test("profiles and rules for viewers", async () => {
    const v = await h.as("viewer", "vera");
    const p = (await (await h.call("GET", "/api/profiles", { session: v })).json()) as { profiles: unknown[] };
    expect(p.profiles).toEqual([{ name: "dev", credentials: ["github_token.gh"], endpoints: null, source: "gw.hcl:3" }]);
    const r = (await (await h.call("GET", "/api/rules", { session: v })).json()) as { rules: { name: string; verdict: string; approve: string[] }[] };
    expect(r.rules[0]).toMatchObject({ name: "merge-needs-approval", verdict: "approve", approve: ["dashboard"], source: "gw.hcl:10", mode: "enforce", rate: null });
    const shadow = (await (await h.call("GET", "/api/rules/shadow", { session: v })).json()) as { shadowRules: string[]; rules: unknown[] };
    expect(shadow).toMatchObject({ shadowRules: [], rules: [] });
    expect(await errorOf(await h.call("GET", "/api/rules/shadow?since=soon", { session: v }))).toMatchObject({ status: 400 });
  });

  test("the day's LLM spend per device for viewers, from the state database the gateway writes", async () => {
    const v = await h.as("viewer", "vera");
    const ledger = persistSpend(h.db, () => Date.parse("2026-12-07T10:00:00Z"));
    try {
      const usage = { provider: "anthropic" as const, model: "claude-sonnet-4-5", inputTokens: 10, outputTokens: 20, cacheReadTokens: 5, cacheWriteTokens: 0, complete: true };
      ledger.ledger.record({ device: "laptop", profile: "dev", credential: "anthropic_manual_key.c" }, { ...usage, usd: 0.25 });
      ledger.ledger.record({ device: "laptop", profile: "dev", credential: "anthropic_manual_key.c" }, { ...usage, usd: 0.5 });
    } finally {
      ledger.close();
    }
    const body = (await (await h.call("GET", "/api/spend?day=2026-12-07", { session: v })).json()) as { devices: unknown[]; budgets: unknown[] };
    expect(body.devices).toEqual([{ device: "laptop", usd: 0.75, requests: 2, inputTokens: 30, outputTokens: 40 }]);
    expect(body.budgets).toEqual([]);
    expect(await errorOf(await h.call("GET", "/api/spend?day=yesterday", { session: v }))).toMatchObject({ status: 400 });
  });

  test("reload is admin-only and audited, failures too", async () => {
    const root = await h.as("admin", "root");
    expect((await h.call("POST", "/api/reload", { session: root })).status).toBe(200);
    h.failReload(["gw.hcl:3: bad"]);
    expect(await errorOf(await h.call("POST", "/api/reload", { session: root }))).toMatchObject({ status: 422, code: "config_rejected" });
    expect(h.auditRows("config.reload").map((r) => r.detail)).toEqual([{ ok: false, errors: ["gw.hcl:3: bad"] }, { ok: true }]);
  });

  test("every operator action leaves an audit row, readable by admins with filters", async () => {
    const pw = await h.addOperator("root", "admin");
    await h.call("POST", "/api/auth/login", { body: { name: "root", password: "wrong" } });
    const root = await h.login("root", pw);
    const ann = await h.as("approver", "ann");
    const { id } = await h.hold();
    await h.call("POST", `/api/approvals/${id}/approve`, { session: ann });
    const second = await h.hold();
    await h.call("POST", `/api/approvals/${second.id}/deny`, { session: ann });
    const made = await h.call("POST", "/api/auth/tokens", { session: root, body: { name: "ci", role: "viewer" } });
    expect(made.status).toBe(201);
    await h.call("POST", "/api/reload", { session: root });
    await h.call("POST", "/api/auth/logout", { session: ann });
    const res = await h.call("GET", "/api/audit?limit=100", { session: root });
    const body = (await res.json()) as { audit: { operator: string; action: string; source: string; time: string }[] };
    expect(body.audit.map((a) => `${a.operator} ${a.action}`).reverse()).toEqual([
      "root login.failed",
      "root login",
      "ann login",
      "ann approval.approve",
      "ann approval.deny",
      "root token.create",
      "root config.reload",
      "ann logout",
    ]);
    expect(body.audit[0]!.source).toBe("192.0.2.1");
    expect(body.audit[0]!.time).toBe(new Date(h.clock.t).toISOString());
    const annOnly = (await (await h.call("GET", "/api/audit?operator=ann&action=approval.", { session: root })).json()) as { audit: { action: string }[] };
    expect(annOnly.audit.map((a) => a.action)).toEqual(["approval.deny", "approval.approve"]);
    // Secrets never reach the audit trail.
    const { token } = (await made.json()) as { token: string };
    const dump = JSON.stringify(h.db.query("SELECT * FROM audit").all());
    expect(dump).not.toContain(token);
    expect(dump).not.toContain(pw);
    expect(dump).not.toContain(root.csrf);
  });

  test("GET /api/operators lists accounts without secrets", async () => {
    const root = await h.as("admin", "root");
    const body = (await (await h.call("GET", "/api/operators", { session: root })).json()) as { operators: Record<string, unknown>[] };
    expect(body.operators).toEqual([{ name: "root", role: "admin", disabled: false, createdAt: new Date(h.clock.t).toISOString(), tokens: [] }]);
  });
});
