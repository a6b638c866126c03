// Discord: a channel message with components; interactions on
// POST /api/approvers/discord/NAME/interactions.
//
//   1. ask → POST /channels/{id}/messages {content, components: [action row
//      with buttons style 3 (success) / 4 (danger), custom_id
//      `cp:approve:<key>` / `cp:deny:<key>`]}, `Authorization: Bot <token>`;
//   2. Discord POSTs interactions signed with the application's Ed25519 key:
//      `X-Signature-Ed25519` over `X-Signature-Timestamp + raw body`; an
//      invalid signature is answered 401, as Discord requires;
//   3. PING (type 1) → {type: 1}; MESSAGE_COMPONENT (type 3) → decide and
//      answer UPDATE_MESSAGE (type 7) without the buttons; "not allowed" and
//      "no longer pending" go back as ephemeral messages (type 4, flags 64);
//   4. abort → PATCH /channels/{id}/messages/{mid} "expired or decided elsewhere".

import { type KeyObject, createPublicKey, verify } from "node:crypto";
import type { ApprovalRequest, ApproverContext, ApproverPlugin, ApproverRoute, ApproverVerdict } from "../types.ts";
import {
  type ChannelAdapter,
  type PostResult,
  ALREADY_APPROVED_TEXT,
  HumanCore,
  NOT_ALLOWED_TEXT,
  NOT_PENDING_TEXT,
  callJson,
  holdKey,
  jsonResponse,
  makeScrubber,
  obj,
  readBody,
  str,
  textResponse,
  truncate,
} from "./core.ts";
import type { DiscordApproverConfig, HumanDeps } from "./types.ts";

export const DISCORD_API = "https://discord.com/api/v10";

/** Interaction types (Discord: Interaction Object → Interaction Type). */
export const InteractionType = { PING: 1, APPLICATION_COMMAND: 2, MESSAGE_COMPONENT: 3 } as const;
/** Interaction callback types. */
export const InteractionCallbackType = { PONG: 1, CHANNEL_MESSAGE_WITH_SOURCE: 4, UPDATE_MESSAGE: 7 } as const;
/** Component types and button styles. */
export const ComponentType = { ACTION_ROW: 1, BUTTON: 2 } as const;
export const ButtonStyle = { SUCCESS: 3, DANGER: 4 } as const;
/** Message flag: only the clicking user sees the message. */
export const MessageFlags = { EPHEMERAL: 1 << 6 } as const;

const CONTENT_MAX = 2000;
const CUSTOM_ID_MAX = 100;
/** Replay window for X-Signature-Timestamp (Discord does not resend old interactions). */
export const DISCORD_MAX_SKEW_S = 5 * 60;

// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the raw 32-byte key follows.
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/** Builds a verify key from the application's public key (64 hex characters). Throws on malformed input. */
export function discordPublicKey(hex: string): KeyObject {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new Error("application_public_key must be 64 hex characters");
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, Buffer.from(hex, "hex")]), format: "der", type: "spki" });
}

export type DiscordSignatureCheck = "ok" | "missing" | "stale" | "bad_signature";

/** node:crypto verify (≈50 µs) rather than @noble/curves (≈800 µs) for the same check. */
export function verifyDiscordSignature(key: KeyObject, headers: Headers, rawBody: string, nowMs: number): DiscordSignatureCheck {
  const sig = headers.get("x-signature-ed25519");
  const ts = headers.get("x-signature-timestamp");
  if (!sig || !ts || !/^[0-9a-fA-F]{128}$/.test(sig)) return "missing";
  if (/^\d{1,12}$/.test(ts) && Math.abs(nowMs / 1000 - Number(ts)) > DISCORD_MAX_SKEW_S) return "stale";
  try {
    return verify(null, Buffer.from(ts + rawBody), key, Buffer.from(sig, "hex")) ? "ok" : "bad_signature";
  } catch {
    return "bad_signature";
  }
}

export function discordComponents(key: string): unknown[] {
  return [
    {
      type: ComponentType.ACTION_ROW,
      components: [
        { type: ComponentType.BUTTON, style: ButtonStyle.SUCCESS, label: "Approve", custom_id: `cp:approve:${key}` },
        { type: ComponentType.BUTTON, style: ButtonStyle.DANGER, label: "Deny", custom_id: `cp:deny:${key}` },
      ],
    },
  ];
}

/** Request text could carry `@everyone` or role mentions: never let it ping anyone. */
const NO_MENTIONS = { parse: [] as string[] };

function withStatus(text: string, status: string): string {
  return truncate(text, CONTENT_MAX - status.length - 4) + "\n\n" + status;
}

export interface DiscordClick {
  key: string;
  decision: "allow" | "deny";
  userId: string;
  userName: string;
  messageId?: string;
  channelId?: string;
}

export function parseDiscordComponent(i: Record<string, unknown>): DiscordClick | undefined {
  const customId = str(obj(i.data)?.custom_id);
  const m = customId ? /^cp:(approve|deny):(.+)$/.exec(customId) : null;
  const user = obj(obj(i.member)?.user) ?? obj(i.user);
  const userId = str(user?.id);
  if (!m || !userId) return undefined;
  return {
    key: m[2]!,
    decision: m[1] === "approve" ? "allow" : "deny",
    userId,
    userName: str(user?.global_name) ?? str(user?.username) ?? userId,
    messageId: str(obj(i.message)?.id),
    channelId: str(i.channel_id) ?? str(obj(i.message)?.channel_id),
  };
}

