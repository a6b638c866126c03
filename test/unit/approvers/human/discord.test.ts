// Discord approver against a fake Discord REST API v10 at the HTTP level
// (Bun.serve on 127.0.0.1:0: POST /channels/{id}/messages and PATCH
// /channels/{id}/messages/{mid} with `Authorization: Bot`, real message
// objects and `{message, code}` errors — see fakes.ts) and interactions
// signed exactly as Discord signs them (Ed25519 over timestamp + body, with a
// test keypair).

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { createDiscordApprover } from "../../../../app/approvers/human/discord.ts";
import type { DiscordApproverConfig } from "../../../../app/approvers/human/types.ts";
import type { ApproverPlugin } from "../../../../app/approvers/types.ts";
import { type Fake, approvalRequest, sqlApprovalRequest, context, deps, discordComponentInteraction, discordKeys, discordRequest, fakeDiscord, settledWithin, stillPending } from "./fakes.ts";

const TOKEN = "MTA5OTk5.GsecretDiscordBotToken.abcdefghijklmnop";
const keys = discordKeys();
const other = discordKeys();

type Plugin = ApproverPlugin & { idle(): Promise<void> };
let fake: Fake;
let d: ReturnType<typeof deps>;

function make(over: Partial<DiscordApproverConfig> = {}) {
  const cfg: DiscordApproverConfig = {
    ref: "human_approver.oncall", name: "oncall", channel: "discord", channel_id: "222", bot_token: TOKEN,
    application_public_key: keys.publicHex, application_id: "333", apiBase: fake.url, ...over,
  };
  const plugin = createDiscordApprover(cfg, d.deps) as Plugin;
  const route = plugin.routes!()[0]!;
  expect(route).toMatchObject({ method: "POST", path: "/api/approvers/discord/oncall/interactions" });
  return { plugin, handler: (r: Request) => route.handler(r) };
}

const nowS = () => Math.floor(d.clock.now / 1000);

async function posted(holdId: string): Promise<string> {
  const [c] = await fake.waitFor((c) => c.method === "POST /api/v10/channels/222/messages" && JSON.stringify(c.body).includes(holdId));
  const idx = fake.calls.indexOf(c!);
  // Message ids are assigned in call order by the fake.
  return String(900000000000000000n + BigInt(fake.calls.slice(0, idx).filter((x) => x.method.startsWith("POST")).length));
}

const click = (customId: string, messageId: string, userId?: string) =>
  discordRequest(keys.privateKey, discordComponentInteraction({ customId, messageId, ...(userId ? { userId } : {}) }), nowS());

beforeEach(() => {
  fake = fakeDiscord(TOKEN);
  d = deps();
});
afterEach(() => fake.stop());

