// Telegram approver against a fake Telegram Bot API at the HTTP level
// (Bun.serve on 127.0.0.1:0 serving /bot<token>/sendMessage, editMessageText,
// answerCallbackQuery and long-polling getUpdates with offset confirmation,
// real `{ok, result}` / `{ok:false, error_code, description}` shapes — see
// fakes.ts); webhook deliveries carry X-Telegram-Bot-Api-Secret-Token as
// Telegram sends it.

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { createTelegramApprover } from "../../../../app/approvers/human/telegram.ts";
import type { TelegramApproverConfig } from "../../../../app/approvers/human/types.ts";
import type { ApproverPlugin } from "../../../../app/approvers/types.ts";
import { createApprovals } from "../../../../app/approvers/registry.ts";
import { policyFrom } from "../../policy/helpers.ts";
import { type TelegramFake, approvalRequest, sqlApprovalRequest, context, deps, fakeTelegram, settledWithin, stillPending, telegramCallbackUpdate, telegramRequest } from "./fakes.ts";

const TOKEN = "123456789:AAHsecretTelegramBotTokenXYZ";
const SECRET = "webhook-secret-Token_42";

type Plugin = ApproverPlugin & { idle(): Promise<void>; readonly polling: boolean; stopped(): Promise<void>; registered(): Promise<void> };
let fake: TelegramFake;
let d: ReturnType<typeof deps>;

function make(over: Partial<TelegramApproverConfig> = {}) {
  const cfg: TelegramApproverConfig = { ref: "human_approver.oncall", name: "oncall", channel: "telegram", chat_id: "-100123", bot_token: TOKEN, webhook_secret: SECRET, apiBase: fake.url, ...over };
  const plugin = createTelegramApprover(cfg, d.deps) as Plugin;
  const route = plugin.routes!()[0];
  return { plugin, handler: (r: Request) => route!.handler(r) };
}

async function posted(holdId: string): Promise<{ messageId: number; approve: string; deny: string }> {
  const [c] = await fake.waitFor((c) => c.method === "sendMessage" && JSON.stringify(c.body).includes(holdId));
  const idx = fake.calls.filter((x) => x.method === "sendMessage").indexOf(c!);
  const [a, n] = c!.body.reply_markup.inline_keyboard[0];
  return { messageId: 10 + idx, approve: a.callback_data, deny: n.callback_data };
}

beforeEach(() => {
  fake = fakeTelegram(TOKEN);
  d = deps();
});
afterEach(() => fake.stop());

