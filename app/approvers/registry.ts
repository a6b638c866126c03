// Approver plugins by type: a policy's approver blocks -> ApproverPlugins.
//   - `dashboard` is built in (DashboardApprover over the hub).
//   - `llm_approver` is registered here (llm.ts).
//   - `human_approver` is dispatched by its `channel` to a factory that the
//     chat module registers: registerApproverFactory("human_approver", f, "slack").
//     app/approvers/human/index.ts is imported (for that side effect) by
//     loadChatApprovers() when it exists.
// A block without a factory becomes a plugin that denies ("no approver for
// channel slack"): fail closed, never a missing approver that lets through.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { resolveSecret, type SecretSources } from "../credentials/resolve.ts";
import { log } from "../log.ts";
import type { Approver, Policy, Rule } from "../policy/types.ts";
import { parseRef } from "../policy/refs.ts";
import { COMMON_ATTRIBUTES, renderMessage } from "./config.ts";
import { DashboardApprover, DASHBOARD_REF } from "./dashboard.ts";
import { ApprovalHub, type ApprovalDecisionEvent, type ChainOptions, type HubOptions, type StepSettings } from "./hub.ts";
import { LlmApprover } from "./llm.ts";
import type { ApproverPlugin, ApproverRoute } from "./types.ts";

export interface ApproverDeps {
  policy: Policy;
  hub: ApprovalHub;
  now: () => number;
  /** Where credential secrets come from (bot tokens, API keys). */
  secrets: SecretSources;
  /** Defaults to global fetch (tests pass fakes or point base URLs at a fake server). */
  fetch?: typeof fetch;
  /** Extra CA (PEM) trusted by approvers' outgoing HTTPS (tests). */
  tlsCa?: string;
}

export type ApproverFactory = (approver: Approver, deps: ApproverDeps) => ApproverPlugin;

const factories = new Map<string, ApproverFactory>();

function key(type: string, channel?: string): string {
  return channel === undefined ? type : `${type}:${channel}`;
}

/**
 * Registers how to build plugins of a type. For `human_approver`, pass the
 * channel ("slack" | "discord" | "telegram"); a channel-less human_approver
 * factory is the fallback for channels without their own. Re-registering replaces.
 */
export function registerApproverFactory(type: string, factory: ApproverFactory, channel?: string): void {
  factories.set(key(type, channel), factory);
}

/** The factory for one approver block, if any is registered. */
export function approverFactory(approver: Approver): ApproverFactory | undefined {
  if (approver.type === "human_approver") {
    const channel = approver.config?.type === "human_approver" ? approver.config.channel : approver.settings.channel;
    return (typeof channel === "string" ? factories.get(key("human_approver", channel)) : undefined) ?? factories.get("human_approver");
  }
  return factories.get(approver.type);
}

registerApproverFactory("llm_approver", (approver, deps) => {
  if (approver.config?.type !== "llm_approver") throw new Error(`${approver.ref} has no validated llm_approver settings`);
  const llmDeps: ConstructorParameters<typeof LlmApprover>[2] = {
    now: deps.now,
    credential: deps.policy.credentials.get(approver.config.credential),
    secrets: deps.secrets,
  };
  if (deps.fetch) llmDeps.fetch = deps.fetch;
  if (deps.tlsCa) llmDeps.tlsCa = deps.tlsCa;
  return new LlmApprover(approver.ref, approver.config, llmDeps);
});

const CHAT_MODULE = new URL("./human/index.ts", import.meta.url);
let chatLoaded: Promise<"loaded" | "absent" | "failed"> | undefined;

/** Imports app/approvers/human/index.ts (which registers the chat factories) once, if it exists. */
export function loadChatApprovers(): Promise<"loaded" | "absent" | "failed"> {
  chatLoaded ??= (async () => {
    if (!existsSync(fileURLToPath(CHAT_MODULE))) return "absent";
    try {
      const mod = (await import(CHAT_MODULE.href)) as Partial<ChatModule>;
      adoptChatModule(mod);
      return "loaded";
    } catch (err) {
      log.error("chat approvers failed to load; human_approver blocks will deny", { error: err instanceof Error ? err.name : "error" });
      return "failed";
    }
  })();
  return chatLoaded;
}

