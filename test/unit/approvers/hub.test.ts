// The approval hub: chains, deadlines on a fake clock, require_approvers,
// remember, async operations, the pending list and its notifications.
import { describe, expect, test } from "bun:test";
import { DEFAULT_MESSAGE, renderMessage } from "../../../app/approvers/config.ts";
import { DashboardApprover } from "../../../app/approvers/dashboard.ts";
import { ApprovalHub, type ChainOptions, type HubChange } from "../../../app/approvers/hub.ts";
import { allow, deny, flush, hubWith, request, ScriptedApprover, sqlRequest } from "./helpers.ts";

const MIN = 60_000;
const opts = (over: Partial<ChainOptions> = {}): ChainOptions => ({ rule: "merge-needs-approval", ...over });

function withDashboard(plugins: ScriptedApprover[] = [], extra = {}) {
  const h = hubWith(plugins, extra);
  h.byRef.set("dashboard", new DashboardApprover(h.hub));
  return h;
}

describe("chains", () => {
  test("approvers run in order and all must allow", async () => {
    const order: string[] = [];
    const a = new ScriptedApprover("human_approver.a", () => (order.push("a"), allow("alice")));
    const b = new ScriptedApprover("llm_approver.b", () => (order.push("b"), allow("claude")));
    const { hub, events } = hubWith([a, b]);
    const r = await hub.request(request(), ["human_approver.a", "llm_approver.b"], opts());
    expect(order).toEqual(["a", "b"]);
    expect(r.decision).toBe("allow");
    expect(r.remembered).toBe(false);
    expect(r.approvals.map((v) => [v.approver, v.operator, v.decision])).toEqual([
      ["human_approver.a", "alice", "allow"],
      ["llm_approver.b", "claude", "allow"],
    ]);
    expect(r.reason).toBe("approved by alice (human_approver.a), claude (llm_approver.b)");
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ decision: "allow", rule: "merge-needs-approval", device: "laptop", remembered: false, latencyMs: 0 });
    expect(hub.pending()).toEqual([]);
  });

  test("a deny ends the chain: later approvers are not asked", async () => {
    const a = new ScriptedApprover("human_approver.a", () => deny("not on a Friday", "alice"));
    const b = new ScriptedApprover("human_approver.b", () => allow("bob"));
    const { hub } = hubWith([a, b]);
    const r = await hub.request(request(), ["human_approver.a", "human_approver.b"], opts());
    expect(r.decision).toBe("deny");
    expect(r.reason).toBe("denied by alice (human_approver.a): not on a Friday");
    expect(b.asks).toHaveLength(0);
  });

  // Table: every way an approver can fail is a deny, with a reason.
  const failures: [string, (n: number) => unknown, string][] = [
    ["a thrown error", () => new Error("boom sk-secret"), "approver human_approver.a failed"],
    ["a malformed decision", () => ({ decision: "yes", reason: "ok" }), "approver human_approver.a gave a malformed verdict"],
    ["a missing reason", () => ({ decision: "allow" }), "approver human_approver.a gave a malformed verdict"],
    ["a non-object", () => "allow", "approver human_approver.a gave a malformed verdict"],
    ["null", () => null, "approver human_approver.a gave a malformed verdict"],
    ["an empty operator", () => ({ decision: "allow", reason: "x", operator: "" }), "approver human_approver.a gave a malformed verdict"],
  ];
  for (const [what, answer, reason] of failures) {
    test(`${what} is a deny`, async () => {
      const a = new ScriptedApprover("human_approver.a", answer);
      const { hub } = hubWith([a]);
      const r = await hub.request(request(), ["human_approver.a"], opts());
      expect(r).toMatchObject({ decision: "deny", reason });
      expect(r.reason).not.toContain("sk-secret");
    });
  }

  test("an approver that does not exist is a deny", async () => {
    const { hub } = hubWith([]);
    const r = await hub.request(request(), ["human_approver.ghost"], opts());
    expect(r).toMatchObject({ decision: "deny", reason: "no approver human_approver.ghost is available" });
  });

  test("an empty chain is a deny", async () => {
    const { hub } = hubWith([]);
    expect((await hub.request(request(), [], opts())).decision).toBe("deny");
  });

  test("the approver's approver field is the chain's ref, whatever the plugin claims", async () => {
    const a = new ScriptedApprover("human_approver.a", () => ({ ...allow("alice"), approver: "dashboard" }));
    const { hub } = hubWith([a]);
    const r = await hub.request(request(), ["human_approver.a"], opts());
    expect(r.approvals[0]!.approver).toBe("human_approver.a");
  });
});

