// Slack: chat.postMessage with Block Kit buttons; interactivity callbacks on
// POST /api/approvers/slack/NAME/interactions.
//
//   1. ask → chat.postMessage {channel, text, blocks: [section, reason input, actions]}
//      buttons action_id `approve`/`deny`, value = hold id;
//   2. Slack POSTs `payload=<json>` (block_actions) signed with the app's
//      signing secret: `v0=` + HMAC-SHA256(secret, "v0:" + ts + ":" + body);
//      a timestamp more than five minutes away is refused (replay);
//   3. we answer 200 at once, then chat.update the message to show who
//      decided (or chat.postEphemeral "not allowed" / "no longer pending");
//   4. abort → chat.update "expired or decided elsewhere".

import { createHmac } from "node:crypto";
import type { ApprovalRequest, ApproverContext, ApproverPlugin, ApproverRoute, ApproverVerdict } from "../types.ts";
import {
  type ChannelAdapter,
  type PostResult,
  ALREADY_APPROVED_TEXT,
  HumanCore,
  NOT_ALLOWED_TEXT,
  NOT_PENDING_TEXT,
  callJson,
  makeScrubber,
  obj,
  readBody,
  safeEqual,
  str,
  textResponse,
  truncate,
} from "./core.ts";
import type { HumanDeps, SlackApproverConfig } from "./types.ts";

export const SLACK_API = "https://slack.com/api";
/** Slack: "verify the request timestamp is within five minutes of local time". */
export const SLACK_MAX_SKEW_S = 5 * 60;
export const SLACK_REASON_BLOCK = "cp_reason";
export const SLACK_ACTIONS_BLOCK = "cp_actions";
/** Section text is limited to 3000 characters. */
const SECTION_MAX = 2900;

export interface SlackRef {
  channel: string;
  ts: string;
}

export type SlackSignatureCheck = "ok" | "missing" | "stale" | "bad_signature";

/** Checks `X-Slack-Signature` over the raw body. `nowMs` is passed in. */
export function verifySlackSignature(secret: string, headers: Headers, rawBody: string, nowMs: number): SlackSignatureCheck {
  const ts = headers.get("x-slack-request-timestamp");
  const sig = headers.get("x-slack-signature");
  if (!ts || !sig || !/^\d{1,12}$/.test(ts)) return "missing";
  if (Math.abs(nowMs / 1000 - Number(ts)) > SLACK_MAX_SKEW_S) return "stale";
  const expected = "v0=" + createHmac("sha256", secret).update(`v0:${ts}:${rawBody}`).digest("hex");
  return safeEqual(expected, sig) ? "ok" : "bad_signature";
}

