// GET /api/config, POST /api/config/validate and /api/config/apply in-process,
// over a real config directory and the real loader: who may (viewers read,
// admins validate and apply, CSRF on a session), FILE:LINE errors with
// nothing written, an apply written whole and reloaded, a stale version
// refused, a rejected reload putting the previous files back, secrets never
// shown or logged, and every change in the audit log with who and what.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { lstatSync, mkdirSync, readFileSync, readdirSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { errorOf, harness, type Harness, type Session } from "./harness.ts";
import { tempDir } from "../events/fixtures.ts";
import { ConfigEditor } from "../../../app/control/config/editor.ts";
import { setLogWriter } from "../../../app/log.ts";

const MAIN = `schema_version = 1
defaults {
  verdict = "allow"
}
endpoint "https" "github" { hosts = ["api.github.com"] }
profile "dev" {}
`;
const BOT_TOKEN = "xoxb-real-slack-token-0123456789";
const RULES = `rule "read-only" {
  endpoint  = https.github
  condition = "http.method == 'GET'"
  verdict   = "allow"
}
approver "human_approver" "ops" {
  channel        = "slack"
  channel_id     = "C0123"
  bot_token      = "${BOT_TOKEN}"
  signing_secret = "replaced in beforeEach"
}
`;

let h: Harness;
let dir: { dir: string; cleanup: () => void };
let confDir: string;
let reloadErrors: string[] | Error;
let reloads: string[][];

type View = { version: string; files: { path: string; text: string }[]; writable: boolean; canApply: boolean };

beforeEach(() => {
  setLogWriter(() => {});
  dir = tempDir();
  confDir = join(dir.dir, "gateway.d");
  mkdirSync(confDir);
  writeFileSync(join(confDir, "10-main.hcl"), MAIN);
  writeFileSync(join(confDir, "20-rules.hcl"), RULES.replace(/  signing_secret.*\n/, '  signing_secret = "slack-signing-0123"\n'));
  reloadErrors = [];
  reloads = [];
  const editor = new ConfigEditor({
    configPath: confDir,
    env: {},
    reload: async () => {
      // What the gateway would load now: the files on disk.
      reloads.push(readdirSync(confDir).filter((n) => n.endsWith(".hcl")).map((n) => readFileSync(join(confDir, n), "utf8")));
      if (reloadErrors instanceof Error) throw reloadErrors;
      return reloadErrors;
    },
  });
  h = harness({ config: editor });
});
afterEach(() => {
  h.close();
  dir.cleanup();
});

async function view(s: Session): Promise<View> {
  const res = await h.call("GET", "/api/config", { session: s });
  expect(res.status).toBe(200);
  return (await res.json()) as View;
}

const rulesPath = () => join(confDir, "20-rules.hcl");
const edit = (v: View, file: string, f: (t: string) => string) => v.files.map((x) => (x.path.endsWith(file) ? { path: x.path, text: f(x.text) } : x));

describe("reading", () => {
  test("every file of a directory config, in order, with the secret hidden; viewers read but cannot apply", async () => {
    const viewer = await h.as("viewer");
    const v = await view(viewer);
    expect(v.files.map((f) => f.path)).toEqual([join(confDir, "10-main.hcl"), rulesPath()]);
    expect(v.files[0]!.text).toBe(MAIN);
    expect(v.files[1]!.text).toContain(`bot_token      = "<hidden 1>"`);
    expect(v.files[1]!.text).toContain(`signing_secret = "<hidden 2>"`);
    expect(JSON.stringify(v)).not.toContain(BOT_TOKEN);
    expect(JSON.stringify(v)).not.toContain("slack-signing-0123");
    expect(v.writable).toBe(true);
    expect(v.canApply).toBe(false);
    const admin = await h.as("admin");
    expect((await view(admin)).canApply).toBe(true);
  });

  test("without a session: 401", async () => {
    expect((await h.call("GET", "/api/config")).status).toBe(401);
  });
});

describe("who may change it", () => {
  test("viewers and approvers are refused validate and apply; a session without the CSRF token too", async () => {
    for (const role of ["viewer", "approver"] as const) {
      const s = await h.as(role);
      const v = await view(s);
      for (const path of ["/api/config/validate", "/api/config/apply"]) {
        const e = await errorOf(await h.call("POST", path, { session: s, body: { version: v.version, files: v.files } }));
        expect({ role, path, status: e.status, code: e.code }).toEqual({ role, path, status: 403, code: "forbidden" });
      }
    }
    const admin = await h.as("admin");
    const v = await view(admin);
    const e = await errorOf(await h.call("POST", "/api/config/apply", { session: admin, csrf: null, body: { version: v.version, files: v.files } }));
    expect(e).toMatchObject({ status: 403, code: "csrf_failed" });
    expect(reloads).toHaveLength(0);
  });
});

