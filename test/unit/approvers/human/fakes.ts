// HTTP-level fakes of the Slack Web API, the Discord REST API and the
// Telegram Bot API: each a Bun.serve on 127.0.0.1:0 implementing exactly the
// endpoints the approvers call, with the real request shapes (auth header or
// token-in-path, JSON bodies) and the real response shapes (Slack `{ok, …}`
// with HTTP 200 even on errors; Discord message objects and `{message, code}`
// errors; Telegram `{ok, result}` / `{ok:false, error_code, description}`).
// Plus builders for callbacks signed exactly as each service signs them.

import { createHmac, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { formatLogLine, type LogLevel } from "../../../../app/log.ts";
import type { ApprovalRequest, ApproverContext } from "../../../../app/approvers/types.ts";
import type { HumanDeps } from "../../../../app/approvers/human/types.ts";

export interface Call {
  method: string;
  path: string;
  auth: string | null;
  body: Record<string, any>;
}

/** What the next call of a method should do instead of succeeding. */
export type Failure = { status: number; body: unknown };

export interface Fake {
  url: string;
  calls: Call[];
  /** Method name → failure for every later call of it. */
  fail: Map<string, Failure>;
  waitFor(pred: (c: Call) => boolean, count?: number): Promise<Call[]>;
  stop(): void;
}

// Generous: a loaded 2-core machine can be slow; the happy path returns at once.
async function waitUntil<T>(fn: () => T | undefined, what: string, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(2);
  }
}

function makeFake(base: string, route: (req: Request, body: Record<string, any>, call: Call) => Response | Promise<Response>, methodOf: (path: string) => string | undefined): Fake {
  const calls: Call[] = [];
  const fail = new Map<string, Failure>();
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const path = new URL(req.url).pathname;
      const text = await req.text();
      let body: Record<string, any> = {};
      try {
        body = text ? JSON.parse(text) : {};
      } catch {
        return new Response("bad json", { status: 400 });
      }
      const call: Call = { method: methodOf(path) ?? `${req.method} ${path}`, path, auth: req.headers.get("authorization"), body };
      calls.push(call);
      const f = fail.get(call.method);
      if (f) return Response.json(f.body, { status: f.status });
      return route(req, body, call);
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}${base}`,
    calls,
    fail,
    waitFor: (pred, count = 1) =>
      waitUntil(() => {
        const got = calls.filter(pred);
        return got.length >= count ? got : undefined;
      }, "fake call"),
    stop: () => server.stop(true),
  };
}

// ---- Slack Web API (https://slack.com/api/METHOD, Bearer token, JSON body) ----

export function fakeSlack(token: string): Fake {
  let seq = 100;
  return makeFake(
    "/api",
    (req, body, call) => {
      if (req.headers.get("authorization") !== `Bearer ${token}`) return Response.json({ ok: false, error: "invalid_auth" });
      switch (call.method) {
        case "chat.postMessage": {
          if (!body.channel) return Response.json({ ok: false, error: "channel_not_found" });
          const ts = `1700000000.000${seq++}`;
          return Response.json({ ok: true, channel: body.channel, ts, message: { type: "message", text: body.text, ts, bot_id: "B1", blocks: body.blocks } });
        }
        case "chat.update":
          return Response.json({ ok: true, channel: body.channel, ts: body.ts, text: body.text, message: { text: body.text } });
        case "chat.postEphemeral":
          return Response.json({ ok: true, message_ts: `1700000001.000${seq++}` });
        default:
          return Response.json({ ok: false, error: "unknown_method" });
      }
    },
    (path) => /^\/api\/([\w.]+)$/.exec(path)?.[1],
  );
}

/** Signs like Slack: v0= + HMAC-SHA256(secret, "v0:" + ts + ":" + body). */
export function slackRequest(secret: string, payload: unknown, tsSeconds: number, opts: { path?: string; badSig?: boolean } = {}): Request {
  const body = "payload=" + encodeURIComponent(JSON.stringify(payload));
  const sig = "v0=" + createHmac("sha256", opts.badSig ? secret + "x" : secret).update(`v0:${tsSeconds}:${body}`).digest("hex");
  return new Request(`http://gw${opts.path ?? "/api/approvers/slack/oncall/interactions"}`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": String(tsSeconds), "x-slack-signature": sig },
    body,
  });
}

