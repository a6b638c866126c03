// Today's LLM spend as Prometheus gauges, per device and per profile (and
// tokens per device), read from the gateway's ledger when scraped.
import { label } from "../events/metrics.ts";
import type { SpendLedger } from "./ledger.ts";

export function spendMetricLines(ledger: SpendLedger): string[] {
  const byDevice = new Map<string, { usd: number; input: number; output: number }>();
  const byProfile = new Map<string, number>();
  for (const r of ledger.today()) {
    const d = byDevice.get(r.device) ?? { usd: 0, input: 0, output: 0 };
    d.usd += r.usd;
    d.input += r.inputTokens + r.cacheReadTokens + r.cacheWriteTokens;
    d.output += r.outputTokens;
    byDevice.set(r.device, d);
    byProfile.set(r.profile, (byProfile.get(r.profile) ?? 0) + r.usd);
  }
  const out = [
    "# HELP clawpatrol_llm_spend_usd What LLM API calls cost today (UTC), by the config's prices, per device.",
    "# TYPE clawpatrol_llm_spend_usd gauge",
  ];
  for (const [device, d] of byDevice) out.push(`clawpatrol_llm_spend_usd{device="${label(device)}"} ${d.usd}`);
  out.push("# HELP clawpatrol_llm_profile_spend_usd What LLM API calls cost today (UTC), per profile.", "# TYPE clawpatrol_llm_profile_spend_usd gauge");
  for (const [profile, usd] of byProfile) out.push(`clawpatrol_llm_profile_spend_usd{profile="${label(profile)}"} ${usd}`);
  out.push("# HELP clawpatrol_llm_tokens LLM tokens reported today (UTC), per device and direction.", "# TYPE clawpatrol_llm_tokens gauge");
  for (const [device, d] of byDevice) {
    out.push(`clawpatrol_llm_tokens{device="${label(device)}",direction="input"} ${d.input}`, `clawpatrol_llm_tokens{device="${label(device)}",direction="output"} ${d.output}`);
  }
  return out;
}