describe("timeouts (fake clock)", () => {
  test("no answer within timeout is a deny; the plugin's signal is aborted", async () => {
    const a = new ScriptedApprover("human_approver.a");
    const { hub, advance } = hubWith([a]);
    let result: string | undefined;
    void hub.request(request(), ["human_approver.a"], opts({ timeoutMs: 5 * MIN })).then((r) => (result = `${r.decision}: ${r.reason}`));
    await flush();
    expect(hub.pollAt()).toBe(hub.now() + 5 * MIN);
    await advance(5 * MIN - 1);
    expect(result).toBeUndefined();
    expect(a.last.ctx.signal.aborted).toBe(false);
    await advance(1);
    expect(result).toBe("deny: no answer from human_approver.a within 5m");
    expect(a.last.ctx.signal.aborted).toBe(true);
    expect(hub.pending()).toEqual([]);
  });

  test("the default timeout is 5 minutes", async () => {
    const a = new ScriptedApprover("human_approver.a");
    const { hub, advance } = hubWith([a]);
    let done = false;
    void hub.request(request(), ["human_approver.a"], opts()).then(() => (done = true));
    await flush();
    await advance(5 * MIN - 1);
    expect(done).toBe(false);
    await advance(1);
    expect(done).toBe(true);
  });

  test("an approver's own timeout overrides the chain default", async () => {
    const a = new ScriptedApprover("human_approver.a");
    const { hub, advance } = hubWith([a]);
    let reason = "";
    void hub
      .request(request(), ["human_approver.a"], opts({ timeoutMs: 5 * MIN, settings: () => ({ timeoutMs: 30_000 }) }))
      .then((r) => (reason = r.reason));
    await flush();
    await advance(30_000);
    expect(reason).toBe("no answer from human_approver.a within 30s");
  });

  test('on_timeout = "allow" lets the chain go on to the next approver', async () => {
    const a = new ScriptedApprover("human_approver.a");
    const b = new ScriptedApprover("human_approver.b", () => allow("bob"));
    const { hub, advance } = hubWith([a, b]);
    const settings = (ref: string) => (ref === "human_approver.a" ? { timeoutMs: 10_000, onTimeout: "allow" as const } : undefined);
    const p = hub.request(request(), ["human_approver.a", "human_approver.b"], opts({ settings }));
    await flush();
    expect(b.asks).toHaveLength(0);
    await advance(10_000);
    const r = await p;
    expect(r.decision).toBe("allow");
    expect(r.approvals[0]).toEqual({ decision: "allow", reason: 'no answer within 10s; on_timeout = "allow"', approver: "human_approver.a" });
    expect(b.asks).toHaveLength(1);
  });

  test("each step gets its own deadline", async () => {
    const a = new ScriptedApprover("human_approver.a");
    const b = new ScriptedApprover("human_approver.b");
    const { hub, advance } = hubWith([a, b]);
    let result: string | undefined;
    void hub.request(request(), ["human_approver.a", "human_approver.b"], opts({ timeoutMs: 60_000 })).then((r) => (result = r.reason));
    await flush();
    await advance(59_000);
    a.last.answer(allow("alice"));
    await flush();
    await advance(59_000);
    expect(result).toBeUndefined();
    await advance(1000);
    expect(result).toBe("no answer from human_approver.b within 1m");
  });

  test("with real timers the hub fires its own deadline", async () => {
    const a = new ScriptedApprover("human_approver.a");
    const hub = new ApprovalHub({ now: Date.now, plugins: () => a });
    const r = await hub.request(request(), ["human_approver.a"], opts({ timeoutMs: 15 }));
    expect(r.decision).toBe("deny");
    expect(r.latencyMs).toBeGreaterThanOrEqual(15);
  });
});

