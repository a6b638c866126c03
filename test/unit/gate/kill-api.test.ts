// The kill switch on the operator API: no credentials 401, a viewer reads
// but cannot act (403), an admin (session with CSRF, or API token) turns it
// on and off for one device or all; every action audited; the gate then
// denies that device's commands.
import { afterEach, describe, expect, test } from "bun:test";
import { GateService } from "../../../app/gate/service.ts";
import { localKillOps } from "../../../app/gate/kill-routes.ts";
import { harness } from "../api/harness.ts";
import { policyFrom } from "../policy/helpers.ts";

const HCL = `schema_version = 1
defaults {
  verdict = "allow"
}
endpoint "exec" "tools" {}
profile "dev" {}
`;

let closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers) c();
  closers = [];
});

async function setup() {
  const policy = await policyFrom(HCL);
  const gate = new GateService({ policy: () => policy, publish: () => undefined });
  const h = harness({ kill: localKillOps(gate) });
  closers.push(() => h.close());
  return { h, gate };
}

const ls = { command: "ls", path: "/usr/bin/ls", argv: ["ls"], cwd: "/", env: {}, paths: [], tty: false, uid: 1000 };

describe("/api/kill", () => {
  test("authenticated and by role: 401 without credentials, 403 for a viewer, 403 without CSRF", async () => {
    const { h, gate } = await setup();
    expect((await h.call("POST", "/api/kill", { body: { device: "laptop" } })).status).toBe(401);
    expect((await h.call("GET", "/api/kill")).status).toBe(401);
    const viewer = await h.as("viewer");
    expect((await h.call("GET", "/api/kill", { session: viewer })).status).toBe(200);
    expect((await h.call("POST", "/api/kill", { session: viewer, body: { device: "laptop" } })).status).toBe(403);
    const admin = await h.as("admin");
    expect((await h.call("POST", "/api/kill", { session: admin, csrf: null, body: { device: "laptop" } })).status).toBe(403);
    expect(gate.kill.list()).toHaveLength(0);
  });

  test("an admin stops one device, then every device, and releases; audited; the gate denies meanwhile", async () => {
    const { h, gate } = await setup();
    const admin = await h.as("admin", "alice");
    const on = await h.call("POST", "/api/kill", { session: admin, body: { device: "laptop", reason: "runaway" } });
    expect(on.status).toBe(200);
    expect(((await on.json()) as { engagement: unknown }).engagement).toMatchObject({ scope: "laptop", operator: "alice", reason: "runaway" });
    expect(gate.ask({ name: "laptop", profile: "dev" }, ls)).toMatchObject({ status: "deny", reason: "the kill switch is on for device laptop (by alice: runaway)" });
    expect(gate.ask({ name: "desk", profile: "dev" }, ls).status).toBe("allow");
    expect((await h.call("POST", "/api/kill", { session: admin, body: {} })).status).toBe(200);
    const list = (await (await h.call("GET", "/api/kill", { session: admin })).json()) as { engaged: { scope: string }[] };
    expect(list.engaged.map((e) => e.scope).sort()).toEqual(["*", "laptop"]);
    expect(gate.ask({ name: "desk", profile: "dev" }, ls).status).toBe("deny");
    expect((await h.call("POST", "/api/kill/release", { session: admin, body: { device: "laptop" } })).status).toBe(200);
    expect((await h.call("POST", "/api/kill/release", { session: admin, body: { device: "laptop" } })).status).toBe(404);
    expect((await h.call("POST", "/api/kill/release", { session: admin, body: {} })).status).toBe(200);
    expect(gate.ask({ name: "laptop", profile: "dev" }, ls).status).toBe("allow");
    expect((await h.call("POST", "/api/kill", { session: admin, body: { device: "../x" } })).status).toBe(400);
    expect(h.auditRows("kill.engage").map((r) => r.target).sort()).toEqual(["*", "laptop"]);
    expect(h.auditRows("kill.release")).toHaveLength(3);
  });
});