describe("telegram webhook", () => {
  test("route path and sendMessage shape (token in the path, inline keyboard)", async () => {
    const { plugin } = make();
    expect(plugin.routes!().map((r) => [r.method, r.path])).toEqual([["POST", "/api/approvers/telegram/oncall/webhook"]]);
    const { ctx, abort } = context();
    const v = plugin.ask(approvalRequest("hold-1"), ctx);
    const m = await posted("hold-1");
    expect(fake.calls[0]!.path).toBe(`/bot${TOKEN}/sendMessage`);
    expect(fake.calls[0]!.body.chat_id).toBe("-100123");
    expect([m.approve, m.deny]).toEqual(["cp:a:hold-1", "cp:d:hold-1"]);
    abort();
    await v;
  });

  test("a held SQL statement is sent as the statement on its database, not as an HTTP request line", async () => {
    const { plugin } = make();
    const { ctx, abort } = context();
    const v = plugin.ask(sqlApprovalRequest("hold-sql"), ctx);
    await posted("hold-sql");
    const TEXT = fake.calls.find((c) => c.method === "sendMessage")!.body.text as string;
    expect(TEXT).toContain("SQL on database app as agent (db.internal)");
    expect(TEXT).toContain("statement: DELETE FROM public.users WHERE id = 7");
    expect(TEXT).toContain("endpoint postgres.db");
    expect(TEXT).not.toContain("https://");
    expect(TEXT).not.toContain("body:");
    abort();
    await v;
  });

  test("approve: verdict, answerCallbackQuery and editMessageText without keyboard", async () => {
    const { plugin, handler } = make();
    const { ctx } = context();
    const v = plugin.ask(approvalRequest("hold-2"), ctx);
    const m = await posted("hold-2");
    const res = await handler(telegramRequest(SECRET, telegramCallbackUpdate({ data: m.approve, messageId: m.messageId })));
    expect(res.status).toBe(200);
    expect(await settledWithin(v)).toEqual({ decision: "allow", reason: "approved in Telegram by @carol", approver: "human_approver.oncall", operator: "telegram:777" });
    const [ans] = await fake.waitFor((c) => c.method === "answerCallbackQuery");
    expect(ans!.body).toEqual({ callback_query_id: "cq1000", text: "Approved" });
    const [ed] = await fake.waitFor((c) => c.method === "editMessageText");
    expect(ed!.body).toMatchObject({ chat_id: "-100123", message_id: m.messageId });
    expect(ed!.body.reply_markup).toBeUndefined();
    expect(ed!.body.text).toContain("Approved by @carol");
  });

  test("deny path", async () => {
    const { plugin, handler } = make();
    const { ctx } = context();
    const v = plugin.ask(approvalRequest("hold-3"), ctx);
    const m = await posted("hold-3");
    await handler(telegramRequest(SECRET, telegramCallbackUpdate({ data: m.deny, messageId: m.messageId, userId: 888 })));
    expect(await settledWithin(v)).toMatchObject({ decision: "deny", reason: "denied in Telegram by @carol", operator: "telegram:888" });
  });

  test.each([
    ["wrong secret", "nope"],
    ["missing secret", undefined],
  ])("%s → 401, no decision, no API calls", async (_n, secret) => {
    const { plugin, handler } = make();
    const { ctx, abort } = context();
    const v = plugin.ask(approvalRequest("hold-4"), ctx);
    const m = await posted("hold-4");
    expect((await handler(telegramRequest(secret, telegramCallbackUpdate({ data: m.approve, messageId: m.messageId })))).status).toBe(401);
    expect(await stillPending(v, 10)).toBe(true);
    expect(fake.calls.map((c) => c.method)).toEqual(["sendMessage"]);
    abort();
    await v;
  });

  test("not-allowed user: alert via answerCallbackQuery, hold stays pending", async () => {
    const { plugin, handler } = make({ allowed_users: ["1"] });
    const { ctx } = context();
    const v = plugin.ask(approvalRequest("hold-5"), ctx);
    const m = await posted("hold-5");
    await handler(telegramRequest(SECRET, telegramCallbackUpdate({ data: m.approve, messageId: m.messageId, userId: 777 })));
    const [ans] = await fake.waitFor((c) => c.method === "answerCallbackQuery");
    expect(ans!.body).toEqual({ callback_query_id: "cq1000", text: "You are not allowed to decide on this request.", show_alert: true });
    expect(await stillPending(v, 10)).toBe(true);
    await handler(telegramRequest(SECRET, telegramCallbackUpdate({ updateId: 1001, data: m.deny, messageId: m.messageId, userId: 1 })));
    expect(await settledWithin(v)).toMatchObject({ decision: "deny", operator: "telegram:1" });
  });

  test("unknown hold id and foreign callback data → 'no longer pending'", async () => {
    const { handler } = make();
    await handler(telegramRequest(SECRET, telegramCallbackUpdate({ data: "cp:a:gone", messageId: 5 })));
    await handler(telegramRequest(SECRET, telegramCallbackUpdate({ updateId: 1001, data: "something-else", messageId: 5 })));
    const answers = await fake.waitFor((c) => c.method === "answerCallbackQuery", 2);
    expect(answers.map((a) => a.body.text)).toEqual(["This request is no longer pending.", "This request is no longer pending."]);
    // Non-callback updates are acknowledged and ignored.
    expect((await handler(telegramRequest(SECRET, { update_id: 5, message: { message_id: 1, text: "hi" } }))).status).toBe(200);
  });

  test("duplicate click: first wins", async () => {
    const { plugin, handler } = make();
    const { ctx } = context();
    const v = plugin.ask(approvalRequest("hold-6"), ctx);
    const m = await posted("hold-6");
    await handler(telegramRequest(SECRET, telegramCallbackUpdate({ updateId: 1, data: m.approve, messageId: m.messageId, userId: 1 })));
    await handler(telegramRequest(SECRET, telegramCallbackUpdate({ updateId: 2, data: m.deny, messageId: m.messageId, userId: 2 })));
    expect(await settledWithin(v)).toMatchObject({ decision: "allow", operator: "telegram:1" });
    await plugin.idle();
    expect(fake.calls.filter((c) => c.method === "answerCallbackQuery").map((c) => c.body.text)).toEqual(["Approved", "This request is no longer pending."]);
    expect(fake.calls.filter((c) => c.method === "editMessageText")).toHaveLength(1);
  });

  test("abort → deny and editMessageText says expired", async () => {
    const { plugin } = make();
    const { ctx, abort } = context();
    const v = plugin.ask(approvalRequest("hold-7"), ctx);
    const m = await posted("hold-7");
    abort();
    expect(await settledWithin(v)).toEqual({ decision: "deny", reason: "no decision in Telegram before the hold ended", approver: "human_approver.oncall" });
    const [ed] = await fake.waitFor((c) => c.method === "editMessageText");
    expect(ed!.body).toMatchObject({ chat_id: "-100123", message_id: m.messageId });
    expect(ed!.body.text).toContain("expired or was decided elsewhere");
  });

  test("post failure (chat not found) → deny, no token", async () => {
    fake.fail.set("sendMessage", { status: 400, body: { ok: false, error_code: 400, description: "Bad Request: chat not found" } });
    const { plugin } = make();
    const v = await settledWithin(plugin.ask(approvalRequest("hold-8"), context().ctx));
    expect(v).toEqual({ decision: "deny", reason: "could not post the approval request to Telegram: Telegram error 400 (Bad Request: chat not found)", approver: "human_approver.oncall" });
  });

  test("post failure with a wrong token (in the URL path) → deny, that token nowhere", async () => {
    const bad = "999:wrongTokenValueThatMustNotLeak";
    const { plugin } = make({ bot_token: bad });
    const v = await settledWithin(plugin.ask(approvalRequest("hold-9"), context().ctx));
    expect(v.reason).toContain("Telegram error 401 (Unauthorized)");
    expect(v.reason + d.lines.join("\n")).not.toContain(bad);
  });

  test("unreachable API (the URL carries the token) → deny without the token", async () => {
    fake.stop();
    const { plugin } = make();
    const v = await settledWithin(plugin.ask(approvalRequest("hold-10"), context().ctx));
    expect(v.decision).toBe("deny");
    expect(v.reason + d.lines.join("\n")).not.toContain(TOKEN);
  });

  test("long hold ids are hashed so callback_data fits 64 bytes", async () => {
    const { plugin, handler } = make();
    const { ctx } = context();
    const id = "é".repeat(40); // 80 bytes
    const v = plugin.ask(approvalRequest(id), ctx);
    const [c] = await fake.waitFor((c) => c.method === "sendMessage");
    const data: string = c!.body.reply_markup.inline_keyboard[0][1].callback_data;
    expect(Buffer.byteLength(data)).toBeLessThanOrEqual(64);
    await handler(telegramRequest(SECRET, telegramCallbackUpdate({ data, messageId: 10 })));
    expect((await settledWithin(v)).decision).toBe("deny");
  });

  test("webhook mode without a secret is refused at construction", () => {
    expect(() => make({ webhook_secret: undefined })).toThrow("webhook_secret");
  });
});