/**
 * The chat module's exports, when it offers factories by channel instead of
 * registering them itself: `parseHumanApproverSettings(ref, name, settings,
 * hubKeys)` checks a block whose credential references are resolved to their
 * values, and `humanApproverFactories[channel](config, deps)` builds the plugin.
 */
interface ChatModule {
  humanApproverFactories: Record<string, (cfg: { channel: string }, deps: unknown) => ApproverPlugin>;
  parseHumanApproverSettings(
    ref: string,
    name: string,
    settings: Record<string, unknown>,
    hubKeys: readonly string[],
  ): { ok: true; config: { channel: string } } | { ok: false; error: string };
}

/** Registers adapters for the chat module's per-channel factories (unless it registered its own). */
export function adoptChatModule(mod: Partial<ChatModule>, opts: { replace?: boolean } = {}): void {
  const { humanApproverFactories: byChannel, parseHumanApproverSettings: parse } = mod;
  if (!byChannel || typeof parse !== "function") return;
  for (const channel of Object.keys(byChannel)) {
    if (!opts.replace && factories.has(key("human_approver", channel))) continue;
    registerApproverFactory(
      "human_approver",
      (approver, deps) => {
        const settings: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(approver.settings)) {
          settings[k] = typeof v === "string" ? resolveCredentialValue(approver, k, v, deps) : v;
        }
        const parsed = parse(approver.ref, approver.name, settings, COMMON_ATTRIBUTES);
        if (!parsed.ok) throw new ApproverStartError(parsed.error);
        const template = approver.config?.message;
        return byChannel[channel]!(parsed.config, {
          now: deps.now,
          fetch: deps.fetch ?? fetch,
          log: chatLog(approver.ref),
          // Telegram's webhook mode registers public_url + its route with setWebhook.
          ...(deps.policy.gateway?.publicUrl ? { publicUrl: deps.policy.gateway.publicUrl } : {}),
          ...(template ? { render: (req: Parameters<typeof renderMessage>[1]) => renderMessage(template, req) } : {}),
        });
      },
      channel,
    );
  }
}

/** A `${TYPE.NAME}` credential reference becomes the credential's secret; other strings stay. */
function resolveCredentialValue(approver: Approver, attr: string, value: string, deps: ApproverDeps): string {
  const ref = parseRef(value);
  if (!ref.ok || ref.name === undefined) return value;
  const cred = deps.policy.credentials.get(ref.ref);
  if (!cred) throw new ApproverStartError(`${approver.ref}: ${attr}: unknown credential ${ref.ref}`);
  const secret = resolveSecret(cred, deps.secrets);
  if (!secret.ok) throw new ApproverStartError(`${approver.ref}: ${attr}: ${secret.reason}`);
  return secret.value;
}

