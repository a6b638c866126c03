// Telegram: sendMessage with an inline keyboard; callback queries arrive by
// webhook (POST /api/approvers/telegram/NAME/webhook, checked against the
// `X-Telegram-Bot-Api-Secret-Token` given to setWebhook) or by long polling
// (getUpdates), never both.
//
//   1. ask → sendMessage {chat_id, text, reply_markup: {inline_keyboard:
//      [[Approve `cp:a:<key>`, Deny `cp:d:<key>`]]}} (callback_data ≤ 64 bytes);
//   2. a callback_query → decide → answerCallbackQuery (a toast for the
//      clicking user) and editMessageText without the keyboard;
//   3. poll mode: the getUpdates loop runs only while holds are pending
//      (started by the first, stopped by the last and by close), confirming
//      updates through `offset`;
//   4. abort → editMessageText "expired or decided elsewhere";
//   0. at start, register with Telegram: webhook mode calls setWebhook {url:
//      public_url + our route, secret_token, allowed_updates:
//      ["callback_query"]}; poll mode calls deleteWebhook first (Telegram
//      refuses getUpdates while a webhook is set). A reload that keeps the
//      same settings does not register again; failures are retried with
//      backoff, logged (never the token) and shown by health().

import { createHash } from "node:crypto";
import type { ApprovalRequest, ApproverContext, ApproverHealth, ApproverPlugin, ApproverRoute, ApproverVerdict } from "../types.ts";
import {
  type ChannelAdapter,
  type PostResult,
  ALREADY_APPROVED_TEXT,
  HumanCore,
  NOT_ALLOWED_TEXT,
  NOT_PENDING_TEXT,
  callJson,
  holdKey,
  makeScrubber,
  obj,
  readBody,
  safeEqual,
  str,
  textResponse,
  truncate,
} from "./core.ts";
import type { HumanDeps, TelegramApproverConfig } from "./types.ts";

export const TELEGRAM_API = "https://api.telegram.org";
/** Bot API: callback_data is 1-64 bytes. */
export const CALLBACK_DATA_MAX = 64;
const TEXT_MAX = 4096;
export const DEFAULT_POLL_TIMEOUT_S = 25;
const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;

export interface TelegramRef {
  chatId: string;
  messageId: number;
}

export function telegramKeyboard(key: string): unknown {
  return {
    inline_keyboard: [
      [
        { text: "✅ Approve", callback_data: `cp:a:${key}` },
        { text: "⛔ Deny", callback_data: `cp:d:${key}` },
      ],
    ],
  };
}

export interface TelegramClick {
  queryId: string;
  key?: string;
  decision?: "allow" | "deny";
  userId: string;
  userName: string;
  chatId?: string;
  messageId?: number;
}

/** The callback_query of an Update; undefined for other updates. */
export function parseTelegramCallback(update: unknown): TelegramClick | undefined {
  const q = obj(obj(update)?.callback_query);
  const queryId = str(q?.id);
  const from = obj(q?.from);
  const userId = str(from?.id);
  if (!q || !queryId || !userId) return undefined;
  const data = str(q.data);
  const m = data ? /^cp:([ad]):(.+)$/.exec(data) : null;
  const message = obj(q.message);
  const messageId = message?.message_id;
  return {
    queryId,
    key: m?.[2],
    decision: m ? (m[1] === "a" ? "allow" : "deny") : undefined,
    userId,
    userName: str(from?.username) ? `@${str(from?.username)}` : (str(from?.first_name) ?? userId),
    chatId: str(obj(message?.chat)?.id),
    messageId: typeof messageId === "number" ? messageId : undefined,
  };
}

function withStatus(text: string, status: string): string {
  return truncate(text, TEXT_MAX - status.length - 4) + "\n\n" + status;
}

/** Bot API: secret_token is 1-256 of A-Z, a-z, 0-9, _ and -. */
const SECRET_TOKEN = /^[A-Za-z0-9_-]{1,256}$/;

/** What each bot was last registered with, across reloads (one process). */
const processRegistrations = new Map<string, string>();

export function telegramWebhookPath(name: string): string {
  return `/api/approvers/telegram/${encodeURIComponent(name)}/webhook`;
}

const defaultSleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
  });

