// LLM spend in the state database (app/spend/ledger.ts does the counting):
// each changed row is written at once (a few per second at most: one per
// LLM response), so a restart, or a crash, keeps the day's spend, and the
// dashboard process reads what the gateway process counted.
import type { Database } from "bun:sqlite";
import { setSpendLedger, spendLedger, SpendLedger, utcDay, type SpendRow } from "../spend/ledger.ts";
import { log } from "../log.ts";

/** Days of spend rows kept. */
const KEEP_DAYS = 400;

interface Row {
  day: string;
  device: string;
  profile: string;
  credential: string;
  model: string;
  usd: number;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
  requests: number;
}

function fromRow(r: Row): SpendRow {
  return {
    day: r.day,
    device: r.device,
    profile: r.profile,
    credential: r.credential,
    model: r.model,
    usd: r.usd,
    inputTokens: r.input_tokens,
    outputTokens: r.output_tokens,
    cacheReadTokens: r.cache_read_tokens,
    cacheWriteTokens: r.cache_write_tokens,
    requests: r.requests,
  };
}

export interface PersistedSpend {
  ledger: SpendLedger;
  /** Puts back the ledger that was installed before. */
  close(): void;
}

/** Loads today's spend into a new ledger that writes every change, and installs it as the gateway's. */
export function persistSpend(db: Database, now: () => number = Date.now): PersistedSpend {
  const cutoff = utcDay(now() - KEEP_DAYS * 86_400_000);
  db.run("DELETE FROM spend_daily WHERE day < ?", [cutoff]);
  const upsert = db.query(`INSERT INTO spend_daily (day, device, profile, credential, model, usd, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, requests)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (day, device, profile, credential, model) DO UPDATE SET usd = excluded.usd, input_tokens = excluded.input_tokens,
      output_tokens = excluded.output_tokens, cache_read_tokens = excluded.cache_read_tokens, cache_write_tokens = excluded.cache_write_tokens, requests = excluded.requests`);
  const ledger = new SpendLedger(now, (r) => {
    try {
      upsert.run(r.day, r.device, r.profile, r.credential, r.model, r.usd, r.inputTokens, r.outputTokens, r.cacheReadTokens, r.cacheWriteTokens, r.requests);
    } catch (e) {
      // A lost write costs a restart some of the day's count, never a request.
      log.warn("spend not saved", { error: e instanceof Error ? e.message : String(e) });
    }
  });
  ledger.restore(spendRows(db, utcDay(now())));
  const previous = spendLedger();
  setSpendLedger(ledger);
  return {
    ledger,
    close() {
      if (spendLedger() === ledger) setSpendLedger(previous);
    },
  };
}

/** The rows of one UTC day (YYYY-MM-DD). */
export function spendRows(db: Database, day: string): SpendRow[] {
  return (db.query("SELECT * FROM spend_daily WHERE day = ? ORDER BY usd DESC").all(day) as Row[]).map(fromRow);
}

export interface DeviceSpend {
  device: string;
  usd: number;
  requests: number;
  inputTokens: number;
  outputTokens: number;
}

/** Per device, one day's spend (most first). */
export function spendByDevice(db: Database, day: string): DeviceSpend[] {
  return db
    .query(
      `SELECT device, SUM(usd) AS usd, SUM(requests) AS requests, SUM(input_tokens + cache_read_tokens + cache_write_tokens) AS inputTokens,
        SUM(output_tokens) AS outputTokens FROM spend_daily WHERE day = ? GROUP BY device ORDER BY usd DESC`,
    )
    .all(day) as DeviceSpend[];
}
