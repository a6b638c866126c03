// Wiring: a loaded policy -> plugins (dashboard built in, llm registered,
// human_approver by channel, fail closed without a factory) -> the hub with
// each approver's settings and the rule's remember.
import { afterAll, describe, expect, test } from "bun:test";
import { flush, FakeClock, request } from "./helpers.ts";
import { ApprovalHub } from "../../../app/approvers/hub.ts";
import {
  adoptChatModule,
  ApproverSet,
  chainOptionsFor,
  createApprovals,
  loadChatApprovers,
  registerApproverFactory,
} from "../../../app/approvers/registry.ts";
import type { Approver, Policy } from "../../../app/policy/types.ts";
import { policyFrom } from "../policy/helpers.ts";
import type { ApprovalRequest } from "../../../app/approvers/types.ts";

// A fake of the Anthropic Messages API at the HTTP level (see llm.test.ts for the shape checks).
const KEY = "sk-ant-registry-test-key";
const fake = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    if (req.headers.get("x-api-key") !== KEY) return Response.json({ type: "error" }, { status: 401 });
    const body = (await req.json()) as { messages: { content: string }[] };
    const deny = body.messages[0]!.content.includes("DELETE");
    const text = JSON.stringify(deny ? { decision: "deny", reason: "deletes" } : { decision: "allow", reason: "fine" });
    return Response.json({ type: "message", content: [{ type: "text", text }] });
  },
});
afterAll(() => fake.stop(true));
// Test files share one process: leave the real chat module registered.
afterAll(async () =>
  adoptChatModule((await import("../../../app/approvers/human/index.ts")) as unknown as Parameters<typeof adoptChatModule>[0], { replace: true }),
);

const HCL = `
schema_version = 1
gateway { public_url = "https://gw.example.com" }
endpoint "https" "gh" { hosts = ["api.github.com"] }
credential "anthropic_manual_key" "judge" {}
credential "bearer_token" "slackbot" {}
approver "llm_approver" "judge" {
  model      = "claude-test"
  credential = anthropic_manual_key.judge
  policy     = "Deny deletes."
  base_url   = "http://127.0.0.1:${fake.port}"
  timeout    = "30s"
}
approver "human_approver" "oncall" {
  channel    = "telegram"
  chat_id    = "42"
  bot_token  = bearer_token.slackbot
  timeout    = "2m"
  message    = "{{device}}: {{method}} {{path}}"
}
rule "judged" {
  endpoint = https.gh
  approve  = [dashboard, llm_approver.judge]
  remember = "10m"
}
`;

