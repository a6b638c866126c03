// The web dashboard in a real browser (Debian's Chromium, driven by
// playwright-core; test/deps.sh installs it): an approver signs in, a real
// curl through the gateway is held, the held request appears live, and the
// operator's click decides it — approve lets the curl reach the upstream,
// deny gives it a 403 with the reason. A viewer sees the same request but
// cannot decide it. An admin turns a request into a deny rule ("block
// requests like this") and validates it against the running config without
// applying it; an operator with a one-time password must choose a new one
// before anything else. SQL statements from a real psql through the
// gateway (SOCKS5) to a real PostgreSQL 15 appear as statements on a
// database in the feed, the detail and the approvals page, and "block
// statements like this" writes a rule over sql.verb and sql.tables.
// Screenshots of the main pages go to test-artifacts/.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { makeTestPki } from "../integration/support/pki.ts";
import { startUpstream, type TestUpstream } from "../integration/support/upstream.ts";
import { curlVia, startTestGateway, tempDir, type TestGateway } from "../integration/support/gateway.ts";
import { startPostgres, type TestPostgres } from "../integration/support/postgres.ts";
import { socksForward, type SocksForward } from "../integration/support/socks-forward.ts";
import { ARTIFACTS, gatewayCli, launchChromium, signIn as signInAs, UI_TIMEOUT } from "./support.ts";

let upstream: TestUpstream;
let db: TestPostgres;
let pgForward: SocksForward;
let t: TestGateway;
let browser: Browser;
let base: string;
const passwords: Record<string, string> = {};

const cli = (...args: string[]) => gatewayCli(t.configPath, ...args);

beforeAll(async () => {
  const pki = makeTestPki(tempDir("pki"), ["api.test"]);
  upstream = startUpstream(pki);
  db = await startPostgres({ auth: "scram-sha-256", user: "app_rw", password: "real-Pg-secret-e2e-41c7", database: "app" });
  db.superuserSql(
    `CREATE TABLE public.users (id int primary key, name text);
     INSERT INTO public.users VALUES (1, 'ada'), (2, 'grace');
     GRANT ALL ON public.users TO app_rw;`,
    "app",
  );
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
endpoint "postgres" "db" {
  host       = "127.0.0.1:${db.port}"
  sslmode    = "disable"
  credential = postgres_password.db
}
credential "postgres_password" "db" {
  user = "app_rw"
}
profile "p" {
  credentials = [postgres_password.db]
}
rule "posts-need-a-human" {
  endpoint = https.api
  condition = "http.method == 'POST' && http.path.startsWith('/echo')"
  approve = [dashboard]
  reason = "writes need an operator"
}
rule "no-deletes" {
  endpoint  = postgres.db
  condition = "sql.verb == 'delete'"
  verdict   = "deny"
  reason    = "deletes are not for agents"
}
rule "updates-need-a-human" {
  endpoint  = postgres.db
  condition = "sql.verb == 'update'"
  approve   = [dashboard]
  reason    = "updates need an operator"
}
`, { CLAWPATROL_SECRET_DB: db.password });
  base = `http://127.0.0.1:${t.gw.publicServer.address.port}`;
  const agent = await t.gw.devices.add("agent-box", "p");
  pgForward = await socksForward(t.gw.proxies[0]!.address, { host: "127.0.0.1", port: db.port }, { user: "agent-box", password: agent.token });
  passwords.alice = await cli("operator", "add", "alice", "--role", "approver");
  passwords.bob = await cli("operator", "add", "bob", "--role", "viewer");
  passwords.ada = await cli("operator", "add", "ada", "--role", "admin");
  passwords.carol = await cli("operator", "add", "carol", "--role", "viewer");
  browser = await launchChromium();
}, 45_000);

afterAll(async () => {
  await browser?.close();
  pgForward?.close();
  await t?.stop();
  upstream?.stop();
  await db?.stop();
});