describe("telegram long polling", () => {
  const poll = { mode: "poll" as const, webhook_secret: undefined, poll_timeout: 1 };

  test("no route; loop starts with the first hold, confirms by offset, stops when none is pending", async () => {
    const { plugin } = make(poll);
    expect(plugin.routes!()).toEqual([]);
    expect(plugin.polling).toBe(false);
    const { ctx } = context();
    const v = plugin.ask(approvalRequest("hold-p1"), ctx);
    expect(plugin.polling).toBe(true);
    const m = await posted("hold-p1");
    const [first] = await fake.waitFor((c) => c.method === "getUpdates");
    expect(first!.body).toEqual({ offset: 0, timeout: 1, allowed_updates: ["callback_query"] });
    fake.push(telegramCallbackUpdate({ updateId: 500, data: m.approve, messageId: m.messageId }));
    expect(await settledWithin(v)).toMatchObject({ decision: "allow", operator: "telegram:777" });
    await fake.waitFor((c) => c.method === "answerCallbackQuery");
    await plugin.stopped();
    expect(plugin.polling).toBe(false);
    const n = fake.calls.filter((c) => c.method === "getUpdates").length;
    await Bun.sleep(30);
    expect(fake.calls.filter((c) => c.method === "getUpdates").length).toBe(n);

    // The next hold restarts the loop from the confirmed offset: update 500 is not seen again.
    const { ctx: ctx2, abort } = context();
    const v2 = plugin.ask(approvalRequest("hold-p2"), ctx2);
    await fake.waitFor((c) => c.method === "getUpdates" && c.body.offset === 501);
    abort();
    await v2;
    await plugin.stopped();
    expect(fake.calls.filter((c) => c.method === "answerCallbackQuery")).toHaveLength(1);
  });

  test("abort stops the loop and edits the message; close aborts an in-flight long poll", async () => {
    const { plugin } = make(poll);
    const { ctx, abort } = context();
    const v = plugin.ask(approvalRequest("hold-p3"), ctx);
    await posted("hold-p3");
    await fake.waitFor((c) => c.method === "getUpdates");
    abort();
    await v;
    await fake.waitFor((c) => c.method === "editMessageText");
    await plugin.stopped();
    expect(plugin.polling).toBe(false);

    const v2 = plugin.ask(approvalRequest("hold-p4"), context().ctx);
    await fake.waitFor((c) => c.method === "getUpdates", 2);
    plugin.close!();
    expect((await settledWithin(v2)).reason).toBe("Telegram approver closed");
    await plugin.stopped();
    expect(plugin.polling).toBe(false);
  });

  test("getUpdates failures back off through the injected sleep, then recover", async () => {
    const sleeps: number[] = [];
    d = deps({ sleep: async (ms) => void sleeps.push(ms) });
    fake.fail.set("getUpdates", { status: 409, body: { ok: false, error_code: 409, description: "Conflict: can't use getUpdates method while webhook is active" } });
    const { plugin } = make(poll);
    const { ctx } = context();
    const v = plugin.ask(approvalRequest("hold-p5"), ctx);
    const m = await posted("hold-p5");
    await fake.waitFor((c) => c.method === "getUpdates", 4);
    fake.fail.delete("getUpdates");
    fake.push(telegramCallbackUpdate({ updateId: 7, data: m.deny, messageId: m.messageId }));
    expect((await settledWithin(v)).decision).toBe("deny");
    expect(sleeps.slice(0, 3)).toEqual([1000, 2000, 4000]);
    expect(d.lines.some((l) => l.includes("getUpdates failed") && l.includes("409"))).toBe(true);
    expect(d.lines.join("\n")).not.toContain(TOKEN);
    await plugin.stopped();
  });
});

