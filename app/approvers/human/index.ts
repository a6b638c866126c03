// `human_approver` blocks, dispatched by their `channel` setting.
//
// The registry resolves credential references (bot_token, signing_secret,
// webhook_secret) to their values, checks the block with
// `parseHumanApproverSettings`, then builds the plugin with
// `humanApproverFactories[config.channel](config, deps)` and mounts
// `plugin.routes()` on the public API.

import type { ApproverPlugin } from "../types.ts";
import { createDiscordApprover, discordPublicKey } from "./discord.ts";
import { createSlackApprover } from "./slack.ts";
import { createTelegramApprover } from "./telegram.ts";
import type { HumanApproverConfig, HumanChannel, HumanDeps } from "./types.ts";

export type { HumanApproverConfig, HumanChannel, HumanDeps } from "./types.ts";
export { defaultRender } from "./core.ts";

export const humanApproverFactories: Record<HumanChannel, (cfg: HumanApproverConfig, deps: HumanDeps) => ApproverPlugin> = {
  slack: (cfg, deps) => {
    if (cfg.channel !== "slack") throw new Error(`${cfg.ref}: channel is ${cfg.channel}, not slack`);
    return createSlackApprover(cfg, deps);
  },
  discord: (cfg, deps) => {
    if (cfg.channel !== "discord") throw new Error(`${cfg.ref}: channel is ${cfg.channel}, not discord`);
    return createDiscordApprover(cfg, deps);
  },
  telegram: (cfg, deps) => {
    if (cfg.channel !== "telegram") throw new Error(`${cfg.ref}: channel is ${cfg.channel}, not telegram`);
    return createTelegramApprover(cfg, deps);
  },
};

export const HUMAN_CHANNELS = Object.keys(humanApproverFactories) as HumanChannel[];

/** Settings every channel accepts besides its own (`message`, `timeout`… belong to the hub). */
const COMMON = ["channel", "allowed_users", "api_base"];
const CHANNEL_SETTINGS: Record<HumanChannel, { required: string[]; optional: string[] }> = {
  slack: { required: ["channel_id", "bot_token", "signing_secret"], optional: [] },
  discord: { required: ["channel_id", "bot_token", "application_public_key"], optional: ["application_id"] },
  telegram: { required: ["chat_id", "bot_token"], optional: ["webhook_secret", "mode", "poll_timeout"] },
};

/**
 * Channel attribute names as written in HCL, for `registerChannelAttributes`
 * in ../config.ts (so unknown attributes are load-time errors with a line).
 */
export const HUMAN_CHANNEL_ATTRIBUTES: Record<HumanChannel, readonly string[]> = {
  slack: [...COMMON.slice(1), ...CHANNEL_SETTINGS.slack.required, ...CHANNEL_SETTINGS.slack.optional],
  discord: [...COMMON.slice(1), ...CHANNEL_SETTINGS.discord.required, ...CHANNEL_SETTINGS.discord.optional],
  telegram: [...COMMON.slice(1), ...CHANNEL_SETTINGS.telegram.required, ...CHANNEL_SETTINGS.telegram.optional],
};

export type ParsedHumanConfig = { ok: true; config: HumanApproverConfig } | { ok: false; error: string };

/**
 * Checks the channel settings of a `human_approver` block whose credential
 * references are already resolved to strings. `hubKeys` are settings the hub
 * owns (message, timeout, on_timeout, require_approvers…): accepted, ignored
 * here. Unknown keys are an error, so every accepted setting has an effect.
 * Errors name settings, never values.
 */
export function parseHumanApproverSettings(
  ref: string,
  name: string,
  settings: Record<string, unknown>,
  hubKeys: readonly string[] = [],
): ParsedHumanConfig {
  const channel = settings.channel;
  if (typeof channel !== "string" || !(HUMAN_CHANNELS as string[]).includes(channel)) {
    return { ok: false, error: `${ref}: channel must be one of ${HUMAN_CHANNELS.join(", ")}` };
  }
  const ch = channel as HumanChannel;
  const spec = CHANNEL_SETTINGS[ch];
  const known = new Set([...COMMON, ...spec.required, ...spec.optional, ...hubKeys]);
  for (const k of Object.keys(settings)) if (!known.has(k)) return { ok: false, error: `${ref}: unknown setting "${k}" for channel ${ch}` };
  const s: Record<string, string> = {};
  for (const k of [...spec.required, ...spec.optional]) {
    const v = settings[k];
    if (v === undefined) continue;
    if (typeof v === "number" && k === "poll_timeout") continue;
    if (typeof v !== "string" && typeof v !== "number") return { ok: false, error: `${ref}: ${k} must be a string` };
    if (String(v) === "") return { ok: false, error: `${ref}: ${k} must not be empty` };
    s[k] = String(v);
  }
  for (const k of spec.required) if (s[k] === undefined) return { ok: false, error: `${ref}: ${k} is required for channel ${ch}` };
  const au = settings.allowed_users;
  if (au !== undefined && (!Array.isArray(au) || !au.every((u) => typeof u === "string" || typeof u === "number"))) {
    return { ok: false, error: `${ref}: allowed_users must be a list of chat user ids` };
  }
  const common = {
    ref,
    name,
    ...(au ? { allowed_users: (au as (string | number)[]).map(String) } : {}),
    ...(typeof settings.api_base === "string" ? { apiBase: settings.api_base } : {}),
  };
  switch (ch) {
    case "slack":
      return { ok: true, config: { ...common, channel: "slack", channel_id: s.channel_id!, bot_token: s.bot_token!, signing_secret: s.signing_secret! } };
    case "discord": {
      try {
        discordPublicKey(s.application_public_key!);
      } catch {
        return { ok: false, error: `${ref}: application_public_key must be 64 hex characters` };
      }
      return {
        ok: true,
        config: {
          ...common,
          channel: "discord",
          channel_id: s.channel_id!,
          bot_token: s.bot_token!,
          application_public_key: s.application_public_key!,
          ...(s.application_id ? { application_id: s.application_id } : {}),
        },
      };
    }
    case "telegram": {
      const mode = settings.mode ?? "webhook";
      if (mode !== "webhook" && mode !== "poll") return { ok: false, error: `${ref}: mode must be "webhook" or "poll"` };
      if (mode === "webhook" && !s.webhook_secret) return { ok: false, error: `${ref}: webhook_secret is required unless mode = "poll"` };
      if (mode === "poll" && s.webhook_secret) return { ok: false, error: `${ref}: webhook_secret has no effect with mode = "poll"` };
      // setWebhook's secret_token: Telegram refuses anything else (the value is never named).
      if (s.webhook_secret !== undefined && !/^[A-Za-z0-9_-]{1,256}$/.test(s.webhook_secret)) {
        return { ok: false, error: `${ref}: webhook_secret must be 1-256 characters of A-Z, a-z, 0-9, _ and -` };
      }
      const pt = settings.poll_timeout;
      if (pt !== undefined && (mode !== "poll" || typeof pt !== "number" || !Number.isInteger(pt) || pt < 0 || pt > 50)) {
        return { ok: false, error: `${ref}: poll_timeout must be whole seconds 0-50, with mode = "poll"` };
      }
      return {
        ok: true,
        config: {
          ...common,
          channel: "telegram",
          chat_id: s.chat_id!,
          bot_token: s.bot_token!,
          mode,
          ...(s.webhook_secret ? { webhook_secret: s.webhook_secret } : {}),
          ...(typeof pt === "number" ? { poll_timeout: pt } : {}),
        },
      };
    }
  }
}
