// Slack approver against a fake Slack Web API at the HTTP level (Bun.serve on
// 127.0.0.1:0, real chat.postMessage / chat.update / chat.postEphemeral
// request and response shapes — see fakes.ts) and interactivity callbacks
// signed exactly as Slack signs them (v0 HMAC-SHA256 with the signing secret).

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { createSlackApprover, verifySlackSignature } from "../../../../app/approvers/human/slack.ts";
import type { SlackApproverConfig } from "../../../../app/approvers/human/types.ts";
import type { ApproverPlugin } from "../../../../app/approvers/types.ts";
import { type Fake, approvalRequest, context, deps, fakeSlack, settledWithin, slackBlockActions, slackRequest, sqlApprovalRequest, stillPending } from "./fakes.ts";
import { DEFAULT_MESSAGE, renderMessage } from "../../../../app/approvers/config.ts";

const TOKEN = "xoxb-1111-2222-SECRETBOTTOKEN";
const SIGNING = "8f742231b10e8888abcd99yyyzzz85a5";

type Plugin = ApproverPlugin & { idle(): Promise<void> };
let fake: Fake;
let d: ReturnType<typeof deps>;

function make(over: Partial<SlackApproverConfig> = {}): { plugin: Plugin; handler: (r: Request) => Promise<Response> } {
  const cfg: SlackApproverConfig = { ref: "human_approver.oncall", name: "oncall", channel: "slack", channel_id: "C0ONCALL", bot_token: TOKEN, signing_secret: SIGNING, apiBase: fake.url, ...over };
  const plugin = createSlackApprover(cfg, d.deps) as Plugin;
  const route = plugin.routes!()[0]!;
  expect(route).toMatchObject({ method: "POST", path: "/api/approvers/slack/oncall/interactions" });
  return { plugin, handler: (r) => route.handler(r) };
}

const nowS = () => Math.floor(d.clock.now / 1000);

async function posted(holdId: string) {
  const [c] = await fake.waitFor((c) => c.method === "chat.postMessage" && JSON.stringify(c.body).includes(holdId));
  return c!;
}

beforeEach(() => {
  fake = fakeSlack(TOKEN);
  d = deps();
});
afterEach(() => fake.stop());