describe("telegram registration (setWebhook / deleteWebhook)", () => {
  const PUBLIC = "https://gw.example.com:8443";

  test("webhook mode: setWebhook with public_url + the route, the secret and callback_query only; health ok", async () => {
    d = deps({ publicUrl: PUBLIC + "/", telegramRegistrations: new Map() });
    const { plugin } = make();
    expect(plugin.health!().status).toBe("starting");
    await plugin.registered();
    const [set] = fake.calls.filter((c) => c.method === "setWebhook");
    expect(set!.path).toBe(`/bot${TOKEN}/setWebhook`);
    expect(set!.body).toEqual({ url: `${PUBLIC}/api/approvers/telegram/oncall/webhook`, secret_token: SECRET, allowed_updates: ["callback_query"] });
    expect(fake.webhook?.url).toBe(`${PUBLIC}/api/approvers/telegram/oncall/webhook`);
    expect(plugin.health!()).toEqual({ status: "ok", detail: `webhook set to ${PUBLIC}/api/approvers/telegram/oncall/webhook` });
    expect(d.lines.join("\n")).not.toContain(TOKEN);
    expect(d.lines.join("\n")).not.toContain(SECRET);
    plugin.close!();
  });

  test("a reload with the same settings does not register again; a changed setting does", async () => {
    const registrations = new Map<string, string>();
    d = deps({ publicUrl: PUBLIC, telegramRegistrations: registrations });
    const first = make().plugin;
    await first.registered();
    first.close!();
    const same = make().plugin;
    await same.registered();
    expect(same.health!().status).toBe("ok");
    expect(fake.calls.filter((c) => c.method === "setWebhook")).toHaveLength(1);
    same.close!();
    const changed = make({ webhook_secret: "a-new-secret" }).plugin;
    await changed.registered();
    expect(fake.calls.filter((c) => c.method === "setWebhook").map((c) => c.body.secret_token)).toEqual([SECRET, "a-new-secret"]);
    changed.close!();
  });

  test("a refused setWebhook is logged without the token, shown as health, and retried with backoff", async () => {
    const sleeps: number[] = [];
    let wake: (() => void) | undefined;
    d = deps({
      publicUrl: "http://gw.example.com", // Telegram wants HTTPS: the fake refuses as the real API does
      telegramRegistrations: new Map(),
      sleep: (ms) => {
        sleeps.push(ms);
        return new Promise<void>((resolve) => (wake = resolve));
      },
    });
    const { plugin } = make();
    await fake.waitFor((c) => c.method === "setWebhook");
    while (plugin.health!().status === "starting") await Bun.sleep(2);
    expect(plugin.health!()).toEqual({ status: "error", detail: "Telegram setWebhook failed: Telegram error 400 (Bad Request: bad webhook: An HTTPS URL must be provided for webhook)" });
    expect(d.lines.some((l) => l.includes("setWebhook failed") && l.includes("retry_ms=1000"))).toBe(true);
    expect(d.lines.join("\n")).not.toContain(TOKEN);
    expect(sleeps).toEqual([1000]);
    wake!();
    await fake.waitFor((c) => c.method === "setWebhook", 2);
    plugin.close!();
    wake!();
    await plugin.registered();
    expect(sleeps.length).toBeLessThanOrEqual(2);
  });

  test("webhook mode without public_url: no setWebhook, health says why", async () => {
    d = deps({ telegramRegistrations: new Map() });
    const { plugin } = make();
    await plugin.registered();
    expect(fake.calls).toEqual([]);
    expect(plugin.health!()).toMatchObject({ status: "error", detail: expect.stringContaining("public_url") });
  });

  test("a secret Telegram would refuse is refused at construction, without its value", () => {
    expect(() => make({ webhook_secret: "has spaces and $ signs" })).toThrow("webhook_secret must be 1-256 characters");
    try {
      make({ webhook_secret: "has spaces and $ signs" });
    } catch (e) {
      expect(String(e)).not.toContain("has spaces");
    }
  });

  test("poll mode: deleteWebhook before the first getUpdates, so a webhook left behind cannot block polling", async () => {
    fake.webhook = { url: "https://old.example.com/hook" };
    d = deps({ telegramRegistrations: new Map() });
    const { plugin } = make({ mode: "poll", webhook_secret: undefined, poll_timeout: 1 });
    const { ctx } = context();
    const v = plugin.ask(approvalRequest("hold-r1"), ctx);
    const m = await posted("hold-r1");
    await fake.waitFor((c) => c.method === "getUpdates");
    const order = fake.calls.map((c) => c.method).filter((x) => x === "deleteWebhook" || x === "getUpdates");
    expect(order[0]).toBe("deleteWebhook");
    expect(fake.calls.find((c) => c.method === "deleteWebhook")!.body).toEqual({ drop_pending_updates: false });
    expect(fake.webhook).toBeUndefined();
    expect(plugin.health!()).toEqual({ status: "ok", detail: "webhook deleted for long polling" });
    fake.push(telegramCallbackUpdate({ updateId: 900, data: m.approve, messageId: m.messageId }));
    expect((await settledWithin(v)).decision).toBe("allow");
    // Polling got through: no 409 was ever answered.
    expect(d.lines.some((l) => l.includes("getUpdates failed"))).toBe(false);
    await plugin.stopped();
    plugin.close!();
  });
});

