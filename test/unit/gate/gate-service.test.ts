// The gate's verdict service and its routes: allow with a token, timeout and
// scrub list; deny recorded at once; a hold decided on the dashboard (a real
// ApprovalHub); the completion report completing the one event; devices and
// tokens kept apart; bad descriptions refused with 400.
import { afterEach, describe, expect, test } from "bun:test";
import { DashboardApprover } from "../../../app/approvers/dashboard.ts";
import { ApprovalHub } from "../../../app/approvers/hub.ts";
import type { GatewayEvent } from "../../../app/events/types.ts";
import { GateService, UNPROVEN_REASON, type GateAnswer, type GateDeps } from "../../../app/gate/service.ts";
import { ALL_DEVICES } from "../../../app/gate/kill.ts";
import { gateRoute, GATE_TOKEN_HEADER } from "../../../app/gate/routes.ts";
import type { Policy } from "../../../app/policy/types.ts";
import { policyFrom } from "../policy/helpers.ts";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { openStateDb } from "../../../app/store/db.ts";
import { sqliteKillStore } from "../../../app/store/gate-kills.ts";

const HCL = `schema_version = 1
defaults {
  verdict       = "allow"
  exec_timeout  = "5m"
  env_scrub     = ["NPM_*"]
}
endpoint "exec" "tools" {}
profile "dev" {
  gate = ["npm", "rm", "git"]
}
profile "blind" {
  endpoints = []
}
rule "git-push" {
  endpoint  = exec.tools
  condition = "exec.prefix(['git', 'push'])"
  approve   = [dashboard]
}
rule "no-rm-rf" {
  endpoint  = exec.tools
  condition = "prefix(exec.argv, ['rm', '-rf'])"
  verdict   = "deny"
  reason    = "rm -rf needs a person"
}
rule "npm" {
  endpoint      = exec.tools
  condition     = "exec.command == 'npm'"
  verdict       = "allow"
  timeout       = "2m"
  allowed_paths = ["/work"]
}
`;

const dev = { name: "laptop", profile: "dev" };
const PROOF = "cpd_laptop-api-token";
const OTHER_PROOF = "cpd_other-api-token";
const warden: [string, string] = ["Authorization", `Bearer ${PROOF}`];
const command = (argv: string[], over: Record<string, unknown> = {}) => ({
  command: argv[0],
  path: `/usr/bin/${argv[0]}`,
  argv,
  cwd: "/work/proj",
  env: { PATH: "/usr/bin", NPM_TOKEN: "npm-secret-1", AWS_PROFILE: "x", LD_PRELOAD: "/tmp/e.so" },
  paths: [],
  tty: false,
  uid: 1000,
  ...over,
});

let hubs: ApprovalHub[] = [];
afterEach(() => {
  for (const h of hubs) h.close();
  hubs = [];
});

async function setup(o: { kills?: GateDeps["kills"] } = {}): Promise<{ gate: GateService; events: GatewayEvent[]; hub: ApprovalHub; policy: Policy }> {
  const policy = await policyFrom(HCL);
  const events: GatewayEvent[] = [];
  let dashboard: DashboardApprover | undefined;
  const hub: ApprovalHub = new ApprovalHub({ now: Date.now, plugins: (ref) => (ref === "dashboard" ? dashboard : undefined) });
  dashboard = new DashboardApprover(hub);
  hubs.push(hub);
  const gate = new GateService({
    policy: () => policy,
    publish: (e) => events.push(e),
    approvals: { hold: ({ request, chain, signal }) => hub.resumeOrStart(request, chain, { rule: request.rule, signal }) },
    wardenOf: (proof) => (proof === PROOF ? "laptop" : proof === OTHER_PROOF ? "other" : undefined),
    ...(o.kills ? { kills: o.kills } : {}),
  });
  return { gate, events, hub, policy };
}