describe("require_approvers", () => {
  test("n distinct operators must allow; the same operator twice counts once", async () => {
    const a = new ScriptedApprover("human_approver.a");
    const { hub } = hubWith([a]);
    let result: string | undefined;
    void hub.request(request(), ["human_approver.a"], opts({ settings: () => ({ requireApprovers: 2 }) })).then((r) => (result = r.reason));
    await flush();
    expect(a.asks).toHaveLength(1);
    expect(a.last.ctx.requireApprovers).toBe(2);
    a.last.answer(allow("alice"));
    await flush();
    expect(a.asks).toHaveLength(2);
    expect(a.last.ctx.approvedBy).toEqual(["alice"]);
    expect(hub.pending()[0]!.approvedBy).toEqual(["alice"]);
    a.last.answer(allow("alice"));
    await flush();
    expect(result).toBeUndefined();
    expect(a.asks).toHaveLength(3);
    a.last.answer(allow("bob"));
    await flush();
    expect(result).toBe("approved by alice (human_approver.a), bob (human_approver.a)");
  });

  test("a deny by any operator is a deny", async () => {
    const a = new ScriptedApprover("human_approver.a", (n) => (n === 1 ? allow("alice") : deny("too risky", "bob")));
    const { hub } = hubWith([a]);
    const r = await hub.request(request(), ["human_approver.a"], opts({ requireApprovers: 2 }));
    expect(r).toMatchObject({ decision: "deny", reason: "denied by bob (human_approver.a): too risky" });
  });

  test("a plugin that keeps answering as the same operator is denied, not looped forever", async () => {
    const a = new ScriptedApprover("human_approver.a", () => allow("alice"));
    const { hub } = hubWith([a]);
    const r = await hub.request(request(), ["human_approver.a"], opts({ requireApprovers: 2 }));
    expect(r.decision).toBe("deny");
    expect(r.reason).toContain("kept answering as alice");
    expect(a.asks.length).toBeLessThan(10);
  });

  test("allows without an operator identity count as one", async () => {
    const a = new ScriptedApprover("human_approver.a", () => allow());
    const { hub } = hubWith([a]);
    const r = await hub.request(request(), ["human_approver.a"], opts({ requireApprovers: 2 }));
    expect(r.decision).toBe("deny");
  });

  test("the timeout covers all the asks of one step", async () => {
    const a = new ScriptedApprover("human_approver.a");
    const { hub, advance } = hubWith([a]);
    let reason: string | undefined;
    void hub.request(request(), ["human_approver.a"], opts({ timeoutMs: MIN, requireApprovers: 2 })).then((r) => (reason = r.reason));
    await flush();
    await advance(30_000);
    a.last.answer(allow("alice"));
    await flush();
    await advance(30_000);
    expect(reason).toBe("no answer from human_approver.a within 1m");
  });
});