describe("ApproverSet", () => {
  test("a human_approver whose channel has no factory denies (fail closed)", async () => {
    const approver: Approver = { type: "human_approver", name: "x", ref: "human_approver.x", settings: { channel: "pager" }, source: { file: "t", line: 1 } };
    const policy = { approvers: new Map([[approver.ref, approver]]), credentials: new Map() } as unknown as Policy;
    const hub = new ApprovalHub({ now: Date.now, plugins: () => undefined, realTimers: false });
    const set = new ApproverSet(policy, { hub, now: Date.now, secrets: {} });
    expect(set.problems).toEqual([{ ref: "human_approver.x", reason: "no approver for channel pager" }]);
    expect(await set.get("human_approver.x")!.ask(request(), { signal: new AbortController().signal, now: Date.now })).toEqual({
      decision: "deny",
      reason: "no approver for channel pager",
      approver: "human_approver.x",
    });
    expect(set.get("dashboard")?.type).toBe("dashboard");
  });

  test("a factory that throws leaves a denying approver, and the problem is reported", async () => {
    registerApproverFactory("human_approver", () => {
      throw new Error("kaput");
    }, "discord");
    const approver: Approver = { type: "human_approver", name: "d", ref: "human_approver.d", settings: { channel: "discord" }, source: { file: "t", line: 1 } };
    const policy = { approvers: new Map([[approver.ref, approver]]), credentials: new Map() } as unknown as Policy;
    const hub = new ApprovalHub({ now: Date.now, plugins: () => undefined, realTimers: false });
    const set = new ApproverSet(policy, { hub, now: Date.now, secrets: {} });
    expect(set.problems[0]!.ref).toBe("human_approver.d");
    expect((await set.get("human_approver.d")!.ask(request(), { signal: new AbortController().signal, now: Date.now })).decision).toBe("deny");
  });

  test("chat module adapter: credential references resolved, hub settings passed as known keys, message rendered", async () => {
    const policy = await policyFrom(HCL);
    // The real chat module loads lazily and would replace this fake if it
    // finished loading afterwards: load it first, put it back at the end.
    await loadChatApprovers();
    const calls: { settings: Record<string, unknown>; hubKeys: readonly string[]; rendered?: string }[] = [];
    adoptChatModule({
      parseHumanApproverSettings: (ref, name, settings, hubKeys) => {
        calls.push({ settings, hubKeys });
        return { ok: true, config: { channel: "telegram" } };
      },
      humanApproverFactories: {
        telegram: (_cfg, deps) => {
          calls.at(-1)!.rendered = (deps as { render: (r: ApprovalRequest) => string }).render(request());
          return { ref: "human_approver.oncall", type: "human_approver", ask: async () => ({ decision: "allow", reason: "ok", approver: "human_approver.oncall", operator: "tg:1" }) };
        },
      },
    }, { replace: true });
    const hub = new ApprovalHub({ now: Date.now, plugins: () => undefined, realTimers: false });
    const set = new ApproverSet(policy, { hub, now: Date.now, secrets: { env: { CLAWPATROL_SECRET_SLACKBOT: "xoxb-secret" } } });
    expect(set.problems).toEqual([]);
    expect(calls[0]!.settings).toMatchObject({ channel: "telegram", chat_id: "42", bot_token: "xoxb-secret", timeout: "2m" });
    expect(calls[0]!.hubKeys).toContain("message");
    expect(calls[0]!.rendered).toBe("laptop: PUT /repos/o/r/pulls/1/merge");

    // Without the secret the approver denies, and the problem names the credential, not a value.
    const without = new ApproverSet(policy, { hub, now: Date.now, secrets: { env: {} } });
    expect(without.problems[0]!.reason).toContain("bot_token: credential bearer_token.slackbot: no secret found");
  });
});

describe("createApprovals + chainOptionsFor", () => {
  test("dashboard then llm, with the rule's remember; a different request is judged again", async () => {
    const policy = await policyFrom(HCL);
    const clock = new FakeClock();
    const approvals = await createApprovals(policy, { now: clock.now, secrets: { env: { CLAWPATROL_SECRET_JUDGE: KEY } }, realTimers: false });
    const { hub } = approvals;
    const rule = policy.rules[0]!;
    const req = request({ rule: rule.name });
    const p = hub.request(req, rule.approve!, chainOptionsFor(policy, rule));
    await flush();
    expect(hub.pending()[0]).toMatchObject({ awaiting: "dashboard", decidable: true });
    hub.decide(req.id, { decision: "allow", reason: "ok", operator: "alice" });
    const r = await p;
    expect(r.decision).toBe("allow");
    expect(r.approvals.map((v) => `${v.approver}/${v.operator}`)).toEqual(["dashboard/alice", "llm_approver.judge/claude-test"]);

    const again = await hub.request(request({ rule: rule.name }), rule.approve!, chainOptionsFor(policy, rule));
    expect(again.remembered).toBe(true);

    const del = request({ rule: rule.name, method: "DELETE", fingerprint: "fp-del" });
    const q = hub.request(del, rule.approve!, chainOptionsFor(policy, rule));
    await flush();
    hub.decide(del.id, { decision: "allow", reason: "ok", operator: "alice" });
    expect(await q).toMatchObject({ decision: "deny", reason: "denied by claude-test (llm_approver.judge): deletes" });
    approvals.close();
  });

  test("an approver block's timeout reaches the hub", async () => {
    const policy = await policyFrom(HCL);
    const opts = chainOptionsFor(policy, policy.rules[0]!);
    expect(opts.rememberMs).toBe(600_000);
    expect(opts.settings!("llm_approver.judge")).toMatchObject({ timeoutMs: 30_000, onTimeout: "deny", requireApprovers: 1 });
    expect(opts.settings!("dashboard")).toBeUndefined();
  });
});
