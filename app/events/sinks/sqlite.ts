// Events into the `actions` table. Inserts are batched: one transaction per
// ~200 ms or 500 events, whichever comes first, so a burst of requests costs
// one fsync-free WAL append instead of hundreds. If a flush fails (the
// database is locked past busy_timeout, the disk is full) the batch is kept
// and retried on the next tick, up to a bound past which the oldest events
// are dropped and counted.
import type { Database } from "bun:sqlite";
import { log, type LogFields, type LogLevel } from "../../log.ts";
import { insertActions, pruneActions } from "../../store/actions.ts";
import type { EventSink, GatewayEvent } from "../types.ts";

const DAY_MS = 86_400_000;
/** Back-off between retries of a failed flush. */
const RETRY_MS = 1000;

export interface ActionsSinkOptions {
  retentionDays: number;
  now?: () => number;
  /** Flush this long after the first buffered event (default 200 ms). */
  flushMs?: number;
  /** Flush at once when this many events are buffered (default 500). */
  maxBatch?: number;
  /** Drop the oldest events past this many buffered while flushes fail (default 50 000). */
  maxBuffered?: number;
  /** Told how many rows each successful flush inserted (the worker acknowledges them). */
  onFlushed?: (rows: number) => void;
  /** Where this sink logs (default the process's log; a worker forwards to the main thread). */
  log?: (level: LogLevel, msg: string, fields: LogFields) => void;
}

export class ActionsSink implements EventSink {
  private buffer: GatewayEvent[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly now: () => number;
  private readonly flushMs: number;
  private readonly maxBatch: number;
  private readonly maxBuffered: number;
  private failing = false;
  private dropped = 0;
  private closed = false;
  private readonly log: (level: LogLevel, msg: string, fields: LogFields) => void;

  constructor(
    private readonly db: Database,
    private readonly opts: ActionsSinkOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.flushMs = opts.flushMs ?? 200;
    this.maxBatch = opts.maxBatch ?? 500;
    this.maxBuffered = opts.maxBuffered ?? 50_000;
    this.log = opts.log ?? ((level, msg, fields) => log[level](msg, fields));
  }

  write(event: GatewayEvent): void {
    if (this.closed) return;
    this.buffer.push(event);
    if (this.buffer.length > this.maxBuffered) {
      this.dropped += this.buffer.length - this.maxBuffered;
      this.buffer.splice(0, this.buffer.length - this.maxBuffered);
    }
    // While failing, only the retry timer flushes: a locked database must
    // not cost every request a busy_timeout wait.
    if (this.buffer.length >= this.maxBatch && !this.failing) this.flush();
    else this.schedule();
  }

  /** Write everything buffered now; returns how many rows were inserted. */
  flush(): number {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.buffer.length === 0) return 0;
    const batch = this.buffer;
    this.buffer = [];
    try {
      insertActions(this.db, batch, this.now);
    } catch (err) {
      // Keep the batch ahead of anything written since, and try again later.
      this.buffer = batch.concat(this.buffer);
      if (!this.failing) this.log("error", "actions sink: insert failed; will retry", { events: batch.length, error: err });
      this.failing = true;
      if (!this.closed) this.schedule(Math.max(this.flushMs, RETRY_MS));
      return 0;
    }
    if (this.failing || this.dropped) {
      this.log("info", "actions sink: recovered", { dropped: this.dropped });
      this.failing = false;
      this.dropped = 0;
    }
    this.opts.onFlushed?.(batch.length);
    return batch.length;
  }

  /** Delete rows older than the retention; returns how many went. Call on start and hourly. */
  prune(): number {
    // Called from a timer: a locked database is logged, never thrown.
    try {
      return pruneActions(this.db, this.now() - this.opts.retentionDays * DAY_MS);
    } catch (err) {
      this.log("error", "actions sink: prune failed", { error: err });
      return 0;
    }
  }

  /** Events waiting for the next flush. */
  get pending(): number {
    return this.buffer.length;
  }

  close(): void {
    this.closed = true;
    this.flush();
    if (this.buffer.length) this.log("error", "actions sink: events lost at close", { events: this.buffer.length });
  }

  private schedule(delay = this.flushMs): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, delay);
    // Never keep the process alive just to flush; close() flushes at shutdown.
    this.timer.unref?.();
  }
}