/** Slack mrkdwn: only &, < and > need escaping. */
export function slackEscape(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export function slackBlocks(text: string, holdId: string): unknown[] {
  return [
    { type: "section", text: { type: "mrkdwn", text: truncate(slackEscape(text), SECTION_MAX) } },
    {
      type: "input",
      block_id: SLACK_REASON_BLOCK,
      optional: true,
      label: { type: "plain_text", text: "Reason (optional)" },
      element: { type: "plain_text_input", action_id: "reason", placeholder: { type: "plain_text", text: "Why approve or deny" } },
    },
    {
      type: "actions",
      block_id: SLACK_ACTIONS_BLOCK,
      elements: [
        { type: "button", action_id: "approve", style: "primary", text: { type: "plain_text", text: "Approve" }, value: holdId },
        { type: "button", action_id: "deny", style: "danger", text: { type: "plain_text", text: "Deny" }, value: holdId },
      ],
    },
  ];
}

function statusBlocks(text: string, status: string): unknown[] {
  return [
    { type: "section", text: { type: "mrkdwn", text: truncate(slackEscape(text), SECTION_MAX) } },
    { type: "context", elements: [{ type: "mrkdwn", text: truncate(status, 2900) }] },
  ];
}

/** The parts of a block_actions payload we use. */
export interface SlackClick {
  holdId: string;
  decision: "allow" | "deny";
  userId: string;
  userName: string;
  channel?: string;
  messageTs?: string;
  reason?: string;
}

/** Parses the form body; undefined for anything that is not one of our button clicks. */
export function parseSlackInteraction(rawBody: string): SlackClick | undefined {
  const payloadText = new URLSearchParams(rawBody).get("payload");
  if (!payloadText) return undefined;
  let p: Record<string, unknown> | undefined;
  try {
    p = obj(JSON.parse(payloadText));
  } catch {
    return undefined;
  }
  if (!p || p.type !== "block_actions") return undefined;
  const actions = Array.isArray(p.actions) ? p.actions : [];
  const action = actions.map(obj).find((a) => a && (a.action_id === "approve" || a.action_id === "deny"));
  const user = obj(p.user);
  const holdId = str(action?.value);
  const userId = str(user?.id);
  if (!action || !holdId || !userId) return undefined;
  const container = obj(p.container);
  const values = obj(obj(p.state)?.values);
  const reason = str(obj(obj(values?.[SLACK_REASON_BLOCK])?.reason)?.value);
  return {
    holdId,
    decision: action.action_id === "approve" ? "allow" : "deny",
    userId,
    userName: str(user?.username) ?? str(user?.name) ?? userId,
    channel: str(container?.channel_id) ?? str(obj(p.channel)?.id),
    messageTs: str(container?.message_ts) ?? str(obj(p.message)?.ts),
    reason: reason ?? undefined,
  };
}

export function createSlackApprover(cfg: SlackApproverConfig, deps: HumanDeps): ApproverPlugin {
  const api = (cfg.apiBase ?? SLACK_API).replace(/\/+$/, "");
  const scrub = makeScrubber([cfg.bot_token, cfg.signing_secret]);
  const auth = { authorization: `Bearer ${cfg.bot_token}` };

  const call = (method: string, body: Record<string, unknown>) =>
    callJson(deps, `${api}/${method}`, { method: "POST", headers: auth, body }, (status, data) =>
      status !== 200 ? `HTTP ${status}${data.error ? ` (${str(data.error)})` : ""}` : data.ok === true ? undefined : `Slack error ${str(data.error) ?? "unknown"}`,
    );

  const followUp = async (method: string, body: Record<string, unknown>) => {
    const r = await call(method, body);
    if (!r.ok) deps.log.warn(`human approver: Slack ${method} failed`, { approver: cfg.ref, error: scrub(r.error) });
  };

  const adapter: ChannelAdapter<SlackRef> = {
    label: "Slack",
    async post(req: ApprovalRequest, key: string, text: string): Promise<PostResult<SlackRef>> {
      const r = await call("chat.postMessage", { channel: cfg.channel_id, text: truncate(text, 3000), blocks: slackBlocks(text, key), unfurl_links: false, unfurl_media: false });
      if (!r.ok) return r;
      const ts = str(r.data.ts);
      if (!ts) return { ok: false, error: "Slack answered without a message ts" };
      return { ok: true, ref: { channel: str(r.data.channel) ?? cfg.channel_id, ts } };
    },
    async expire(ref: SlackRef, text: string, status: string): Promise<void> {
      await followUp("chat.update", { channel: ref.channel, ts: ref.ts, text: truncate(`${text}\n\n${status}`, 3000), blocks: statusBlocks(text, status) });
    },
  };

  const allowed = cfg.allowed_users?.length ? new Set(cfg.allowed_users) : undefined;
  const core = new HumanCore<SlackRef>(cfg.ref, adapter, deps, allowed, scrub);

  async function interactions(request: Request): Promise<Response> {
    const raw = await readBody(request);
    if (raw === undefined) return textResponse(413, "payload too large");
    const check = verifySlackSignature(cfg.signing_secret, request.headers, raw, deps.now());
    if (check !== "ok") {
      deps.log.warn("human approver: Slack callback refused", { approver: cfg.ref, check });
      return textResponse(401, "invalid signature");
    }
    const click = parseSlackInteraction(raw);
    if (!click) return textResponse(200, ""); // another interaction type (e.g. typing in the reason box)
    const ephemeral = (text: string) => {
      if (click.channel) core.track(followUp("chat.postEphemeral", { channel: click.channel, user: click.userId, text }));
    };
    await core.posted(click.holdId);
    const out = core.decide(click.holdId, click.decision, { userId: click.userId, name: click.userName, reason: click.reason }, "slack", (ref) =>
      click.channel === undefined || click.messageTs === undefined || (ref.channel === click.channel && ref.ts === click.messageTs),
    );
    switch (out.kind) {
      case "not_pending":
        ephemeral(NOT_PENDING_TEXT);
        break;
      case "not_allowed":
        ephemeral(NOT_ALLOWED_TEXT);
        break;
      case "already_approved":
        ephemeral(ALREADY_APPROVED_TEXT);
        break;
      case "decided": {
        const status = `${out.verdict.decision === "allow" ? ":white_check_mark: Approved" : ":no_entry: Denied"} by <@${click.userId}>${click.reason?.trim() ? `: ${slackEscape(click.reason.trim())}` : ""}`;
        const hold = out.hold;
        core.track(
          hold.whenPosted.then((ref) =>
            ref ? followUp("chat.update", { channel: ref.channel, ts: ref.ts, text: truncate(`${hold.text}\n\n${status}`, 3000), blocks: statusBlocks(hold.text, status) }) : undefined,
          ),
        );
        break;
      }
    }
    return textResponse(200, "");
  }

  return {
    ref: cfg.ref,
    type: "human_approver",
    ask: (req: ApprovalRequest, ctx: ApproverContext): Promise<ApproverVerdict> => core.ask(req, ctx, req.id),
    routes: (): ApproverRoute[] => [{ method: "POST", path: `/api/approvers/slack/${encodeURIComponent(cfg.name)}/interactions`, handler: interactions }],
    close: () => core.closeAll(),
    // Not part of the contract: lets tests and shutdown wait for follow-up calls.
    idle: () => core.idle(),
  } as ApproverPlugin & { idle(): Promise<void> };
}
