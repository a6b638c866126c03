// Spend budgets through the real config loader and judge(): validation with
// FILE:LINE, the scope each budget counts, the request at which it trips,
// over_budget approvals, and fixtures that assert them.
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { decide, httpFactsFromRequest } from "../../../app/policy/engine.ts";
import { runFixtures } from "../../../app/policy/fixtures.ts";
import { formatConfigError, loadPolicy } from "../../../app/policy/load.ts";
import type { Policy } from "../../../app/policy/types.ts";
import { SpendLedger, msToNextUtcDay, utcDay } from "../../../app/spend/ledger.ts";
import { priced } from "../../../app/spend/prices.ts";
import type { LlmUsage } from "../../../app/spend/usage.ts";
import { policyFrom, tempDir } from "../policy/helpers.ts";

const BASE = `
schema_version = 1
defaults { verdict = "allow" }
endpoint "https" "claude" {
  hosts      = ["api.anthropic.com"]
  credential = anthropic_manual_key.claude
}
endpoint "https" "other" { hosts = ["api.example.com"] }
credential "anthropic_manual_key" "claude" {}
price "claude-sonnet-4*" {
  input_per_mtok  = 3
  output_per_mtok = 15
}
`;

async function errorsOf(hcl: string): Promise<string[]> {
  const dir = tempDir();
  const file = join(dir, "gateway.hcl");
  writeFileSync(file, hcl);
  const r = await loadPolicy(file, { env: {} });
  return r.ok ? [] : r.errors.map((e) => formatConfigError(e).replace(`${dir}/`, ""));
}

/** A response's usage worth `usd` dollars at the sonnet price (output tokens only). */
function usageWorth(usd: number): LlmUsage {
  return { provider: "anthropic", model: "claude-sonnet-4-5", inputTokens: 0, outputTokens: Math.ceil((usd * 1e6) / 15), cacheReadTokens: 0, cacheWriteTokens: 0, complete: true };
}

function ask(policy: Policy, ledger: SpendLedger, device: string, profile: string, endpoint = "https.claude") {
  const facts = httpFactsFromRequest("POST", "api.anthropic.com", "/v1/messages", [], undefined, false);
  return decide(policy, { device, profile, endpoint: policy.endpoints.get(endpoint)! }, facts, { limiter: null, spend: ledger });
}

describe("budget config", () => {
  test("a profile's and a credential's budget are read, with their defaults", async () => {
    const policy = await policyFrom(`${BASE}
profile "agents" {
  credentials = [anthropic_manual_key.claude]
  budget { daily_usd = 20 }
}
profile "team" {
  credentials = [anthropic_manual_key.claude]
  budget {
    daily_usd   = 50.5
    per         = "profile"
    over_budget = [dashboard]
  }
}
`);
    expect(policy.profiles.get("agents")!.budget).toMatchObject({ dailyUsd: 20, per: "device", overBudget: { verdict: "deny" } });
    expect(policy.profiles.get("team")!.budget).toMatchObject({ dailyUsd: 50.5, per: "profile", overBudget: { approve: ["dashboard"] } });
    expect(policy.prices).toEqual([{ pattern: "claude-sonnet-4*", inputPerMtok: 3, outputPerMtok: 15, cacheReadPerMtok: 3, cacheWritePerMtok: 3 }]);
  });

  test("every mistake is named with its file and line", async () => {
    const errors = await errorsOf(`${BASE}
credential "bearer_token" "gh" {
  budget { daily_usd = 5 }
}
profile "a" {
  budget {
    daily_usd = -1
    per       = "credential"
  }
}
profile "b" {
  budget {
    daily_usd   = 5
    over_budget = "maybe"
  }
  budget { daily_usd = 6 }
}
profile "c" {
  budget { per = "device" }
}
price "gpt-4o" {
  input_per_mtok = -3
  output         = 10
}
`);
    expect(errors).toEqual([
      'gateway.hcl:16: credential bearer_token.gh: unknown block "budget"; it takes no blocks',
      "gateway.hcl:20: profile \"a\": budget: daily_usd must be an amount above zero (USD), not -1",
      'gateway.hcl:21: profile "a": budget: per must be "device" or "profile", not "credential"',
      'gateway.hcl:27: profile "b": budget: over_budget must be "deny" or a list of approvers, like [dashboard]',
      "gateway.hcl:29: profile \"b\": a second budget block (the first is at line 25)",
      'gateway.hcl:32: profile "c": budget: missing required attribute "daily_usd"',
      'gateway.hcl:34: price "gpt-4o": missing required attribute "output_per_mtok"',
      'gateway.hcl:35: price "gpt-4o": input_per_mtok must be a price of zero or more (USD per million tokens), not -3',
      'gateway.hcl:36: price "gpt-4o": unknown attribute "output"; expected one of: input_per_mtok, output_per_mtok, cache_read_per_mtok, cache_write_per_mtok',
    ]);
  });

  test("a budget without any price is refused: it could never be reached", async () => {
    const errors = await errorsOf(`
schema_version = 1
credential "openai_api_key" "oa" {
  budget { daily_usd = 5 }
}
`);
    expect(errors).toEqual([expect.stringContaining("gateway.hcl:4: budget: no price is configured")]);
  });
});

