// First boot's initial settings (image/libexec/settings.ts) and the
// first-boot program itself, run as the unit runs it, against the shipped
// appliance config in a scratch state directory.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { findSettings, findUserData, parseSettings, setPublicUrl } from "../../../image/libexec/settings.ts";
import { loadPolicy } from "../../../app/policy/load.ts";
import { openStateDb } from "../../../app/store/db.ts";
import { OperatorStore } from "../../../app/store/operators.ts";

const SHIPPED_CONFIG = path.resolve("image/files/etc/clawpatrol/gateway.hcl");
const FIRSTBOOT = path.resolve("image/libexec/firstboot.ts");
const FIRSTBOOT_ROOT = path.resolve("image/libexec/firstboot-root.ts");

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "clawpatrol-firstboot-"));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("parseSettings", () => {
  test("HCL-style attribute lines, with comments; a trailing slash is dropped", () => {
    const text = `# from the operator\npublic_url = "https://gw.example.com/"  # where devices reach it\noperator   = "alice"\n`;
    expect(parseSettings(text, "credential clawpatrol.settings")).toEqual({
      ok: true,
      settings: { publicUrl: "https://gw.example.com", operator: "alice" },
    });
  });

  test("JSON, and user data after its #clawpatrol-config line", () => {
    expect(parseSettings(`{"public_url":"http://10.0.0.5:8080","operator":"ops@example.com"}`, "x")).toEqual({
      ok: true,
      settings: { publicUrl: "http://10.0.0.5:8080", operator: "ops@example.com" },
    });
    expect(parseSettings(`#clawpatrol-config\noperator = "bob"\n`, "cloud-init user data")).toEqual({ ok: true, settings: { operator: "bob" } });
    expect(parseSettings(`#clawpatrol-config\n{"operator": "bob"}`, "u")).toEqual({ ok: true, settings: { operator: "bob" } });
    expect(parseSettings("", "empty")).toEqual({ ok: true, settings: {} });
  });

  test("bad input: an error naming the source and the line", () => {
    const cases: Array<[string, RegExp]> = [
      [`public_url = "https://a"\nfoo = "x"`, /^settings from credential clawpatrol.settings: line 2: unknown key "foo" \(known: public_url, operator, ssh_authorized_keys, update_keys\)$/],
      [`public_url = "ftp://a"`, /line 1: public_url must be an http\(s\) URL, not "ftp:\/\/a"/],
      [`public_url = https://a`, /line 1: public_url must be a double-quoted string/],
      [`operator = "-bad name"`, /line 1: operator must be 1-64 letters/],
      [`operator = 7`, /line 1: operator must be a string/],
      [`operator = "a"\noperator = "b"`, /line 2: operator given twice/],
      [`just words`, /line 1: expected key = "value"/],
      [`{"operator": "a",}`, /invalid JSON/],
      [`["a"]`, /line 1: expected key = "value"/],
      [`{"public_url": 1}`, /public_url must be a string/],
    ];
    for (const [text, want] of cases) {
      const r = parseSettings(text, "credential clawpatrol.settings");
      expect(r.ok).toBe(false);
      if (!r.ok) {
        expect(r.error).toStartWith("settings from credential clawpatrol.settings: ");
        expect(r.error).toMatch(want);
      }
    }
    // User data: line numbers count the header line.
    const r = parseSettings(`#clawpatrol-config\noperator = "ok"\nnope = "x"`, "cloud-init user data /seed/user-data");
    expect(r).toEqual({ ok: false, error: `settings from cloud-init user data /seed/user-data: line 3: unknown key "nope" (known: public_url, operator, ssh_authorized_keys, update_keys)` });
  });
});

describe("finding the settings", () => {
  test("the credential wins over user data; a missing credential falls through; neither: defaults", () => {
    const creds = path.join(dir, "creds");
    fs.mkdirSync(creds);
    const userData = { source: "/var/lib/cloud/instance/user-data.txt", text: `#clawpatrol-config\noperator = "from-userdata"` };
    expect(findSettings({ credentialsDir: creds, userData })).toEqual({
      source: "cloud-init user data /var/lib/cloud/instance/user-data.txt",
      settings: { operator: "from-userdata" },
    });
    fs.writeFileSync(path.join(creds, "clawpatrol.settings"), `operator = "from-cred"`);
    expect(findSettings({ credentialsDir: creds, userData })).toEqual({ source: "credential clawpatrol.settings", settings: { operator: "from-cred" } });
    expect(findSettings({})).toEqual({ settings: {} });
  });

  test("a bad credential is reported, not skipped for the user data", () => {
    const creds = path.join(dir, "creds");
    fs.mkdirSync(creds);
    fs.writeFileSync(path.join(creds, "clawpatrol.settings"), `operator = "x y"`);
    const r = findSettings({ credentialsDir: creds, userData: { source: "u", text: `#clawpatrol-config\noperator = "b"` } });
    expect(r.settings).toEqual({});
    expect(r.error).toMatch(/^settings from credential clawpatrol.settings: line 1: operator must be/);
  });

  test("user data counts only with the #clawpatrol-config first line", () => {
    const a = path.join(dir, "a");
    const b = path.join(dir, "b");
    fs.writeFileSync(a, "#cloud-config\npackages: [htop]\n");
    fs.writeFileSync(b, `#clawpatrol-config\noperator = "carol"\n`);
    expect(findUserData([path.join(dir, "missing"), a, b])).toEqual({ source: b, text: `#clawpatrol-config\noperator = "carol"\n` });
    expect(findUserData([a])).toBeUndefined();
  });
});

