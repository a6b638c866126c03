// The spend settings of a config: `price "MODEL" { ... }` blocks and the
// `budget { ... }` block of a profile or a metered credential, each checked
// with FILE:LINE errors. Kept apart from policy/build.ts, which only calls in.
import { BlockReader } from "../policy/hcl/reader.ts";
import type { HclBlock } from "../policy/hcl/parse.ts";
import type { ConfigError } from "../policy/types.ts";
import type { Budget, BudgetPer } from "./budget.ts";
import type { Price } from "./prices.ts";
import { readOverVerdict } from "../policy/over-verdict.ts";

const PRICE_ATTRIBUTES = ["input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok"];
const BUDGET_ATTRIBUTES = ["daily_usd", "per", "over_budget"];

/** `price "claude-sonnet-4*" { input_per_mtok = 3, output_per_mtok = 15, ... }`: USD per million tokens. */
export function readPrice(block: HclBlock, errors: ConfigError[]): Price | undefined {
  const pattern = block.labels[0] ?? "";
  const r = new BlockReader(block, `price "${pattern}"`, errors);
  r.allow(PRICE_ATTRIBUTES);
  const before = errors.length;
  if (pattern.trim() === "") r.error(block.line, 'needs a model name or pattern: price "claude-sonnet-4*" { ... }');
  r.required("input_per_mtok");
  r.required("output_per_mtok");
  const amount = (attr: string): number | undefined => {
    const v = r.number(attr);
    if (v !== undefined && v < 0) {
      r.error(r.line(attr), `${attr} must be a price of zero or more (USD per million tokens), not ${v}`);
      return undefined;
    }
    return v;
  };
  const input = amount("input_per_mtok");
  const output = amount("output_per_mtok");
  const cacheRead = amount("cache_read_per_mtok");
  const cacheWrite = amount("cache_write_per_mtok");
  if (errors.length > before || input === undefined || output === undefined) return undefined;
  return { pattern, inputPerMtok: input, outputPerMtok: output, cacheReadPerMtok: cacheRead ?? input, cacheWritePerMtok: cacheWrite ?? input };
}

export interface BudgetContext {
  /** What owns the block (`profile "agents"`, `credential anthropic_manual_key.claude`). */
  owner: string;
  /** The scopes the owner's budget may be counted per; the first is the default. */
  pers: readonly BudgetPer[];
  /** Resolves `over_budget = [dashboard, ...]` to approver refs. */
  resolveApprovers(r: BlockReader, attr: string): string[] | undefined;
}

/** The one `budget {}` block nested in `parent`, if any. */
export function readBudget(parent: BlockReader, errors: ConfigError[], ctx: BudgetContext): Budget | undefined {
  const blocks = parent.block.blocks.filter((b) => b.type === "budget");
  if (blocks.length === 0) return undefined;
  for (const extra of blocks.slice(1)) parent.error(extra.line, `a second budget block (the first is at line ${blocks[0]!.line})`);
  const block = blocks[0]!;
  const r = new BlockReader(block, `${ctx.owner}: budget`, errors);
  r.allow(BUDGET_ATTRIBUTES);
  if (block.labels.length > 0) r.error(block.line, "budget takes no labels: budget { daily_usd = 20 }");
  const before = errors.length;
  r.required("daily_usd");
  const daily = r.number("daily_usd");
  if (daily !== undefined && !(daily > 0)) r.error(r.line("daily_usd"), `daily_usd must be an amount above zero (USD), not ${daily}`);
  const per = r.oneOf("per", ctx.pers) ?? ctx.pers[0]!;
  const overBudget = readOverVerdict(r, "over_budget", ctx.resolveApprovers);
  if (errors.length > before || daily === undefined) return undefined;
  return { dailyUsd: daily, per, overBudget, source: { file: block.file, line: block.line } };
}