describe("the dashboard approver", () => {
  test("a held request is pending until hub.decide answers it", async () => {
    const { hub, clock } = withDashboard();
    const changes: HubChange["type"][] = [];
    hub.subscribe((c) => changes.push(c.type));
    const req = request();
    const p = hub.request(req, ["dashboard"], opts({ timeoutMs: MIN }));
    await flush();
    const [pending] = hub.pending();
    expect(pending).toMatchObject({
      id: req.id,
      chain: ["dashboard"],
      position: 0,
      awaiting: "dashboard",
      started: clock.t,
      deadline: clock.t + MIN,
      decidable: true,
      approvedBy: [],
      required: 1,
      async: false,
      message: "PUT api.github.com/repos/o/r/pulls/1/merge by laptop (merge-needs-approval: merging a pull request)",
    });
    expect(hub.decide(req.id, { decision: "allow", reason: "ok", operator: "", approver: "dashboard" })).toEqual({ ok: false, reason: "operator is required" });
    expect(hub.decide(req.id, { decision: "maybe" as "allow", reason: "ok", operator: "alice" }).ok).toBe(false);
    expect(hub.decide(req.id, { decision: "allow", reason: "ship it", operator: "alice", approver: "dashboard" })).toEqual({ ok: true });
    const r = await p;
    expect(r).toMatchObject({ decision: "allow", approvals: [{ decision: "allow", reason: "ship it", approver: "dashboard", operator: "alice" }] });
    expect(changes).toEqual(["added", "updated", "decided"]);
    expect(hub.decide(req.id, { decision: "allow", reason: "", operator: "alice" })).toEqual({ ok: false, reason: `no pending approval ${req.id}` });
  });

  test("deny from the dashboard carries the operator's reason", async () => {
    const { hub } = withDashboard();
    const req = request();
    const p = hub.request(req, ["dashboard"], opts());
    await flush();
    hub.decide(req.id, { decision: "deny", reason: "not today", operator: "alice" });
    expect((await p).reason).toBe("denied by alice (dashboard): not today");
  });

  test("require_approvers on the dashboard: the same operator is refused a second time", async () => {
    const { hub } = withDashboard();
    const req = request();
    const p = hub.request(req, ["dashboard"], opts({ requireApprovers: 2 }));
    await flush();
    expect(hub.decide(req.id, { decision: "allow", reason: "", operator: "alice" }).ok).toBe(true);
    await flush();
    expect(hub.pending()[0]).toMatchObject({ approvedBy: ["alice"], decidable: true });
    expect(hub.decide(req.id, { decision: "allow", reason: "", operator: "alice" })).toEqual({
      ok: false,
      reason: "alice already approved this request; another operator must",
    });
    expect(hub.decide(req.id, { decision: "allow", reason: "", operator: "bob" }).ok).toBe(true);
    expect((await p).decision).toBe("allow");
  });

  test("decide is refused while another approver is being asked", async () => {
    const a = new ScriptedApprover("human_approver.a");
    const { hub } = withDashboard([a]);
    const req = request();
    void hub.request(req, ["human_approver.a", "dashboard"], opts());
    await flush();
    expect(hub.pending()[0]).toMatchObject({ awaiting: "human_approver.a", decidable: false });
    expect(hub.decide(req.id, { decision: "allow", reason: "", operator: "alice" })).toEqual({
      ok: false,
      reason: `approval ${req.id} is waiting for human_approver.a, not the dashboard`,
    });
    a.last.answer(allow("bob"));
    await flush();
    expect(hub.pending()[0]).toMatchObject({ awaiting: "dashboard", position: 1, decidable: true });
  });

  test("an agent that goes away from a synchronous hold ends it with deny", async () => {
    const { hub } = withDashboard();
    const agent = new AbortController();
    const req = request();
    const p = hub.resumeOrStart(req, ["dashboard"], opts({ signal: agent.signal }));
    await flush();
    agent.abort();
    const out = await p;
    expect(out).toMatchObject({ status: "decided", result: { decision: "deny", reason: "the agent went away" } });
    expect(hub.pending()).toEqual([]);
  });

  test("close denies every hold", async () => {
    const { hub } = withDashboard();
    const p = hub.request(request(), ["dashboard"], opts());
    await flush();
    hub.close();
    expect((await p).reason).toBe("the gateway is shutting down");
    expect((await hub.request(request(), ["dashboard"], opts())).decision).toBe("deny");
  });

  test("maxPending bounds the holds; beyond it requests are denied at once", async () => {
    const { hub } = withDashboard([], { maxPending: 1 });
    void hub.request(request(), ["dashboard"], opts());
    const r = await hub.request(request(), ["dashboard"], opts());
    expect(r).toMatchObject({ decision: "deny", reason: "too many requests are waiting for approval" });
  });

  test("maxPendingPerDevice: one device past its share is denied at once, another device's request is held; a decided hold frees a place", async () => {
    const { hub } = withDashboard([], { maxPendingPerDevice: 2 });
    void hub.request(request({ device: "flooder" }), ["dashboard"], opts());
    void hub.request(request({ device: "flooder" }), ["dashboard"], opts());
    const r = await hub.request(request({ device: "flooder" }), ["dashboard"], opts());
    expect(r).toMatchObject({ decision: "deny", reason: "too many requests of device flooder are waiting for approval" });
    void hub.request(request({ device: "other" }), ["dashboard"], opts());
    await flush();
    expect(hub.pending().map((p) => p.request.device).sort()).toEqual(["flooder", "flooder", "other"]);
    // one of the flooder's is decided: it may hold one more
    const first = hub.pending().find((p) => p.request.device === "flooder")!;
    expect(hub.decide(first.id, { decision: "deny", reason: "no", operator: "alice", approver: "dashboard" })).toEqual({ ok: true });
    await flush();
    void hub.request(request({ device: "flooder" }), ["dashboard"], opts());
    await flush();
    expect(hub.pending().filter((p) => p.request.device === "flooder").length).toBe(2);
  });
});

