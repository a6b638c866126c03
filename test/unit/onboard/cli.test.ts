// `clawpatrol-gateway devices pending|approve|deny|revoke|set-profile|list`
// against the control routes served on a real Unix socket (no TCP port).
import { afterAll, beforeAll, describe, expect, spyOn, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Elysia } from "elysia";
import { main } from "../../../app/main.ts";
import { onboardControlRoutes } from "../../../app/control/onboard/index.ts";
import { formatTable } from "../../../app/control/onboard/cli.ts";
import { harness, newKey, type Harness } from "./helpers.ts";
import { tempDir } from "../events/fixtures.ts";

const POLICY = (stateDir: string) => `schema_version = 1
gateway {
  state_dir = "${stateDir}"
}
defaults {
  verdict = "allow"
  unknown_host = "passthrough"
}
profile "dev" {}
profile "ops" {}
`;

let t: ReturnType<typeof tempDir>;
let h: Harness;
let config: string;
let server: Elysia<any, any, any, any, any, any, any>;

beforeAll(() => {
  t = tempDir("clawpatrol-onboard-cli-");
  const state = join(t.dir, "state");
  config = join(t.dir, "gateway.hcl");
  writeFileSync(config, POLICY(state));
  h = harness({}, { dir: state });
  server = new Elysia().use(onboardControlRoutes(h.service));
  server.listen({ unix: join(state, "control.sock") });
});
afterAll(async () => {
  await server.stop();
  h.close();
  t.cleanup();
});

async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = spyOn(console, "log").mockImplementation((...a: unknown[]) => void out.push(a.join(" ")));
  const error = spyOn(console, "error").mockImplementation((...a: unknown[]) => void err.push(a.join(" ")));
  try {
    let code: number;
    try {
      code = await main([...args, "--config", config]);
    } catch (e) {
      // main's caller prints usage errors and exits 2.
      err.push((e as Error).message);
      code = 2;
    }
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    log.mockRestore();
    error.mockRestore();
  }
}

describe("devices CLI through the control socket", () => {
  test("pending, approve, deny, list, set-profile, revoke", async () => {
    expect((await run("devices", "pending")).err).toContain("no devices are waiting");
    const a = h.service.start({ name: "laptop", public_key: newKey(), profile: "dev" }, "192.0.2.7");
    const b = h.service.start({ name: "phone", public_key: newKey() }, "192.0.2.8");

    const pending = await run("devices", "pending");
    expect(pending.code).toBe(0);
    const lines = pending.out.split("\n");
    expect(lines[0]).toMatch(/^CODE +NAME +REQUESTED PROFILE +FROM +KEY +EXPIRES IN$/);
    expect(lines[1]).toMatch(new RegExp(`^${a.code} +laptop +dev +192\\.0\\.2\\.7 +\\S+… +\\d+ min$`));
    expect(lines[2]).toMatch(new RegExp(`^${b.code} +phone +- +192\\.0\\.2\\.8 `));

    const approved = await run("devices", "approve", a.code, "--profile", "dev");
    expect(approved).toMatchObject({ code: 0, out: 'approved "laptop" with profile dev, address 10.77.0.2' });
    expect(h.approved.map((d) => d.name)).toEqual(["laptop"]);
    const decided = h.db.query("SELECT decided_by FROM onboarding WHERE device_name = 'laptop'").get() as { decided_by: string };
    expect(decided.decided_by).toMatch(/^cli:\S+$/);

    const again = await run("devices", "approve", a.code, "--profile", "dev");
    expect(again.code).toBe(1);
    expect(again.err).toContain("already approved");

    expect((await run("devices", "deny", b.code.toLowerCase())).code).toBe(0);

    const unknownProfile = await run("devices", "approve", "ABCD-EFGH", "--profile", "nope");
    expect(unknownProfile.code).toBe(2);
    expect(unknownProfile.err).toContain('unknown profile "nope" (configured: dev, ops)');

    expect((await run("devices", "set-profile", "laptop", "ops")).out).toBe('"laptop" now uses profile ops');

    const list = await run("devices", "list");
    expect(list.out.split("\n")).toEqual([
      expect.stringMatching(/^NAME +KIND +PROFILE +ADDRESS +STATE +LAST SEEN +CREATED$/),
      expect.stringMatching(/^laptop +wireguard +ops +10\.77\.0\.2 +active +never +\d{4}-\d\d-\d\d \d\d:\d\d$/),
    ]);

    expect((await run("devices", "revoke", "laptop")).out).toBe('revoked "laptop"');
    expect(h.revoked.map((d) => d.name)).toEqual(["laptop"]);
    const twice = await run("devices", "revoke", "laptop");
    expect(twice.code).toBe(1);
    expect(twice.err).toContain('no active device named "laptop"');
  });
});

describe("formatTable", () => {
  test("pads every column but the last", () => {
    expect(formatTable(["A", "BB", "C"], [["xxx", "y", "z"]])).toBe("A    BB  C\nxxx  y   z");
  });
});

describe("devices CLI without a running gateway", () => {
  test("pending says the gateway is not running; revoke falls back to the database", async () => {
    const t2 = tempDir("clawpatrol-onboard-cli-down-");
    const state = join(t2.dir, "state");
    const cfg = join(t2.dir, "gateway.hcl");
    writeFileSync(cfg, POLICY(state));
    try {
      await expect(main(["devices", "pending", "--config", cfg])).rejects.toThrow(/the gateway is not running \(no control socket at /);
      const err: string[] = [];
      const errSpy = spyOn(console, "error").mockImplementation((...a: unknown[]) => void err.push(a.join(" ")));
      const logSpy = spyOn(console, "log").mockImplementation(() => {});
      try {
        expect(await main(["devices", "add", "ci", "--profile", "dev", "--config", cfg])).toBe(0);
        expect(await main(["devices", "revoke", "ci", "--config", cfg])).toBe(0);
        expect(err.join("\n")).toContain("revoked in the state database (takes effect when the gateway starts)");
        expect(await main(["devices", "revoke", "ci", "--config", cfg])).toBe(1);
      } finally {
        errSpy.mockRestore();
        logSpy.mockRestore();
      }
    } finally {
      t2.cleanup();
    }
  });
});
