// The config editor in a real browser (Debian's Chromium via playwright-core),
// against a real gateway (`all`, as make run starts it) and a real curl:
// an admin's invalid edit is refused with its FILE:LINE under the file and
// the line marked, nothing written; a valid edit is reviewed as a diff,
// applied, audited, and the very next request follows it. A viewer reads
// the config (secrets hidden) but gets no buttons, and the API refuses its
// apply. Also the two flaws seen in a browser: the "Password changed"
// notice leaves with the page, and Analytics counts a request held now.
// The header shows the running version.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { makeTestPki } from "../integration/support/pki.ts";
import { startUpstream, type TestUpstream } from "../integration/support/upstream.ts";
import { curlVia, startTestGateway, tempDir, type TestGateway } from "../integration/support/gateway.ts";
import { ARTIFACTS, gatewayCli, launchChromium, signIn as signInAs } from "./support.ts";
const BOT_TOKEN = "xoxb-e2e-never-shown-5f3a9c";

let upstream: TestUpstream;
let t: TestGateway;
let browser: Browser;
let base: string;
const passwords: Record<string, string> = {};

const cli = (...args: string[]) => gatewayCli(t.configPath, ...args);

beforeAll(async () => {
  const pki = makeTestPki(tempDir("pki"), ["api.test"]);
  upstream = startUpstream(pki);
  t = await startTestGateway(`
defaults {
  verdict = "allow"
  profile = profile.p
}
endpoint "https" "api" {
  hosts = ["api.test"]
  ports = [${upstream.port}]
  ca_cert = "${pki.caCertPath}"
}
profile "p" {}
approver "human_approver" "ops" {
  channel        = "slack"
  channel_id     = "C0123"
  bot_token      = "${BOT_TOKEN}"
  signing_secret = "slack-signing-e2e-77aa"
  api_base       = "http://127.0.0.1:9"
}
rule "posts-need-a-human" {
  endpoint  = https.api
  condition = "http.method == 'POST'"
  approve   = [dashboard]
  reason    = "writes need an operator"
}
`);
  base = `http://127.0.0.1:${t.gw.publicServer.address.port}`;
  passwords.ada = await cli("operator", "add", "ada", "--role", "admin");
  passwords.bob = await cli("operator", "add", "bob", "--role", "viewer");
  browser = await launchChromium();
}, 45_000);

afterAll(async () => {
  await browser?.close();
  await t?.stop();
  upstream?.stop();
});

/** Signs in on the Config page; `afterChange` runs right after a one-time password is changed. */
const signIn = (name: string, afterChange?: (page: Page) => Promise<void>): Promise<{ context: BrowserContext; page: Page }> =>
  signInAs(browser, name, { base, passwords, route: "#/config", viewport: { width: 1366, height: 900 }, ...(afterChange ? { afterChange } : {}) });