describe("telegram registration through the loaded config (registry wiring)", () => {
  const config = (publicUrl: string) => `
schema_version = 1
gateway { public_url = "${publicUrl}" }
endpoint "https" "gh" { hosts = ["api.github.com"] }
credential "bearer_token" "tgbot" {}
approver "human_approver" "oncall" {
  channel        = "telegram"
  chat_id        = "-100123"
  bot_token      = bearer_token.tgbot
  webhook_secret = "${SECRET}"
  api_base       = "${fake.url}"
}
rule "held" {
  endpoint = https.gh
  approve  = [human_approver.oncall]
}
`;

  test("start sets the webhook from gateway { public_url }; a reload keeps it; a new public_url sets it again", async () => {
    const approvals = await createApprovals(await policyFrom(config("https://gw-one.example.com")), {
      secrets: { env: { CLAWPATROL_SECRET_TGBOT: TOKEN } },
      realTimers: false,
    });
    try {
      const plugin = () => approvals.current().get("human_approver.oncall") as Plugin;
      await plugin().registered();
      expect(plugin().health!().status).toBe("ok");
      expect(fake.calls.filter((c) => c.method === "setWebhook").map((c) => c.body.url)).toEqual(["https://gw-one.example.com/api/approvers/telegram/oncall/webhook"]);
      approvals.setPolicy(await policyFrom(config("https://gw-one.example.com")));
      await plugin().registered();
      expect(fake.calls.filter((c) => c.method === "setWebhook")).toHaveLength(1);
      approvals.setPolicy(await policyFrom(config("https://gw-two.example.com/")));
      await plugin().registered();
      expect(fake.calls.filter((c) => c.method === "setWebhook").map((c) => c.body.url)).toEqual([
        "https://gw-one.example.com/api/approvers/telegram/oncall/webhook",
        "https://gw-two.example.com/api/approvers/telegram/oncall/webhook",
      ]);
      expect(fake.webhook).toEqual({ url: "https://gw-two.example.com/api/approvers/telegram/oncall/webhook", secret_token: SECRET, allowed_updates: ["callback_query"] });
    } finally {
      approvals.close();
    }
  });
});