describe("slack ask", () => {
  test("posts Block Kit buttons carrying the hold id, with the bot token as Bearer", async () => {
    const { plugin } = make();
    const { ctx, abort } = context();
    const v = plugin.ask(approvalRequest("hold-1"), ctx);
    const c = await posted("hold-1");
    expect(c.auth).toBe(`Bearer ${TOKEN}`);
    expect(c.body.channel).toBe("C0ONCALL");
    const actions = c.body.blocks.find((b: any) => b.type === "actions");
    expect(actions.elements.map((e: any) => [e.action_id, e.value])).toEqual([
      ["approve", "hold-1"],
      ["deny", "hold-1"],
    ]);
    expect(c.body.text).toContain("POST https://api.github.com/repos/acme/app/git/refs");
    abort();
    await v;
  });

  test("a held SQL statement is posted as the statement on its database, not as an HTTP request line", async () => {
    const { plugin } = make();
    const { ctx, abort } = context();
    const v = plugin.ask(sqlApprovalRequest("hold-sql"), ctx);
    const c = await posted("hold-sql");
    const TEXT = c.body.text as string;
    expect(TEXT).toContain("SQL on database app as agent (db.internal)");
    expect(TEXT).toContain("statement: DELETE FROM public.users WHERE id = 7");
    expect(TEXT).toContain("endpoint postgres.db");
    expect(TEXT).not.toContain("https://");
    expect(TEXT).not.toContain("body:");
    expect(c.body.blocks[0].text.text).toContain("DELETE FROM public.users WHERE id = 7");
    abort();
    await v;
  });

  test("the hub's default message for a held SQL statement reaches Slack as the statement", async () => {
    const { plugin } = make();
    const { ctx, abort } = context();
    const req = sqlApprovalRequest("hold-sql-2");
    const v = plugin.ask(req, { ...ctx, message: renderMessage(DEFAULT_MESSAGE, req) });
    const c = await posted("hold-sql-2");
    expect(c.body.text).toBe("SQL on app as agent by laptop-1 (writes-need-approval: a write to the app database):\nDELETE FROM public.users WHERE id = 7");
    abort();
    await v;
  });

  test("approve: verified click resolves allow with operator and reason, message updated", async () => {
    const { plugin, handler } = make();
    const { ctx } = context();
    const v = plugin.ask(approvalRequest("hold-1"), ctx);
    const c = await posted("hold-1");
    const ts = "1700000000.000100";
    expect(c).toBeDefined();
    const res = await handler(slackRequest(SIGNING, slackBlockActions({ actionId: "approve", holdId: "hold-1", ts }), nowS()));
    expect(res.status).toBe(200);
    expect(await settledWithin(v)).toEqual({ decision: "allow", reason: "approved in Slack by alice", approver: "human_approver.oncall", operator: "slack:U111" });
    const [upd] = await fake.waitFor((c) => c.method === "chat.update");
    expect(upd!.body).toMatchObject({ channel: "C0ONCALL", ts });
    expect(upd!.body.text).toContain("Approved by <@U111>");
    expect(JSON.stringify(upd!.body.blocks)).not.toContain('"actions"');
  });

  test("deny with a typed reason: the reason is the user's words", async () => {
    const { plugin, handler } = make();
    const { ctx } = context();
    const v = plugin.ask(approvalRequest("hold-2"), ctx);
    await posted("hold-2");
    await handler(slackRequest(SIGNING, slackBlockActions({ actionId: "deny", holdId: "hold-2", ts: "1700000000.000100", reason: "  not during the freeze " }), nowS()));
    expect(await settledWithin(v)).toEqual({ decision: "deny", reason: "not during the freeze", approver: "human_approver.oncall", operator: "slack:U111" });
  });

  test("bad signature → 401, no decision", async () => {
    const { plugin, handler } = make();
    const { ctx, abort } = context();
    const v = plugin.ask(approvalRequest("hold-3"), ctx);
    await posted("hold-3");
    const res = await handler(slackRequest(SIGNING, slackBlockActions({ actionId: "approve", holdId: "hold-3", ts: "1700000000.000100" }), nowS(), { badSig: true }));
    expect(res.status).toBe(401);
    expect(await stillPending(v)).toBe(true);
    abort();
    expect((await v).decision).toBe("deny");
  });

  test("stale or future timestamps (more than five minutes) are refused even when signed", async () => {
    const { plugin, handler } = make();
    const { ctx, abort } = context();
    const v = plugin.ask(approvalRequest("hold-4"), ctx);
    await posted("hold-4");
    const click = slackBlockActions({ actionId: "approve", holdId: "hold-4", ts: "1700000000.000100" });
    expect((await handler(slackRequest(SIGNING, click, nowS() - 301))).status).toBe(401);
    expect((await handler(slackRequest(SIGNING, click, nowS() + 301))).status).toBe(401);
    expect(await stillPending(v)).toBe(true);
    expect(d.lines.some((l) => l.includes("check=stale"))).toBe(true);
    // Within the window it is accepted.
    expect((await handler(slackRequest(SIGNING, click, nowS() - 299))).status).toBe(200);
    expect((await settledWithin(v)).decision).toBe("allow");
    abort();
  });

  test("a user outside allowed_users gets an ephemeral 'not allowed'; an allowed user then decides", async () => {
    const { plugin, handler } = make({ allowed_users: ["U999"] });
    const { ctx } = context();
    const v = plugin.ask(approvalRequest("hold-5"), ctx);
    await posted("hold-5");
    const ts = "1700000000.000100";
    expect((await handler(slackRequest(SIGNING, slackBlockActions({ actionId: "approve", holdId: "hold-5", ts, userId: "U111" }), nowS()))).status).toBe(200);
    const [eph] = await fake.waitFor((c) => c.method === "chat.postEphemeral");
    expect(eph!.body).toMatchObject({ channel: "C0ONCALL", user: "U111", text: "You are not allowed to decide on this request." });
    expect(await stillPending(v)).toBe(true);
    await handler(slackRequest(SIGNING, slackBlockActions({ actionId: "deny", holdId: "hold-5", ts, userId: "U999" }), nowS()));
    expect(await settledWithin(v)).toMatchObject({ decision: "deny", operator: "slack:U999" });
  });

  test("unknown hold id → 200 and an ephemeral 'no longer pending'", async () => {
    const { handler } = make();
    const res = await handler(slackRequest(SIGNING, slackBlockActions({ actionId: "approve", holdId: "nope", ts: "1.2" }), nowS()));
    expect(res.status).toBe(200);
    const [eph] = await fake.waitFor((c) => c.method === "chat.postEphemeral");
    expect(eph!.body.text).toBe("This request is no longer pending.");
  });

  test("duplicate clicks: first wins, the second is told it is no longer pending", async () => {
    const { plugin, handler } = make();
    const { ctx } = context();
    const v = plugin.ask(approvalRequest("hold-6"), ctx);
    await posted("hold-6");
    const ts = "1700000000.000100";
    const [r1, r2] = await Promise.all([
      handler(slackRequest(SIGNING, slackBlockActions({ actionId: "approve", holdId: "hold-6", ts, userId: "U1" }), nowS())),
      handler(slackRequest(SIGNING, slackBlockActions({ actionId: "deny", holdId: "hold-6", ts, userId: "U2" }), nowS())),
    ]);
    expect([r1.status, r2.status]).toEqual([200, 200]);
    expect(await settledWithin(v)).toMatchObject({ decision: "allow", operator: "slack:U1" });
    await plugin.idle();
    expect(fake.calls.filter((c) => c.method === "chat.update")).toHaveLength(1);
    expect(fake.calls.filter((c) => c.method === "chat.postEphemeral").map((c) => c.body.user)).toEqual(["U2"]);
  });

  test("a click on another message carrying the same hold id is not a decision", async () => {
    const { plugin, handler } = make();
    const { ctx, abort } = context();
    const v = plugin.ask(approvalRequest("hold-7"), ctx);
    await posted("hold-7");
    await handler(slackRequest(SIGNING, slackBlockActions({ actionId: "approve", holdId: "hold-7", ts: "1699999999.000001" }), nowS()));
    expect(await stillPending(v)).toBe(true);
    abort();
    await v;
  });

  test("a click that arrives before the post's response is checked against the message once it is known", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    d = deps({ fetch: async (u, i) => (String(u).endsWith("chat.postMessage") ? (await gate, fetch(u, i)) : fetch(u, i)) });
    const { plugin, handler } = make();
    const { ctx, abort } = context();
    const v = plugin.ask(approvalRequest("hold-7b"), ctx);
    // another message's click while our post is in flight: not a decision
    const wrong = handler(slackRequest(SIGNING, slackBlockActions({ actionId: "approve", holdId: "hold-7b", ts: "1699999999.000001" }), nowS()));
    await Bun.sleep(20);
    release();
    await wrong;
    expect(await stillPending(v)).toBe(true);
    // the real message's click decides
    await handler(slackRequest(SIGNING, slackBlockActions({ actionId: "approve", holdId: "hold-7b", ts: "1700000000.000100" }), nowS()));
    expect((await settledWithin(v)).decision).toBe("allow");
    abort();
  });

  test("abort → deny and chat.update says it expired or was decided elsewhere", async () => {
    const { plugin } = make();
    const { ctx, abort } = context();
    const v = plugin.ask(approvalRequest("hold-8"), ctx);
    await posted("hold-8");
    abort(new Error("timeout"));
    expect(await settledWithin(v)).toEqual({ decision: "deny", reason: "no decision in Slack before the hold ended", approver: "human_approver.oncall" });
    const [upd] = await fake.waitFor((c) => c.method === "chat.update");
    expect(upd!.body.text).toContain("expired or was decided elsewhere");
    expect(upd!.body.ts).toBe("1700000000.000100");
  });

  test("abort while chat.postMessage is in flight still marks the message once it exists", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    d = deps({ fetch: async (u, i) => (String(u).endsWith("chat.postMessage") ? (await gate, fetch(u, i)) : fetch(u, i)) });
    const { plugin } = make();
    const { ctx, abort } = context();
    const v = plugin.ask(approvalRequest("hold-9"), ctx);
    abort();
    expect((await settledWithin(v)).decision).toBe("deny");
    release();
    const [upd] = await fake.waitFor((c) => c.method === "chat.update");
    expect(upd!.body.text).toContain("expired");
  });

  test("an already-aborted context is denied without posting", async () => {
    const { plugin } = make();
    const { ctx, abort } = context();
    abort();
    expect((await plugin.ask(approvalRequest("hold-10"), ctx)).decision).toBe("deny");
    await plugin.idle();
    expect(fake.calls).toHaveLength(0);
  });

  test.each([
    ["ok:false", { status: 200, body: { ok: false, error: "channel_not_found" } }, "Slack error channel_not_found"],
    ["HTTP 500 echoing the token", { status: 500, body: { ok: false, error: `upstream rejected Bearer ${TOKEN}` } }, "HTTP 500"],
  ])("post failure (%s) → deny without the token in the reason", async (_n, failure, expected) => {
    fake.fail.set("chat.postMessage", failure);
    const { plugin } = make();
    const { ctx } = context();
    const v = await settledWithin(plugin.ask(approvalRequest("hold-11"), ctx));
    expect(v.decision).toBe("deny");
    expect(v.reason).toContain("could not post the approval request to Slack");
    expect(v.reason).toContain(expected);
    expect(v.reason).not.toContain(TOKEN);
    expect(d.lines.join("\n")).not.toContain(TOKEN);
  });

  test("unreachable Slack → deny, no token in reason or logs", async () => {
    fake.stop();
    const { plugin } = make();
    const { ctx } = context();
    const v = await settledWithin(plugin.ask(approvalRequest("hold-12"), ctx));
    expect(v.decision).toBe("deny");
    expect(v.reason).toContain("network error");
    expect(v.reason + d.lines.join("\n")).not.toContain(TOKEN);
  });

  test("close denies pending holds and edits their messages", async () => {
    const { plugin } = make();
    const { ctx } = context();
    const v = plugin.ask(approvalRequest("hold-13"), ctx);
    await posted("hold-13");
    plugin.close!();
    expect((await settledWithin(v)).reason).toBe("Slack approver closed");
    await fake.waitFor((c) => c.method === "chat.update");
    expect((await plugin.ask(approvalRequest("hold-14"), context().ctx)).decision).toBe("deny");
  });

  test("the hub's rendered message (ctx.message) is what gets posted", async () => {
    const { plugin } = make();
    const { ctx, abort } = context();
    const v = plugin.ask(approvalRequest("hold-15"), { ...ctx, message: "Deploy <prod> & friends?" });
    const c = await fake.waitFor((c) => c.method === "chat.postMessage");
    expect(c[0]!.body.text).toBe("Deploy <prod> & friends?");
    expect(c[0]!.body.blocks[0].text.text).toBe("Deploy &lt;prod&gt; &amp; friends?");
    abort();
    await v;
  });

  test("require_approvers: shows 'n of m' and refuses a second allow from someone who already approved", async () => {
    const { plugin, handler } = make();
    const { ctx } = context();
    const v = plugin.ask(approvalRequest("hold-16"), { ...ctx, message: "m", approvedBy: ["slack:U1"], requireApprovers: 2 });
    const c = await posted("hold-16");
    expect(c.body.text).toBe("m\n\nApproval 2 of 2 (approved so far by slack:U1)");
    const ts = "1700000000.000100";
    await handler(slackRequest(SIGNING, slackBlockActions({ actionId: "approve", holdId: "hold-16", ts, userId: "U1" }), nowS()));
    const [eph] = await fake.waitFor((c) => c.method === "chat.postEphemeral");
    expect(eph!.body.text).toBe("You already approved this request; another approver is needed.");
    expect(await stillPending(v)).toBe(true);
    await handler(slackRequest(SIGNING, slackBlockActions({ actionId: "approve", holdId: "hold-16", ts, userId: "U2" }), nowS()));
    expect(await settledWithin(v)).toMatchObject({ decision: "allow", operator: "slack:U2" });
  });

  test("malformed and non-button interactions are answered 200 and ignored", async () => {
    const { handler } = make();
    for (const p of [{ type: "view_submission" }, { type: "block_actions", actions: [{ action_id: "reason", value: "x" }], user: { id: "U1" } }]) {
      expect((await handler(slackRequest(SIGNING, p, nowS()))).status).toBe(200);
    }
    await Bun.sleep(10);
    expect(fake.calls).toHaveLength(0);
  });
});

describe("verifySlackSignature", () => {
  // The worked example from Slack's "Verifying requests from Slack" guide.
  const body =
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
  const headers = new Headers({ "x-slack-request-timestamp": "1531420618", "x-slack-signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503" });

  test("accepts Slack's published example", () => {
    expect(verifySlackSignature(SIGNING, headers, body, 1531420618_000)).toBe("ok");
  });
  test("refuses a changed body, a missing header, a stale time", () => {
    expect(verifySlackSignature(SIGNING, headers, body + "x", 1531420618_000)).toBe("bad_signature");
    expect(verifySlackSignature(SIGNING, new Headers(), body, 1531420618_000)).toBe("missing");
    expect(verifySlackSignature(SIGNING, headers, body, (1531420618 + 301) * 1000)).toBe("stale");
  });
});