/** The API from inside the page, as the signed-in operator (session cookie + its CSRF token). */
async function pageApi(page: Page, method: string, route: string, body?: unknown): Promise<{ status: number; body: any }> {
  return page.evaluate(
    async ({ method, route, body }) => {
      const me = (await (await fetch("/api/auth/me")).json()) as { csrf?: string };
      const res = await fetch(route, {
        method,
        headers: { "content-type": "application/json", "x-csrf-token": me.csrf ?? "" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, body: await res.json().catch(() => null) };
    },
    { method, route, body },
  );
}

describe("the config editor in Chromium", () => {
  test("an admin's invalid edit shows its line; a valid one is reviewed, applied, audited, and the next request follows it", async () => {
    const { context, page } = await signIn("ada", async (p) => {
      // The notice belongs to the page it was shown on: moving on takes it away at once.
      await p.locator(".flash", { hasText: "Password changed." }).waitFor();
      await p.click("#nav-requests");
      await p.locator("#view[data-page=requests]").waitFor();
      expect(await p.locator(".flash").count()).toBe(0);
      await p.click("#nav-config");
    });
    await page.locator("#config-validate").waitFor();
    const area = page.locator("#config-text-0");
    const original = await area.inputValue();
    expect(original).toBe(readFileSync(t.configPath, "utf8").replace(BOT_TOKEN, "<hidden 1>").replace("slack-signing-e2e-77aa", "<hidden 2>"));
    expect(await page.locator("#config-file-0 .hl .t-block", { hasText: "endpoint" }).count()).toBeGreaterThan(0);
    expect(await page.content()).not.toContain(BOT_TOKEN);
    await page.screenshot({ path: path.join(ARTIFACTS, "config.png") });

    // 1. Invalid: a verdict that does not exist. Validate names the file and line; nothing is written.
    const rule = (verdict: string) => `rule "no-echo-deletes" {\n  endpoint  = https.api\n  condition = "http.method == 'DELETE' && http.path.startsWith('/echo')"\n  verdict   = "${verdict}"\n  reason    = "set from the dashboard"\n}\n`;
    const broken = `${original}${rule("block")}`;
    const badLine = broken.split("\n").findIndex((l) => l.includes(`verdict   = "block"`)) + 1;
    await area.fill(broken);
    await page.click("#config-validate");
    const err = page.locator("#config-file-0 .config-errors li").first();
    await err.waitFor();
    expect(await err.textContent()).toContain(`${t.configPath}:${badLine}: rule "no-echo-deletes": verdict must be`);
    expect(await page.locator("#config-file-0 .hl .ln").nth(badLine - 1).getAttribute("class")).toContain("err");
    expect(await page.locator("#config-outcome").textContent()).toContain("1 error");
    await page.screenshot({ path: path.join(ARTIFACTS, "config-error.png") });
    // Applying it anyway is refused the same way.
    await page.click("#config-review");
    await page.click("#config-apply");
    await page.locator("#config-outcome", { hasText: "Not applied" }).waitFor();
    await page.locator("#config-file-0 .config-errors li", { hasText: `:${badLine}:` }).waitFor();
    expect(readFileSync(t.configPath, "utf8")).not.toContain("no-echo-deletes");
    expect((await curlVia(t, "api.test", upstream.port, "/echo/x", ["-X", "DELETE"])).status).not.toBe(403);

    // 2. Valid: reviewed as a diff, then applied.
    await area.fill(`${original}${rule("deny")}`);
    await page.click("#config-validate");
    await page.locator("#config-outcome.config-ok", { hasText: "Valid" }).waitFor();
    await page.click("#config-review");
    const diff = page.locator("#config-review-box pre.diff");
    await diff.waitFor();
    expect(await diff.locator(".d-add").allTextContents()).toContain(`+rule "no-echo-deletes" {`);
    expect(await diff.locator(".d-del").count()).toBe(0);
    await page.screenshot({ path: path.join(ARTIFACTS, "config-diff.png") });
    await page.click("#config-apply");
    await page.locator("#config-outcome.config-ok", { hasText: "Applied" }).waitFor();
    const onDisk = readFileSync(t.configPath, "utf8");
    expect(onDisk).toContain(`verdict   = "deny"`);
    expect(onDisk).toContain(`bot_token      = "${BOT_TOKEN}"`);

    // The next request follows it.
    const denied = await curlVia(t, "api.test", upstream.port, "/echo/x", ["-X", "DELETE"]);
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body)).toMatchObject({ rule: "no-echo-deletes", reason: "set from the dashboard" });

    // The audit log says who changed what.
    const audit = await pageApi(page, "GET", "/api/audit?action=config.apply");
    const applied = (audit.body.audit as { operator: string; detail: { ok: boolean; diff?: string } }[]).filter((a) => a.detail.ok);
    expect(applied).toHaveLength(1);
    expect(applied[0]!.operator).toBe("ada");
    expect(applied[0]!.detail.diff).toContain(`+  verdict   = "deny"`);
    expect(JSON.stringify(audit.body)).not.toContain(BOT_TOKEN);
    await context.close();
  }, 90_000);

  test("a viewer reads the config without secrets, gets no buttons, and cannot apply through the API", async () => {
    const { context, page } = await signIn("bob");
    await page.click("#nav-config");
    await page.locator("#config-readonly").waitFor();
    expect(await page.locator("#config-readonly").textContent()).toContain("only admins change the config");
    // The header shows the running version.
    const pkg = JSON.parse(readFileSync(path.join(import.meta.dir, "..", "..", "package.json"), "utf8")) as { version: string };
    await page.locator("#version", { hasText: `v${pkg.version}` }).waitFor();
    expect(await page.locator("#config-text-0").getAttribute("readonly")).not.toBeNull();
    for (const id of ["#config-validate", "#config-review", "#config-apply"]) expect(await page.locator(id).count()).toBe(0);
    expect(await page.locator("#config-text-0").inputValue()).toContain("no-echo-deletes");
    expect(await page.content()).not.toContain(BOT_TOKEN);
    const before = readFileSync(t.configPath, "utf8");
    const view = await pageApi(page, "GET", "/api/config");
    expect(view.body.canApply).toBe(false);
    const files = (view.body.files as { path: string; text: string }[]).map((f) => ({ path: f.path, text: f.text.replace(/rule "no-echo-deletes" \{[\s\S]*\}\n$/, "") }));
    const res = await pageApi(page, "POST", "/api/config/apply", { version: view.body.version, files });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe("forbidden");
    expect(readFileSync(t.configPath, "utf8")).toBe(before);
    await page.screenshot({ path: path.join(ARTIFACTS, "config-viewer.png") });
    await context.close();
  }, 60_000);

  test("Analytics counts a request held right now, and still counts it once decided", async () => {
    const { context, page } = await signIn("bob");
    await page.click("#nav-analytics");
    const held = page.locator("#stat-held");
    await held.waitFor();
    expect(await held.locator(".stat-value").textContent()).toBe("0");
    const post = curlVia(t, "api.test", upstream.port, "/echo?held", ["-X", "POST", "--data", "x"]);
    await page.locator("#stat-held", { hasText: "1 waiting now" }).waitFor();
    expect(await held.locator(".stat-value").textContent()).toBe("1");
    await page.screenshot({ path: path.join(ARTIFACTS, "analytics-held.png") });
    const [id] = (await cli("approvals", "list")).split("\n").slice(1).map((l) => l.split(/\s+/)[0]);
    await cli("approvals", "approve", id!);
    expect((await post).status).toBe(200);
    // Decided: no longer waiting, and the recorded event keeps the count at 1.
    await page.waitForFunction(() => !document.querySelector("#stat-held")?.textContent?.includes("waiting now"));
    await page.locator("#stat-held .stat-value", { hasText: "1" }).waitFor();
    await context.close();
  }, 60_000);
});