describe("validate", () => {
  test("an error names its file and line; nothing is written", async () => {
    const admin = await h.as("admin");
    const v = await view(admin);
    const before = readFileSync(rulesPath(), "utf8");
    const res = await h.call("POST", "/api/config/validate", {
      session: admin,
      body: { files: edit(v, "20-rules.hcl", (t) => t.replace(`verdict   = "allow"`, `verdict   = "block"`)) },
    });
    const body = (await res.json()) as { ok: boolean; errors: { file: string; line: number; message: string }[] };
    expect(body.ok).toBe(false);
    expect(body.errors[0]).toMatchObject({ file: rulesPath(), line: 4 });
    expect(body.errors[0]!.message).toContain("verdict must be");
    expect(readFileSync(rulesPath(), "utf8")).toBe(before);
    expect(reloads).toHaveLength(0);
    expect(h.auditRows("config.validate")[0]).toMatchObject({ operator: "admin", detail: { ok: false, errors: 1 } });
  });

  test("a valid edit is summarised; a marker the file never had is an error on its line", async () => {
    const admin = await h.as("admin");
    const v = await view(admin);
    const ok = (await (await h.call("POST", "/api/config/validate", { session: admin, body: { files: v.files } })).json()) as { ok: boolean; summary: { rules: number } };
    expect(ok).toMatchObject({ ok: true, summary: { rules: 1 } });
    const stray = (await (
      await h.call("POST", "/api/config/validate", { session: admin, body: { files: edit(v, "20-rules.hcl", (t) => t.replace("C0123", "<hidden 7>")) } })
    ).json()) as { ok: boolean; errors: { line: number; message: string }[] };
    expect(stray.ok).toBe(false);
    expect(stray.errors[0]).toMatchObject({ line: 8 });
    expect(stray.errors[0]!.message).toContain("<hidden 7>");
  });

  test("a file that is not the config's is refused", async () => {
    const admin = await h.as("admin");
    const r = (await (await h.call("POST", "/api/config/validate", { session: admin, body: { files: [{ path: "/etc/passwd", text: "" }] } })).json()) as {
      ok: boolean;
      errors: { file: string; message: string }[];
    };
    expect(r.ok).toBe(false);
    expect(r.errors[0]!.message).toContain("not one of the config's files");
  });
});