describe("remember", () => {
  const chain = ["human_approver.a"];
  function setup() {
    const a = new ScriptedApprover("human_approver.a", () => allow("alice"));
    return { a, ...hubWith([a]) };
  }

  test("an allow covers identical requests for the window, recorded as remembered", async () => {
    const { a, hub, events, clock } = setup();
    const o = opts({ rememberMs: 10 * MIN });
    const first = await hub.request(request(), chain, o);
    expect(first.remembered).toBe(false);
    clock.advance(10 * MIN - 1);
    const second = await hub.request(request(), chain, o);
    expect(second).toMatchObject({ decision: "allow", remembered: true, latencyMs: 0 });
    expect(second.reason).toContain(`operation ${first.id}`);
    expect(second.approvals).toEqual(first.approvals);
    expect(a.asks).toHaveLength(1);
    expect(events.map((e) => e.remembered)).toEqual([false, true]);
  });

  test("after the window the approver is asked again", async () => {
    const { a, hub, clock } = setup();
    const o = opts({ rememberMs: 10 * MIN });
    await hub.request(request(), chain, o);
    clock.advance(10 * MIN);
    expect((await hub.request(request(), chain, o)).remembered).toBe(false);
    expect(a.asks).toHaveLength(2);
  });

  test("another device, fingerprint or rule is not covered", async () => {
    const { a, hub } = setup();
    const o = opts({ rememberMs: 10 * MIN });
    await hub.request(request(), chain, o);
    expect((await hub.request(request({ device: "other" }), chain, o)).remembered).toBe(false);
    expect((await hub.request(request({ fingerprint: "fp-2" }), chain, o)).remembered).toBe(false);
    expect((await hub.request(request(), chain, opts({ rule: "other-rule", rememberMs: 10 * MIN }))).remembered).toBe(false);
    expect(a.asks).toHaveLength(4);
  });

  test("a deny is not remembered, nor an allow without remember", async () => {
    const a = new ScriptedApprover("human_approver.a", (n) => (n === 1 ? deny() : allow("alice")));
    const { hub } = hubWith([a]);
    expect((await hub.request(request(), chain, opts({ rememberMs: MIN }))).decision).toBe("deny");
    expect((await hub.request(request(), chain, opts())).remembered).toBe(false);
    expect((await hub.request(request(), chain, opts({ rememberMs: MIN }))).remembered).toBe(false);
    expect(a.asks).toHaveLength(3);
  });

  test("the memory is bounded", async () => {
    const a = new ScriptedApprover("human_approver.a", () => allow("alice"));
    const { hub } = hubWith([a], { maxRemembered: 2 });
    const o = opts({ rememberMs: MIN });
    for (const fp of ["1", "2", "3"]) await hub.request(request({ fingerprint: fp }), chain, o);
    expect((await hub.request(request({ fingerprint: "1" }), chain, o)).remembered).toBe(false);
    expect((await hub.request(request({ fingerprint: "3" }), chain, o)).remembered).toBe(true);
  });
});

