// The newcomer's path in a real browser (Debian's Chromium), over the HTTPS
// the appliance serves (dashboard_tls { mint_from_ca = true }): open the
// dashboard, sign in with the one-time password `operator add` printed,
// choose a new password, open Devices and read the CA fingerprint and the
// lines to run on a device. Chromium trusts the dashboard's certificate
// through its public key (--ignore-certificate-errors-spki-list), the way
// a browser that had the CA installed would; nothing else is waived.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Browser } from "playwright-core";
import { startTestGateway, type TestGateway } from "../integration/support/gateway.ts";
import { DASHBOARD_CERT_FILE } from "../../app/tls/dashboard-cert.ts";
import { caFingerprint } from "../../app/tls/fingerprint.ts";
import { x509 } from "../../app/tls/pki.ts";
import { ARTIFACTS, launchChromium } from "./support.ts";

const WG_PORT = 40000 + (process.pid % 10000);

let t: TestGateway;
let browser: Browser;
let base = "";
let password = "";

beforeAll(async () => {
  t = await startTestGateway(`profile "default" {}\n`, {}, {
    gateway: `
  dashboard_tls { mint_from_ca = true }
  wireguard {
    listen = "127.0.0.1:${WG_PORT}"
    subnet_cidr = "10.90.0.0/24"
  }`,
  });
  base = `https://127.0.0.1:${t.gw.publicServer!.address.port}`;
  const add = Bun.spawn(["./node_modules/.bin/bun", "app/main.ts", "operator", "add", "newcomer", "--role", "admin", "--config", t.configPath], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, CLAWPATROL_STATE_DIR: "" },
  });
  password = (await new Response(add.stdout).text()).trim().split("\n").at(-1)!.trim();
  expect(await add.exited).toBe(0);
  const leaf = new x509.X509Certificate(readFileSync(path.join(t.gw.policy().gateway.stateDir, DASHBOARD_CERT_FILE), "utf8"));
  const spki = createHash("sha256").update(Buffer.from(leaf.publicKey.rawData)).digest("base64");
  browser = await launchChromium([`--ignore-certificate-errors-spki-list=${spki}`]);
}, 45_000);

afterAll(async () => {
  await browser?.close();
  await t?.stop();
});

test("sign in over https with the one-time password, change it, and find the fingerprint and join line on Devices", async () => {
  const context = await browser.newContext({ viewport: { width: 1366, height: 860 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  await page.goto(`${base}/`);
  await page.fill("#login-name", "newcomer");
  await page.fill("#login-password", password);
  await page.click("button[type=submit]");
  await page.locator("#password-form").waitFor();
  const chosen = "newcomer-own-password-0123";
  await page.fill("#pw-current", password);
  await page.fill("#pw-new", chosen);
  await page.fill("#pw-confirm", chosen);
  await page.click("#pw-submit");
  await page.locator("header.top .who", { hasText: "newcomer" }).waitFor();
  // The session cookie is the Secure __Host- one: this is https.
  const cookies = await context.cookies();
  expect(cookies.find((c) => c.name === "__Host-clawpatrol_session")?.secure).toBe(true);

  await page.click("#nav-devices");
  const join = page.locator(".join-info");
  await join.waitFor();
  const fp = caFingerprint(readFileSync(t.caPath, "utf8"));
  expect(await join.locator(".fingerprint").textContent()).toBe(fp);
  expect(await join.locator(".join-command").textContent()).toBe(`clawpatrol join ${base} --ca-sha256 ${fp}`);
  expect(await join.locator(".join-install").textContent()).toContain(`--cacert clawpatrol-ca.crt ${base}/install.sh | sh`);
  await page.screenshot({ path: path.join(ARTIFACTS, "devices-join.png") });
  await context.close();
}, 60_000);