describe("the gate service", () => {
  test("allow: a token, the rule's timeout, the variables to scrub; the event waits for the completion", async () => {
    const { gate, events } = await setup();
    const a = gate.ask(dev, command(["npm", "--version"]));
    expect(a).toMatchObject({ status: "allow", rule: "npm", timeout_ms: 120_000, env_scrub: ["AWS_PROFILE", "LD_PRELOAD", "NPM_TOKEN"] });
    if (a.status !== "allow") throw new Error("not allowed");
    expect(events).toHaveLength(0);
    expect(gate.complete(dev, a.id, "wrong-token", { exit: 0 })).toBe(false);
    expect(gate.complete({ name: "other", profile: "dev" }, a.id, a.token, { exit: 0 })).toBe(false);
    expect(gate.complete(dev, a.id, a.token, { exit: 42, duration_ms: 12, timed_out: false })).toBe(true);
    expect(gate.complete(dev, a.id, a.token, { exit: 0 })).toBe(false);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ kind: "exec", family: "exec", verdict: "allow", rule: "npm", endpoint: "exec.tools", durationMs: 12, summary: "npm --version" });
    expect(events[0]!.action).toMatchObject({ exit: 42, timed_out: false, argv: ["npm", "--version"], cwd: "/work/proj" });
    expect(JSON.stringify(events)).not.toContain("npm-secret-1");
  });

  test("a timeout is recorded as such", async () => {
    const { gate, events } = await setup();
    const a = gate.ask(dev, command(["ls"])) as Extract<GateAnswer, { status: "allow" }>;
    expect(a.timeout_ms).toBe(300_000);
    gate.complete(dev, a.id, a.token, { exit: 137, signal: "SIGKILL", duration_ms: 300_000, timed_out: true });
    expect(events[0]!.reason).toContain("killed after the timeout");
    expect(events[0]!.action).toMatchObject({ exit: 137, signal: "SIGKILL", timed_out: true });
  });

  test("deny: rule and reason, recorded at once", async () => {
    const { gate, events } = await setup();
    expect(gate.ask(dev, command(["rm", "-rf", "/work/x"]))).toMatchObject({ status: "deny", rule: "no-rm-rf", reason: "rm -rf needs a person" });
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ verdict: "deny", rule: "no-rm-rf" });
  });

  test("allowed_paths: a path outside denies the allowed command", async () => {
    const { gate } = await setup();
    expect(gate.ask(dev, command(["npm", "ci"], { paths: ["/etc/passwd"] }))).toMatchObject({ status: "deny", rule: "npm", reason: "/etc/passwd is outside allowed_paths" });
    expect(gate.ask(dev, command(["npm", "ci"], { paths: ["../proj/x"] })).status).toBe("allow");
  });

  test("a profile that sees no exec endpoint: deny", async () => {
    const { gate } = await setup();
    expect(gate.ask({ name: "laptop", profile: "blind" }, command(["ls"]))).toMatchObject({ status: "deny" });
  });

  test("held: the dashboard decides while the warden polls; the approver is on the event", async () => {
    const { gate, events, hub } = await setup();
    const h = gate.ask(dev, command(["git", "push", "--force"]));
    expect(h).toMatchObject({ status: "held", rule: "git-push", approvers: ["dashboard"] });
    if (h.status !== "held") throw new Error("not held");
    expect(await gate.poll(dev, h.id, h.token, 10)).toMatchObject({ status: "held" });
    const waiting = gate.poll(dev, h.id, h.token, 20_000);
    for (let i = 0; i < 100 && hub.pending()[0]?.decidable !== true; i++) await Bun.sleep(5);
    expect(hub.pending()[0]!.request.summary).toBe("git push --force");
    expect(hub.decide(hub.pending()[0]!.id, { decision: "allow", reason: "ok", operator: "alice" })).toEqual({ ok: true });
    const a = await waiting;
    expect(a).toMatchObject({ status: "allow", rule: "git-push" });
    if (a?.status !== "allow") throw new Error("not allowed");
    gate.complete(dev, a.id, a.token, { exit: 0, duration_ms: 5, timed_out: false });
    expect(events[0]).toMatchObject({ verdict: "allow", approvers: "dashboard", operator: "alice" });
  });

  test("held then denied: the poll gets the deny and the event is recorded", async () => {
    const { gate, events, hub } = await setup();
    const h = gate.ask(dev, command(["git", "push"])) as Extract<GateAnswer, { status: "held" }>;
    const waiting = gate.poll(dev, h.id, h.token, 20_000);
    for (let i = 0; i < 100 && hub.pending()[0]?.decidable !== true; i++) await Bun.sleep(5);
    hub.decide(hub.pending()[0]!.id, { decision: "deny", reason: "not today", operator: "bob" });
    expect(await waiting).toMatchObject({ status: "deny", reason: "denied by bob (dashboard): not today" });
    expect(events[0]).toMatchObject({ verdict: "deny", operator: "bob" });
  });

  test("cancel withdraws a hold", async () => {
    const { gate, events, hub } = await setup();
    const h = gate.ask(dev, command(["git", "push"])) as Extract<GateAnswer, { status: "held" }>;
    for (let i = 0; i < 100 && hub.pending().length === 0; i++) await Bun.sleep(5);
    expect(gate.cancel(dev, h.id, h.token)).toBe(true);
    expect(await gate.poll(dev, h.id, h.token, 5_000)).toMatchObject({ status: "deny" });
    expect(events).toHaveLength(1);
  });
});

