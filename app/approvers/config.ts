// Approver settings: `approver "TYPE" "NAME" { ... }` blocks -> typed,
// validated config. The loader (policy/build.ts) calls validateApprover for
// every declared approver; each problem is a ConfigError at the attribute's
// line. The built-in `dashboard` needs no block and uses DEFAULT_COMMON.
//
// Settings every approver takes (each has an effect in hub.ts):
//   timeout           how long this approver is asked ("30s", "5m"; default 5m)
//   on_timeout        "deny" (default) | "allow": an allow on silence must be explicit
//   require_approvers distinct operators that must allow (default 1)
//   message           template over the request's facets, see MESSAGE_FIELDS
//   async             past `timeout` keep holding (the agent gets 202 and retries)
//                     until `async_timeout`; default false
//   async_timeout     how long an async hold lasts in total (default 1h)
// llm_approver adds: model, credential, api, policy, fail_mode, cache_ttl, base_url.
// human_approver adds: channel ("slack" | "discord" | "telegram"); its other
// attributes belong to the channel plugin (app/approvers/human/) and are kept
// raw in `channelSettings` unless the channel registered its attribute names.
import type { BlockLike } from "../policy/hcl/reader.ts";
import { BlockReader } from "../policy/hcl/reader.ts";
import type { ConfigError } from "../policy/types.ts";
import type { ApprovalRequest } from "./types.ts";
import { requestLine, sqlHold } from "./describe.ts";
import type { ChainOptions } from "./hub.ts";

export const HUMAN_CHANNELS = ["slack", "discord", "telegram"] as const;
export type HumanChannel = (typeof HUMAN_CHANNELS)[number];

export interface CommonApproverConfig {
  timeoutMs: number;
  onTimeout: "deny" | "allow";
  requireApprovers: number;
  /** The message template (validated); render with renderMessage. */
  message: string;
  async: boolean;
  asyncTimeoutMs: number;
}

export interface LlmApproverConfig extends CommonApproverConfig {
  type: "llm_approver";
  model: string;
  /** Credential ref, e.g. `anthropic_manual_key.judge`. */
  credential: string;
  api: "anthropic" | "openai";
  policy: string;
  failMode: "deny" | "allow";
  /** 0 = no verdict cache. */
  cacheTtlMs: number;
  /** Without a trailing slash; default https://api.anthropic.com or https://api.openai.com. */
  baseUrl: string;
}

export interface HumanApproverConfig extends CommonApproverConfig {
  type: "human_approver";
  channel: HumanChannel;
  /** Every other attribute of the block, as hcl2json gave it (references stay `${...}`). */
  channelSettings: Record<string, unknown>;
}

export type ApproverConfig = LlmApproverConfig | HumanApproverConfig;

export const DEFAULT_MESSAGE = "{{method}} {{host}}{{path}} by {{device}} ({{rule}}: {{reason}})";
/** What the default message becomes for a held SQL statement: the statement and its database, not a request line. */
export const DEFAULT_SQL_MESSAGE = "SQL on {{database}} as {{user}} by {{device}} ({{rule}}: {{reason}}):\n{{statement}}";

export const DEFAULT_COMMON: CommonApproverConfig = {
  timeoutMs: 5 * 60_000,
  onTimeout: "deny",
  requireApprovers: 1,
  message: DEFAULT_MESSAGE,
  async: false,
  asyncTimeoutMs: 60 * 60_000,
};

export const DEFAULT_BASE_URL = { anthropic: "https://api.anthropic.com", openai: "https://api.openai.com" } as const;

/** Settings the hub owns, accepted by every approver type. */
export const COMMON_ATTRIBUTES = ["timeout", "on_timeout", "require_approvers", "message", "async", "async_timeout"];
const LLM_ATTRIBUTES = ["model", "credential", "api", "policy", "fail_mode", "cache_ttl", "base_url"];

// ------------------------------------------------------------------ durations

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "30s", "5m", "1h30m", "250ms", "0" -> milliseconds; undefined when malformed. */
export function parseDuration(v: unknown): number | undefined {
  if (typeof v !== "string") return undefined;
  const s = v.trim();
  if (s === "0") return 0;
  if (!/^(\d+(ms|s|m|h|d))+$/.test(s)) return undefined;
  let total = 0;
  for (const m of s.matchAll(/(\d+)(ms|s|m|h|d)/g)) total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
  return Number.isSafeInteger(total) ? total : undefined;
}

/** Reads a duration attribute; reports a malformed one (or one below `minMs`). */
export function readDuration(r: BlockReader, name: string, minMs: number): number | undefined {
  if (!r.has(name)) return undefined;
  const ms = parseDuration(r.raw(name));
  if (ms === undefined) {
    r.error(r.line(name), `${name} must be a duration like "30s", "5m" or "1h"`);
    return undefined;
  }
  if (ms < minMs) {
    r.error(r.line(name), `${name} must be at least ${minMs === 1 ? "1ms" : formatDuration(minMs)}`);
    return undefined;
  }
  return ms;
}

