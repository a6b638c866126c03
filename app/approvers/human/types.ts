// Configuration and dependencies of a `human_approver` (Slack, Discord,
// Telegram). The registry resolves credential references before it builds a
// config: `bot_token`, `signing_secret` and `webhook_secret` arrive here as
// plain strings and must never reach a log line, a verdict or an error text.

import type { ApprovalRequest } from "../types.ts";

export type HumanChannel = "slack" | "discord" | "telegram";

interface HumanCommon {
  /** `human_approver.NAME` */
  ref: string;
  /** NAME: also the path segment of this approver's callback route. */
  name: string;
  /** Chat user ids allowed to decide; absent or empty means anyone who can see the message. */
  allowed_users?: string[];
  /** The service's API root; tests point it at a fake. */
  apiBase?: string;
}

export interface SlackApproverConfig extends HumanCommon {
  channel: "slack";
  channel_id: string;
  /** xoxb-… bot token (credential value). */
  bot_token: string;
  /** App signing secret, verifies interactivity callbacks. */
  signing_secret: string;
}

export interface DiscordApproverConfig extends HumanCommon {
  channel: "discord";
  channel_id: string;
  bot_token: string;
  /** The application's Ed25519 public key, 64 hex characters. */
  application_public_key: string;
  /** When set, interactions for another application are refused. */
  application_id?: string;
}

export interface TelegramApproverConfig extends HumanCommon {
  channel: "telegram";
  chat_id: string;
  bot_token: string;
  /** `webhook` (default) receives callback queries on our route; `poll` uses getUpdates. */
  mode?: "webhook" | "poll";
  /** Required in webhook mode: the `secret_token` given to setWebhook. */
  webhook_secret?: string;
  /** getUpdates long-poll timeout in seconds (default 25). */
  poll_timeout?: number;
}

export type HumanApproverConfig = SlackApproverConfig | DiscordApproverConfig | TelegramApproverConfig;

export interface HumanLog {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export interface HumanDeps {
  /** Milliseconds since the epoch (callback timestamp checks). */
  now: () => number;
  fetch: (input: string, init?: RequestInit) => Promise<Response>;
  log: HumanLog;
  /** The approver's `message` template, rendered; a plain summary when absent. */
  render?: (req: ApprovalRequest) => string;
  /** Backoff between failed long polls and webhook registrations (Telegram); defaults to a timer. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** `gateway { public_url }`: Telegram's webhook mode registers this + its route with setWebhook. */
  publicUrl?: string;
  /**
   * What each Telegram bot was last registered with (setWebhook/deleteWebhook),
   * so a reload that keeps the settings does not register again. Default: one map per process.
   */
  telegramRegistrations?: Map<string, string>;
}