describe("setPublicUrl", () => {
  test("adds public_url to the shipped config's gateway block, and the result loads", async () => {
    const next = setPublicUrl(fs.readFileSync(SHIPPED_CONFIG, "utf8"), "https://gw.example.com", "set at first boot from test");
    expect(next).toBeDefined();
    const file = path.join(dir, "gateway.hcl");
    fs.writeFileSync(file, next!);
    const r = await loadPolicy(file, { env: { CLAWPATROL_STATE_DIR: path.join(dir, "state") } });
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.policy.gateway.publicUrl).toBe("https://gw.example.com");
    // The commented example line stays a comment.
    expect(next!).toContain(`  # public_url     = "https://gateway.example.com"`);
  });

  test("replaces an existing attribute; no gateway block: undefined", () => {
    const text = `gateway {\n  state_dir = "/x"\n  public_url = "http://old"\n  proxy {\n    listen = "1"\n  }\n}\n`;
    expect(setPublicUrl(text, "http://new", "n")).toBe(`gateway {\n  state_dir = "/x"\n  public_url = "http://new"  # n\n  proxy {\n    listen = "1"\n  }\n}\n`);
    expect(setPublicUrl(`defaults {\n}\n`, "http://new", "n")).toBeUndefined();
  });
});

describe("firstboot.ts", () => {
  interface Run {
    code: number;
    out: string;
    err: string;
  }
  async function firstboot(args: string[], env: Record<string, string>, script = FIRSTBOOT): Promise<Run> {
    const p = Bun.spawn([process.execPath, script, ...args], {
      stdout: "pipe",
      stderr: "pipe",
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir, NO_COLOR: "1", ...env },
    });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { code, out, err };
  }
  function setup(credential?: string) {
    const state = path.join(dir, "state");
    const creds = path.join(dir, "creds");
    const handoff = path.join(dir, "tmp");
    const config = path.join(dir, "gateway.hcl");
    for (const d of [state, creds, handoff]) fs.mkdirSync(d);
    fs.copyFileSync(SHIPPED_CONFIG, config);
    if (credential !== undefined) fs.writeFileSync(path.join(creds, "clawpatrol.settings"), credential);
    const env = { CLAWPATROL_STATE_DIR: state, CREDENTIALS_DIRECTORY: creds, CLAWPATROL_FIRSTBOOT_HANDOFF: handoff };
    return { state, creds, handoff, config, env };
  }
  const password = (out: string) => /^ {2}one-time password: (\S+)/m.exec(out)?.[1];

  test("settings from the credential: the named operator with a one-time password, the public URL applied, all exactly once", async () => {
    const s = setup(`public_url = "https://gw.smoke.test"\noperator = "alice"\n`);
    const first = await firstboot([s.config], s.env);
    expect(first.err).toBe("");
    expect(first.code).toBe(0);
    expect(first.out).toContain("clawpatrol appliance: first boot");
    expect(first.out).toContain("  settings:         from credential clawpatrol.settings");
    expect(first.out).toContain("  dashboard:        https://gw.smoke.test/");
    expect(first.out).toContain("  first operator:   alice (admin)");
    const pw = password(first.out);
    expect(pw).toMatch(/^[A-Za-z0-9]{5}(-[A-Za-z0-9]{5}){3}$/);

    const db = openStateDb(s.state);
    const ops = new OperatorStore(db, { hashing: {} });
    expect(ops.list().map((o) => [o.name, o.role, o.passwordTemporary])).toEqual([["alice", "admin", true]]);
    expect(await ops.checkPassword(ops.get("alice")!.id, pw!)).toBe(true); // not verify(): that would use the one-time password up
    expect(fs.existsSync(path.join(s.state, "ca.crt"))).toBe(true);
    expect(fs.existsSync(path.join(s.state, ".firstboot-done"))).toBe(true);

    // Step 3 writes public_url into the config (here the test's copy, owned by the test user).
    const applied = await firstboot(["apply-config", s.config], s.env, FIRSTBOOT_ROOT);
    expect(applied.code).toBe(0);
    expect(applied.out).toContain(`public_url = "https://gw.smoke.test" set in ${s.config} (from credential clawpatrol.settings)`);
    const loaded = await loadPolicy(s.config, { env: { CLAWPATROL_STATE_DIR: s.state } });
    expect(loaded.ok && loaded.policy.gateway.publicUrl).toBe("https://gw.smoke.test");

    // A second run (the marker is there) prints nothing and leaves the password alone.
    const again = await firstboot([s.config], s.env);
    expect(again).toEqual({ code: 0, out: "", err: "" });
    expect(await ops.checkPassword(ops.get("alice")!.id, pw!)).toBe(true); // not verify(): that would use the one-time password up
    db.close();
  });

  test("apply-config keeps the config when the result would not load", async () => {
    const s = setup();
    const broken = `${fs.readFileSync(s.config, "utf8")}\nrule "x" {\n  verdict = "maybe"\n}\n`;
    fs.writeFileSync(s.config, broken);
    fs.writeFileSync(path.join(s.handoff, "clawpatrol-apply.json"), JSON.stringify({ public_url: "https://gw.example.com", source: "credential clawpatrol.settings" }));
    const r = await firstboot(["apply-config", s.config], s.env, FIRSTBOOT_ROOT);
    expect(r.code).toBe(0);
    expect(r.err).toContain(`clawpatrol-firstboot: public_url https://gw.example.com not written to ${s.config}: `);
    expect(fs.readFileSync(s.config, "utf8")).toBe(broken);
    expect(fs.readdirSync(dir).filter((f) => f.includes("firstboot"))).toEqual([]);
    // A handed-over value that is not a URL is refused by this step too.
    fs.writeFileSync(path.join(s.handoff, "clawpatrol-apply.json"), JSON.stringify({ public_url: "javascript:alert(1)", source: "x" }));
    expect((await firstboot(["apply-config", s.config], s.env, FIRSTBOOT_ROOT)).err).toContain("public_url not applied: settings from x: public_url must be an http(s) URL");
  });

  test("no settings: operator admin, the dashboard at https://<first address>/ with the CA fingerprint to pin", async () => {
    const s = setup();
    const r = await firstboot([s.config], s.env);
    expect(r.code).toBe(0);
    expect(r.out).toContain("  settings:         none (defaults");
    expect(r.out).toContain("  first operator:   admin (admin)");
    const first = Object.values(os.networkInterfaces()).flat().find((a) => a && !a.internal && a.family === "IPv4")?.address ?? "THIS-MACHINE";
    expect(r.out).toContain(`  dashboard:        https://${first}/\n`);
    const fp = /^ {2}CA SHA-256: +([0-9A-F:]{95})$/m.exec(r.out)?.[1];
    expect(fp).toBeDefined();
    expect(r.out).toContain(`  enroll a device:  clawpatrol join https://${first} --ca-sha256 ${fp}\n`);
    expect(password(r.out)).toBeDefined();
    expect(fs.existsSync(path.join(s.handoff, "clawpatrol-apply.json"))).toBe(false);
  });

  test("a bad credential is named in the banner and stderr; the CA, key, operator admin and marker are still made", async () => {
    const s = setup(`public_url = "https://gw.example.com"\nfirst_operator = "alice"\n`);
    const r = await firstboot([s.config], s.env);
    expect(r.code).toBe(0);
    expect(r.err).toContain(`clawpatrol-firstboot: settings from credential clawpatrol.settings: line 2: unknown key "first_operator"`);
    expect(r.out).toContain(`  settings:         REJECTED, defaults used: settings from credential clawpatrol.settings: line 2: unknown key "first_operator"`);
    expect(r.out).toContain("  first operator:   admin (admin)");
    for (const f of ["ca.crt", "wg.key", ".firstboot-done"]) expect(fs.existsSync(path.join(s.state, f))).toBe(true);
    expect(fs.existsSync(path.join(s.handoff, "clawpatrol-apply.json"))).toBe(false);
  });

  test("user data handed over by the root step is used when there is no credential", async () => {
    const s = setup();
    fs.writeFileSync(
      path.join(s.handoff, "clawpatrol-user-data.json"),
      JSON.stringify({ source: "/var/lib/cloud/instance/user-data.txt", text: `#clawpatrol-config\noperator = "dana"\n` }),
    );
    const r = await firstboot([s.config], s.env);
    expect(r.out).toContain("  settings:         from cloud-init user data /var/lib/cloud/instance/user-data.txt");
    expect(r.out).toContain("  first operator:   dana (admin)");
  });

  test("an operator already in the database (a run cut short before the marker) is never reset", async () => {
    const s = setup();
    const db = openStateDb(s.state);
    const ops = new OperatorStore(db);
    const { password: pw } = await ops.add("root-op", "admin");
    const r = await firstboot([s.config], s.env);
    expect(r.code).toBe(0);
    expect(password(r.out)).toBeUndefined();
    expect(r.out).toContain("  operators:        root-op already exist");
    expect(await ops.verify("root-op", pw)).toBeDefined();
    expect(ops.list()).toHaveLength(1);
    db.close();
  });
});
