// What must never be logged is never logged: for every channel, drive the
// approve, refused-callback, failed-post and abort paths with a fault injector
// that makes errors echo the URL and headers, capture every log line and
// verdict, and look for each configured secret (and its URL-encoded form).

import { afterEach, expect, test } from "bun:test";
import { humanApproverFactories } from "../../../../app/approvers/human/index.ts";
import type { HumanApproverConfig } from "../../../../app/approvers/human/types.ts";
import type { ApproverVerdict } from "../../../../app/approvers/types.ts";
import {
  approvalRequest, context, deps, discordComponentInteraction, discordKeys, discordRequest, fakeDiscord, fakeSlack, fakeTelegram,
  settledWithin, slackBlockActions, slackRequest, telegramCallbackUpdate, telegramRequest,
} from "./fakes.ts";

const SLACK_TOKEN = "xoxb-9999-SLACKTOKEN-never-log";
const SLACK_SIGNING = "slack-signing-secret-never-log";
const DISCORD_TOKEN = "DISCORD.TOKEN.never-log";
const TG_TOKEN = "4242:TG-TOKEN_never-log";
const TG_SECRET = "tg-webhook-secret-never-log";
const SECRETS = [SLACK_TOKEN, SLACK_SIGNING, DISCORD_TOKEN, TG_TOKEN, TG_SECRET];
const keys = discordKeys();

const stops: (() => void)[] = [];
afterEach(() => stops.splice(0).forEach((s) => s()));

/** A fetch that, for URLs matching `breakOn`, throws an error quoting the whole request. */
function leakyFetch(breakOn: RegExp) {
  return async (url: string, init?: RequestInit) => {
    if (breakOn.test(url)) throw new Error(`connect failed for ${url} with ${JSON.stringify(init?.headers)}`);
    return fetch(url, init);
  };
}

test("no bot token, signing secret or webhook secret appears in any log line or verdict", async () => {
  const slack = fakeSlack(SLACK_TOKEN);
  const discord = fakeDiscord(DISCORD_TOKEN);
  const tg = fakeTelegram(TG_TOKEN);
  stops.push(slack.stop, discord.stop, tg.stop);
  const d = deps({ fetch: leakyFetch(/BROKEN/) });
  const verdicts: ApproverVerdict[] = [];

  const configs: HumanApproverConfig[] = [
    { ref: "human_approver.s", name: "s", channel: "slack", channel_id: "C1", bot_token: SLACK_TOKEN, signing_secret: SLACK_SIGNING, apiBase: slack.url },
    { ref: "human_approver.d", name: "d", channel: "discord", channel_id: "222", bot_token: DISCORD_TOKEN, application_public_key: keys.publicHex, apiBase: discord.url },
    { ref: "human_approver.t", name: "t", channel: "telegram", chat_id: "-1", bot_token: TG_TOKEN, webhook_secret: TG_SECRET, apiBase: tg.url },
  ];
  const plugins = configs.map((c) => humanApproverFactories[c.channel](c, d.deps));
  const [ps, pd, pt] = plugins as [(typeof plugins)[0], (typeof plugins)[0], (typeof plugins)[0]];
  const now = Math.floor(d.clock.now / 1000);

  // Approve paths.
  const vs = ps.ask(approvalRequest("h1"), context().ctx);
  const vd = pd.ask(approvalRequest("h1"), context().ctx);
  const vt = pt.ask(approvalRequest("h1"), context().ctx);
  const [sm] = await slack.waitFor((c) => c.method === "chat.postMessage");
  const [dm] = await discord.waitFor((c) => c.method.startsWith("POST"));
  await tg.waitFor((c) => c.method === "sendMessage");
  // Refused callbacks first (wrong signature / secret), then valid ones.
  await ps.routes!()[0]!.handler(slackRequest("wrong", slackBlockActions({ actionId: "approve", holdId: "h1", ts: "1700000000.000100", channel: "C1" }), now));
  await pd.routes!()[0]!.handler(discordRequest(discordKeys().privateKey, discordComponentInteraction({ customId: "cp:approve:h1", messageId: "1" }), now));
  await pt.routes!()[0]!.handler(telegramRequest("wrong", telegramCallbackUpdate({ data: "cp:a:h1", messageId: 10 })));
  await ps.routes!()[0]!.handler(slackRequest(SLACK_SIGNING, slackBlockActions({ actionId: "approve", holdId: "h1", ts: "1700000000.000100", channel: "C1" }), now));
  await pd.routes!()[0]!.handler(discordRequest(keys.privateKey, discordComponentInteraction({ customId: "cp:approve:h1", messageId: "900000000000000000" }), now));
  await pt.routes!()[0]!.handler(telegramRequest(TG_SECRET, telegramCallbackUpdate({ data: "cp:a:h1", messageId: 10, chatId: -1 })));
  verdicts.push(...(await Promise.all([vs, vd, vt].map((v) => settledWithin(v)))));
  expect(verdicts.map((v) => v.decision)).toEqual(["allow", "allow", "allow"]);
  expect(sm && dm).toBeTruthy();

  // Failed posts where the error quotes URL and headers (token in Authorization or in the path).
  const broken = configs.map((c) => humanApproverFactories[c.channel]({ ...c, apiBase: (c.apiBase ?? "") + "/BROKEN" }, d.deps));
  for (const p of broken) verdicts.push(await settledWithin(p.ask(approvalRequest("h2"), context().ctx)));
  expect(verdicts.slice(3).every((v) => v.decision === "deny" && v.reason.includes("[redacted]"))).toBe(true);

  // Upstreams that echo the token in their error bodies.
  slack.fail.set("chat.postMessage", { status: 200, body: { ok: false, error: `invalid_auth ${SLACK_TOKEN}` } });
  discord.fail.set("POST /api/v10/channels/222/messages", { status: 401, body: { message: `bad token Bot ${DISCORD_TOKEN}`, code: 0 } });
  tg.fail.set("sendMessage", { status: 401, body: { ok: false, error_code: 401, description: `Unauthorized bot${TG_TOKEN}` } });
  for (const p of plugins) verdicts.push(await settledWithin(p.ask(approvalRequest("h3"), context().ctx)));

  // Abort path with failing follow-up edits that echo the request.
  const { ctx, abort } = context();
  slack.fail.clear();
  const va = ps.ask(approvalRequest("h4"), ctx);
  await slack.waitFor((c) => c.method === "chat.postMessage", 3);
  slack.fail.set("chat.update", { status: 500, body: { ok: false, error: `boom ${SLACK_TOKEN}` } });
  abort();
  verdicts.push(await va);
  for (const p of [...plugins, ...broken]) await (p as unknown as { idle(): Promise<void> }).idle();

  const everything = d.lines.join("\n") + "\n" + JSON.stringify(verdicts);
  expect(d.lines.length).toBeGreaterThan(10);
  for (const s of SECRETS) {
    expect(everything).not.toContain(s);
    expect(everything).not.toContain(encodeURIComponent(s));
  }
  for (const p of [...plugins, ...broken]) p.close?.();
});