describe("discord", () => {
  test("posts an action row with success/danger buttons, Bot auth, no mentions", async () => {
    const { plugin } = make();
    const { ctx, abort } = context();
    const v = plugin.ask(approvalRequest("hold-1"), ctx);
    await posted("hold-1");
    const c = fake.calls[0]!;
    expect(c.auth).toBe(`Bot ${TOKEN}`);
    expect(c.body.components).toEqual([
      {
        type: 1,
        components: [
          { type: 2, style: 3, label: "Approve", custom_id: "cp:approve:hold-1" },
          { type: 2, style: 4, label: "Deny", custom_id: "cp:deny:hold-1" },
        ],
      },
    ]);
    expect(c.body.allowed_mentions).toEqual({ parse: [] });
    abort();
    await v;
  });

  test("a held SQL statement is posted as the statement on its database, not as an HTTP request line", async () => {
    const { plugin } = make();
    const { ctx, abort } = context();
    const v = plugin.ask(sqlApprovalRequest("hold-sql"), ctx);
    await posted("hold-sql");
    const TEXT = fake.calls.find((c) => c.method === "POST /api/v10/channels/222/messages")!.body.content as string;
    expect(TEXT).toContain("SQL on database app as agent (db.internal)");
    expect(TEXT).toContain("statement: DELETE FROM public.users WHERE id = 7");
    expect(TEXT).toContain("endpoint postgres.db");
    expect(TEXT).not.toContain("https://");
    expect(TEXT).not.toContain("body:");
    abort();
    await v;
  });

  test("PING is answered with PONG", async () => {
    const { handler } = make();
    const res = await handler(discordRequest(keys.privateKey, { id: "1", application_id: "333", type: 1, token: "t", version: 1 }, nowS()));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ type: 1 });
  });

  test("approve: UPDATE_MESSAGE without buttons, verdict allow", async () => {
    const { plugin, handler } = make();
    const { ctx } = context();
    const v = plugin.ask(approvalRequest("hold-2"), ctx);
    const mid = await posted("hold-2");
    const res = await handler(click("cp:approve:hold-2", mid));
    expect(res.status).toBe(200);
    const body: any = await res.json();
    expect(body.type).toBe(7);
    expect(body.data.components).toEqual([]);
    expect(body.data.content).toContain("Approved by <@555>");
    expect(await settledWithin(v)).toEqual({ decision: "allow", reason: "approved in Discord by Bob", approver: "human_approver.oncall", operator: "discord:555" });
  });

  test("deny path, user from a DM interaction (`user`, not `member`)", async () => {
    const { plugin, handler } = make();
    const { ctx } = context();
    const v = plugin.ask(approvalRequest("hold-3"), ctx);
    const mid = await posted("hold-3");
    const i: any = discordComponentInteraction({ customId: "cp:deny:hold-3", messageId: mid });
    i.user = { id: "666", username: "dave" };
    delete i.member;
    const res = await handler(discordRequest(keys.privateKey, i, nowS()));
    expect(((await res.json()) as any).type).toBe(7);
    expect(await settledWithin(v)).toEqual({ decision: "deny", reason: "denied in Discord by dave", approver: "human_approver.oncall", operator: "discord:666" });
  });

  test.each([
    ["tampered body", (mid: string) => discordRequest(keys.privateKey, discordComponentInteraction({ customId: "cp:approve:hold-4", messageId: mid }), nowS(), { tamper: true })],
    ["another key", (mid: string) => discordRequest(other.privateKey, discordComponentInteraction({ customId: "cp:approve:hold-4", messageId: mid }), nowS())],
    ["stale timestamp", (mid: string) => discordRequest(keys.privateKey, discordComponentInteraction({ customId: "cp:approve:hold-4", messageId: mid }), nowS() - 600)],
    ["no headers", () => new Request("http://gw/x", { method: "POST", body: "{}" })],
  ])("invalid signature (%s) → 401, no decision", async (_n, build) => {
    const { plugin, handler } = make();
    const { ctx, abort } = context();
    const v = plugin.ask(approvalRequest("hold-4"), ctx);
    const mid = await posted("hold-4");
    expect((await handler(build(mid))).status).toBe(401);
    expect(await stillPending(v, 10)).toBe(true);
    abort();
    await v;
  });

  test("an unsigned PING is refused too (Discord's endpoint check sends one)", async () => {
    const { handler } = make();
    const res = await handler(discordRequest(other.privateKey, { id: "1", application_id: "333", type: 1 }, nowS()));
    expect(res.status).toBe(401);
  });

  test("not-allowed user gets an ephemeral answer; hold stays pending", async () => {
    const { plugin, handler } = make({ allowed_users: ["999"] });
    const { ctx } = context();
    const v = plugin.ask(approvalRequest("hold-5"), ctx);
    const mid = await posted("hold-5");
    const res = await handler(click("cp:approve:hold-5", mid, "555"));
    expect(await res.json()).toEqual({ type: 4, data: { content: "You are not allowed to decide on this request.", flags: 64, allowed_mentions: { parse: [] } } });
    expect(await stillPending(v, 10)).toBe(true);
    await handler(click("cp:approve:hold-5", mid, "999"));
    expect(await settledWithin(v)).toMatchObject({ decision: "allow", operator: "discord:999" });
  });

  test("unknown hold id → ephemeral 'no longer pending'", async () => {
    const { handler } = make();
    const res = await handler(click("cp:approve:gone", "1"));
    const body: any = await res.json();
    expect(body).toMatchObject({ type: 4, data: { content: "This request is no longer pending.", flags: 64 } });
  });

  test("duplicate click: first wins, second is told no longer pending", async () => {
    const { plugin, handler } = make();
    const { ctx } = context();
    const v = plugin.ask(approvalRequest("hold-6"), ctx);
    const mid = await posted("hold-6");
    const first: any = await (await handler(click("cp:deny:hold-6", mid, "1"))).json();
    const second: any = await (await handler(click("cp:approve:hold-6", mid, "2"))).json();
    expect(first.type).toBe(7);
    expect(second).toMatchObject({ type: 4, data: { content: "This request is no longer pending." } });
    expect(await settledWithin(v)).toMatchObject({ decision: "deny", operator: "discord:1" });
  });

  test("interaction for another application is refused", async () => {
    const { plugin, handler } = make();
    const { ctx, abort } = context();
    const v = plugin.ask(approvalRequest("hold-7"), ctx);
    const mid = await posted("hold-7");
    const i = discordComponentInteraction({ customId: "cp:approve:hold-7", messageId: mid, applicationId: "999" });
    expect((await handler(discordRequest(keys.privateKey, i, nowS()))).status).toBe(400);
    expect(await stillPending(v, 10)).toBe(true);
    abort();
    await v;
  });

  test("abort → deny and PATCH edits the message, removing the buttons", async () => {
    const { plugin } = make();
    const { ctx, abort } = context();
    const v = plugin.ask(approvalRequest("hold-8"), ctx);
    const mid = await posted("hold-8");
    abort();
    expect(await settledWithin(v)).toEqual({ decision: "deny", reason: "no decision in Discord before the hold ended", approver: "human_approver.oncall" });
    const [p] = await fake.waitFor((c) => c.method.startsWith("PATCH"));
    expect(p!.method).toBe(`PATCH /api/v10/channels/222/messages/${mid}`);
    expect(p!.auth).toBe(`Bot ${TOKEN}`);
    expect(p!.body.components).toEqual([]);
    expect(p!.body.content).toContain("expired or was decided elsewhere");
  });

  test.each([
    ["401 from Discord", "bad-token-not-the-real-one"],
    ["404 unknown channel", TOKEN],
  ])("post failure (%s) → deny without the token in the reason", async (_n, token) => {
    const { plugin } = make(token === TOKEN ? { channel_id: "nope" } : { bot_token: token });
    const { ctx } = context();
    const v = await settledWithin(plugin.ask(approvalRequest("hold-9"), ctx));
    expect(v.decision).toBe("deny");
    expect(v.reason).toMatch(/^could not post the approval request to Discord: HTTP (401|404)/);
    expect(v.reason + d.lines.join("\n")).not.toContain(token);
  });

  test("long hold ids are hashed to fit custom_id (100 characters) and still decide", async () => {
    const { plugin, handler } = make();
    const { ctx } = context();
    const id = "x".repeat(150);
    const v = plugin.ask(approvalRequest(id), ctx);
    const [c] = await fake.waitFor((c) => c.method.startsWith("POST"));
    const customId: string = c!.body.components[0].components[0].custom_id;
    expect(customId.length).toBeLessThanOrEqual(100);
    await handler(click(customId, "900000000000000000"));
    expect((await settledWithin(v)).decision).toBe("allow");
  });

  test("require_approvers: a repeat allow from the same user is refused ephemerally; a deny from them still counts", async () => {
    const { plugin, handler } = make();
    const { ctx } = context();
    const v = plugin.ask(approvalRequest("hold-10"), { ...ctx, approvedBy: ["discord:555"], requireApprovers: 2 });
    const mid = await posted("hold-10");
    expect(fake.calls[0]!.body.content).toContain("Approval 2 of 2");
    expect(await (await handler(click("cp:approve:hold-10", mid, "555"))).json()).toMatchObject({ type: 4, data: { content: "You already approved this request; another approver is needed.", flags: 64 } });
    expect(((await (await handler(click("cp:deny:hold-10", mid, "555"))).json()) as any).type).toBe(7);
    expect(await settledWithin(v)).toMatchObject({ decision: "deny", operator: "discord:555" });
  });

  test("a malformed public key is refused at construction", () => {
    expect(() => make({ application_public_key: "zz" })).toThrow("64 hex characters");
  });
});
