// What LLM calls cost, per UTC day: one row per device, profile,
// credential and model, and running totals for the scopes a budget counts
// (a device, a profile, a credential, a credential used by one device).
// Pure bookkeeping with the clock passed in; app/store/spend.ts persists
// every row as it changes, so a restart keeps the day's spend.
import type { LlmUsage } from "./usage.ts";

export type SpendScope = "device" | "profile" | "credential" | "credential-device";

export interface SpendRow {
  day: string;
  device: string;
  profile: string;
  credential: string;
  model: string;
  usd: number;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
  requests: number;
}

export interface SpendWho {
  device: string;
  profile: string;
  credential: string;
}

/** The UTC day of `ms` as YYYY-MM-DD. */
export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** Milliseconds from `ms` to the next UTC midnight (when every daily budget starts over). */
export function msToNextUtcDay(ms: number): number {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1) - ms;
}

export class SpendLedger {
  private readonly rows = new Map<string, SpendRow>();
  private readonly totals = new Map<string, number>();

  constructor(
    readonly now: () => number = Date.now,
    /** Called with each row after it changed (the store writes it). */
    private readonly onChange: (row: SpendRow) => void = () => undefined,
  ) {}

  /** Adds one response's priced usage. */
  record(who: SpendWho, usage: LlmUsage): SpendRow {
    const day = utcDay(this.now());
    const key = [day, who.device, who.profile, who.credential, usage.model].join("\0");
    let row = this.rows.get(key);
    if (!row) {
      this.pruneBefore(day);
      row = { day, ...who, model: usage.model, usd: 0, inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0, requests: 0 };
      this.rows.set(key, row);
    }
    const usd = usage.usd ?? 0;
    row.usd += usd;
    row.inputTokens += usage.inputTokens;
    row.outputTokens += usage.outputTokens;
    row.cacheReadTokens += usage.cacheReadTokens;
    row.cacheWriteTokens += usage.cacheWriteTokens;
    row.requests += 1;
    this.addTotals(row, usd);
    this.onChange(row);
    return row;
  }

  /** Today's spend (USD) of one scope: a device name, a profile name, a credential ref, or `credential\0device`. */
  spent(scope: SpendScope, key: string): number {
    return this.totals.get(`${utcDay(this.now())}\0${scope}\0${key}`) ?? 0;
  }

  /** Restores saved rows (today's count toward budgets; older ones are dropped). */
  restore(rows: SpendRow[]): void {
    const today = utcDay(this.now());
    for (const r of rows) {
      if (r.day !== today || !Number.isFinite(r.usd)) continue;
      const key = [r.day, r.device, r.profile, r.credential, r.model].join("\0");
      if (this.rows.has(key)) continue;
      this.rows.set(key, { ...r });
      this.addTotals(r, r.usd);
    }
  }

  /** Today's rows. */
  today(): SpendRow[] {
    const day = utcDay(this.now());
    return [...this.rows.values()].filter((r) => r.day === day);
  }

  private addTotals(row: SpendRow, usd: number): void {
    const add = (scope: SpendScope, key: string) => {
      const k = `${row.day}\0${scope}\0${key}`;
      this.totals.set(k, (this.totals.get(k) ?? 0) + usd);
    };
    add("device", row.device);
    add("profile", row.profile);
    add("credential", row.credential);
    add("credential-device", `${row.credential}\0${row.device}`);
  }

  /** Yesterday's rows are the store's to keep; memory holds only today. */
  private pruneBefore(day: string): void {
    for (const [k, r] of this.rows) if (r.day < day) this.rows.delete(k);
    for (const k of this.totals.keys()) if (k.slice(0, 10) < day) this.totals.delete(k);
  }
}

/** The gateway's ledger: one per process. Tests pass their own. */
let processLedger = new SpendLedger();

export function spendLedger(): SpendLedger {
  return processLedger;
}

export function setSpendLedger(ledger: SpendLedger): void {
  processLedger = ledger;
}
