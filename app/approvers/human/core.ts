// The channel-independent half of a human approver:
//
//   1. `ask` opens a hold keyed by what the buttons carry, posts the message
//      through the channel adapter, and waits;
//   2. a verified callback calls `decide(key, …)`: unknown key → "not
//      pending", user outside `allowed_users` → "not allowed", otherwise the
//      first decision settles the hold and later clicks find nothing;
//   3. an abort settles the hold with a deny and asks the adapter to edit the
//      message ("expired or decided elsewhere").
//
// Every text that may carry a service's error passes through `scrub`, which
// removes the configured secrets, so a token never reaches a verdict or a log.

import { createHash, timingSafeEqual } from "node:crypto";
import type { ApprovalRequest, ApproverContext, ApproverVerdict } from "../types.ts";
import type { HumanDeps } from "./types.ts";
import { sqlHold } from "../describe.ts";

export type PostResult<Ref> = { ok: true; ref: Ref } | { ok: false; error: string };

export interface ChannelAdapter<Ref> {
  /** "Slack", "Discord", "Telegram": used in reasons. */
  readonly label: string;
  /** Posts the message with the two buttons for `key`. Never throws. */
  post(req: ApprovalRequest, key: string, text: string): Promise<PostResult<Ref>>;
  /** Edits the message once the hold ended without a decision from this channel. Never throws. */
  expire(ref: Ref, text: string, status: string): Promise<void>;
}

export interface Hold<Ref> {
  key: string;
  req: ApprovalRequest;
  text: string;
  ref?: Ref;
  /** The posted message's ref once the post finished (undefined when it failed): a click can beat the post's response. */
  whenPosted: Promise<Ref | undefined>;
  settled: boolean;
  resolve(v: ApproverVerdict): void;
  /** Operators who already allowed this step (`require_approvers` > 1): their allow does not count again. */
  approvedBy: ReadonlySet<string>;
}

export type DecideOutcome<Ref> =
  | { kind: "decided"; hold: Hold<Ref>; verdict: ApproverVerdict }
  | { kind: "not_pending" }
  | { kind: "not_allowed" }
  | { kind: "already_approved" };

export interface Decider {
  /** Chat user id, without the channel prefix. */
  userId: string;
  /** Display name for the reason text. */
  name: string;
  /** What the user typed, when the platform gives one. */
  reason?: string;
}

export const NOT_PENDING_TEXT = "This request is no longer pending.";
export const NOT_ALLOWED_TEXT = "You are not allowed to decide on this request.";
export const ALREADY_APPROVED_TEXT = "You already approved this request; another approver is needed.";
export const EXPIRED_TEXT = "No longer pending: this request expired or was decided elsewhere.";

/** Replaces every occurrence of the given secrets (and their URL-encoded forms). */
/** How long a click waits for its hold's post to finish (chat services want an answer within ~3 s). */
const POSTED_WAIT_MS = 2000;

export function makeScrubber(secrets: (string | undefined)[]): (s: string) => string {
  const needles = new Set<string>();
  for (const s of secrets) {
    if (!s || s.length < 4) continue;
    needles.add(s);
    needles.add(encodeURIComponent(s));
  }
  const list = [...needles].sort((a, b) => b.length - a.length);
  return (s) => {
    let out = s;
    for (const n of list) out = out.split(n).join("[redacted]");
    return out;
  };
}

/** Constant-time string equality (both sides hashed first so lengths never leak). */
export function safeEqual(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb);
}

/** Callback bodies are small; anything larger is refused before parsing. */
export const MAX_CALLBACK_BYTES = 64 * 1024;

/** Reads the raw body up to the limit; undefined when it is larger. */
export async function readBody(req: Request): Promise<string | undefined> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > MAX_CALLBACK_BYTES) return undefined;
  const buf = await req.arrayBuffer();
  if (buf.byteLength > MAX_CALLBACK_BYTES) return undefined;
  return new TextDecoder().decode(buf);
}