/** psql through the gateway as the device, with a placeholder password; one -c per statement. */
async function psql(...statements: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const p = Bun.spawn(["psql", "-X", "-A", "-t", "-v", "VERBOSITY=verbose", "-h", "127.0.0.1", "-p", String(pgForward.port), "-U", "agent", "-d", "app", ...statements.flatMap((x) => ["-c", x])], {
    env: { ...process.env, PGPASSWORD: "clawpatrol-placeholder", PGCONNECT_TIMEOUT: "20" },
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { exitCode, stdout, stderr };
}

/** Signs in on Approvals and waits for the live feed. */
async function signIn(name: string): Promise<{ context: BrowserContext; page: Page }> {
  const signedIn = await signInAs(browser, name, { base, passwords, route: "#/approvals" });
  await signedIn.page.locator("#live.live-live").waitFor();
  return signedIn;
}

const card = (page: Page, pathAndQuery: string) => page.locator("article.approval", { hasText: pathAndQuery });

describe("dashboard in Chromium", () => {
  test("serves the app shell with a strict CSP, and the API stays the API", async () => {
    const res = await fetch(`${base}/`);
    expect(`${res.status} ${res.status === 200 ? "" : await res.text()}`).toBe("200 ");
    expect(res.headers.get("content-type")).toContain("text/html");
    expect(res.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(await res.text()).toContain('src="/app.js"');
    expect((await fetch(`${base}/app.js`)).headers.get("content-type")).toContain("javascript");
    expect((await fetch(`${base}/app.css`)).status).toBe(200);
    expect((await fetch(`${base}/api/approvals`)).status).toBe(401);
  });

  test("a wrong password is refused on the login page", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(UI_TIMEOUT);
    await page.goto(base);
    await page.fill("#login-name", "alice");
    await page.fill("#login-password", "not-the-password");
    await page.click("button[type=submit]");
    await page.locator(".login-error", { hasText: "Wrong name or password" }).waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, "login.png") });
    await context.close();
  }, 30_000);

  test("an approver approves and denies held requests live; a viewer cannot decide", async () => {
    const alice = await signIn("alice");
    const page = alice.page;
    await page.locator("#approvals-empty").waitFor();

    // 1. Approve: the held request appears without a reload; the click lets curl through.
    const before = upstream.seen.length;
    const approved = curlVia(t, "api.test", upstream.port, "/echo?from-the-browser", ["-X", "POST", "-H", "authorization: Bearer sk-should-not-show-0123456789", "--data", "hello"]);
    const held = card(page, "/echo?from-the-browser");
    await held.waitFor();
    await expect(held.textContent()).resolves.toContain("posts-need-a-human");
    await expect(held.textContent()).resolves.toContain("writes need an operator");
    expect(await held.locator("pre").textContent()).toBe("hello");
    expect(await page.locator("#pending-count").textContent()).toBe("1");
    expect(upstream.seen.length).toBe(before);
    await held.locator("details.headers summary").click();
    expect(await held.textContent()).not.toContain("sk-should-not-show-0123456789");
    await page.screenshot({ path: path.join(ARTIFACTS, "approvals.png") });
    await held.locator("input.reason").fill("looks fine from here");
    await held.locator("button.approve").click();
    const ok = await approved;
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body).body).toBe("hello");
    await held.waitFor({ state: "detached" });
    const e = t.events.filter((x) => x.kind === "http").at(-1)!;
    expect(e).toMatchObject({ verdict: "allow", approvers: "dashboard", operator: "alice" });

    // 2. Deny: the agent gets 403 and the operator's reason.
    const denied = curlVia(t, "api.test", upstream.port, "/echo?deny-from-the-browser", ["-X", "POST", "--data", "x"]);
    const held2 = card(page, "/echo?deny-from-the-browser");
    await held2.waitFor();
    await held2.locator("input.reason").fill("not during the freeze");
    await held2.locator("button.deny").click();
    const no = await denied;
    expect(no.status).toBe(403);
    const body = JSON.parse(no.body);
    expect(body.rule).toBe("posts-need-a-human");
    expect(body.reason).toContain("not during the freeze");
    await held2.waitFor({ state: "detached" });

    // 3. A viewer sees the next held request, but its buttons are disabled.
    const bob = await signIn("bob");
    const third = curlVia(t, "api.test", upstream.port, "/echo?viewer-watches", ["-X", "POST", "--data", "y"]);
    const seenByBob = card(bob.page, "/echo?viewer-watches");
    await seenByBob.waitFor();
    expect(await seenByBob.locator("button.approve").isDisabled()).toBe(true);
    expect(await seenByBob.locator("button.deny").isDisabled()).toBe(true);
    await bob.page.screenshot({ path: path.join(ARTIFACTS, "approvals-viewer.png") });
    // Alice decides it; it leaves Bob's page live too.
    await card(page, "/echo?viewer-watches").locator("button.approve").click();
    expect((await third).status).toBe(200);
    await seenByBob.waitFor({ state: "detached" });

    // 4. The request log shows the decisions live, coloured by verdict, with a detail view.
    await page.click("#nav-requests");
    const row = page.locator("#events-body tr", { hasText: "/echo?deny-from-the-browser" });
    await row.waitFor();
    expect(await row.locator(".verdict").textContent()).toBe("deny");
    expect(await page.locator("#events-body tr", { hasText: "/echo?from-the-browser" }).locator(".v-allow").count()).toBe(1);
    await page.locator("#events-body tr", { hasText: "/echo?from-the-browser" }).click();
    const detail = page.locator("aside.detail");
    await detail.waitFor();
    expect(await detail.textContent()).toContain("alice");
    expect(await detail.textContent()).toContain("As held for approval");
    // Turning a request into a rule is for admins: an approver gets a note, not the button.
    expect(await detail.locator("#block-like-this").count()).toBe(0);
    expect(await detail.textContent()).toContain("Admins can turn a request into a rule");
    await page.screenshot({ path: path.join(ARTIFACTS, "requests.png") });
    // A new request arrives in the open log without a reload.
    expect((await curlVia(t, "api.test", upstream.port, "/echo?a-plain-get")).status).toBe(200);
    await page.locator("#events-body tr", { hasText: "/echo?a-plain-get" }).waitFor();

    // 5. Analytics and devices render.
    await page.click("#nav-analytics");
    await page.locator("svg.chart[aria-label='Top hosts by requests'] rect.bar").waitFor();
    // Four requests so far, each in some latency bin; empty bins draw no bar.
    expect(await page.locator("svg.chart[aria-label='Latency distribution'] rect.bar").count()).toBeGreaterThan(0);
    expect(await page.locator("svg.chart[aria-label='Top hosts by requests']").textContent()).toContain("api.test");
    await page.screenshot({ path: path.join(ARTIFACTS, "analytics.png") });
    await page.click("#nav-devices");
    await page.locator("section.devices").waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, "devices.png") });

    // 6. A session that ends sends the page back to the login form.
    await bob.page.click("#sign-out");
    await bob.page.locator("#login-name").waitFor();
    await bob.context.close();
    await alice.context.close();
  }, 60_000);

  test("an admin blocks requests like one from the feed: generate, validate, copy; nothing is applied", async () => {
    const configBefore = readFileSync(t.configPath, "utf8");
    const { context, page } = await signIn("ada");
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
    await page.click("#nav-requests");
    // The upstream answers 404 for this path: the gateway let it through (a deny would be 403).
    expect((await curlVia(t, "api.test", upstream.port, "/echo/block-me?token=x")).status).toBe(404);
    const row = page.locator("#events-body tr", { hasText: "/echo/block-me" });
    await row.waitFor();
    await row.click();
    await page.click("#block-like-this");
    const area = page.locator("#rule-hcl");
    await page.locator("#rule-validate:not([disabled])").waitFor();
    const exact = await area.inputValue();
    expect(exact).toContain("endpoint  = https.api");
    expect(exact).toContain(`http.path == '/echo/block-me'`);
    expect(exact).toContain(`verdict   = "deny"`);
    expect(exact).not.toContain("token=x");

    // A wider scope regenerates the rule: the folder and below, any method.
    await page.check("input[name=rule-path][value=prefix]");
    await page.waitForFunction(() => (document.querySelector("#rule-hcl") as HTMLTextAreaElement | null)?.value.includes("startsWith('/echo/')"));
    await page.check("input[name=rule-method][value=any]");
    await page.waitForFunction(() => !(document.querySelector("#rule-hcl") as HTMLTextAreaElement | null)?.value.includes("http.method"));
    const hcl = await area.inputValue();
    const name = /rule "([^"]+)"/.exec(hcl)![1]!;
    expect(name).toBe("block-any-api-test-echo");

    await page.click("#rule-validate");
    const ok = page.locator("#rule-result .rule-ok");
    await ok.waitFor();
    expect(await ok.textContent()).toContain(`Valid with the running config: adds ${name} (deny)`);
    expect(await ok.textContent()).toContain(`This request would now be: deny by rule ${name}`);
    expect(await page.locator("section.block-rule").textContent()).toContain("copy the rule into your config; reload applies it");
    await page.screenshot({ path: path.join(ARTIFACTS, "block-rule.png") });

    await page.click("#rule-copy");
    await page.locator(".flash", { hasText: "Rule copied" }).waitFor();
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(hcl);

    // An edit that breaks it: the error names the snippet's line.
    const broken = hcl.replace(`verdict   = "deny"`, `verdict   = "block"`);
    const verdictLine = broken.split("\n").findIndex((l) => l.includes(`verdict   = "block"`)) + 1;
    await area.fill(broken);
    await page.click("#rule-validate");
    const errors = page.locator("#rule-result .rule-errors");
    await errors.waitFor();
    expect(await errors.textContent()).toContain(`line ${verdictLine}: rule "${name}": verdict must be`);
    await errors.scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(ARTIFACTS, "block-rule-error.png") });

    // Validation applied nothing: the config file is as it was and the request still goes through.
    expect(readFileSync(t.configPath, "utf8")).toBe(configBefore);
    expect(t.gw.policy().rules.map((r) => r.name)).toEqual(["posts-need-a-human", "no-deletes", "updates-need-a-human"]);
    expect((await curlVia(t, "api.test", upstream.port, "/echo/block-me")).status).toBe(404);
    await context.close();
  }, 60_000);

  test("SQL statements: a held update shows its statement and database, the feed and detail show statements, and an admin blocks statements like one", async () => {
    const alice = await signIn("alice");
    const page = alice.page;
    await page.locator("#approvals-empty, #approval-list article").first().waitFor();

    // 1. A held UPDATE: the card shows the statement, database and user, no headers or body.
    const update = psql("UPDATE public.users SET name = 'ada lovelace' WHERE id = 1");
    const held = page.locator("article.approval-sql", { hasText: "UPDATE public.users SET name" });
    await held.waitFor();
    expect(await held.locator("header .method").textContent()).toBe("SQL");
    expect(await held.locator("header .reqline").textContent()).toBe("update on app @ 127.0.0.1");
    expect(await held.locator("pre.statement").textContent()).toBe("UPDATE public.users SET name = 'ada lovelace' WHERE id = 1");
    const text = (await held.textContent())!;
    for (const want of ["Databaseapp", "Useragent", "Endpointpostgres.db", "updates-need-a-human", "updates need an operator"]) expect(text).toContain(want);
    expect(await held.locator("details.headers").count()).toBe(0);
    expect(text).not.toContain(db.password);
    await page.screenshot({ path: path.join(ARTIFACTS, "approvals-sql.png") });
    // The CLI lists it as the statement on its database.
    expect(await cli("approvals", "list")).toContain("sql app@127.0.0.1: UPDATE public.users SET name = 'ada lovelace' WHERE id = 1");
    await held.locator("input.reason").fill("a name fix is fine");
    await held.locator("button.approve").click();
    const updated = await update;
    expect({ code: updated.exitCode, err: updated.stderr }).toEqual({ code: 0, err: "" });
    expect(db.superuserSql("select name from public.users where id = 1", "app").trim()).toBe("ada lovelace");
    await held.waitFor({ state: "detached" });

    // 2. A denied DELETE and an allowed SELECT, in the feed as statements on the database.
    const r = await psql("SELECT name FROM public.users ORDER BY id", "DELETE FROM public.users WHERE id = 2");
    expect(r.stdout.split("\n").filter(Boolean)).toEqual(["ada lovelace", "grace"]);
    expect(r.stderr).toContain("42501");
    await page.click("#nav-requests");
    const deleted = page.locator("#events-body tr", { hasText: "DELETE FROM public.users WHERE id = 2" });
    await deleted.waitFor();
    const cells = await deleted.locator("td").allTextContents();
    expect(cells.slice(2, 6)).toEqual(["deny", "sql delete", "postgres.db · app DELETE FROM public.users WHERE id = 2", "42501"]);
    const selected = page.locator("#events-body tr", { hasText: "SELECT name FROM public.users ORDER BY id" });
    expect(await selected.locator("td").nth(5).textContent()).toBe("2 rows");
    const updateRow = page.locator("#events-body tr", { hasText: "UPDATE public.users SET name" });
    expect(await updateRow.locator("td").nth(5).textContent()).toBe("1 row");

    // 3. The detail: statement, database and user, verb, tables, rows or SQLSTATE; no HTTP request line.
    await deleted.click();
    const detail = page.locator("aside.detail");
    await detail.waitFor();
    const facts = Object.fromEntries(
      await detail.locator("dl.facts dt").evaluateAll((dts) => dts.map((dt) => [dt.textContent, dt.nextElementSibling?.textContent])),
    );
    expect(facts).toMatchObject({
      Family: "sql",
      Summary: "delete public.users",
      Statement: "DELETE FROM public.users WHERE id = 2",
      Database: expect.stringMatching(/^app \(as agent\) on 127\.0\.0\.1:\d+$/),
      Verb: "delete",
      Tables: "public.users",
      SQLSTATE: "42501",
      Endpoint: "postgres.db",
      Rule: "no-deletes",
      Credential: "postgres_password.db",
    });
    expect(facts.Request).toBeUndefined();
    expect(facts.Status).toBeUndefined();
    // The held UPDATE, seen held in this session, shows the statement as it was held.
    await updateRow.click();
    await detail.locator("h4", { hasText: "As held for approval" }).waitFor();
    expect(await detail.locator("pre.statement").allTextContents()).toEqual([
      "UPDATE public.users SET name = 'ada lovelace' WHERE id = 1",
      "UPDATE public.users SET name = 'ada lovelace' WHERE id = 1",
    ]);
    expect(await detail.textContent()).toContain("Approversdashboard");
    await deleted.click();
    await detail.locator("dd", { hasText: "deletes are not for agents" }).waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, "requests-sql.png") });
    // `events history`: database, verb, tables, SQLSTATE as tokens, the statement quoted at the end.
    // The sqlite sink batches: ask until the statement is stored.
    const deniedLine = async () => (await cli("events", "history", "--verdict", "deny")).split("\n").find((l) => l.includes("DELETE FROM public.users"));
    let history = await deniedLine();
    for (const end = Date.now() + 20_000; history === undefined && Date.now() < end; history = await deniedLine()) await Bun.sleep(250);
    expect(history).toMatch(/ deny agent-box postgres\.db db=app delete public\.users sqlstate=42501 \d+ms rule=no-deletes cred=postgres_password\.db "deletes are not for agents" sql="DELETE FROM public\.users WHERE id = 2"$/);
    await alice.context.close();

    // 4. An admin blocks statements like the SELECT: this verb on these tables, then any statement touching them.
    const { context, page: admin } = await signIn("ada");
    await admin.click("#nav-requests");
    await admin.locator("#events-body tr", { hasText: "SELECT name FROM public.users ORDER BY id" }).click();
    await admin.click("#block-like-this");
    await admin.locator("#rule-validate:not([disabled])").waitFor();
    const area = admin.locator("#rule-hcl");
    expect(await area.inputValue()).toContain(`condition = "sql.verb == 'select' && sql.tables.exists(t, t in ['public.users', 'users'])"`);
    expect(await area.inputValue()).toContain("endpoint  = postgres.db");
    await admin.check("input[name=rule-sql][value=tables]");
    await admin.waitForFunction(() => !(document.querySelector("#rule-hcl") as HTMLTextAreaElement | null)?.value.includes("sql.verb"));
    const name = /rule "([^"]+)"/.exec(await area.inputValue())![1]!;
    expect(name).toBe("block-any-sql-on-public-users");
    await admin.click("#rule-validate");
    const ok = admin.locator("#rule-result .rule-ok");
    await ok.waitFor();
    expect(await ok.textContent()).toContain(`This request would now be: deny by rule ${name}`);
    await admin.screenshot({ path: path.join(ARTIFACTS, "block-rule-sql.png") });
    // Nothing applied: the SELECT still runs.
    expect((await psql("SELECT count(*) FROM public.users")).stdout.trim()).toBe("2");
    await context.close();
  }, 90_000);

  test("a one-time password must be changed before anything else; afterwards the old one no longer signs in", async () => {
    const context = await browser.newContext({ viewport: { width: 1366, height: 860 } });
    const page = await context.newPage();
    page.setDefaultTimeout(UI_TIMEOUT);
    const login = async (password: string) => {
      await page.fill("#login-name", "carol");
      await page.fill("#login-password", password);
      await page.click("button[type=submit]");
    };
    await page.goto(`${base}/#/requests`);
    await login(passwords.carol!);
    await page.locator("#password-form").waitFor();
    expect(await page.locator("header.top").count()).toBe(0);
    await page.screenshot({ path: path.join(ARTIFACTS, "password-required.png") });

    const fresh = "carol-chose-this-one-42";
    const submit = async (current: string, next: string, confirm: string) => {
      await page.fill("#pw-current", current);
      await page.fill("#pw-new", next);
      await page.fill("#pw-confirm", confirm);
      await page.click("#pw-submit");
    };
    await submit("not-the-one-time-password", fresh, fresh);
    await page.locator(".pw-error", { hasText: "The current password is wrong." }).waitFor();
    await submit(passwords.carol!, fresh, fresh + "x");
    await page.locator(".pw-error", { hasText: "The two new passwords differ." }).waitFor();
    await submit(passwords.carol!, "short", "short");
    await page.locator(".pw-error", { hasText: "at least 12 characters" }).waitFor();
    await submit(passwords.carol!, fresh, fresh);
    await page.locator("header.top .who", { hasText: "carol" }).waitFor();
    await page.locator("#live.live-live").waitFor();
    expect(await page.locator("#password-form").count()).toBe(0);

    // From the header at any time: a dialog with inline errors, and Cancel.
    await page.click("#change-password");
    await page.locator("#password-dialog").waitFor();
    await submit("wrong-wrong-wrong", "another-password-123", "another-password-123");
    await page.locator("#password-dialog .pw-error", { hasText: "The current password is wrong." }).waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, "password-dialog.png") });
    await page.click("#pw-cancel");
    await page.locator("#password-dialog").waitFor({ state: "detached" });

    // The old password is refused; the new one signs straight in.
    await page.click("#sign-out");
    await page.locator("#login-name").waitFor();
    await login(passwords.carol!);
    await page.locator(".login-error", { hasText: "Wrong name or password" }).waitFor();
    await login(fresh);
    await page.locator("header.top .who", { hasText: "carol" }).waitFor();
    expect(await page.locator("#password-form").count()).toBe(0);
    await context.close();
  }, 60_000);
});