describe("apply", () => {
  test("writes the edited file, keeps the hidden secret, reloads once, and audits who and the diff", async () => {
    const admin = await h.as("admin");
    const v = await view(admin);
    const files = edit(v, "20-rules.hcl", (t) => `${t}rule "no-deletes" {\n  endpoint  = https.github\n  condition = "http.method == 'DELETE'"\n  verdict   = "deny"\n}\n`);
    const res = await h.call("POST", "/api/config/apply", { session: admin, body: { version: v.version, files } });
    const body = (await res.json()) as { ok: boolean; version: string; changed: string[]; diff: string };
    expect(res.status).toBe(200);
    expect(body.changed).toEqual([rulesPath()]);
    expect(body.version).not.toBe(v.version);
    const onDisk = readFileSync(rulesPath(), "utf8");
    expect(onDisk).toContain(`bot_token      = "${BOT_TOKEN}"`);
    expect(onDisk).toContain(`rule "no-deletes"`);
    expect(readFileSync(join(confDir, "10-main.hcl"), "utf8")).toBe(MAIN);
    expect(reloads).toHaveLength(1);
    expect(reloads[0]!.join("")).toContain("no-deletes");
    // No temporary file is left beside the config.
    expect(readdirSync(confDir).sort()).toEqual(["10-main.hcl", "20-rules.hcl"]);
    const row = h.auditRows("config.apply")[0]!;
    expect(row.operator).toBe("admin");
    expect(row.detail).toMatchObject({ ok: true, files: [rulesPath()] });
    expect(String(row.detail!.diff)).toContain(`+rule "no-deletes" {`);
    expect(JSON.stringify(h.auditRows())).not.toContain(BOT_TOKEN);
    expect(body.diff).not.toContain(BOT_TOKEN);
  });

  test("an invalid edit is refused with FILE:LINE and nothing is written or reloaded", async () => {
    const admin = await h.as("admin");
    const v = await view(admin);
    const before = readFileSync(rulesPath(), "utf8");
    const res = await h.call("POST", "/api/config/apply", {
      session: admin,
      body: { version: v.version, files: edit(v, "20-rules.hcl", (t) => t.replace("https.github", "https.gitlab")) },
    });
    expect(res.status).toBe(422);
    const body = (await res.json()) as { error: { code: string }; stage: string; errors: { file: string; line: number }[] };
    expect(body).toMatchObject({ error: { code: "config_rejected" }, stage: "validate" });
    expect(body.errors[0]).toMatchObject({ file: rulesPath(), line: 2 });
    expect(readFileSync(rulesPath(), "utf8")).toBe(before);
    expect(reloads).toHaveLength(0);
    expect(h.auditRows("config.apply")[0]!.detail).toMatchObject({ ok: false, stage: "validate" });
  });

  test("a version that is no longer the one on disk is a conflict", async () => {
    const admin = await h.as("admin");
    const v = await view(admin);
    writeFileSync(join(confDir, "10-main.hcl"), `${MAIN}# edited elsewhere\n`);
    const res = await h.call("POST", "/api/config/apply", { session: admin, body: { version: v.version, files: v.files } });
    expect(res.status).toBe(409);
    const body = (await res.json()) as { error: { code: string }; version: string };
    expect(body.error.code).toBe("config_changed");
    expect(body.version).toBe((await view(admin)).version);
    expect(readFileSync(join(confDir, "10-main.hcl"), "utf8")).toContain("edited elsewhere");
  });

  test("when the gateway rejects the reload, the previous files are written back and it reloads again", async () => {
    const admin = await h.as("admin");
    const v = await view(admin);
    const before = readFileSync(rulesPath(), "utf8");
    reloadErrors = [`${rulesPath()}:2: something only the gateway sees`];
    const res = await h.call("POST", "/api/config/apply", {
      session: admin,
      body: { version: v.version, files: edit(v, "20-rules.hcl", (t) => t.replace("C0123", "C0999")) },
    });
    expect(res.status).toBe(422);
    const body = (await res.json()) as { stage: string; errors: { file: string; line: number; message: string }[] };
    expect(body.stage).toBe("reload");
    expect(body.errors).toEqual([{ file: rulesPath(), line: 2, message: "something only the gateway sees" }]);
    expect(readFileSync(rulesPath(), "utf8")).toBe(before);
    expect(reloads).toHaveLength(2);
    expect(reloads[0]!.join("")).toContain("C0999");
    expect(reloads[1]!.join("")).not.toContain("C0999");
  });

  test("a gateway that does not answer the reload: the files are put back", async () => {
    const admin = await h.as("admin");
    const v = await view(admin);
    const before = readFileSync(rulesPath(), "utf8");
    reloadErrors = new Error("the gateway is not reachable; try again shortly");
    const res = await h.call("POST", "/api/config/apply", { session: admin, body: { version: v.version, files: edit(v, "20-rules.hcl", (t) => t.replace("C0123", "C0999")) } });
    expect(res.status).toBe(422);
    const body = (await res.json()) as { stage: string; errors: { message: string }[] };
    expect(body.stage).toBe("reload");
    expect(body.errors[0]!.message).toContain("the gateway is not reachable");
    expect(readFileSync(rulesPath(), "utf8")).toBe(before);
  });

  test("a config file that is a symlink is written where it points and stays a symlink", async () => {
    const real = join(dir.dir, "real-rules.hcl");
    renameSync(rulesPath(), real);
    symlinkSync(real, rulesPath());
    const admin = await h.as("admin");
    const v = await view(admin);
    const res = await h.call("POST", "/api/config/apply", { session: admin, body: { version: v.version, files: edit(v, "20-rules.hcl", (t) => t.replace("C0123", "C0777")) } });
    expect(res.status).toBe(200);
    expect(lstatSync(rulesPath()).isSymbolicLink()).toBe(true);
    expect(readFileSync(real, "utf8")).toContain("C0777");
  });

  test("an unchanged config applies nothing and logs nothing", async () => {
    const admin = await h.as("admin");
    const v = await view(admin);
    const res = await h.call("POST", "/api/config/apply", { session: admin, body: { version: v.version, files: v.files } });
    expect(await res.json()).toMatchObject({ ok: true, changed: [] });
    expect(reloads).toHaveLength(0);
    expect(h.auditRows("config.apply")).toHaveLength(0);
  });
});