describe("async holds (operations)", () => {
  const asyncSettings = () => ({ async: true, timeoutMs: 30_000, asyncTimeoutMs: 60 * MIN });

  test("pending after the sync window, then the retry gets the decision once", async () => {
    const { hub, advance } = withDashboard([], { retryAfterS: 5 });
    const req = request();
    const first = hub.resumeOrStart(req, ["dashboard"], opts({ settings: asyncSettings }));
    await flush();
    await advance(29_999);
    let firstOut: unknown;
    void first.then((o) => (firstOut = o));
    await flush();
    expect(firstOut).toBeUndefined();
    await advance(1);
    expect(firstOut).toEqual({ status: "pending", operation: req.id, retryAfterS: 5 });

    // The hold goes on past `timeout`: it is an async hold.
    expect(hub.lookup(req.id)).toMatchObject({ state: "pending", pending: { id: req.id, async: true, deadline: expect.any(Number) } });

    // The retry: same device, same fingerprint, a new request id.
    const retry = hub.resumeOrStart(request({ fingerprint: req.fingerprint }), ["dashboard"], opts({ settings: asyncSettings }), req.id);
    await flush();
    expect(hub.decide(req.id, { decision: "allow", reason: "fine", operator: "alice" }).ok).toBe(true);
    const out = await retry;
    expect(out).toMatchObject({ status: "decided", result: { id: req.id, decision: "allow" } });

    expect(hub.lookup(req.id)).toMatchObject({ state: "decided", delivered: true, result: { decision: "allow" } });
    const again = await hub.resumeOrStart(request(), ["dashboard"], opts({ settings: asyncSettings }), req.id);
    expect(again).toMatchObject({ status: "refused", httpStatus: 409, code: "operation_used" });
  });

  test("a retry long-polls, then is told to retry again", async () => {
    const { hub, advance } = withDashboard([], { resumeWaitMs: 10_000 });
    const req = request();
    const first = hub.resumeOrStart(req, ["dashboard"], opts({ settings: asyncSettings }));
    await flush();
    await advance(30_000);
    expect((await first).status).toBe("pending");
    let out: unknown;
    void hub.resumeOrStart(request(), ["dashboard"], opts(), req.id).then((o) => (out = o));
    await advance(9_999);
    expect(out).toBeUndefined();
    await advance(1);
    expect(out).toMatchObject({ status: "pending", operation: req.id });
  });

  test("a decision that arrives while nobody waits is kept for the retry", async () => {
    const { hub, advance } = withDashboard();
    const req = request();
    void hub.resumeOrStart(req, ["dashboard"], opts({ settings: asyncSettings }));
    await flush();
    await advance(30_000);
    hub.decide(req.id, { decision: "deny", reason: "no", operator: "alice" });
    await flush();
    const out = await hub.resumeOrStart(request(), ["dashboard"], opts(), req.id);
    expect(out).toMatchObject({ status: "decided", result: { decision: "deny", reason: "denied by alice (dashboard): no" } });
  });

  test("a mismatched fingerprint or device is refused; an unknown operation is 404", async () => {
    const { hub, advance } = withDashboard();
    const req = request();
    void hub.resumeOrStart(req, ["dashboard"], opts({ settings: asyncSettings }));
    await flush();
    await advance(30_000);
    expect(await hub.resumeOrStart(request({ fingerprint: "other" }), ["dashboard"], opts(), req.id)).toMatchObject({
      status: "refused",
      httpStatus: 409,
      code: "operation_mismatch",
    });
    expect(await hub.resumeOrStart(request({ device: "other" }), ["dashboard"], opts(), req.id)).toMatchObject({ code: "operation_mismatch" });
    expect(await hub.resumeOrStart(request(), ["dashboard"], opts(), "nope")).toMatchObject({
      status: "refused",
      httpStatus: 404,
      code: "unknown_operation",
    });
    // The refused retries did not end the hold.
    expect(hub.lookup(req.id)?.state).toBe("pending");
  });

  test("the async hold ends at async_timeout (on_timeout applies)", async () => {
    const { hub, advance } = withDashboard();
    const req = request();
    void hub.resumeOrStart(req, ["dashboard"], opts({ settings: asyncSettings }));
    await flush();
    await advance(60 * MIN - 1);
    expect(hub.lookup(req.id)?.state).toBe("pending");
    await advance(1);
    expect(hub.lookup(req.id)).toMatchObject({ state: "decided", result: { decision: "deny", reason: "no answer from dashboard within 60m" } });
  });

  test("an agent going away does not end an async hold", async () => {
    const { hub, advance } = withDashboard();
    const agent = new AbortController();
    const req = request();
    void hub.resumeOrStart(req, ["dashboard"], opts({ settings: asyncSettings, signal: agent.signal }));
    await flush();
    agent.abort();
    await advance(30_000);
    expect(hub.lookup(req.id)?.state).toBe("pending");
  });

  test("without async the request waits for the whole timeout (no 202)", async () => {
    const { hub, advance } = withDashboard();
    const req = request();
    let out: { status: string } | undefined;
    void hub.resumeOrStart(req, ["dashboard"], opts({ timeoutMs: MIN })).then((o) => (out = o));
    await flush();
    await advance(MIN - 1);
    expect(out).toBeUndefined();
    await advance(1);
    expect(out).toMatchObject({ status: "decided" });
  });

  test("decided results are kept for a while, then forgotten", async () => {
    const a = new ScriptedApprover("human_approver.a", () => allow("alice"));
    const { hub, clock } = hubWith([a], { resultTtlMs: MIN });
    const req = request();
    await hub.request(req, ["human_approver.a"], opts());
    expect(hub.lookup(req.id)?.state).toBe("decided");
    clock.advance(MIN);
    expect(hub.lookup(req.id)).toBeUndefined();
  });

  test("decided results are bounded in number", async () => {
    const a = new ScriptedApprover("human_approver.a", () => allow("alice"));
    const { hub } = hubWith([a], { maxResults: 2 });
    const reqs = [request(), request(), request()];
    for (const r of reqs) await hub.request(r, ["human_approver.a"], opts());
    expect(hub.lookup(reqs[0]!.id)).toBeUndefined();
    expect(hub.lookup(reqs[2]!.id)?.state).toBe("decided");
  });

  test("a synchronous decision is delivered once: its id cannot be replayed as an operation", async () => {
    const a = new ScriptedApprover("human_approver.a", () => allow("alice"));
    const { hub } = hubWith([a]);
    const req = request();
    await hub.resumeOrStart(req, ["human_approver.a"], opts());
    expect(await hub.resumeOrStart(request(), ["human_approver.a"], opts(), req.id)).toMatchObject({ code: "operation_used" });
  });

  test("a reused request id is the caller's bug and throws", async () => {
    const { hub } = withDashboard();
    const req = request();
    void hub.request(req, ["dashboard"], opts());
    await expect(hub.request(req, ["dashboard"], opts())).rejects.toThrow("already exists");
  });
});