describe("budgets in judge()", () => {
  const now = Date.parse("2026-12-07T23:59:00Z");

  test("per device: the request after the spend reaches the budget is denied with when to retry; other devices and endpoints go on", async () => {
    const policy = await policyFrom(`${BASE}
profile "agents" {
  credentials = [anthropic_manual_key.claude]
  budget { daily_usd = 1 }
}
`);
    const ledger = new SpendLedger(() => now);
    const who = { device: "laptop", profile: "agents", credential: "anthropic_manual_key.claude" };
    const trace: string[] = [];
    // Each response costs $0.30: allowed while the day's spend is under $1 (0, 0.3, 0.6, 0.9), the fifth is stopped.
    for (let i = 0; i < 5; i++) {
      const d = ask(policy, ledger, "laptop", "agents");
      trace.push(d.verdict);
      if (d.verdict === "allow") ledger.record(who, priced(policy.prices, usageWorth(0.3)));
    }
    expect(trace).toEqual(["allow", "allow", "allow", "allow", "deny"]);
    const denied = ask(policy, ledger, "laptop", "agents");
    expect(denied.overBudget).toMatchObject({ budget: 'profile "agents"', dailyUsd: 1, retryAfterMs: 60_000 });
    expect(denied.overBudget!.spentUsd).toBeCloseTo(1.2, 9);
    expect(denied.reason).toBe('the daily budget of $1.00 of profile "agents" is spent ($1.20 today, per device)');
    expect(denied.credential).toBeUndefined();
    expect(ask(policy, ledger, "desktop", "agents").verdict).toBe("allow");
    expect(ask(policy, ledger, "laptop", "agents", "https.other").verdict).toBe("allow");
  });

  test("per profile and per credential: every device's spend counts; a credential budget per device counts only that device's", async () => {
    const policy = await policyFrom(`
schema_version = 1
defaults { verdict = "allow" }
endpoint "https" "claude" {
  hosts      = ["api.anthropic.com"]
  credential = anthropic_manual_key.claude
}
credential "anthropic_manual_key" "claude" {
  budget {
    daily_usd = 2
    per       = "device"
  }
}
price "*" {
  input_per_mtok  = 3
  output_per_mtok = 15
}
profile "team" {
  credentials = [anthropic_manual_key.claude]
  budget {
    daily_usd = 3
    per       = "profile"
  }
}
`);
    const ledger = new SpendLedger(() => now);
    const cred = "anthropic_manual_key.claude";
    ledger.record({ device: "a", profile: "team", credential: cred }, priced(policy.prices, usageWorth(2)));
    // a spent its per-device $2 of the credential; b has not, and the team ($3) has room.
    expect(ask(policy, ledger, "a", "team")).toMatchObject({ verdict: "deny", overBudget: { budget: cred } });
    expect(ask(policy, ledger, "b", "team").verdict).toBe("allow");
    ledger.record({ device: "b", profile: "team", credential: cred }, priced(policy.prices, usageWorth(1)));
    expect(ask(policy, ledger, "b", "team")).toMatchObject({ verdict: "deny", overBudget: { budget: 'profile "team"' } });
  });

  test("over_budget = [approvers] holds the request instead, with the credential kept for after approval", async () => {
    const policy = await policyFrom(`${BASE}
profile "agents" {
  credentials = [anthropic_manual_key.claude]
  budget {
    daily_usd   = 1
    over_budget = [dashboard]
  }
}
`);
    const ledger = new SpendLedger(() => now);
    ledger.record({ device: "x", profile: "agents", credential: "anthropic_manual_key.claude" }, priced(policy.prices, usageWorth(1.5)));
    expect(ask(policy, ledger, "x", "agents")).toMatchObject({ verdict: "approve", approvers: ["dashboard"], credential: "anthropic_manual_key.claude" });
  });

  test("a new UTC day starts every budget over", () => {
    let t = Date.parse("2026-12-07T23:59:59Z");
    const ledger = new SpendLedger(() => t);
    ledger.record({ device: "d", profile: "p", credential: "c" }, { ...usageWorth(5), usd: 5 });
    expect(ledger.spent("device", "d")).toBe(5);
    expect(utcDay(t)).toBe("2026-12-07");
    expect(msToNextUtcDay(t)).toBe(1000);
    t += 1000;
    expect(ledger.spent("device", "d")).toBe(0);
    ledger.record({ device: "d", profile: "p", credential: "c" }, { ...usageWorth(1), usd: 1 });
    expect(ledger.today()).toHaveLength(1);
  });
});

describe("fixtures", () => {
  test("spent_usd and expect.over_budget", async () => {
    const dir = tempDir();
    const config = join(dir, "gateway.hcl");
    writeFileSync(config, `${BASE}
profile "agents" {
  credentials = [anthropic_manual_key.claude]
  budget { daily_usd = 10 }
}
`);
    const fixtures = join(dir, "cases.json");
    writeFileSync(
      fixtures,
      JSON.stringify([
        { name: "within", profile: "agents", spent_usd: 9.99, request: { method: "POST", url: "https://api.anthropic.com/v1/messages" }, expect: { verdict: "allow", over_budget: false } },
        { name: "spent", profile: "agents", spent_usd: 10, request: { method: "POST", url: "https://api.anthropic.com/v1/messages" }, expect: { verdict: "deny", over_budget: true } },
        { name: "wrong", profile: "agents", spent_usd: 10, request: { method: "POST", url: "https://api.anthropic.com/v1/messages" }, expect: { verdict: "allow" } },
      ]),
    );
    const loaded = await loadPolicy(config, { env: {} });
    if (!loaded.ok) throw new Error("config");
    const run = await runFixtures(loaded.policy, fixtures);
    expect(run.report).toContain("ok    within");
    expect(run.report).toContain("ok    spent");
    expect(run.report).toContain("FAIL  wrong");
    expect(run.report).toContain("got:      deny, the daily budget of $10.00 of profile \"agents\" is spent");
    expect(run.exitCode).toBe(1);
  });
});