export function formatDuration(ms: number): string {
  for (const [unit, size] of [["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

// ------------------------------------------------------------------ messages

/** The request facets a `message` template may name, as `{{name}}`. */
export const MESSAGE_FIELDS = {
  id: (r: ApprovalRequest) => r.id,
  time: (r: ApprovalRequest) => r.time,
  device: (r: ApprovalRequest) => r.device,
  profile: (r: ApprovalRequest) => r.profile,
  endpoint: (r: ApprovalRequest) => r.endpoint,
  rule: (r: ApprovalRequest) => r.rule,
  reason: (r: ApprovalRequest) => r.reason,
  method: (r: ApprovalRequest) => r.method,
  host: (r: ApprovalRequest) => r.host,
  path: (r: ApprovalRequest) => r.path,
  body: (r: ApprovalRequest) => r.bodyPreview,
  fingerprint: (r: ApprovalRequest) => r.fingerprint,
  family: (r: ApprovalRequest) => r.family ?? "http",
  summary: (r: ApprovalRequest) => r.summary ?? requestLine(r),
  /** sql only (empty for other families): the held statement, its database and the agent's user name. */
  statement: (r: ApprovalRequest) => sqlHold(r)?.statement ?? "",
  database: (r: ApprovalRequest) => sqlHold(r)?.database ?? "",
  user: (r: ApprovalRequest) => sqlHold(r)?.user ?? "",
} as const;

const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;

/** Problems with a template: unknown placeholders and unbalanced braces. */
export function checkMessageTemplate(template: string): string[] {
  const problems: string[] = [];
  for (const m of template.matchAll(PLACEHOLDER)) {
    if (!Object.hasOwn(MESSAGE_FIELDS, m[1]!)) {
      problems.push(`unknown placeholder {{${m[1]}}}; expected one of: ${Object.keys(MESSAGE_FIELDS).join(", ")}`);
    }
  }
  const rest = template.replace(PLACEHOLDER, "");
  if (rest.includes("{{") || rest.includes("}}")) problems.push("unbalanced {{ or }} (placeholders look like {{host}})");
  return problems;
}

/** Fills a (validated) template; values are inserted as they are, channels escape for their markup. */
export function renderMessage(template: string, req: ApprovalRequest): string {
  // The default names an HTTP request line; a held statement reads better as itself.
  if (template === DEFAULT_MESSAGE && req.family === "sql") template = DEFAULT_SQL_MESSAGE;
  return template.replace(PLACEHOLDER, (whole, name: string) =>
    Object.hasOwn(MESSAGE_FIELDS, name) ? MESSAGE_FIELDS[name as keyof typeof MESSAGE_FIELDS](req) : whole,
  );
}

// ------------------------------------------------------------------ validation

/** Attribute names a chat channel accepts besides the common ones and `channel`. */
const channelAttributes = new Map<string, readonly string[]>();

/**
 * Lets a chat channel declare its attribute names so unknown ones become
 * config errors. Without it, a channel's attributes are passed through raw.
 */
export function registerChannelAttributes(channel: HumanChannel, attributes: readonly string[]): void {
  channelAttributes.set(channel, attributes);
}

export interface ValidateContext {
  /**
   * Resolves a credential reference attribute (the loader's resolver: it
   * reports unknown or ill-formed references itself). Returns `TYPE.NAME`.
   */
  resolveCredential(r: BlockReader, attr: string): string | undefined;
  /** `gateway { public_url }`: Telegram's webhook mode registers a URL under it. */
  publicUrl?: string | undefined;
}

/**
 * Validates one approver block. Every problem is pushed to `errors` (with the
 * attribute's line); the result is undefined when there was any.
 */
export function validateApprover(
  type: string,
  name: string,
  block: BlockLike,
  errors: ConfigError[],
  ctx: ValidateContext,
): ApproverConfig | undefined {
  const before = errors.length;
  const r = new BlockReader(block, `approver ${type}.${name}`, errors);
  let config: ApproverConfig | undefined;
  if (type === "llm_approver") {
    r.allow([...COMMON_ATTRIBUTES, ...LLM_ATTRIBUTES]);
    const common = readCommon(r);
    if (common.requireApprovers > 1) {
      r.error(r.line("require_approvers"), "require_approvers must be 1 for an llm_approver: a model is one operator");
    }
    config = readLlm(r, common, ctx);
  } else if (type === "human_approver") {
    const channel = r.required("channel") ? r.oneOf("channel", HUMAN_CHANNELS) : undefined;
    const own = channel ? channelAttributes.get(channel) : undefined;
    if (own) r.allow([...COMMON_ATTRIBUTES, "channel", ...own]);
    const common = readCommon(r);
    const channelSettings: Record<string, unknown> = {};
    for (const a of block.attributes) {
      if (!COMMON_ATTRIBUTES.includes(a.name) && a.name !== "channel") channelSettings[a.name] = a.value;
    }
    if (channel === "telegram") checkTelegram(r, block, ctx);
    if (channel) config = { type: "human_approver", ...common, channel, channelSettings };
  } else {
    r.error(block.line, `unknown approver type "${type}"`);
  }
  return errors.length > before ? undefined : config;
}

/** Webhook mode (the default) calls setWebhook with public_url + the route: without one Telegram can never reach us. */
function checkTelegram(r: BlockReader, block: BlockLike, ctx: ValidateContext): void {
  const mode = r.has("mode") ? r.raw("mode") : "webhook";
  if (mode === "webhook" && ctx.publicUrl === undefined) {
    r.error(r.has("mode") ? r.line("mode") : block.line, 'telegram webhook mode needs gateway { public_url } (Telegram posts callbacks to it); or set mode = "poll"');
  }
}

function readCommon(r: BlockReader): CommonApproverConfig {
  const c: CommonApproverConfig = { ...DEFAULT_COMMON };
  c.timeoutMs = readDuration(r, "timeout", 1) ?? c.timeoutMs;
  c.onTimeout = r.oneOf("on_timeout", ["deny", "allow"] as const) ?? c.onTimeout;
  c.requireApprovers = r.integer("require_approvers", 1) ?? c.requireApprovers;
  const message = r.string("message");
  if (message !== undefined) {
    const problems = checkMessageTemplate(message);
    for (const p of problems) r.error(r.line("message"), `message: ${p}`);
    if (problems.length === 0) c.message = message;
  }
  c.async = r.bool("async") ?? c.async;
  c.asyncTimeoutMs = readDuration(r, "async_timeout", 1) ?? c.asyncTimeoutMs;
  if (r.has("async_timeout") && !c.async) r.error(r.line("async_timeout"), "async_timeout has no effect without async = true");
  if (c.async && c.asyncTimeoutMs <= c.timeoutMs) {
    r.error(r.line(r.has("async_timeout") ? "async_timeout" : "async"), `async_timeout (${formatDuration(c.asyncTimeoutMs)}) must be longer than timeout (${formatDuration(c.timeoutMs)})`);
  }
  return c;
}

function readLlm(r: BlockReader, common: CommonApproverConfig, ctx: ValidateContext): LlmApproverConfig | undefined {
  const model = r.required("model") ? r.string("model") : undefined;
  if (model !== undefined && model.trim() === "") r.error(r.line("model"), "model must not be empty");
  const policy = r.required("policy") ? r.string("policy") : undefined;
  if (policy !== undefined && policy.trim() === "") r.error(r.line("policy"), "policy must not be empty");

  let credential: string | undefined;
  let credentialApi: "anthropic" | "openai" | undefined;
  if (r.required("credential")) {
    credential = ctx.resolveCredential(r, "credential");
    if (credential !== undefined) {
      const head = credential.slice(0, credential.indexOf("."));
      if (head === "anthropic_manual_key") credentialApi = "anthropic";
      else if (head === "openai_api_key") credentialApi = "openai";
      else {
        r.error(r.line("credential"), `credential must be an anthropic_manual_key or openai_api_key, not ${credential}`);
        credential = undefined;
      }
    }
  }
  const api = r.oneOf("api", ["anthropic", "openai"] as const) ?? credentialApi;
  const failMode = r.oneOf("fail_mode", ["deny", "allow"] as const) ?? "deny";
  const cacheTtlMs = readDuration(r, "cache_ttl", 0) ?? 0;

  let baseUrl: string | undefined;
  const rawBase = r.string("base_url");
  if (rawBase !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(rawBase);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== "https:" && url.protocol !== "http:") || url.search || url.hash || url.username || url.password) {
      r.error(r.line("base_url"), `base_url must be an http(s) URL without query or credentials, not "${rawBase}"`);
    } else baseUrl = rawBase.replace(/\/+$/, "");
  }

  if (model === undefined || policy === undefined || credential === undefined || api === undefined) return undefined;
  return {
    type: "llm_approver",
    ...common,
    model,
    credential,
    api,
    policy,
    failMode,
    cacheTtlMs,
    baseUrl: baseUrl ?? DEFAULT_BASE_URL[api],
  };
}

/** One chain step's settings: the defaults, then the rule's, then the approver block's own. */
export function stepSettings(ref: string, opts: ChainOptions): CommonApproverConfig {
  const own = opts.settings?.(ref) ?? {};
  const s: CommonApproverConfig = { ...DEFAULT_COMMON };
  if (opts.timeoutMs !== undefined) s.timeoutMs = opts.timeoutMs;
  if (opts.requireApprovers !== undefined) s.requireApprovers = opts.requireApprovers;
  for (const [k, v] of Object.entries(own)) if (v !== undefined) (s as unknown as Record<string, unknown>)[k] = v;
  return s;
}