/** A block_actions payload as Slack sends it for a button click in a message. */
export function slackBlockActions(o: { actionId: "approve" | "deny"; holdId: string; userId?: string; channel?: string; ts: string; reason?: string }) {
  const channel = o.channel ?? "C0ONCALL";
  return {
    type: "block_actions",
    user: { id: o.userId ?? "U111", username: "alice", name: "alice", team_id: "T1" },
    api_app_id: "A1",
    token: "legacy-verification-token",
    container: { type: "message", message_ts: o.ts, channel_id: channel, is_ephemeral: false },
    trigger_id: "123.456.abc",
    team: { id: "T1", domain: "acme" },
    channel: { id: channel, name: "oncall" },
    message: { type: "message", ts: o.ts, text: "…", bot_id: "B1" },
    state: { values: o.reason === undefined ? {} : { cp_reason: { reason: { type: "plain_text_input", value: o.reason } } } },
    response_url: "https://hooks.slack.com/actions/T1/1/abc",
    actions: [
      { action_id: o.actionId, block_id: "cp_actions", text: { type: "plain_text", text: o.actionId === "approve" ? "Approve" : "Deny" }, value: o.holdId, style: o.actionId === "approve" ? "primary" : "danger", type: "button", action_ts: "1700000002.1" },
    ],
  };
}

// ---- Discord REST API v10 (Authorization: Bot TOKEN) ----

export function fakeDiscord(token: string): Fake {
  let seq = 900000000000000000n;
  return makeFake(
    "/api/v10",
    (req, body, call) => {
      if (req.headers.get("authorization") !== `Bot ${token}`) return Response.json({ message: "401: Unauthorized", code: 0 }, { status: 401 });
      const post = /^POST \/api\/v10\/channels\/(\d+)\/messages$/.exec(call.method);
      if (post) {
        const id = String(seq++);
        return Response.json({ id, channel_id: post[1], type: 0, content: body.content, components: body.components, author: { id: "B1", username: "clawpatrol", bot: true }, timestamp: new Date().toISOString() });
      }
      const patch = /^PATCH \/api\/v10\/channels\/(\d+)\/messages\/(\d+)$/.exec(call.method);
      if (patch) return Response.json({ id: patch[2], channel_id: patch[1], type: 0, content: body.content, components: body.components });
      return Response.json({ message: "404: Not Found", code: 0 }, { status: 404 });
    },
    () => undefined,
  );
}