export function textResponse(status: number, text: string): Response {
  return new Response(text, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

export function jsonResponse(status: number, value: unknown): Response {
  return new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json" } });
}

/**
 * What the buttons carry for a hold: the id itself when `prefix + id` fits the
 * platform's limit (Discord custom_id ≤ 100 chars, Telegram callback_data ≤ 64
 * bytes), else a hash of it (`h~` + 32 base64url characters).
 */
export function holdKey(id: string, prefix: string, maxBytes: number): string {
  if (Buffer.byteLength(prefix + id) <= maxBytes && !id.startsWith("h~")) return id;
  return "h~" + createHash("sha256").update(id).digest("base64url").slice(0, 32);
}

export function truncate(s: string, max: number): string {
  return s.length <= max ? s : s.slice(0, max - 1) + "…";
}

/** The summary posted when the approver has no `message` template. */
export function defaultRender(req: ApprovalRequest): string {
  const sql = sqlHold(req);
  const lines = [
    `Approval needed: rule ${req.rule}${req.reason ? ` (${req.reason})` : ""}`,
    sql ? `SQL on database ${sql.database} as ${sql.user} (${req.host})` : `${req.method} https://${req.host}${req.path}`,
    `device ${req.device} · profile ${req.profile} · endpoint ${req.endpoint}`,
  ];
  if (sql) lines.push(`statement: ${truncate(sql.statement, 1500)}${sql.truncated ? " (truncated)" : ""}`);
  else if (req.bodyPreview) lines.push(`body: ${truncate(req.bodyPreview, 500)}${req.bodyTruncated ? " (truncated)" : ""}`);
  lines.push(`hold ${req.id}`);
  return lines.join("\n");
}

export class HumanCore<Ref> {
  private readonly holds = new Map<string, Hold<Ref>>();
  /** Called when the first hold opens and when the last one closes (Telegram polling). */
  onActive?: (active: boolean) => void;
  private readonly background = new Set<Promise<unknown>>();
  private closed = false;

  constructor(
    readonly ref: string,
    private readonly adapter: ChannelAdapter<Ref>,
    private readonly deps: HumanDeps,
    private readonly allowed: ReadonlySet<string> | undefined,
    readonly scrub: (s: string) => string,
  ) {}

  get pending(): number {
    return this.holds.size;
  }

  get(key: string): Hold<Ref> | undefined {
    return this.holds.get(key);
  }

  deny(reason: string): ApproverVerdict {
    return { decision: "deny", reason: this.scrub(reason), approver: this.ref };
  }

  async ask(req: ApprovalRequest, ctx: ApproverContext, key: string): Promise<ApproverVerdict> {
    const label = this.adapter.label;
    if (this.closed) return this.deny(`${label} approver closed`);
    if (ctx.signal.aborted) return this.deny(`hold ended before the request was posted to ${label}`);
    if (this.holds.has(key)) return this.deny(`hold ${req.id} is already waiting in ${label}`);

    let text: string;
    try {
      text = ctx.message ?? (this.deps.render ?? defaultRender)(req);
    } catch (e) {
      this.deps.log.warn("human approver: message template failed", { approver: this.ref, error: this.scrub(String(e)) });
      text = defaultRender(req);
    }
    const approvedBy = ctx.approvedBy ?? [];
    const required = ctx.requireApprovers ?? 1;
    if (required > 1) {
      text += `\n\nApproval ${approvedBy.length + 1} of ${required}${approvedBy.length ? ` (approved so far by ${approvedBy.join(", ")})` : ""}`;
    }

    let resolve!: (v: ApproverVerdict) => void;
    const verdict = new Promise<ApproverVerdict>((r) => (resolve = r));
    let markPosted: (ref: Ref | undefined) => void = () => {};
    const whenPosted = new Promise<Ref | undefined>((r) => (markPosted = r));
    const hold: Hold<Ref> = { key, req, text, whenPosted, settled: false, resolve, approvedBy: new Set(approvedBy) };
    this.holds.set(key, hold);
    if (this.holds.size === 1) this.onActive?.(true);

    const onAbort = () => {
      if (!this.settle(hold)) return;
      resolve(this.deny(`no decision in ${label} before the hold ended`));
      if (hold.ref !== undefined) this.track(this.adapter.expire(hold.ref, text, EXPIRED_TEXT));
    };
    ctx.signal.addEventListener("abort", onAbort, { once: true });

    this.track(this.postHold(hold).then(() => markPosted(hold.ref), () => markPosted(undefined)));
    return verdict.finally(() => ctx.signal.removeEventListener("abort", onAbort));
  }

  private async postHold(hold: Hold<Ref>): Promise<void> {
    const label = this.adapter.label;
    const req = hold.req;
    const posted = await this.adapter.post(req, hold.key, hold.text);
    if (!posted.ok) {
      const reason = this.scrub(`could not post the approval request to ${label}: ${posted.error}`);
      this.deps.log.warn("human approver: post failed", { approver: this.ref, hold: req.id, error: reason });
      if (this.settle(hold)) hold.resolve(this.deny(reason));
      return;
    }
    hold.ref = posted.ref;
    // Ended while the post was in flight (aborted, or the approver closed):
    // the message exists now, so mark it. (A click cannot settle a hold
    // before its post's response: deciding waits for it.)
    if (hold.settled) {
      await this.adapter.expire(posted.ref, hold.text, EXPIRED_TEXT);
      return;
    }
    this.deps.log.info("human approver: waiting", { approver: this.ref, hold: req.id });
  }

  /**
   * Resolves once the hold's message is posted (or at once: unknown, settled,
   * already posted), at most `maxMs`. A click can only come from a message
   * that exists, but it may reach us before the post's own response does;
   * deciding then would skip the check that the click is on our message.
   */
  async posted(key: string, maxMs = POSTED_WAIT_MS): Promise<void> {
    const hold = this.holds.get(key);
    if (!hold || hold.settled || hold.ref !== undefined) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([hold.whenPosted, new Promise((r) => (timer = setTimeout(r, maxMs)))]);
    clearTimeout(timer);
  }

  /** A verified click. First decision wins; `matches` checks the callback's message against the posted one. */
  decide(key: string, decision: "allow" | "deny", who: Decider, channelPrefix: string, matches?: (ref: Ref) => boolean): DecideOutcome<Ref> {
    const hold = this.holds.get(key);
    if (!hold || hold.settled) return { kind: "not_pending" };
    // With a matcher, a click is only trusted against a posted message (see posted()).
    if (matches && (hold.ref === undefined || !matches(hold.ref))) return { kind: "not_pending" };
    if (this.allowed && this.allowed.size > 0 && !this.allowed.has(who.userId)) {
      this.deps.log.info("human approver: click from a user not allowed", { approver: this.ref, hold: hold.req.id, user: `${channelPrefix}:${who.userId}` });
      return { kind: "not_allowed" };
    }
    if (decision === "allow" && hold.approvedBy.has(`${channelPrefix}:${who.userId}`)) return { kind: "already_approved" };
    this.settle(hold);
    const typed = who.reason?.trim();
    const verdict: ApproverVerdict = {
      decision,
      reason: typed ? truncate(typed, 500) : `${decision === "allow" ? "approved" : "denied"} in ${this.adapter.label} by ${who.name}`,
      approver: this.ref,
      operator: `${channelPrefix}:${who.userId}`,
    };
    this.deps.log.info("human approver: decided", { approver: this.ref, hold: hold.req.id, decision, operator: verdict.operator });
    hold.resolve(verdict);
    return { kind: "decided", hold, verdict };
  }

  /** Runs a side effect (message edit, ephemeral answer) after the callback was answered. */
  track(p: Promise<unknown>): void {
    const q = p.catch((e) => this.deps.log.warn("human approver: follow-up call failed", { approver: this.ref, error: this.scrub(String(e)) }));
    this.background.add(q);
    void q.finally(() => this.background.delete(q));
  }

  /** Resolves when every follow-up call started so far has finished (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.background.size > 0) await Promise.all([...this.background]);
  }

  /** Ends every hold with a deny (approver closed). */
  closeAll(): void {
    this.closed = true;
    for (const hold of [...this.holds.values()]) {
      if (!this.settle(hold)) continue;
      hold.resolve(this.deny(`${this.adapter.label} approver closed`));
      if (hold.ref !== undefined) this.track(this.adapter.expire(hold.ref, hold.text, EXPIRED_TEXT));
    }
  }

  private settle(hold: Hold<Ref>): boolean {
    if (hold.settled) return false;
    hold.settled = true;
    if (this.holds.get(hold.key) === hold) {
      this.holds.delete(hold.key);
      if (this.holds.size === 0) this.onActive?.(false);
    }
    return true;
  }
}

export type ApiResult = { ok: true; data: Record<string, unknown> } | { ok: false; error: string };

/** One JSON call to a chat API; every failure becomes an error text (scrub it before use). */
export async function callJson(
  deps: HumanDeps,
  url: string,
  init: { method: string; headers: Record<string, string>; body?: unknown; signal?: AbortSignal },
  isOk: (status: number, data: Record<string, unknown>) => string | undefined,
): Promise<ApiResult> {
  let res: Response;
  try {
    res = await deps.fetch(url, {
      method: init.method,
      headers: { ...init.headers, ...(init.body !== undefined ? { "content-type": "application/json; charset=utf-8" } : {}) },
      body: init.body !== undefined ? JSON.stringify(init.body) : undefined,
      signal: init.signal ?? AbortSignal.timeout(15_000),
    });
  } catch (e) {
    const name = e instanceof Error ? e.name : "";
    return { ok: false, error: name === "TimeoutError" ? "request timed out" : name === "AbortError" ? "request aborted" : `network error (${e instanceof Error ? e.message : String(e)})` };
  }
  let data: Record<string, unknown> = {};
  try {
    const text = await res.text();
    const parsed: unknown = text ? JSON.parse(text) : {};
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) data = parsed as Record<string, unknown>;
  } catch {
    if (res.ok) return { ok: false, error: `HTTP ${res.status} with a body that is not JSON` };
  }
  const err = isOk(res.status, data);
  return err === undefined ? { ok: true, data } : { ok: false, error: err };
}

export function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : typeof v === "number" ? String(v) : undefined;
}

export function obj(v: unknown): Record<string, unknown> | undefined {
  return v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}