export function createTelegramApprover(cfg: TelegramApproverConfig, deps: HumanDeps): ApproverPlugin {
  const api = (cfg.apiBase ?? TELEGRAM_API).replace(/\/+$/, "");
  const mode = cfg.mode ?? "webhook";
  if (mode === "webhook" && !cfg.webhook_secret) throw new Error(`${cfg.ref}: webhook mode needs webhook_secret`);
  if (mode === "webhook" && !SECRET_TOKEN.test(cfg.webhook_secret ?? "")) {
    throw new Error(`${cfg.ref}: webhook_secret must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's secret_token)`);
  }
  const scrub = makeScrubber([cfg.bot_token, cfg.webhook_secret]);
  const pollTimeout = cfg.poll_timeout ?? DEFAULT_POLL_TIMEOUT_S;
  const sleep = deps.sleep ?? defaultSleep;

  const call = (method: string, body: Record<string, unknown>, signal?: AbortSignal) =>
    callJson(deps, `${api}/bot${cfg.bot_token}/${method}`, { method: "POST", headers: {}, body, signal }, (status, data) =>
      data.ok === true && status === 200
        ? undefined
        : `Telegram error ${str(data.error_code) ?? `HTTP ${status}`}${typeof data.description === "string" ? ` (${data.description})` : ""}`,
    );

  const followUp = async (method: string, body: Record<string, unknown>) => {
    const r = await call(method, body);
    if (!r.ok) deps.log.warn(`human approver: Telegram ${method} failed`, { approver: cfg.ref, error: scrub(r.error) });
  };

  const adapter: ChannelAdapter<TelegramRef> = {
    label: "Telegram",
    async post(_req: ApprovalRequest, key: string, text: string): Promise<PostResult<TelegramRef>> {
      const r = await call("sendMessage", { chat_id: cfg.chat_id, text: truncate(text, TEXT_MAX), reply_markup: telegramKeyboard(key), link_preview_options: { is_disabled: true } });
      if (!r.ok) return r;
      const msg = obj(r.data.result);
      const messageId = msg?.message_id;
      if (typeof messageId !== "number") return { ok: false, error: "Telegram answered without a message_id" };
      return { ok: true, ref: { chatId: str(obj(msg?.chat)?.id) ?? cfg.chat_id, messageId } };
    },
    async expire(ref: TelegramRef, text: string, status: string): Promise<void> {
      await followUp("editMessageText", { chat_id: ref.chatId, message_id: ref.messageId, text: withStatus(text, status) });
    },
  };

  const allowed = cfg.allowed_users?.length ? new Set(cfg.allowed_users) : undefined;
  const core = new HumanCore<TelegramRef>(cfg.ref, adapter, deps, allowed, scrub);

  /** One update, from the webhook or getUpdates. Answers and edits run in the background. */
  async function handleUpdate(update: unknown): Promise<void> {
    const click = parseTelegramCallback(update);
    if (!click) return;
    const answer = (text: string, alert = false) =>
      core.track(followUp("answerCallbackQuery", { callback_query_id: click.queryId, text, ...(alert ? { show_alert: true } : {}) }));
    if (!click.key || !click.decision) return void answer(NOT_PENDING_TEXT);
    await core.posted(click.key);
    const out = core.decide(click.key, click.decision, { userId: click.userId, name: click.userName }, "telegram", (ref) =>
      click.chatId === undefined || click.messageId === undefined || (ref.chatId === click.chatId && ref.messageId === click.messageId),
    );
    switch (out.kind) {
      case "not_pending":
        return answer(NOT_PENDING_TEXT);
      case "not_allowed":
        return answer(NOT_ALLOWED_TEXT, true);
      case "already_approved":
        return answer(ALREADY_APPROVED_TEXT, true);
      case "decided": {
        const approved = out.verdict.decision === "allow";
        answer(approved ? "Approved" : "Denied");
        const status = `${approved ? "✅ Approved" : "⛔ Denied"} by ${click.userName}`;
        const hold = out.hold;
        core.track(
          hold.whenPosted.then((ref) =>
            ref ? followUp("editMessageText", { chat_id: ref.chatId, message_id: ref.messageId, text: withStatus(hold.text, status) }) : undefined,
          ),
        );
        return;
      }
    }
  }

  async function webhook(request: Request): Promise<Response> {
    const secret = request.headers.get("x-telegram-bot-api-secret-token");
    if (!secret || !safeEqual(secret, cfg.webhook_secret ?? "")) {
      deps.log.warn("human approver: Telegram webhook refused", { approver: cfg.ref, check: secret ? "bad_secret" : "missing" });
      return textResponse(401, "invalid secret token");
    }
    const raw = await readBody(request);
    if (raw === undefined) return textResponse(413, "payload too large");
    let update: unknown;
    try {
      update = JSON.parse(raw);
    } catch {
      return textResponse(400, "bad update");
    }
    await handleUpdate(update);
    return textResponse(200, "");
  }

  // 0. Registration with Telegram, retried until it succeeds or we close.
  let closed = false;
  const lifetime = new AbortController();
  const registrations = deps.telegramRegistrations ?? processRegistrations;
  const webhookUrl = deps.publicUrl ? `${deps.publicUrl.replace(/\/+$/, "")}${telegramWebhookPath(cfg.name)}` : undefined;
  const registration: { method: string; body: Record<string, unknown> } | undefined =
    mode === "poll"
      ? { method: "deleteWebhook", body: { drop_pending_updates: false } }
      : webhookUrl
        ? { method: "setWebhook", body: { url: webhookUrl, secret_token: cfg.webhook_secret, allowed_updates: ["callback_query"] } }
        : undefined;
  const botKey = createHash("sha256").update(`${api}\0${cfg.bot_token}`).digest("hex");
  const wanted = registration ? createHash("sha256").update(`${registration.method}\0${JSON.stringify(registration.body)}`).digest("hex") : "";
  let health: ApproverHealth = registration
    ? { status: "starting", detail: `${registration.method} pending` }
    : { status: "error", detail: "webhook mode without gateway { public_url }: setWebhook was not called" };
  if (!registration) deps.log.warn("human approver: Telegram webhook not registered (no public_url)", { approver: cfg.ref });

  async function register(signal: AbortSignal, answered: () => void): Promise<void> {
    if (!registration) return;
    const done = registration.method === "setWebhook" ? `webhook set to ${webhookUrl}` : "webhook deleted for long polling";
    let backoff = BACKOFF_MIN_MS;
    while (!signal.aborted) {
      if (registrations.get(botKey) === wanted) {
        health = { status: "ok", detail: done };
        return;
      }
      const r = await call(registration.method, registration.body, AbortSignal.any([signal, AbortSignal.timeout(15_000)]));
      answered();
      if (signal.aborted) return;
      if (r.ok) {
        registrations.set(botKey, wanted);
        health = { status: "ok", detail: done };
        deps.log.info(`human approver: Telegram ${done}`, { approver: cfg.ref });
        return;
      }
      const error = scrub(r.error);
      health = { status: "error", detail: `Telegram ${registration.method} failed: ${error}` };
      deps.log.warn(`human approver: Telegram ${registration.method} failed`, { approver: cfg.ref, error, retry_ms: backoff });
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
  }
  // The poll loop waits for the first answer (success or not); retries go on behind it.
  let attempted!: () => void;
  const firstAnswer = new Promise<void>((resolve) => (attempted = resolve));
  const registering = register(lifetime.signal, () => attempted())
    .catch((e) => deps.log.error("human approver: Telegram registration failed", { approver: cfg.ref, error: scrub(String(e)) }))
    .finally(() => attempted());

  // Long polling: at most one loop, alive while holds are pending.
  let offset = 0;
  let loop: { stop: AbortController; done: Promise<void> } | undefined;

  async function pollLoop(signal: AbortSignal): Promise<void> {
    // deleteWebhook first: while a webhook is set Telegram answers getUpdates with 409.
    await Promise.race([firstAnswer, new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }))]);
    let backoff = BACKOFF_MIN_MS;
    while (!signal.aborted) {
      const r = await call(
        "getUpdates",
        { offset, timeout: pollTimeout, allowed_updates: ["callback_query"] },
        AbortSignal.any([signal, AbortSignal.timeout((pollTimeout + 10) * 1000)]),
      );
      if (signal.aborted) return;
      if (!r.ok) {
        deps.log.warn("human approver: Telegram getUpdates failed", { approver: cfg.ref, error: scrub(r.error), retry_ms: backoff });
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
        continue;
      }
      backoff = BACKOFF_MIN_MS;
      const updates = Array.isArray(r.data.result) ? r.data.result : [];
      for (const u of updates) {
        const id = obj(u)?.update_id;
        if (typeof id === "number" && id >= offset) offset = id + 1;
        await handleUpdate(u);
      }
    }
  }

  function setPolling(active: boolean): void {
    if (active && !loop && !closed) {
      const stop = new AbortController();
      const done = pollLoop(stop.signal).catch((e) => deps.log.error("human approver: Telegram poll loop failed", { approver: cfg.ref, error: scrub(String(e)) }));
      loop = { stop, done };
      void done.finally(() => {
        if (loop?.stop === stop) loop = undefined;
        // A hold may have opened while this loop was winding down.
        if (core.pending > 0 && !closed) setPolling(true);
      });
    } else if (!active && loop) {
      loop.stop.abort();
    }
  }
  if (mode === "poll") core.onActive = setPolling;

  return {
    ref: cfg.ref,
    type: "human_approver",
    ask: (req: ApprovalRequest, ctx: ApproverContext): Promise<ApproverVerdict> =>
      closed ? Promise.resolve(core.deny("Telegram approver closed")) : core.ask(req, ctx, holdKey(req.id, "cp:a:", CALLBACK_DATA_MAX)),
    routes: (): ApproverRoute[] =>
      mode === "webhook" ? [{ method: "POST", path: telegramWebhookPath(cfg.name), handler: webhook }] : [],
    health: () => ({ ...health }),
    close: () => {
      closed = true;
      lifetime.abort();
      core.closeAll();
      loop?.stop.abort();
    },
    idle: async () => {
      await core.idle();
    },
    /** Poll mode: whether the getUpdates loop is running (tests). */
    get polling() {
      return loop !== undefined;
    },
    /** Resolves when the current poll loop has stopped (tests, shutdown). */
    stopped: () => loop?.done ?? Promise.resolve(),
    /** Resolves when registration with Telegram succeeded, gave up on close, or was not possible (tests). */
    registered: () => registering,
  } as ApproverPlugin & { idle(): Promise<void>; readonly polling: boolean; stopped(): Promise<void>; registered(): Promise<void> };
}