export function discordKeys(): { privateKey: KeyObject; publicHex: string } {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  return { privateKey, publicHex: Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url").toString("hex") };
}

/** Signs like Discord: Ed25519 over timestamp + raw body, hex in X-Signature-Ed25519. */
export function discordRequest(privateKey: KeyObject, interaction: unknown, tsSeconds: number, opts: { tamper?: boolean } = {}): Request {
  const body = JSON.stringify(interaction);
  const sig = sign(null, Buffer.from(String(tsSeconds) + body), privateKey).toString("hex");
  return new Request("http://gw/api/approvers/discord/oncall/interactions", {
    method: "POST",
    headers: { "content-type": "application/json", "x-signature-ed25519": sig, "x-signature-timestamp": String(tsSeconds) },
    body: opts.tamper ? body.replace("approve", "deny__") : body,
  });
}

/** A MESSAGE_COMPONENT interaction from a guild member clicking a button. */
export function discordComponentInteraction(o: { customId: string; userId?: string; messageId: string; channelId?: string; applicationId?: string }) {
  const channelId = o.channelId ?? "222";
  return {
    id: "1111", application_id: o.applicationId ?? "333", type: 3, token: "interaction-token", version: 1,
    guild_id: "444", channel_id: channelId,
    data: { custom_id: o.customId, component_type: 2 },
    member: { user: { id: o.userId ?? "555", username: "bob", global_name: "Bob", discriminator: "0" }, roles: [], permissions: "0" },
    message: { id: o.messageId, channel_id: channelId, content: "…", components: [] },
  };
}

// ---- Telegram Bot API (https://api.telegram.org/botTOKEN/METHOD) ----

export interface TelegramFake extends Fake {
  /** Queues an Update for getUpdates (long polling). */
  push(update: Record<string, unknown>): void;
  pollers: number;
  /** The bot's webhook as setWebhook left it (getWebhookInfo's fields); undefined when none is set. */
  webhook: { url: string; secret_token?: string; allowed_updates?: string[] } | undefined;
}

export function fakeTelegram(token: string): TelegramFake {
  let seq = 10;
  const updates: Record<string, any>[] = [];
  const waiters = new Set<() => void>();
  const state: { pollers: number; webhook: TelegramFake["webhook"] } = { pollers: 0, webhook: undefined };
  const fake = makeFake(
    "",
    async (req, body, call) => {
      if (!call.path.startsWith(`/bot${token}/`)) return Response.json({ ok: false, error_code: 401, description: "Unauthorized" }, { status: 401 });
      switch (call.method) {
        case "sendMessage":
          return Response.json({
            ok: true,
            result: { message_id: seq++, from: { id: 42, is_bot: true, first_name: "clawpatrol", username: "clawpatrol_bot" }, chat: { id: Number(body.chat_id), type: "supergroup", title: "oncall" }, date: 1700000000, text: body.text, reply_markup: body.reply_markup },
          });
        case "editMessageText":
          return Response.json({ ok: true, result: { message_id: body.message_id, chat: { id: Number(body.chat_id), type: "supergroup" }, date: 1700000000, edit_date: 1700000001, text: body.text } });
        case "answerCallbackQuery":
          return Response.json({ ok: true, result: true });
        case "setWebhook": {
          // As the Bot API checks them: an HTTPS URL, and a secret_token of 1-256 [A-Za-z0-9_-].
          if (typeof body.url !== "string" || !body.url.startsWith("https://")) {
            return Response.json({ ok: false, error_code: 400, description: "Bad Request: bad webhook: An HTTPS URL must be provided for webhook" }, { status: 400 });
          }
          if (body.secret_token !== undefined && !/^[A-Za-z0-9_-]{1,256}$/.test(String(body.secret_token))) {
            return Response.json({ ok: false, error_code: 400, description: "Bad Request: secret token contains unallowed characters" }, { status: 400 });
          }
          state.webhook = { url: body.url, secret_token: body.secret_token, allowed_updates: body.allowed_updates };
          return Response.json({ ok: true, result: true, description: "Webhook was set" });
        }
        case "deleteWebhook": {
          const was = state.webhook;
          state.webhook = undefined;
          return Response.json({ ok: true, result: true, description: was ? "Webhook was deleted" : "Webhook is already deleted" });
        }
        case "getUpdates": {
          if (state.webhook) {
            return Response.json({ ok: false, error_code: 409, description: "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first" }, { status: 409 });
          }
          const offset = Number(body.offset ?? 0);
          const ready = () => updates.filter((u) => u.update_id >= offset);
          if (ready().length === 0 && Number(body.timeout) > 0) {
            state.pollers++;
            await new Promise<void>((resolve) => {
              const t = setTimeout(done, Number(body.timeout) * 1000);
              function done() {
                clearTimeout(t);
                waiters.delete(done);
                resolve();
              }
              waiters.add(done);
              req.signal.addEventListener("abort", done, { once: true });
            });
            state.pollers--;
          }
          return Response.json({ ok: true, result: ready() });
        }
        default:
          return Response.json({ ok: false, error_code: 404, description: "Not Found" }, { status: 404 });
      }
    },
    (path) => /^\/bot[^/]+\/(\w+)$/.exec(path)?.[1],
  );
  // Object.assign would copy a getter's value once: define the live view itself.
  Object.defineProperty(fake, "webhook", { get: () => state.webhook, set: (w: TelegramFake["webhook"]) => void (state.webhook = w), enumerable: true });
  return Object.assign(fake as Fake & Pick<TelegramFake, "webhook">, {
    push(update: Record<string, unknown>) {
      updates.push(update);
      for (const w of [...waiters]) w();
    },
    get pollers() {
      return state.pollers;
    },
  });
}

export function telegramCallbackUpdate(o: { updateId?: number; data: string; userId?: number; chatId?: number; messageId: number }) {
  return {
    update_id: o.updateId ?? 1000,
    callback_query: {
      id: `cq${o.updateId ?? 1000}`,
      from: { id: o.userId ?? 777, is_bot: false, first_name: "Carol", username: "carol", language_code: "en" },
      message: { message_id: o.messageId, from: { id: 42, is_bot: true, first_name: "clawpatrol" }, chat: { id: o.chatId ?? -100123, type: "supergroup", title: "oncall" }, date: 1700000000, text: "…" },
      chat_instance: "-5555",
      data: o.data,
    },
  };
}

/** A webhook delivery as Telegram makes it, with the secret_token header. */
export function telegramRequest(secret: string | undefined, update: unknown): Request {
  return new Request("http://gw/api/approvers/telegram/oncall/webhook", {
    method: "POST",
    headers: { "content-type": "application/json", ...(secret !== undefined ? { "x-telegram-bot-api-secret-token": secret } : {}) },
    body: JSON.stringify(update),
  });
}

// ---- common ----

export function approvalRequest(id: string): ApprovalRequest {
  return {
    id, time: "2026-01-01T00:00:00Z", device: "laptop-1", profile: "default", endpoint: "https.github",
    rule: "github-writes", reason: "pushes need a human", method: "POST", host: "api.github.com",
    path: "/repos/acme/app/git/refs", headers: { "content-type": "application/json" },
    bodyPreview: '{"ref":"refs/heads/main"}', bodyTruncated: false, fingerprint: "f".repeat(64),
  };
}

/** A held SQL statement as the postgres endpoint holds one (method = verb, path/bodyPreview = statement, headers = database and user). */
export function sqlApprovalRequest(id: string): ApprovalRequest {
  const statement = "DELETE FROM public.users WHERE id = 7";
  return {
    ...approvalRequest(id), endpoint: "postgres.db", rule: "writes-need-approval", reason: "a write to the app database",
    method: "DELETE", host: "db.internal", path: statement, headers: { database: "app", user: "agent" },
    bodyPreview: statement, family: "sql", summary: "delete public.users",
  };
}

export function context(): { ctx: ApproverContext; abort: (reason?: unknown) => void } {
  const ac = new AbortController();
  return { ctx: { signal: ac.signal, now: () => Date.now() }, abort: (r) => ac.abort(r) };
}

export function deps(overrides: Partial<HumanDeps> = {}): { deps: HumanDeps; lines: string[]; clock: { now: number } } {
  const lines: string[] = [];
  const clock = { now: Date.now() };
  const at = (level: LogLevel) => (msg: string, fields?: Record<string, unknown>) => void lines.push(formatLogLine(level, msg, fields));
  return {
    lines,
    clock,
    deps: { now: () => clock.now, fetch: (u, i) => fetch(u, i), log: { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") }, ...overrides },
  };
}

export async function settledWithin<T>(p: Promise<T>, ms = 15_000): Promise<T> {
  return Promise.race([p, Bun.sleep(ms).then(() => Promise.reject(new Error("verdict did not arrive")))]);
}

/** True when `p` has not settled after a short wait. */
export async function stillPending(p: Promise<unknown>, ms = 30): Promise<boolean> {
  const marker = Symbol();
  return (await Promise.race([p, Bun.sleep(ms).then(() => marker)])) === marker;
}
