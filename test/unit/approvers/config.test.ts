// Approver settings: durations, message templates, and the typed config the
// loader produces (the FILE:LINE errors are golden cases in test/unit/policy/golden/approvers.*).
import { describe, expect, test } from "bun:test";
import { checkMessageTemplate, DEFAULT_COMMON, parseDuration } from "../../../app/approvers/config.ts";
import { policyFrom } from "../policy/helpers.ts";

describe("parseDuration", () => {
  const table: [unknown, number | undefined][] = [
    ["30s", 30_000],
    ["5m", 300_000],
    ["1h30m", 5_400_000],
    ["250ms", 250],
    ["2d", 172_800_000],
    ["0", 0],
    [" 10m ", 600_000],
    ["10", undefined],
    ["-1s", undefined],
    ["1.5m", undefined],
    ["5 m", undefined],
    ["", undefined],
    [30, undefined],
    ["forever", undefined],
  ];
  for (const [input, want] of table) test(JSON.stringify(input), () => expect(parseDuration(input)).toBe(want));
});

describe("checkMessageTemplate", () => {
  test("known placeholders pass, unknown and unbalanced ones are reported", () => {
    expect(checkMessageTemplate("{{method}} {{ host }}{{path}} by {{device}}")).toEqual([]);
    const unknown = checkMessageTemplate("{{url}} {{method}}");
    expect(unknown).toHaveLength(1);
    expect(unknown[0]).toStartWith("unknown placeholder {{url}}");
    const unbalanced = checkMessageTemplate("{{host");
    expect(unbalanced).toHaveLength(1);
    expect(unbalanced[0]).toStartWith("unbalanced");
    expect(checkMessageTemplate("plain text")).toEqual([]);
  });
});

const HCL = `
schema_version = 1
endpoint "https" "gh" { hosts = ["api.github.com"] }
credential "anthropic_manual_key" "judge" {}
credential "openai_api_key" "oai" {}
approver "llm_approver" "judge" {
  model      = "claude-sonnet-4-5"
  credential = anthropic_manual_key.judge
  policy     = <<-EOT
    Deny deletes.
  EOT
  cache_ttl  = "10m"
  base_url   = "http://127.0.0.1:9999/"
}
approver "llm_approver" "gpt" {
  model      = "gpt-5"
  credential = openai_api_key.oai
  policy     = "Deny deletes."
  fail_mode  = "allow"
  timeout    = "20s"
}
approver "human_approver" "oncall" {
  channel           = "slack"
  channel_id        = "C123"
  bot_token         = bearer_token_ref_is_the_chat_modules_business
  timeout           = "10m"
  on_timeout        = "allow"
  require_approvers = 2
  message           = "{{method}} {{path}}"
  async             = true
  async_timeout     = "2h"
}
rule "r" {
  endpoint = https.gh
  approve  = [dashboard, llm_approver.judge]
  remember = "10m"
}
`;

describe("typed approver config from the loader", () => {
  test("llm_approver: api from the credential type, defaults, trimmed base_url", async () => {
    const p = await policyFrom(HCL.replace("bearer_token_ref_is_the_chat_modules_business", '"literal"'));
    expect(p.approvers.get("llm_approver.judge")?.config).toEqual({
      type: "llm_approver",
      ...DEFAULT_COMMON,
      model: "claude-sonnet-4-5",
      credential: "anthropic_manual_key.judge",
      api: "anthropic",
      policy: "Deny deletes.\n",
      failMode: "deny",
      cacheTtlMs: 600_000,
      baseUrl: "http://127.0.0.1:9999",
    });
    expect(p.approvers.get("llm_approver.gpt")?.config).toMatchObject({
      api: "openai",
      baseUrl: "https://api.openai.com",
      failMode: "allow",
      timeoutMs: 20_000,
      cacheTtlMs: 0,
    });
  });

  test("human_approver: common settings typed, channel settings kept raw", async () => {
    const p = await policyFrom(HCL.replace("bearer_token_ref_is_the_chat_modules_business", '"literal"'));
    expect(p.approvers.get("human_approver.oncall")?.config).toEqual({
      type: "human_approver",
      timeoutMs: 600_000,
      onTimeout: "allow",
      requireApprovers: 2,
      message: "{{method}} {{path}}",
      async: true,
      asyncTimeoutMs: 7_200_000,
      channel: "slack",
      channelSettings: { channel_id: "C123", bot_token: "literal" },
    });
  });

  test("rule remember is parsed to rememberMs", async () => {
    const p = await policyFrom(HCL.replace("bearer_token_ref_is_the_chat_modules_business", '"literal"'));
    expect(p.rules[0]!.rememberMs).toBe(600_000);
  });
});
