import { describe, expect, test } from "bun:test";
import { HUMAN_CHANNELS, humanApproverFactories, parseHumanApproverSettings } from "../../../../app/approvers/human/index.ts";
import { holdKey, makeScrubber, safeEqual } from "../../../../app/approvers/human/core.ts";
import { deps, discordKeys } from "./fakes.ts";

const pk = discordKeys().publicHex;
const ok = (s: Record<string, unknown>, hub: string[] = []) => parseHumanApproverSettings("human_approver.oncall", "oncall", s, hub);

describe("parseHumanApproverSettings", () => {
  test.each([
    [{ channel: "slack", channel_id: "C1", bot_token: "xoxb-1", signing_secret: "s" }, { channel: "slack", channel_id: "C1" }],
    [{ channel: "discord", channel_id: "1", bot_token: "t", application_public_key: pk, application_id: "9", allowed_users: ["5", 6] }, { channel: "discord", application_id: "9", allowed_users: ["5", "6"] }],
    [{ channel: "telegram", chat_id: -100, bot_token: "t", webhook_secret: "w" }, { channel: "telegram", chat_id: "-100", mode: "webhook" }],
    [{ channel: "telegram", chat_id: "1", bot_token: "t", mode: "poll", poll_timeout: 10 }, { mode: "poll", poll_timeout: 10 }],
  ])("accepts %j", (settings, expected) => {
    const r = ok(settings);
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.config).toMatchObject({ ref: "human_approver.oncall", name: "oncall", ...expected });
  });

  test.each([
    [{ channel: "irc" }, "channel must be one of slack, discord, telegram"],
    [{ channel: "slack", channel_id: "C1", bot_token: "t" }, "signing_secret is required"],
    [{ channel: "slack", channel_id: "C1", bot_token: "t", signing_secret: "s", chat_id: "x" }, 'unknown setting "chat_id"'],
    [{ channel: "discord", channel_id: "1", bot_token: "t", application_public_key: "abc" }, "64 hex characters"],
    [{ channel: "telegram", chat_id: "1", bot_token: "t" }, "webhook_secret is required"],
    [{ channel: "telegram", chat_id: "1", bot_token: "t", mode: "poll", webhook_secret: "w" }, "no effect"],
    [{ channel: "telegram", chat_id: "1", bot_token: "t", webhook_secret: "w", poll_timeout: 5 }, "poll_timeout"],
    [{ channel: "telegram", chat_id: "1", bot_token: "t", mode: "push" }, "mode must be"],
    [{ channel: "telegram", chat_id: "1", bot_token: "t", webhook_secret: "no spaces allowed" }, "webhook_secret must be 1-256 characters"],
    [{ channel: "slack", channel_id: "C1", bot_token: "", signing_secret: "s" }, "bot_token must not be empty"],
    [{ channel: "slack", channel_id: "C1", bot_token: "t", signing_secret: "s", allowed_users: "U1" }, "allowed_users"],
  ])("refuses %j", (settings, message) => {
    const r = ok(settings);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toContain(message);
  });

  test("hub-owned settings are accepted; errors never quote values", () => {
    expect(ok({ channel: "slack", channel_id: "C", bot_token: "xoxb-SECRET", signing_secret: "s", message: "m", timeout: "5m" }, ["message", "timeout"]).ok).toBe(true);
    const r = ok({ channel: "discord", channel_id: "1", bot_token: "SECRET-TOKEN", application_public_key: "SECRET-TOKEN" });
    expect(!r.ok && !r.error.includes("SECRET")).toBe(true);
  });
});

test("factories exist for every channel and build plugins with the right ref and type", () => {
  expect(HUMAN_CHANNELS.sort()).toEqual(["discord", "slack", "telegram"]);
  const { deps: d } = deps();
  const p = humanApproverFactories.slack({ ref: "human_approver.x", name: "x", channel: "slack", channel_id: "C", bot_token: "t", signing_secret: "s" }, d);
  expect([p.ref, p.type]).toEqual(["human_approver.x", "human_approver"]);
  expect(() => humanApproverFactories.discord({ ref: "human_approver.x", name: "x", channel: "slack", channel_id: "C", bot_token: "t", signing_secret: "s" }, d)).toThrow("not discord");
});

describe("core helpers", () => {
  test("holdKey keeps short ids, hashes long ones and ids that look like hashes", () => {
    expect(holdKey("abc", "cp:a:", 64)).toBe("abc");
    const long = holdKey("z".repeat(100), "cp:a:", 64);
    expect(long).toMatch(/^h~[\w-]{32}$/);
    expect(holdKey("z".repeat(100), "cp:a:", 64)).toBe(long);
    expect(holdKey("h~abc", "cp:a:", 64)).not.toBe("h~abc");
  });
  test("scrubber removes secrets and their URL-encoded forms; short values are left alone", () => {
    const scrub = makeScrubber(["a/b+c secret", "xy", undefined]);
    expect(scrub("x a/b+c secret y " + encodeURIComponent("a/b+c secret") + " xy")).toBe("x [redacted] y [redacted] xy");
  });
  test("safeEqual", () => {
    expect(safeEqual("abc", "abc")).toBe(true);
    expect(safeEqual("abc", "abd")).toBe(false);
    expect(safeEqual("abc", "abcd")).toBe(false);
  });
});
