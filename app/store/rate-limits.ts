// The rate-limit buckets in the state database, so that a restart within a
// rule's window keeps its count (app/policy/rate-limits.ts does the counting).
// Saved at most once a second when something changed, and at close.
import type { Database } from "bun:sqlite";
import { RateLimiter, rateLimiter, setRateLimiter, type SavedBucket } from "../policy/rate-limits.ts";
import { log } from "../log.ts";

const SAVE_INTERVAL_MS = 1000;

export interface PersistedRateLimits {
  limiter: RateLimiter;
  /** Writes what changed since the last save. */
  save(): void;
  /** Saves, stops the timer and puts back the limiter that was installed before. */
  close(): void;
}

/** Loads the saved buckets into a new limiter and installs it as the gateway's. */
export function persistRateLimits(db: Database, now: () => number = Date.now): PersistedRateLimits {
  const limiter = new RateLimiter(now);
  const rows = db.query("SELECT key, tokens, at FROM rate_limits").all() as SavedBucket[];
  limiter.restore(rows);
  const previous = rateLimiter();
  setRateLimiter(limiter);

  const save = () => {
    const { changed, buckets } = limiter.save();
    if (!changed) return;
    try {
      db.transaction(() => {
        db.run("DELETE FROM rate_limits");
        const insert = db.query("INSERT INTO rate_limits (key, tokens, at) VALUES (?, ?, ?)");
        for (const b of buckets) insert.run(b.key, b.tokens, b.at);
      })();
    } catch (e) {
      // A lost save costs a restart some counting, never a request.
      log.warn("rate-limit buckets not saved", { error: e instanceof Error ? e.message : String(e) });
    }
  };
  const timer = setInterval(save, SAVE_INTERVAL_MS);
  timer.unref?.();
  let closed = false;
  return {
    limiter,
    save,
    close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      save();
      if (rateLimiter() === limiter) setRateLimiter(previous);
    },
  };
}