export interface DiscordRef {
  channelId: string;
  messageId: string;
}

export function createDiscordApprover(cfg: DiscordApproverConfig, deps: HumanDeps): ApproverPlugin {
  const api = (cfg.apiBase ?? DISCORD_API).replace(/\/+$/, "");
  const scrub = makeScrubber([cfg.bot_token]);
  const publicKey = discordPublicKey(cfg.application_public_key);
  const headers = { authorization: `Bot ${cfg.bot_token}`, "user-agent": "DiscordBot (https://github.com/clawpatrol/clawpatrol, 0.1)" };

  const call = (method: "POST" | "PATCH", path: string, body: Record<string, unknown>) =>
    callJson(deps, `${api}${path}`, { method, headers, body }, (status, data) =>
      status >= 200 && status < 300 ? undefined : `HTTP ${status}${typeof data.message === "string" ? ` (${data.message})` : ""}`,
    );

  const adapter: ChannelAdapter<DiscordRef> = {
    label: "Discord",
    async post(_req: ApprovalRequest, key: string, text: string): Promise<PostResult<DiscordRef>> {
      const r = await call("POST", `/channels/${encodeURIComponent(cfg.channel_id)}/messages`, {
        content: truncate(text, CONTENT_MAX),
        components: discordComponents(key),
        allowed_mentions: NO_MENTIONS,
      });
      if (!r.ok) return r;
      const id = str(r.data.id);
      if (!id) return { ok: false, error: "Discord answered without a message id" };
      return { ok: true, ref: { channelId: str(r.data.channel_id) ?? cfg.channel_id, messageId: id } };
    },
    async expire(ref: DiscordRef, text: string, status: string): Promise<void> {
      const r = await call("PATCH", `/channels/${encodeURIComponent(ref.channelId)}/messages/${encodeURIComponent(ref.messageId)}`, {
        content: withStatus(text, status),
        components: [],
        allowed_mentions: NO_MENTIONS,
      });
      if (!r.ok) deps.log.warn("human approver: Discord message edit failed", { approver: cfg.ref, error: scrub(r.error) });
    },
  };

  const allowed = cfg.allowed_users?.length ? new Set(cfg.allowed_users) : undefined;
  const core = new HumanCore<DiscordRef>(cfg.ref, adapter, deps, allowed, scrub);

  const ephemeral = (content: string) =>
    jsonResponse(200, { type: InteractionCallbackType.CHANNEL_MESSAGE_WITH_SOURCE, data: { content, flags: MessageFlags.EPHEMERAL, allowed_mentions: NO_MENTIONS } });

  async function interactions(request: Request): Promise<Response> {
    const raw = await readBody(request);
    if (raw === undefined) return textResponse(413, "payload too large");
    const check = verifyDiscordSignature(publicKey, request.headers, raw, deps.now());
    if (check !== "ok") {
      deps.log.warn("human approver: Discord interaction refused", { approver: cfg.ref, check });
      return textResponse(401, "invalid request signature");
    }
    let i: Record<string, unknown> | undefined;
    try {
      i = obj(JSON.parse(raw));
    } catch {
      i = undefined;
    }
    if (!i) return textResponse(400, "bad interaction");
    if (cfg.application_id && str(i.application_id) !== cfg.application_id) return textResponse(400, "interaction for another application");
    if (i.type === InteractionType.PING) return jsonResponse(200, { type: InteractionCallbackType.PONG });
    if (i.type !== InteractionType.MESSAGE_COMPONENT) return ephemeral("This interaction is not handled here.");
    const click = parseDiscordComponent(i);
    if (!click) return ephemeral(NOT_PENDING_TEXT);
    await core.posted(click.key);
    const out = core.decide(click.key, click.decision, { userId: click.userId, name: click.userName }, "discord", (ref) =>
      click.messageId === undefined || ref.messageId === click.messageId,
    );
    switch (out.kind) {
      case "not_pending":
        return ephemeral(NOT_PENDING_TEXT);
      case "not_allowed":
        return ephemeral(NOT_ALLOWED_TEXT);
      case "already_approved":
        return ephemeral(ALREADY_APPROVED_TEXT);
      case "decided": {
        const status = `${out.verdict.decision === "allow" ? "✅ Approved" : "⛔ Denied"} by <@${click.userId}>`;
        return jsonResponse(200, {
          type: InteractionCallbackType.UPDATE_MESSAGE,
          data: { content: withStatus(out.hold.text, status), components: [], allowed_mentions: NO_MENTIONS },
        });
      }
    }
  }

  return {
    ref: cfg.ref,
    type: "human_approver",
    ask: (req: ApprovalRequest, ctx: ApproverContext): Promise<ApproverVerdict> => core.ask(req, ctx, holdKey(req.id, "cp:approve:", CUSTOM_ID_MAX)),
    routes: (): ApproverRoute[] => [{ method: "POST", path: `/api/approvers/discord/${encodeURIComponent(cfg.name)}/interactions`, handler: interactions }],
    close: () => core.closeAll(),
    idle: () => core.idle(),
  } as ApproverPlugin & { idle(): Promise<void> };
}
