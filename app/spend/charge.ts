// One response's reported usage priced and added to the gateway's ledger:
// what the HTTPS shell calls as it publishes the request's event.
import { spendLedger, type SpendWho } from "./ledger.ts";
import { priced, type Price } from "./prices.ts";
import type { LlmUsage } from "./usage.ts";

/** The usage with its cost, counted toward today's spend of `who`. */
export function chargeUsage(prices: readonly Price[], who: SpendWho, usage: LlmUsage): LlmUsage {
  const out = priced(prices, usage);
  spendLedger().record(who, out);
  return out;
}