describe("messages and events", () => {
  test("the message template is rendered for each approver and handed to it", async () => {
    const a = new ScriptedApprover("human_approver.a", () => allow("alice"));
    const { hub } = hubWith([a]);
    await hub.request(request(), ["human_approver.a"], opts({ settings: () => ({ message: "{{ device }} wants {{method}} {{host}}{{path}} [{{endpoint}}/{{profile}}]" }) }));
    expect(a.last.ctx.message).toBe("laptop wants PUT api.github.com/repos/o/r/pulls/1/merge [https.github/default]");
  });

  test("the default template", () => {
    expect(DEFAULT_MESSAGE).toBe("{{method}} {{host}}{{path}} by {{device}} ({{rule}}: {{reason}})");
    expect(renderMessage(DEFAULT_MESSAGE, request())).toBe("PUT api.github.com/repos/o/r/pulls/1/merge by laptop (merge-needs-approval: merging a pull request)");
    expect(renderMessage("{{body}} {{fingerprint}} {{id}} {{time}}", request({ id: "x" }))).toBe('{"merge_method":"squash"} fp-1 x 2024-01-01T00:00:00.000Z');
  });

  test("the default template for a held SQL statement names the database and shows the statement, not a request line", () => {
    expect(renderMessage(DEFAULT_MESSAGE, sqlRequest())).toBe(
      "SQL on app as agent by laptop (writes-need-approval: a write to the app database):\nDELETE FROM public.users WHERE id = 7",
    );
    expect(renderMessage("{{family}} {{summary}} {{database}} {{user}} {{statement}}", sqlRequest())).toBe(
      "sql delete public.users app agent DELETE FROM public.users WHERE id = 7",
    );
    // The sql fields are empty for http; an operator's own template is kept as written for sql.
    expect(renderMessage("[{{family}}|{{database}}|{{statement}}]", request())).toBe("[http||]");
    expect(renderMessage("{{method}} {{path}}", sqlRequest())).toBe("DELETE DELETE FROM public.users WHERE id = 7");
  });

  test("every decision is published with approver, operator, reason and latency", async () => {
    const a = new ScriptedApprover("human_approver.a");
    const { hub, events, advance } = hubWith([a]);
    const p = hub.request(request(), ["human_approver.a"], opts());
    await flush();
    await advance(12_000);
    a.last.answer(deny("nope", "alice"));
    await p;
    expect(events).toEqual([
      {
        time: expect.any(String),
        id: expect.any(String),
        device: "laptop",
        profile: "default",
        endpoint: "https.github",
        rule: "merge-needs-approval",
        method: "PUT",
        host: "api.github.com",
        path: "/repos/o/r/pulls/1/merge",
        decision: "deny",
        reason: "denied by alice (human_approver.a): nope",
        approvals: [{ decision: "deny", reason: "nope", approver: "human_approver.a", operator: "alice" }],
        latencyMs: 12_000,
        remembered: false,
      },
    ]);
  });

  test("a failing subscriber or publisher does not break the hub", async () => {
    const a = new ScriptedApprover("human_approver.a", () => allow("alice"));
    const { hub } = hubWith([a], {
      publish: () => {
        throw new Error("sink down");
      },
    });
    hub.subscribe(() => {
      throw new Error("subscriber down");
    });
    expect((await hub.request(request(), ["human_approver.a"], opts())).decision).toBe("allow");
  });
});
