// The audit export as an event sink: every (already redacted) event becomes
// a row that waits in an on-disk spool until its target has it.
//
// 1. write(): the row is serialized and buffered in memory; never awaits.
// 2. Spooling: the buffer goes to the spool every SPOOL_FLUSH_MS, or at once
//    when a batch's worth is waiting. Rows that do not fit under the cap are
//    dropped and counted; once there is room, one `export_gap` row records
//    how many, so the loss shows where the events are read.
// 3. Sending: one loop reads up to batchSize rows from the spool and inserts
//    them; a partial batch waits flushInterval first (batches by size or
//    time). A failed insert is retried with exponential backoff, the same
//    rows again; only an acknowledged insert moves the spool's cursor.
//    Delivery is at least once (see rows.ts for deduplication by event_id).
import { randomUUID } from "node:crypto";
import { log } from "../../log.ts";
import type { EventSink, GatewayEvent } from "../types.ts";
import { eventRow, gapRow } from "./rows.ts";
import { MAX_LINE_BYTES, type Spool, type SpoolBatch } from "./spool.ts";

/** Where rows go: ClickHouse (clickhouse.ts), or a twin in tests. */
export interface ExportTarget {
  /** Creates what the inserts need (database, table); called before the first insert and again after a failure. */
  prepare(signal: AbortSignal): Promise<void>;
  insert(rows: Record<string, unknown>[], signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

export interface ExporterOptions {
  spool: Spool;
  target: ExportTarget;
  /** The `gateway` column. */
  gateway: string;
  batchSize: number;
  flushIntervalMs: number;
  /** Retry delays: minMs doubling up to maxMs (defaults 500 ms and 10 s). */
  backoff?: { minMs: number; maxMs: number };
  /** Event ids (default: random UUIDs). */
  newId?: () => string;
  now?: () => number;
  /** Names the target in log lines and metrics. */
  name?: string;
}

/** How long rows may sit in memory before they are on disk. */
const SPOOL_FLUSH_MS = 200;

export class Exporter implements EventSink {
  private pending: string[] = [];
  private spoolTimer: ReturnType<typeof setTimeout> | undefined;
  private sleeper: { done: () => void; wakeable: boolean } | undefined;
  private readonly abort = new AbortController();
  private readonly loop: Promise<void>;
  private closed = false;
  private prepared = false;
  private failing = false;
  private spoolBroken = false;
  /** Dropped since the last gap row was spooled. */
  private unrecorded = 0;
  private readonly stats = { sent: 0, dropped: 0, failures: 0, corrupt: 0 };
  private readonly newId: () => string;
  private readonly now: () => number;
  private readonly backoff: { minMs: number; maxMs: number };

  constructor(private readonly opts: ExporterOptions) {
    this.newId = opts.newId ?? randomUUID;
    this.now = opts.now ?? Date.now;
    this.backoff = opts.backoff ?? { minMs: 500, maxMs: 10_000 };
    this.loop = this.run();
  }

  write(event: GatewayEvent): void {
    if (this.closed) return;
    const line = JSON.stringify(eventRow(event, this.opts.gateway, this.newId()));
    if (Buffer.byteLength(line) > MAX_LINE_BYTES) {
      this.drop(1, "an event too large to export");
      return;
    }
    this.pending.push(line);
    if (this.pending.length >= this.opts.batchSize) {
      this.spoolPending();
      if (this.sleeper?.wakeable) this.sleeper.done();
    } else if (!this.spoolTimer) {
      this.spoolTimer = setTimeout(() => {
        this.spoolTimer = undefined;
        this.spoolPending();
      }, SPOOL_FLUSH_MS);
      this.spoolTimer.unref?.();
    }
  }

  /** Counters and gauges for /metrics. */
  snapshot(): { sent: number; dropped: number; failures: number; spoolBytes: number; spoolLimitBytes: number; up: boolean } {
    return { ...this.stats, spoolBytes: this.opts.spool.pendingBytes, spoolLimitBytes: this.opts.spool.maxBytes, up: !this.failing };
  }

  /** Prometheus exposition lines (app/events/metrics.ts appends them). */
  metricLines(): string[] {
    const s = this.snapshot();
    return [
      "# HELP clawpatrol_export_spool_bytes Bytes of events waiting in the ClickHouse export spool.",
      "# TYPE clawpatrol_export_spool_bytes gauge",
      `clawpatrol_export_spool_bytes ${s.spoolBytes}`,
      "# HELP clawpatrol_export_spool_limit_bytes The spool's cap (spool_max); events beyond it are dropped.",
      "# TYPE clawpatrol_export_spool_limit_bytes gauge",
      `clawpatrol_export_spool_limit_bytes ${s.spoolLimitBytes}`,
      "# HELP clawpatrol_export_rows_total Rows inserted into ClickHouse.",
      "# TYPE clawpatrol_export_rows_total counter",
      `clawpatrol_export_rows_total ${s.sent}`,
      "# HELP clawpatrol_export_dropped_total Events not exported: the spool was full (or an event was over 1 MiB).",
      "# TYPE clawpatrol_export_dropped_total counter",
      `clawpatrol_export_dropped_total ${s.dropped}`,
      "# HELP clawpatrol_export_failures_total Failed insert attempts (each is retried).",
      "# TYPE clawpatrol_export_failures_total counter",
      `clawpatrol_export_failures_total ${s.failures}`,
      "# HELP clawpatrol_export_up 1 when the last insert attempt succeeded.",
      "# TYPE clawpatrol_export_up gauge",
      `clawpatrol_export_up ${s.up ? 1 : 0}`,
    ];
  }

  /** Spools what is buffered and stops; unsent rows stay in the spool for the next start. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.spoolPending();
    this.closed = true;
    if (this.spoolTimer) clearTimeout(this.spoolTimer);
    this.spoolTimer = undefined;
    this.abort.abort();
    this.sleeper?.done();
    await this.loop;
    this.opts.spool.close();
    await this.opts.target.close();
  }

  private spoolPending(): void {
    if (this.closed) return;
    if (this.spoolTimer) {
      clearTimeout(this.spoolTimer);
      this.spoolTimer = undefined;
    }
    const spool = this.opts.spool;
    try {
      if (this.unrecorded > 0) {
        const n = this.unrecorded;
        const gap = JSON.stringify(gapRow(this.opts.gateway, this.newId(), this.now(), n, spool.maxBytes));
        if (spool.append([gap]) === 1) {
          this.unrecorded = 0;
          log.warn(`${this.label()}: spool has room again; the gap is recorded`, { dropped: n });
        }
      }
      if (this.pending.length === 0) return;
      const lines = this.pending;
      this.pending = [];
      // While a gap is unrecorded nothing newer goes in before it.
      const written = this.unrecorded > 0 ? 0 : spool.append(lines);
      if (written < lines.length) this.drop(lines.length - written, "the spool is full");
      this.spoolBroken = false;
    } catch (err) {
      const lost = this.pending.length;
      this.pending = [];
      if (!this.spoolBroken) log.error(`${this.label()}: spool write failed; events dropped`, { error: err });
      this.spoolBroken = true;
      if (lost > 0) this.drop(lost, "the spool could not be written");
    }
  }

  private drop(n: number, why: string): void {
    if (this.unrecorded === 0) log.warn(`${this.label()}: dropping events: ${why}`, { spoolBytes: this.opts.spool.bytes, spoolMax: this.opts.spool.maxBytes });
    this.unrecorded += n;
    this.stats.dropped += n;
  }

  private async run(): Promise<void> {
    let attempt = 0;
    while (!this.closed) {
      this.spoolPending();
      let batch: SpoolBatch | undefined;
      try {
        batch = this.opts.spool.read(this.opts.batchSize);
      } catch (err) {
        log.error(`${this.label()}: spool read failed`, { error: err });
        await this.sleep(this.backoff.maxMs, false);
        continue;
      }
      if (!batch) {
        await this.sleep(this.opts.flushIntervalMs, true);
        continue;
      }
      const rows = this.parse(batch);
      try {
        if (!this.prepared) await this.opts.target.prepare(this.abort.signal);
        this.prepared = true;
        if (rows.length > 0) await this.opts.target.insert(rows, this.abort.signal);
      } catch (err) {
        if (this.closed) break;
        attempt += 1;
        this.stats.failures += 1;
        this.prepared = false;
        if (!this.failing) log.warn(`${this.label()}: insert failed; rows stay spooled and are retried`, { rows: rows.length, error: errorText(err) });
        this.failing = true;
        await this.sleep(this.retryDelay(attempt), false);
        continue;
      }
      this.opts.spool.acknowledge(batch);
      this.stats.sent += rows.length;
      attempt = 0;
      if (this.failing) log.info(`${this.label()}: inserts succeed again`, { spooledBytes: this.opts.spool.pendingBytes });
      this.failing = false;
      if (batch.lines.length < this.opts.batchSize) await this.sleep(this.opts.flushIntervalMs, true);
    }
  }

  /** Rows of a batch; a line that is not JSON (a damaged spool) is skipped and counted. */
  private parse(batch: SpoolBatch): Record<string, unknown>[] {
    const rows: Record<string, unknown>[] = [];
    const batchId = `${this.opts.gateway}:${batch.start.segment}:${batch.start.offset}`;
    for (const line of batch.lines) {
      try {
        rows.push({ ...(JSON.parse(line) as Record<string, unknown>), batch_id: batchId });
      } catch {
        if (this.stats.corrupt === 0) log.error(`${this.label()}: a spooled row is not JSON; skipped`);
        this.stats.corrupt += 1;
      }
    }
    return rows;
  }

  /** Exponential, with jitter in its upper half so gateways that lost the same server do not retry in step. */
  private retryDelay(attempt: number): number {
    const ceiling = Math.min(this.backoff.maxMs, this.backoff.minMs * 2 ** Math.min(attempt - 1, 30));
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  /** Waits ms; a wakeable sleep also ends when a batch's worth of rows is waiting. close() ends any. */
  private sleep(ms: number, wakeable: boolean): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.sleeper?.done === done) this.sleeper = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref?.();
      this.sleeper = { done, wakeable };
    });
  }

  private label(): string {
    return `${this.opts.name ?? "export"}`;
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