describe("the routes", () => {
  const url = (p: string) => new URL(p, "https://clawpatrol.internal");
  const body = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

  test("ask, then done with the token header", async () => {
    const { gate, events } = await setup();
    const r = await gateRoute(gate, "POST", url("/gate/commands"), [warden], body(command(["ls", "-l"])), dev);
    expect(r.status).toBe(200);
    const a = JSON.parse(r.body) as Extract<GateAnswer, { status: "allow" }>;
    expect(a.status).toBe("allow");
    const noToken = await gateRoute(gate, "POST", url(`/gate/commands/${a.id}/done`), [warden], body({ exit: 0 }), dev);
    expect(noToken.status).toBe(404);
    const done = await gateRoute(gate, "POST", url(`/gate/commands/${a.id}/done`), [warden, [GATE_TOKEN_HEADER, a.token]], body({ exit: 1, duration_ms: 3, timed_out: false }), dev);
    expect(done.status).toBe(200);
    expect(events[0]!.action).toMatchObject({ exit: 1 });
  });

  test("bad descriptions get 400, never a crash", async () => {
    const { gate } = await setup();
    for (const bad of ["not json", JSON.stringify({}), JSON.stringify(command(["ls"], { argv: ["other"] })), JSON.stringify(command(["ls"], { cwd: "rel" })), JSON.stringify(command(["../x"]))]) {
      const r = await gateRoute(gate, "POST", url("/gate/commands"), [warden], new TextEncoder().encode(bad), dev);
      expect(r.status).toBe(400);
    }
    expect((await gateRoute(gate, "GET", url("/gate/commands"), [warden], new Uint8Array(), dev)).status).toBe(405);
    expect((await gateRoute(gate, "GET", url("/gate/nope"), [warden], new Uint8Array(), dev)).status).toBe(404);
  });

  test("without the warden's proof (the agent asking on its own): 403, recorded as refused, never judged", async () => {
    const { gate, events } = await setup();
    for (const headers of [[], [["Authorization", "Bearer cpd_guessed"]], [["Authorization", `Bearer ${OTHER_PROOF}`]], [["Authorization", PROOF]]] as [string, string][][]) {
      const r = await gateRoute(gate, "POST", url("/gate/commands"), headers, body(command(["ls", "-l"])), dev);
      expect(r.status).toBe(403);
      expect(JSON.parse(r.body)).toMatchObject({ error: "not_the_warden" });
    }
    expect(events).toHaveLength(4);
    for (const e of events) expect(e).toMatchObject({ kind: "exec", device: "laptop", verdict: "deny", reason: UNPROVEN_REASON, summary: "ls -l" });
    expect(gate.size()).toBe(0);
    // Follow-ups and the kill switch's poll need it too.
    expect((await gateRoute(gate, "GET", url("/gate/kill"), [], new Uint8Array(), dev)).status).toBe(403);
    expect((await gateRoute(gate, "POST", url("/gate/commands/x/done"), [], body({ exit: 0 }), dev)).status).toBe(403);
    expect(events).toHaveLength(4);
  });

  test("the kill switch: the warden's poll hears it at once; until released, commands are denied", async () => {
    const { gate, events } = await setup();
    const idle = await gateRoute(gate, "GET", url("/gate/kill?wait=0"), [warden], new Uint8Array(), dev);
    expect(JSON.parse(idle.body)).toEqual({ kill: false });
    const polling = gateRoute(gate, "GET", url("/gate/kill?wait=25"), [warden], new Uint8Array(), dev);
    for (let i = 0; i < 200 && gate.kill.waiting() === 0; i++) await Bun.sleep(5);
    expect(gate.kill.waiting()).toBe(1);
    gate.engageKill("laptop", "cli:root", "runaway agent");
    const heard = JSON.parse((await polling).body);
    expect(heard).toMatchObject({ kill: true, scope: "laptop", operator: "cli:root", reason: "runaway agent" });
    expect(heard.line).toBe("the kill switch is on for device laptop (by cli:root: runaway agent)");
    expect(events.at(-1)).toMatchObject({ kind: "exec", method: "KILL", device: "laptop", operator: "cli:root", summary: "kill switch on for laptop" });
    expect(gate.ask(dev, command(["ls"]))).toMatchObject({ status: "deny", reason: heard.line });
    // Another device goes on.
    expect(gate.ask({ name: "other", profile: "dev" }, command(["ls"])).status).toBe("allow");
    expect(gate.releaseKill("laptop", "cli:root")).toBe(true);
    expect(gate.releaseKill("laptop", "cli:root")).toBe(false);
    expect(gate.ask(dev, command(["ls"])).status).toBe("allow");
    // Every device at once.
    gate.engageKill(ALL_DEVICES, "alice", "");
    expect(gate.ask({ name: "other", profile: "dev" }, command(["ls"]))).toMatchObject({ status: "deny", reason: "the kill switch is on for every device (by alice)" });
    const r = await gateRoute(gate, "GET", url("/gate/kill?wait=5"), [["Authorization", `Bearer ${OTHER_PROOF}`]], new Uint8Array(), { name: "other", profile: "dev" });
    expect(JSON.parse(r.body)).toMatchObject({ kill: true, scope: "*" });
  });

  test("the kill switch is kept in the state database: a new service on it (a restart) still stops the device until released", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "clawpatrol-gate-kills-"));
    try {
      const db = openStateDb(dir);
      const first = await setup({ kills: sqliteKillStore(db) });
      first.gate.engageKill("laptop", "cli:root", "runaway agent");
      first.gate.engageKill(ALL_DEVICES, "alice", "");
      first.gate.releaseKill(ALL_DEVICES, "alice");
      db.close();
      const reopened = openStateDb(dir);
      const { gate } = await setup({ kills: sqliteKillStore(reopened) });
      expect(gate.kill.list()).toMatchObject([{ scope: "laptop", operator: "cli:root", reason: "runaway agent" }]);
      expect(gate.ask(dev, command(["ls"]))).toMatchObject({ status: "deny", reason: "the kill switch is on for device laptop (by cli:root: runaway agent)" });
      const heard = await gateRoute(gate, "GET", url("/gate/kill?wait=0"), [warden], new Uint8Array(), dev);
      expect(JSON.parse(heard.body)).toMatchObject({ kill: true, scope: "laptop" });
      expect(gate.ask({ name: "other", profile: "dev" }, command(["ls"])).status).toBe("allow");
      expect(gate.releaseKill("laptop", "cli:root")).toBe(true);
      expect(sqliteKillStore(reopened).load()).toEqual([]);
      reopened.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the kill switch withdraws held commands and records a killed one as such", async () => {
    const { gate, events, hub } = await setup();
    const h = gate.ask(dev, command(["git", "push"])) as Extract<GateAnswer, { status: "held" }>;
    const a = gate.ask(dev, command(["ls"])) as Extract<GateAnswer, { status: "allow" }>;
    for (let i = 0; i < 100 && hub.pending().length === 0; i++) await Bun.sleep(5);
    gate.engageKill("laptop", "cli:root", "");
    expect(await gate.poll(dev, h.id, h.token, 5_000)).toMatchObject({ status: "deny", reason: "the kill switch is on for device laptop (by cli:root)" });
    expect(gate.complete(dev, a.id, a.token, { exit: 137, signal: "SIGKILL", duration_ms: 40, timed_out: false, killed: true })).toBe(true);
    const ls = events.find((e) => e.summary === "ls")!;
    expect(ls).toMatchObject({ reason: "killed by the kill switch" });
    expect(ls.action).toMatchObject({ killed: true, exit: 137 });
  });
});