function chatLog(ref: string) {
  const at =
    (level: "debug" | "info" | "warn" | "error") =>
    (msg: string, fields?: Record<string, unknown>): void =>
      log[level](msg, { approver: ref, ...fields });
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

/** A construction failure whose message is safe to show (names settings, never values). */
export class ApproverStartError extends Error {
  override readonly name = "ApproverStartError";
}

/** A plugin that denies every ask with a fixed reason (missing or broken approver). */
export function denyingApprover(ref: string, type: ApproverPlugin["type"], reason: string): ApproverPlugin {
  return { ref, type, ask: async () => ({ decision: "deny", reason, approver: ref }) };
}

/** One policy's plugins. */
export class ApproverSet {
  private readonly plugins = new Map<string, ApproverPlugin>();
  /** Approvers that could not be built, with why (they deny). */
  readonly problems: { ref: string; reason: string }[] = [];

  constructor(readonly policy: Policy, deps: Omit<ApproverDeps, "policy">) {
    this.plugins.set(DASHBOARD_REF, new DashboardApprover(deps.hub));
    for (const approver of policy.approvers.values()) {
      const type = approver.type as ApproverPlugin["type"];
      const factory = approverFactory(approver);
      if (!factory) {
        const reason =
          approver.type === "human_approver"
            ? `no approver for channel ${String(approver.config?.type === "human_approver" ? approver.config.channel : approver.settings.channel)}`
            : `no approver for type ${approver.type}`;
        this.fail(approver.ref, type, reason);
        continue;
      }
      try {
        this.plugins.set(approver.ref, factory(approver, { ...deps, policy }));
      } catch (err) {
        const why = err instanceof ApproverStartError ? err.message : err instanceof Error ? err.name : "error";
        log.error("approver could not start", { approver: approver.ref, error: why });
        this.fail(approver.ref, type, `approver ${approver.ref} could not start`, why);
      }
    }
  }

  private fail(ref: string, type: ApproverPlugin["type"], reason: string, problem = reason): void {
    this.problems.push({ ref, reason: problem });
    this.plugins.set(ref, denyingApprover(ref, type, reason));
  }

  get(ref: string): ApproverPlugin | undefined {
    return this.plugins.get(ref);
  }

  /** Every plugin's public HTTP routes (chat interactivity callbacks). */
  routes(): ApproverRoute[] {
    return [...this.plugins.values()].flatMap((p) => p.routes?.() ?? []);
  }

  close(): void {
    for (const p of this.plugins.values()) {
      try {
        p.close?.();
      } catch (err) {
        log.warn("approver close failed", { approver: p.ref, error: err instanceof Error ? err.name : "error" });
      }
    }
  }
}

/** A rule's chain options from the policy: each approver's own settings, the rule's remember. */
export function chainOptionsFor(policy: Policy, rule: Rule, signal?: AbortSignal): ChainOptions {
  const opts: ChainOptions = {
    rule: rule.name,
    settings: (ref): Partial<StepSettings> | undefined => {
      const c = policy.approvers.get(ref)?.config;
      if (!c) return undefined;
      return {
        timeoutMs: c.timeoutMs,
        onTimeout: c.onTimeout,
        requireApprovers: c.requireApprovers,
        message: c.message,
        async: c.async,
        asyncTimeoutMs: c.asyncTimeoutMs,
      };
    },
  };
  if (rule.rememberMs !== undefined) opts.rememberMs = rule.rememberMs;
  if (signal) opts.signal = signal;
  return opts;
}

export interface ApprovalsOptions extends Partial<Pick<HubOptions, "realTimers" | "retryAfterS" | "resumeWaitMs" | "resultTtlMs" | "maxResults" | "maxRemembered" | "maxPending">> {
  now?: () => number;
  secrets: SecretSources;
  publish?: (event: ApprovalDecisionEvent) => void;
  fetch?: typeof fetch;
  tlsCa?: string;
}

/** The hub plus the current policy's plugins; setPolicy swaps them on reload. */
export interface Approvals {
  hub: ApprovalHub;
  current(): ApproverSet;
  setPolicy(policy: Policy): void;
  close(): void;
}

/** Wires a hub to a policy's plugins (loads the chat approvers first). */
export async function createApprovals(policy: Policy, o: ApprovalsOptions): Promise<Approvals> {
  await loadChatApprovers();
  const now = o.now ?? Date.now;
  let set: ApproverSet | undefined;
  const hubOptions: HubOptions = { now, plugins: (ref) => set?.get(ref) };
  if (o.publish) hubOptions.publish = o.publish;
  for (const k of ["realTimers", "retryAfterS", "resumeWaitMs", "resultTtlMs", "maxResults", "maxRemembered", "maxPending"] as const) {
    if (o[k] !== undefined) (hubOptions as unknown as Record<string, unknown>)[k] = o[k];
  }
  const hub = new ApprovalHub(hubOptions);
  const deps: Omit<ApproverDeps, "policy"> = { hub, now, secrets: o.secrets };
  if (o.fetch) deps.fetch = o.fetch;
  if (o.tlsCa) deps.tlsCa = o.tlsCa;
  const build = (p: Policy) => {
    const next = new ApproverSet(p, deps);
    for (const problem of next.problems) log.warn("approver unavailable; it denies", problem);
    return next;
  };
  set = build(policy);
  return {
    hub,
    current: () => set!,
    setPolicy(p) {
      // Asks already running keep their plugin objects; the old set's close
      // (e.g. a chat plugin's poller) may end them, which the hub answers as deny.
      const old = set;
      set = build(p);
      old?.close();
    },
    close() {
      hub.close();
      set?.close();
    },
  };
}
