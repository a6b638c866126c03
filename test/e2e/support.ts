// What the browser tests share: Debian's Chromium launched headless with no
// network of its own, the operator CLI against a test gateway's config, and
// signing in (the first sign-in with a one-time password chooses a real one).
import { mkdirSync } from "node:fs";
import path from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";
/** Screenshots land here (CI keeps the folder). */
export const ARTIFACTS = path.join(import.meta.dir, "..", "..", "test-artifacts");
export const UI_TIMEOUT = 45_000;

export function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-proxy-server", ...extraArgs,
    ],
  });
}

/** `clawpatrol-gateway ARGS --config CONFIG`; its stdout, trimmed (throws with stderr when it fails). */
export async function gatewayCli(configPath: string, ...args: string[]): Promise<string> {
  const p = Bun.spawn(["./node_modules/.bin/bun", "app/main.ts", ...args, "--config", configPath], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`clawpatrol ${args.join(" ")} failed: ${err}`);
  return out.trim();
}

export interface SignInOptions {
  /** The dashboard's origin. */
  base: string;
  /** Each operator's current password; a one-time one is replaced here by the one chosen. */
  passwords: Record<string, string>;
  /** Where the browser opens (a hash route such as "#/approvals"). */
  route?: string;
  viewport?: { width: number; height: number };
  /** Runs right after the one-time password was changed (the page that shows the notice). */
  afterChange?: (page: Page) => Promise<void>;
}

/** Signs `name` in a fresh browser context; returns the context and its page, signed in. */
export async function signIn(browser: Browser, name: string, o: SignInOptions): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: o.viewport ?? { width: 1366, height: 860 } });
  const page = await context.newPage();
  page.setDefaultTimeout(UI_TIMEOUT);
  await page.goto(`${o.base}/${o.route ?? ""}`);
  await page.fill("#login-name", name);
  await page.fill("#login-password", o.passwords[name]!);
  await page.click("button[type=submit]");
  // `operator add` hands out one-time passwords: the first sign-in sets a real one.
  await page.locator("header.top .who, #password-form").first().waitFor();
  if (await page.locator("#password-form").count()) {
    const chosen = `${name}-own-password-0123`;
    await page.fill("#pw-current", o.passwords[name]!);
    await page.fill("#pw-new", chosen);
    await page.fill("#pw-confirm", chosen);
    await page.click("#pw-submit");
    o.passwords[name] = chosen;
    await page.locator("header.top .who", { hasText: name }).waitFor();
    await o.afterChange?.(page);
  }
  await page.locator("header.top .who", { hasText: name }).waitFor();
  return { context, page };
}
