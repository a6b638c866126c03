// What LLM tokens cost: the config's `price "MODEL" { ... }` blocks (USD per
// million tokens), matched against the model a response names. An exact
// name wins, then the most specific `*` pattern. A model no price matches
// is charged at the highest configured price of each kind: a budget errs
// toward stopping early, never toward letting spend through unseen.
import type { LlmUsage } from "./usage.ts";

export interface Price {
  /** The model name, or a pattern with `*` (`claude-sonnet-4*`). */
  pattern: string;
  inputPerMtok: number;
  outputPerMtok: number;
  /** Default: the input price. */
  cacheReadPerMtok: number;
  /** Default: the input price. */
  cacheWritePerMtok: number;
}

interface Compiled {
  price: Price;
  regex: RegExp;
  /** How specific: the number of literal characters. */
  weight: number;
}

const compiled = new WeakMap<readonly Price[], Compiled[]>();

function compile(prices: readonly Price[]): Compiled[] {
  let c = compiled.get(prices);
  if (!c) {
    c = prices.map((price) => ({
      price,
      regex: new RegExp(`^${price.pattern.split("*").map(escapeRegex).join(".*")}$`, "i"),
      weight: price.pattern.replaceAll("*", "").length,
    }));
    compiled.set(prices, c);
  }
  return c;
}

/** The price for `model`: exact beats pattern, longer literal text beats shorter, then declaration order. */
export function priceFor(prices: readonly Price[], model: string): Price | undefined {
  let best: Compiled | undefined;
  for (const c of compile(prices)) {
    if (!c.regex.test(model)) continue;
    if (!c.price.pattern.includes("*")) return c.price;
    if (!best || c.weight > best.weight) best = c;
  }
  return best?.price;
}

/** The highest price of each kind: what an unknown model is charged. */
export function ceilingPrice(prices: readonly Price[]): Price | undefined {
  if (prices.length === 0) return undefined;
  const max = (k: keyof Omit<Price, "pattern">) => Math.max(...prices.map((p) => p[k]));
  return { pattern: "*", inputPerMtok: max("inputPerMtok"), outputPerMtok: max("outputPerMtok"), cacheReadPerMtok: max("cacheReadPerMtok"), cacheWritePerMtok: max("cacheWritePerMtok") };
}

/** The usage with its cost set (`usd`, and `unpriced` when the ceiling was used); unchanged when no price is configured. */
export function priced(prices: readonly Price[], usage: LlmUsage): LlmUsage {
  const exact = priceFor(prices, usage.model);
  const price = exact ?? ceilingPrice(prices);
  if (!price) return usage;
  const usd =
    (usage.inputTokens * price.inputPerMtok +
      usage.outputTokens * price.outputPerMtok +
      usage.cacheReadTokens * price.cacheReadPerMtok +
      usage.cacheWriteTokens * price.cacheWritePerMtok) /
    1_000_000;
  const out: LlmUsage = { ...usage, usd };
  if (!exact) out.unpriced = true;
  return out;
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
